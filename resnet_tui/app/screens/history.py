"""The history screen: every run in the store, sorted and filtered in SQL, paged as you scroll."""

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from resnet_tui.app.messages import RunsAdded, RunsChanged, RunsRemoved
from resnet_tui.app.screens.history_table import (
    ALPHABETICAL,
    COLUMNS,
    RunsTable,
    fit_columns,
    run_cells,
    run_under_cursor,
)
from resnet_tui.app.screens.sort_menu import SortMenu
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.display import markup_safe, shown
from resnet_tui.runs.model import Run
from resnet_tui.runs.queries import FILTER_KEYS, unknown_keys
from resnet_tui.runs.store import RunStore

PAGE_SIZE = 200
CELL = {key: index for index, (key, _) in enumerate(COLUMNS)}  # a column's cell in run_cells


class HistoryScreen(Screen[None]):
    """All runs; Enter opens one, `n` starts a new one. The columns are the ones that fit
    the screen's width (name, status, val and test accuracy always); the line under the
    table shows the focused run's name, tags and notes in full."""

    DEFAULT_CSS = """
    HistoryScreen #detail {
        height: 1;
        padding: 0 1;
    }
    """

    BINDINGS = [
        Binding("enter", "open_run", "Open", id="history.open"),
        Binding("n", "app.new_run", "New run", id="app.new_run"),
        Binding("slash", "focus_filter", "Filter", id="history.filter"),
        Binding("space", "mark", "Mark", id="history.mark"),
        Binding("c", "compare", "Compare", id="history.compare"),
        Binding("s", "sort_menu", "Sort", id="history.sort"),
        Binding("e", "edit_run", "Edit", id="history.edit"),
        Binding("d", "delete_run", "Delete", id="history.delete"),
        Binding("a", "launch_again", "Again", id="history.again"),
        Binding("u", "resume_run", "Resume", id="history.resume"),
        Binding("x", "stop_run", "Stop", id="history.stop"),
        Binding("f", "fuse", "Fuse", id="history.fuse"),
        Binding("p", "predict", "Predict", show=False, id="history.predict"),
        Binding("m", "mistakes", "Mistakes", show=False, id="history.mistakes"),
        Binding("S", "open_sweep", "Sweep", id="history.sweep"),
        Binding("w", "app.show_queue", "Queue", id="app.queue"),
        Binding("r", "reverse", "Reverse", id="history.reverse"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="history.clear_filter"),
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
        self.runs: dict[int, Run] = {}  # each shown run as its row shows it
        self.columns: dict[str, int | None] = {}  # the columns shown: key, width if fixed
        self.fitted_to = 0  # the screen width the columns were chosen for

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter, every word must match: deeper  status:running  arch:resnet20  "
            "tag:lab  acc>90  sweep:N  from:N",
            id="filter",
        )
        yield RunsTable(self.load_the_rest, id="runs", cursor_type="row", zebra_stripes=True)
        yield Static(id="detail")
        yield Static(id="summary")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.reload()
        self.table.focus()

    def on_resize(self, event: events.Resize) -> None:
        """A wider or narrower screen: the columns that fit it now."""
        if self.app.size.width != self.fitted_to:
            self.reload(as_many=True)

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def reload(self, as_many: bool = False) -> None:
        """Read the first page again (`as_many` as were loaded, where the runs changed under
        the user's eyes), keeping the cursor on the same run where it can; the columns
        chosen afresh for the screen's width and the runs' texts."""
        table = self.table
        selected = self.selected_run_id()
        rows = max(PAGE_SIZE, self.loaded) if as_many else PAGE_SIZE
        self.total = self.store.count_runs(text=self.filter_text or None)
        runs = self._runs(rows, offset=0)
        cells = [run_cells(run) for run in runs]
        self.fitted_to = self.app.size.width
        columns = fit_columns(self.fitted_to, cells)
        table.clear(columns=columns != self.columns)
        if columns != self.columns:
            self.columns = columns
            headings = dict(COLUMNS)
            for key, width in columns.items():
                table.add_column(headings[key], key=key, width=width)
        self.runs.clear()
        self.loaded = 0
        self._add_rows(runs, cells)
        if selected is not None and str(selected) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected)))
        self._show_summary()
        self._show_detail()

    def _runs(self, rows: int, offset: int) -> list[Run]:
        return self.store.list_runs(
            sort=self.sort,
            descending=self.descending,
            limit=rows,
            offset=offset,
            text=self.filter_text or None,
        )

    def _add_rows(self, runs: list[Run], cells: list[list[Text]]) -> None:
        table = self.table
        table.marked = {str(run_id) for run_id in self.marked}
        for run, row in zip(runs, cells, strict=True):
            key = str(run.id)
            shown_cells = [row[CELL[column]] for column in self.columns]
            table.add_row(*shown_cells, key=key, label=table.mark_label(key))
            self.runs[run.id] = run
        self.loaded += len(runs)

    def _show_summary(self) -> None:
        arrow = "↓" if self.descending else "↑"
        heading = dict(COLUMNS).get(self.sort, self.sort)
        shown = f"{self.loaded} of {self.total}" if self.loaded < self.total else str(self.total)
        hint = ""
        if not self.total:
            hint = (
                " · no run matches the filter" if self.filter_text else " · press n to start a run"
            )
            unknown = unknown_keys(self.filter_text)
            if unknown:
                said = markup_safe(", ".join(unknown))
                hint += f" ({said}? the keys are {' '.join(FILTER_KEYS)})"
        if self.marked:
            hint += f" · marked {', '.join(map(str, self.marked))} (c compares, f fuses)"
        runs = "run" if self.total == 1 else "runs"
        self.query_one("#summary", Static).update(
            f" {shown} {runs} · sorted by {heading} {arrow}{hint}"
        )

    def _show_detail(self) -> None:
        """The focused run's name, tags and notes, whole (the table cuts long ones)."""
        run_id = self.selected_run_id()
        run = self.runs.get(run_id) if run_id is not None else None
        line = Text(no_wrap=True, overflow="ellipsis")
        if run is not None:
            line.append_text(shown(f"{run.id} {run.name}", "bold"))
            if run.tags:
                line.append(" · tags ", style="dim")
                line.append_text(shown(run.tags))
            if run.notes:
                line.append(" · notes ", style="dim")
                line.append_text(shown(run.notes))
            if not (run.tags or run.notes):
                line.append(" · no tags or notes (e edits them)", style="dim")
        self.query_one("#detail", Static).update(line)

    def on_runs_added(self, message: RunsAdded) -> None:
        """Runs made by any process: read the rows again, the cursor on its run."""
        self.reload(as_many=True)

    def on_runs_removed(self, message: RunsRemoved) -> None:
        self.marked = [run_id for run_id in self.marked if run_id not in message.run_ids]
        self.reload(as_many=True)

    def on_runs_changed(self, message: RunsChanged) -> None:
        """Update the rows of runs that changed in place; read the rows again where a change
        moves a run in the sort, or into or out of the filter."""
        shown = [run for run in message.runs if run.id in self.runs]
        moved = any(
            getattr(run, self.sort) != getattr(self.runs[run.id], self.sort) for run in shown
        )
        if moved or (
            self.filter_text and self.store.count_runs(text=self.filter_text) != self.total
        ):
            self.reload(as_many=True)
            return
        for run in shown:
            self.update_row(run)
        self._show_detail()

    def update_row(self, run: Run) -> None:
        table = self.table
        key = str(run.id)
        self.runs[run.id] = run
        table.marked = {str(run_id) for run_id in self.marked}
        table.show_mark(key)
        cells = run_cells(run)
        for column in self.columns:
            table.update_cell(key, column, cells[CELL[column]], update_width=True)

    def selected_run_id(self) -> int | None:
        return run_under_cursor(self.table)

    def load_the_rest(self) -> None:
        """Every run the filter keeps that is not in the table yet (for `G`, `end`)."""
        if self.loaded < self.total:
            runs = self._runs(self.total - self.loaded, offset=self.loaded)
            self._add_rows(runs, [run_cells(run) for run in runs])
            self._show_summary()

    @on(DataTable.RowHighlighted)
    def load_more_near_the_end(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= self.loaded - 10 and self.loaded < self.total:
            runs = self._runs(PAGE_SIZE, offset=self.loaded)
            self._add_rows(runs, [run_cells(run) for run in runs])
            self._show_summary()
        self._show_detail()

    @on(DataTable.RowSelected)
    def open_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(int(event.row_key.value))

    @on(DataTable.HeaderSelected)
    def sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort:
            self.action_reverse()
        else:
            self.sort_by(key)

    def sort_by(self, key: str | None) -> None:
        """Sort by the column `key` (text A to Z, numbers and times highest first)."""
        if key is None or key == self.sort:
            return
        self.sort, self.descending = key, key not in ALPHABETICAL
        self.reload()

    @on(Input.Changed, "#filter")
    def filter_runs(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.reload()

    @on(Input.Submitted, "#filter")
    def back_to_table(self) -> None:
        self.table.focus()

    def action_open_run(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.open_run(run_id)

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.table.focus()

    def action_sort_menu(self) -> None:
        """Choose the column to sort by from a menu of them all (hidden ones too)."""
        self.app.push_screen(SortMenu(COLUMNS, self.sort, self.descending), self.sort_by)

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

    def action_stop_run(self) -> None:
        """Stop the run under the cursor, asked first, where it is training (or queued)."""
        run_id = self.selected_run_id()
        if run_id is None:
            return
        run = self.store.run(run_id)
        if run is None or not run.live:
            status = run.status if run else "deleted"
            self.app.tell(f"run {run_id} is not running (it is {status})")
            return
        self.app.confirm_stop(run_id)

    def action_delete_run(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.delete_run(run_id)

    def action_predict(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.open_predict(run_id)

    def action_mistakes(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.open_mistakes(run_id)

    def action_mark(self) -> None:
        run_id = self.selected_run_id()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self.update_row(self.runs[run_id])
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
