"""The curve of a finished range test (Find LR in the launch form): loss against learning
rate in the app's chart colours, the valley and the steepest descent marked, and the
suggested rate to take into the form (`u`) or leave (escape)."""

from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.binding import Binding
from textual.color import Color
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Static

from resnet_tui.app.widgets.charts import PALETTE
from resnet_tui.charts.lr_range import AXIS, LOSS, SMOOTHED, Mark, lr_chart
from resnet_tui.display import shown
from resnet_tui.runs import range_test

VALLEY, STEEPEST = SMOOTHED + 1, SMOOTHED + 2
# The app's chart colours: the loss in the first series' colour (each step's faint), the
# suggestion green, the steepest descent orange, as `resnet-tui lr-find` draws them.
LOSS_PAINT, STEEPEST_PAINT, VALLEY_PAINT = PALETTE[0], PALETTE[1], PALETTE[2]
# Rows under the plot: the rates' axis and up to two rows naming the marks.
UNDER_THE_PLOT = 3


class LrCurve(Widget):
    """The range test's chart, drawn again at the widget's size."""

    DEFAULT_CSS = """
    LrCurve {
        height: 14;
    }
    """

    def __init__(self, finished: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.finished = finished

    def inks(self) -> dict[int, Style]:
        """Each ink of the chart as a style of the theme in use."""
        background = self.background_colors[1]
        foreground = Color.parse(self.app.theme_variables.get("foreground", "#e0e0e0"))
        muted = foreground.blend(background, 0.45)
        return {
            AXIS: Style(color=muted.rich_color),
            LOSS: Style(color=LOSS_PAINT.blend(background, 0.6).rich_color),
            SMOOTHED: Style(color=LOSS_PAINT.rich_color, bold=True),
            VALLEY: Style(color=VALLEY_PAINT.rich_color, bold=True),
            STEEPEST: Style(color=STEEPEST_PAINT.rich_color),
        }

    def render(self) -> RenderResult:
        finished = self.finished
        marks = [
            Mark("valley", finished["valley"], VALLEY),
            Mark("steepest", finished["steepest"], STEEPEST),
        ]
        width, height = self.size.width, max(self.size.height - UNDER_THE_PLOT, 2)
        rows = lr_chart(
            finished["lrs"], finished["losses"], finished["smoothed"], marks, width, height
        )
        inks = self.inks()
        return Text("\n").join(
            Text.assemble(*((text, inks[ink]) for text, ink in row), no_wrap=True) for row in rows
        )


class LrCurveDialog(ModalScreen[float | None]):
    """The curve and the suggestion; dismisses with the rate to use, or None."""

    DEFAULT_CSS = """
    LrCurveDialog {
        align: center middle;
    }
    #lr-curve-box {
        width: 100%;
        max-width: 110;
        height: auto;
        margin: 0 1;
        padding: 0 1;
        border: thick $primary;
        background: $surface;
    }
    #lr-curve-buttons {
        height: auto;
        align-horizontal: right;
    }
    #lr-curve-buttons Button {
        margin-left: 2;
    }
    """

    BINDINGS = [
        Binding("escape", "answer(False)", "Dismiss", id="dialog.cancel"),
        Binding("u", "answer(True)", "Use the suggested rate", id="dialog.use_lr"),
    ]

    def __init__(self, finished: dict[str, Any]) -> None:
        super().__init__()
        self.finished = finished
        self.lr = float(f"{finished['valley']:.3g}")  # as the suggestion says it

    def compose(self) -> ComposeResult:
        finished = self.finished
        with Vertical(id="lr-curve-box"):
            yield Static(shown(range_test.title(finished)), id="lr-curve-title")
            yield LrCurve(finished, id="lr-curve")
            yield Static(self.legend(), id="lr-curve-legend")
            yield Static(shown(range_test.suggestion(finished)), id="lr-curve-suggestion")
            with Horizontal(id="lr-curve-buttons"):
                yield Button(f"Use {self.lr:g} (u)", id="use", variant="success", compact=True)
                yield Button("Dismiss (esc)", id="dismiss", compact=True)

    def legend(self) -> Text:
        """What each ink of the chart is (the rates are in the suggestion below it)."""
        return Text.assemble(
            ("━ smoothed loss", f"bold {LOSS_PAINT.hex6}"),
            ("  · each step", "dim"),
            ("  ▲ valley: the suggestion", f"bold {VALLEY_PAINT.hex6}"),
            ("  ▲ steepest descent", STEEPEST_PAINT.hex6),
        )

    def on_mount(self) -> None:
        self.query_one("#use", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "use")

    def action_answer(self, use: bool) -> None:
        self.dismiss(self.lr if use else None)
