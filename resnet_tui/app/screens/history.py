"""The history screen: every run in the store, sorted and filtered in SQL, paged as you scroll."""

import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from resnet_tui.app.messages import RunsAdded, RunsChanged, RunsRemoved
from resnet_tui.display import duration, percent, shown, weights_from
from resnet_tui.runs.model import Run
from resnet_tui.runs.store import RunStore

PAGE_SIZE = 200

# (column key in the store, heading)
COLUMNS = (
    ("id", "id"),
    ("name", "name"),
    ("sweep", "sweep"),
    ("status", "status"),
    ("arch", "arch"),
    ("dataset", "dataset"),
    ("init", "init"),
    ("freeze", "policy"),
    ("epochs_done", "epochs"),
    ("best_val_acc", "val acc"),
    ("test_acc", "test acc"),
    ("seconds", "time"),
    ("created_at", "started"),
)
STATUS_STYLES = {
    "completed": "green",
    "running": "cyan",
    "queued": "cyan",
    "stopped": "yellow",
    "failed": "red",
    "crashed": "red",
}


def run_cells(run: Run) -> list[Text]:
    """A run's row as the table shows it: Text, so that a name is shown as typed (never
    read as markup, a control character in it as an escape) and the table does not parse
    markup for every cell it measures."""
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
        run.dataset,
        weights_from(run),
        run.freeze if run.trained else "-",
        f"{run.epochs_done}/{run.epochs}" if run.trained else run.kind,
        percent(run.best_val_acc),
        percent(run.test_acc),
        duration(run.seconds),
        time.strftime("%m-%d %H:%M", time.localtime(run.created_at)),
    ]
    return [status if text is None else shown(text) for text in plain]


def run_under_cursor(table: DataTable) -> int | None:
    """The id of the run in the highlighted row of a table whose rows are keyed by run id."""
    if table.row_count == 0:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return int(row_key.value)


