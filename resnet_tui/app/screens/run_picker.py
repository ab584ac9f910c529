"""A modal table of the store's runs to start from or distil from: type to filter, enter
picks the highlighted run, escape cancels."""

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label

from resnet_tui.app.widgets.tables import Table
from resnet_tui.display import percent, shown
from resnet_tui.runs.store import RunStore

# The most runs the picker lists (newest first); the filter finds older ones.
MOST_RUNS = 500
COLUMNS = ("id", "name", "arch", "dataset", "best val", "status")


class RunPicker(ModalScreen[str | None]):
    """The runs with weights of their own (ensembles have none), newest first; dismisses
    with the chosen run's id, or None."""

    DEFAULT_CSS = """
    RunPicker {
        align: center middle;
    }
    RunPicker > Vertical {
        width: 90%;
        max-width: 120;
        height: 80%;
        padding: 0 1;
        border: thick $accent;
        background: $surface;
    }
    RunPicker #pick-title {
        width: 100%;
        color: $text-muted;
    }
    RunPicker #pick-filter {
        margin-bottom: 1;
    }
    RunPicker #pick-runs {
        height: 1fr;
    }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="launch.pick_cancel"),
        Binding("down", "move(1)", "Down", show=False, id="launch.pick_down"),
        Binding("up", "move(-1)", "Up", show=False, id="launch.pick_up"),
    ]

    def __init__(self, store: RunStore, what: str) -> None:
        super().__init__()
        self.store = store
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                f"Pick {self.what}: type to filter, enter picks, escape cancels", id="pick-title"
            )
            yield Input(
                placeholder="filter: words, arch:resnet20, status:completed, val>80",
                id="pick-filter",
                compact=True,
            )
            table = Table(id="pick-runs", cursor_type="row", zebra_stripes=True)
            table.add_columns(*COLUMNS)
            yield table

    def on_mount(self) -> None:
        self.list_runs("")
        self.query_one("#pick-filter", Input).focus()

    @on(Input.Changed, "#pick-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.list_runs(event.value)

    def list_runs(self, text: str) -> None:
        table = self.query_one("#pick-runs", Table)
        table.clear()
        for run in self.store.list_runs(text=text or None, limit=MOST_RUNS):
            if run.kind == "ensemble":
                continue
            table.add_row(
                str(run.id),
                shown(run.name),
                shown(run.arch),
                shown(run.dataset),
                percent(run.best_val_acc),
                shown(run.status),
                key=str(run.id),
            )

    def action_move(self, rows: int) -> None:
        table = self.query_one("#pick-runs", Table)
        if rows > 0:
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def _pick(self) -> None:
        table = self.query_one("#pick-runs", Table)
        if not table.row_count:
            self.app.bell()
            return
        self.dismiss(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    @on(Input.Submitted, "#pick-filter")
    def filter_submitted(self) -> None:
        self._pick()

    @on(DataTable.RowSelected, "#pick-runs")
    def row_selected(self) -> None:
        self._pick()

    def action_cancel(self) -> None:
        self.dismiss(None)
