"""The app's tables: Textual's DataTable with the keys of k9s and lazygit (j/k, G, ctrl+d/u)."""

from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable


class Table(DataTable):
    """A table of rows that moves as a terminal user's fingers expect.

    Beside the arrows and page keys: `j`/`k` down and up, `home` and `end` (and `G`) to the
    first and last row, `ctrl+d`/`ctrl+u` half a page down and up. Each key has an id
    (`table.*`) so keys.toml can move it.
    """

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("home", "first_row", "First row", show=False, id="table.first"),
        Binding("end,G", "last_row", "Last row", show=False, id="table.last"),
        Binding("ctrl+d", "half_page(1)", "Half page down", show=False, id="table.half_down"),
        Binding("ctrl+u", "half_page(-1)", "Half page up", show=False, id="table.half_up"),
    ]

    @property
    def has_row_cursor(self) -> bool:
        """Whether the keys move a cursor (else, as in a table of cursor "none", they scroll)."""
        return self.show_cursor and self.cursor_type in ("cell", "row")

    def _move_to(self, row: int) -> None:
        if self.row_count:
            row = max(0, min(self.row_count - 1, row))
            self.cursor_coordinate = Coordinate(row, self.cursor_coordinate.column)

    def action_first_row(self) -> None:
        if self.has_row_cursor:
            self._move_to(0)
        else:
            self.scroll_home(animate=False)

    def action_last_row(self) -> None:
        if self.has_row_cursor:
            self._move_to(self.row_count - 1)
        else:
            self.scroll_end(animate=False)

    def action_half_page(self, direction: int) -> None:
        header = self.header_height if self.show_header else 0
        rows = max(1, (self.scrollable_content_region.height - header) // 2)
        if self.has_row_cursor:
            self._move_to(self.cursor_coordinate.row + direction * rows)
        else:
            self.scroll_relative(y=direction * rows, animate=False)