class HistoryScreen(Screen[None]):
    """All runs; Enter opens one, `n` starts a new one."""

    BINDINGS = [
        Binding("n", "app.new_run", "New run"),
        Binding("enter", "open_run", "Open", show=True),
        Binding("a", "launch_again", "Again"),
        Binding("u", "resume_run", "Resume"),
        Binding("d", "delete_run", "Delete"),
        Binding("space", "mark", "Mark"),
        Binding("e", "edit_run", "Edit"),
        Binding("c", "compare", "Compare"),
        Binding("f", "fuse", "Fuse"),
        Binding("g", "open_sweep", "Sweep"),
        Binding("w", "app.show_queue", "Queue"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("s", "sort_next", "Sort"),
        Binding("r", "reverse", "Reverse"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.sort = "id"
        self.descending = True
        self.filter_text = ""
        self.loaded = 0
        self.total = 0
        self.marked: list[int] = []
        self.sort_values: dict[int, Any] = {}  # each shown run's value in the sort column

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter, every word must match: deeper  status:running  arch:resnet20  "
            "tag:lab  acc>90  sweep:N  from:N",
            id="filter",
        )
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static(id="summary")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, heading in COLUMNS:
            table.add_column(heading, key=key)
        self.reload()
        table.focus()

    def reload(self, as_many: bool = False) -> None:
        """Read the first page again (`as_many` as were loaded, where the runs changed under
        the user's eyes), keeping the cursor on the same run where it can."""
        table = self.query_one(DataTable)
        selected = self.selected_run_id()
        rows = max(PAGE_SIZE, self.loaded) if as_many else PAGE_SIZE
        table.clear()
        self.sort_values.clear()
        self.loaded = 0
        self.total = self.store.count_runs(text=self.filter_text or None)
        self._load_page(rows)
        if selected is not None and str(selected) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected)))
        self._show_summary()

    def _load_page(self, rows: int = PAGE_SIZE) -> None:
        table = self.query_one(DataTable)
        runs = self.store.list_runs(
            sort=self.sort,
            descending=self.descending,
            limit=rows,
            offset=self.loaded,
            text=self.filter_text or None,
        )
        for run in runs:
            table.add_row(*self._cells(run), key=str(run.id))
            self.sort_values[run.id] = getattr(run, self.sort)
        self.loaded += len(runs)

    def _cells(self, run: Run) -> list[Text]:
        cells = run_cells(run)
        if run.id in self.marked:
            cells[0].stylize("b reverse")
        return cells

    def _show_summary(self) -> None:
        arrow = "↓" if self.descending else "↑"
        heading = dict(COLUMNS)[self.sort]
        shown = f"{self.loaded} of {self.total}" if self.loaded < self.total else str(self.total)
        hint = ""
        if not self.total:
            hint = (
                " · no run matches the filter" if self.filter_text else " · press n to start a run"
            )
        if self.marked:
            hint += f" · marked {', '.join(map(str, self.marked))} (c compares, f fuses)"
        runs = "run" if self.total == 1 else "runs"
        self.query_one("#summary", Static).update(
            f" {shown} {runs} · sorted by {heading} {arrow}{hint}"
        )

    def on_runs_added(self, message: RunsAdded) -> None:
        """Runs made by any process: read the rows again, the cursor on its run."""
        self.reload(as_many=True)

    def on_runs_removed(self, message: RunsRemoved) -> None:
        self.marked = [run_id for run_id in self.marked if run_id not in message.run_ids]
        self.reload(as_many=True)

    def on_runs_changed(self, message: RunsChanged) -> None:
        """Update the rows of runs that changed in place; read the rows again where a change
        moves a run in the sort, or into or out of the filter."""
        table = self.query_one(DataTable)
        shown = [run for run in message.runs if str(run.id) in table.rows]
        moved = any(getattr(run, self.sort) != self.sort_values.get(run.id) for run in shown)
        if moved or (
            self.filter_text and self.store.count_runs(text=self.filter_text) != self.total
        ):
            self.reload(as_many=True)
            return
        for run in shown:
            self.update_row(run)

    def update_row(self, run: Run) -> None:
        table = self.query_one(DataTable)
        for (key, _), cell in zip(COLUMNS, self._cells(run), strict=True):
            table.update_cell(str(run.id), key, cell, update_width=True)

    def selected_run_id(self) -> int | None:
        return run_under_cursor(self.query_one(DataTable))

    @on(DataTable.RowHighlighted)
    def load_more_near_the_end(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= self.loaded - 10 and self.loaded < self.total:
            self._load_page()
            self._show_summary()

    @on(DataTable.RowSelected)
    def open_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(int(event.row_key.value))

    @on(DataTable.HeaderSelected)
    def sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        self.descending = not self.descending if key == self.sort else True
        self.sort = key
        self.reload()

    @on(Input.Changed, "#filter")
    def filter_runs(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.reload()

    @on(Input.Submitted, "#filter")
    def back_to_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_open_run(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.open_run(run_id)

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.query_one(DataTable).focus()

    def action_sort_next(self) -> None:
        keys = [key for key, _ in COLUMNS]
        self.sort = keys[(keys.index(self.sort) + 1) % len(keys)]
        self.reload()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self.reload()

    def action_launch_again(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.launch_again(run_id)

    def action_resume_run(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.resume_run(run_id)

    def action_delete_run(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.delete_run(run_id)

    def action_mark(self) -> None:
        run_id = self.selected_run_id()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        run = self.store.run(run_id)
        if run is not None:
            self.update_row(run)
        self._show_summary()

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.app.tell("mark two or more runs with space, then press c", severity="warning")
            return
        self.app.compare_runs(list(self.marked))

    def action_fuse(self) -> None:
        """Fuse the marked runs, or mix the run under the cursor with its start (WiSE-FT)."""
        selected = self.selected_run_id()
        if self.marked:
            self.app.choose_fusion(list(self.marked))
        elif selected is not None:
            self.app.choose_fusion([selected])

    def action_open_sweep(self) -> None:
        """The sweep of the run under the cursor: its results per setting, and its runs."""
        run_id = self.selected_run_id()
        if run_id is None:
            return
        run = self.store.run(run_id)
        sweep = run.sweep if run else None
        if sweep is None:
            self.app.tell(
                f"run {run_id} is not part of a sweep; `resnet-tui sweep` and the launch "
                "form's Cross-val folds make sweeps",
                severity="warning",
            )
            return
        self.app.open_sweep(sweep)

    def action_edit_run(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.edit_run(run_id)
