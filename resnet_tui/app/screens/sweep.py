"""The sweep screen: a sweep's results per setting, its folds as one, above its runs."""

from collections import Counter

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Static

from resnet_tui.app.screens.history import COLUMNS, run_cells
from resnet_tui.app.screens.live_screen import LiveRunsScreen
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.app.widgets.tables import Table
from resnet_tui.display import shown
from resnet_tui.runs.model import STATUSES
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.sweeps import best_per_setting, spread, summary

# More runs than this in one comparison is a tangle of curves, not a comparison.
MOST_COMPARED = 20
SETTING_COLUMNS = ("setting", "runs", "completed", "val acc", "test acc", "time")
# The history's columns that tell one run of a sweep from another.
RUN_COLUMNS = ("id", "name", "status", "epochs_done", "best_val_acc", "test_acc", "seconds")


class SweepScreen(LiveRunsScreen):
    """One sweep: per setting, how many runs completed and the mean ± standard deviation of
    their metrics; below, its runs (Enter opens one). `c` compares the sweep's runs."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="sweep.back"),
        Binding("enter", "open_run", "Open", id="sweep.open"),
        Binding("c", "compare", "Compare", id="sweep.compare"),
    ]

    RUNS_TABLE = "#sweep-runs"

    def __init__(self, store: RunStore, sweep: int) -> None:
        super().__init__(store)
        self.sweep = sweep

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="sweep-title")
        yield Table(id="sweep-settings", cursor_type="none", zebra_stripes=True)
        yield Table(id="sweep-runs", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def add_columns(self) -> None:
        self.sub_title = f"sweep {self.sweep}"
        settings = self.query_one("#sweep-settings", Table)
        settings.can_focus = False
        for heading in SETTING_COLUMNS:
            settings.add_column(heading, key=heading)
        runs = self.runs_table()
        headings = dict(COLUMNS)
        for key in RUN_COLUMNS:
            runs.add_column(headings[key], key=key)

    def fill_tables(self) -> None:
        """The sweep as the store has it now: the means fill in as its runs finish."""
        runs = self.store.sweep_runs(self.sweep)
        rows = []
        for run in runs:
            cells = dict(zip((key for key, _ in COLUMNS), run_cells(run), strict=True))
            rows.append([cells[key] for key in RUN_COLUMNS])
        plain = [[str(cell) for cell in row] for row in rows]
        if plain == self.shown:
            return
        self.shown = plain
        counts = Counter(run.status for run in runs)
        states = ", ".join(f"{counts[status]} {status}" for status in STATUSES if counts[status])
        self.query_one("#sweep-title", Static).update(
            f" sweep {self.sweep} · {len(runs)} run{'' if len(runs) == 1 else 's'}: "
            f"{states or 'none left'} · mean ± standard deviation over the completed runs"
        )
        settings = self.query_one("#sweep-settings", Table)
        settings.clear()
        for row in summary(runs):
            settings.add_row(
                shown(row["setting"]),
                str(row["runs"]),
                str(row["completed"]),
                spread(row["best_val_acc"]),
                spread(row["test_acc"]),
                spread(row["seconds"], as_time=True),
            )
        table = self.runs_table()
        selected = table.cursor_row
        table.clear()
        for run, cells in zip(runs, rows, strict=True):
            table.add_row(*cells, key=str(run.id))
        if rows:
            table.move_cursor(row=min(selected, len(rows) - 1))

    def action_compare(self) -> None:
        """Compare the sweep's runs that have started; of a sweep too big for one chart, the
        best run of each setting (by validation accuracy)."""
        runs = [run for run in self.store.sweep_runs(self.sweep) if run.status != "queued"]
        if len(runs) > MOST_COMPARED:
            runs = best_per_setting(runs)
            if len(runs) > MOST_COMPARED:
                self.app.tell(
                    f"sweep {self.sweep} has {len(runs)} settings, more than {MOST_COMPARED} "
                    f"to compare at once; filter the history with sweep:{self.sweep}, mark "
                    "the runs to compare (space) and press c",
                    severity="warning",
                )
                return
            self.app.tell(
                f"comparing the best run of each of the {len(runs)} settings "
                "(by validation accuracy)"
            )
        if len(runs) < 2:
            self.app.tell(
                f"nothing to compare yet: fewer than two runs of sweep {self.sweep} have "
                "started (the queue screen, w, shows the waiting ones)",
                severity="warning",
            )
            return
        self.app.compare_runs([run.id for run in runs])
