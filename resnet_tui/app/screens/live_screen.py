"""The base of screens that show runs from the store afresh as it changes (queue, sweep)."""

from typing import ClassVar

from textual import on
from textual.screen import Screen
from textual.widgets import DataTable

from resnet_tui.app.messages import RunsAdded, RunsChanged, RunsRemoved
from resnet_tui.app.screens.history import run_under_cursor
from resnet_tui.runs.store import RunStore


class LiveRunsScreen(Screen[None]):
    """Tables of runs filled from the store again whenever the app says runs were added,
    changed or removed (by workers, other shells, this app); Enter opens the run under the
    cursor of the runs table.

    A screen says which table holds its runs (`RUNS_TABLE`), adds its columns
    (`add_columns`) and fills its tables (`fill_tables`); `shown` keeps the rows in view so
    that a fill can skip the redraw while nothing changed.
    """

    RUNS_TABLE: ClassVar[str] = "DataTable"

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.shown: list[list[str]] = []
        # A message can come between the push and the mount: no columns yet.
        self.has_columns = False

    def add_columns(self) -> None:
        raise NotImplementedError

    def fill_tables(self) -> None:
        raise NotImplementedError

    def on_mount(self) -> None:
        self.add_columns()
        self.has_columns = True
        self.refresh_from_store()
        self.runs_table().focus()

    def on_screen_resume(self) -> None:
        self.refresh_from_store()

    @on(RunsAdded)
    @on(RunsChanged)
    @on(RunsRemoved)
    def runs_changed(self) -> None:
        self.refresh_from_store()

    def refresh_from_store(self) -> None:
        """Show the store as it is now; the cursor stays on its run."""
        if self.has_columns:
            self.fill_tables()

    def runs_table(self) -> DataTable:
        return self.query_one(self.RUNS_TABLE, DataTable)

    def selected_run_id(self) -> int | None:
        return run_under_cursor(self.runs_table())

    @on(DataTable.RowSelected)
    def open_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table is self.runs_table():
            self.app.open_run(int(event.row_key.value))

    def action_open_run(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.open_run(run_id)
