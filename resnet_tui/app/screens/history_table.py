"""The history's table of runs: its columns, the ones that fit the screen, and marked rows."""

import time
from collections.abc import Callable
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from resnet_tui.app.widgets.tables import Table
from resnet_tui.display import duration, percent, shown, weights_from
from resnet_tui.runs.model import Run

# (column key in the store, heading), in the table's order
COLUMNS = (
    ("id", "id"),
    ("name", "name"),
    ("sweep", "sweep"),
    ("status", "status"),
    ("arch", "arch"),
    ("best_val_acc", "val acc"),
    ("test_acc", "test acc"),
    ("epochs_done", "epochs"),
    ("tags", "tags"),
    ("dataset", "dataset"),
    ("init", "init"),
    ("freeze", "policy"),
    ("seconds", "time"),
    ("created_at", "started"),
)
# The columns whose text sorts A to Z first; the others (numbers, times) sort highest first.
ALPHABETICAL = {"name", "status", "arch", "tags", "dataset", "init", "freeze"}
# The order columns give way in as the screen narrows: the last first.
KEPT_LONGEST = (
    *("name", "status", "best_val_acc", "test_acc", "id", "arch", "sweep", "epochs_done"),
    *("tags", "dataset", "seconds", "created_at", "freeze", "init"),
)
# Text columns are cut (with an ellipsis) to these widths: their whole text is in the line
# under the table. The name gets more where the screen has room left, up to NAME_WIDEST.
TEXT_WIDTHS = {"name": 20, "tags": 14, "dataset": 14, "init": 14}
NAME_WIDEST = 40
PADDING = 2  # each column's cell padding, one a side
BESIDE_COLUMNS = 6  # the mark column (3), the scroll bar (2) and one to spare
STATUS_STYLES = {
    "completed": "green",
    "running": "cyan",
    "queued": "cyan",
    "pruned": "magenta",
    "stopped": "yellow",
    "failed": "red",
    "crashed": "red",
}
MARK = "●"


def run_cells(run: Run) -> list[Text]:
    """A run's row as the table shows it, one cell per column of COLUMNS: Text, so that a
    name is shown as typed (never read as markup, a control character in it as an escape)
    and the table does not parse markup for every cell it measures."""
    silent = run.stalled_for()
    if silent is None:
        status = Text(run.status, style=STATUS_STYLES.get(run.status, "white"))
    else:
        status = Text(f"stalled {duration(silent)}", style="yellow")
    plain = [
        str(run.id),
        run.name,
        str(run.sweep or ""),
        None,
        run.arch,
        percent(run.best_val_acc),
        percent(run.test_acc),
        f"{run.epochs_done}/{run.epochs}" if run.trained else run.kind,
        run.tags,
        run.dataset,
        weights_from(run),
        run.freeze if run.trained else "-",
        duration(run.seconds),
        time.strftime("%m-%d %H:%M", time.localtime(run.created_at)),
    ]
    cells = [status if text is None else shown(text) for text in plain]
    for cell in cells:
        cell.overflow = "ellipsis"
    return cells


def run_under_cursor(table: DataTable) -> int | None:
    """The id of the run in the highlighted row of a table whose rows are keyed by run id."""
    if table.row_count == 0 or not table.columns:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return int(row_key.value)


def fit_columns(width: int, rows: list[list[Text]]) -> dict[str, int | None]:
    """The columns that fit a screen `width` cells wide showing `rows` (cells in COLUMNS
    order), in the table's order: a text column with its width, the others with None (as
    wide as their cells). Name, status and the accuracies come first; the rest follow
    while they fit."""
    widest = {
        key: max([len(heading), *(cells[index].cell_len for cells in rows)])
        for index, (key, heading) in enumerate(COLUMNS)
    }
    needs = {key: min(wide, TEXT_WIDTHS.get(key, wide)) for key, wide in widest.items()}
    room = width - BESIDE_COLUMNS
    chosen = set()
    for key in KEPT_LONGEST:
        if needs[key] + PADDING > room:
            break
        chosen.add(key)
        room -= needs[key] + PADDING
    if not chosen:  # too narrow even for the name: the name, cut short, is all there is
        return {"name": max(1, room - PADDING)}
    needs["name"] = min(widest["name"], NAME_WIDEST, needs["name"] + room)
    return {key: needs[key] if key in TEXT_WIDTHS else None for key, _ in COLUMNS if key in chosen}


class RunsTable(Table):
    """The history's table: a marked run shows a dot in the mark column and its whole row
    in the marked style (bold on the accent colour)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = Table.COMPONENT_CLASSES | {"runs--marked"}
    DEFAULT_CSS = """
    RunsTable {
        width: 100%;
    }
    RunsTable > .runs--marked {
        background: $accent 35%;
        text-style: bold;
    }
    """

    def __init__(self, load_the_rest: Callable[[], None], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.marked: set[str] = set()  # the row keys of the marked runs
        self.load_the_rest = load_the_rest  # the pages not loaded yet, for the last row

    def action_last_row(self) -> None:
        """The last run of all, not of the pages loaded so far."""
        self.load_the_rest()
        super().action_last_row()

    def mark_label(self, row_key: str) -> Text:
        """The mark column's cell of a row: a dot where the run is marked."""
        return Text(MARK if row_key in self.marked else " ", style="bold")

    def show_mark(self, row_key: str) -> None:
        """Show a row's mark (or its absence) as `marked` has it now."""
        self.rows[RowKey(row_key)].label = self.mark_label(row_key)

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        """The row's style (zebra stripes, header), with the marked style over it."""
        style = super()._get_row_style(row_index, base_style)
        if row_index < 0 or not self.marked or row_index >= self.row_count:
            return style
        row_key, _ = self.coordinate_to_cell_key(Coordinate(row_index, 0))
        if row_key.value in self.marked:
            style += self.get_component_styles("runs--marked").rich_style
        return style
