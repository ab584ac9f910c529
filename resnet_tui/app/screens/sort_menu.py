"""The history's sort menu: every column by its heading, the one sorted by now highlighted."""

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class SortMenu(ModalScreen[str | None]):
    """Choose the column to sort by: Enter (or a click) picks one, Escape keeps the order."""

    DEFAULT_CSS = """
    SortMenu {
        align: center middle;
    }
    SortMenu > Vertical {
        width: 32;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        padding: 0 1;
        border: thick $primary;
        background: $surface;
    }
    SortMenu OptionList {
        height: auto;
        max-height: 16;
    }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
        Binding("j", "move(1)", "Down", show=False, id="dialog.down"),
        Binding("k", "move(-1)", "Up", show=False, id="dialog.up"),
    ]

    def __init__(self, columns: Sequence[tuple[str, str]], current: str, descending: bool) -> None:
        super().__init__()
        self.columns = list(columns)
        self.current = current
        self.descending = descending

    def compose(self) -> ComposeResult:
        arrow = " ↓" if self.descending else " ↑"
        with Vertical():
            yield Label("Sort by")
            yield OptionList(
                *(
                    Option(heading + (arrow if key == self.current else ""), id=key)
                    for key, heading in self.columns
                )
            )

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        keys = [key for key, _ in self.columns]
        menu.highlighted = keys.index(self.current) if self.current in keys else 0
        menu.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_move(self, step: int) -> None:
        menu = self.query_one(OptionList)
        menu.action_cursor_down() if step > 0 else menu.action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)
