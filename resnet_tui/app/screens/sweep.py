"""The sweep screen: a sweep's results per setting, its folds as one, above its runs; of a
search, its best trial so far and each parameter's importance instead."""

from collections import Counter

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Static
from textual.worker import get_current_worker

from engine.contract.spec import SpecError
from resnet_tui.app.screens.history import COLUMNS, run_cells
from resnet_tui.app.screens.live_screen import LiveRunsScreen
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.app.widgets.tables import Table
from resnet_tui.display import shown
from resnet_tui.runs.model import STATUSES
from resnet_tui.runs.search import Search, Trial, load_search, trials_of
from resnet_tui.runs.search_study import best_trial, importances
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.sweeps import best_per_setting, spread, summary

# More runs than this in one comparison is a tangle of curves, not a comparison.
MOST_COMPARED = 20
SETTING_COLUMNS = ("setting", "runs", "completed", "val acc", "test acc", "time")
# The history's columns that tell one run of a sweep from another: the name (what varies,
# often long: a search's trial names its parameters) last, so the results stay in view.
RUN_COLUMNS = ("id", "status", "epochs_done", "best_val_acc", "test_acc", "seconds", "name")


class SweepScreen(LiveRunsScreen):
    """One sweep: per setting, how many runs completed and the mean ± standard deviation of
    their metrics; below, its runs (Enter opens one). `c` compares the sweep's runs.

    A search (`resnet-tui search`) shows, in place of its settings (each trial is one), its
    best trial so far and each parameter's importance, worked out in a thread (Optuna
    loaded there) whenever its completed trials change."""

    DEFAULT_CSS = """
    #sweep-search {
        height: auto;
        max-height: 8;
        padding: 0 1;
        margin-bottom: 1;
    }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="sweep.back"),
        Binding("enter", "open_run", "Open", id="sweep.open"),
        Binding("c", "compare", "Compare", id="sweep.compare"),
    ]

    RUNS_TABLE = "#sweep-runs"

    def __init__(self, store: RunStore, sweep: int) -> None:
        super().__init__(store)
        self.sweep = sweep
        self.search: Search | None = None
        # The completed trials the importances in view were worked out from.
        self.weighed: list[tuple[int, float | None]] | None = None
        self.importance = Text("importance: working it out...")

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="sweep-title")
        yield Static(id="sweep-search")
        yield Table(id="sweep-settings", cursor_type="none", zebra_stripes=True)
        yield Table(id="sweep-runs", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def add_columns(self) -> None:
        try:
            self.search = load_search(self.store, self.sweep)
        except SpecError as error:
            self.app.tell(f"{error}; shown as a sweep", severity="warning")
        what = "search" if self.search else "sweep"
        self.sub_title = f"{what} {self.sweep}"
        settings = self.query_one("#sweep-settings", Table)
        settings.display = self.search is None
        self.query_one("#sweep-search", Static).display = self.search is not None
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
        if self.search is not None:
            self.show_search(self.search, states)
        else:
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

    # A search

    def show_search(self, search: Search, states: str) -> None:
        """The search's title, best trial and importances (worked out anew in a thread where
        its completed trials changed)."""
        trials = trials_of(self.store, search)
        self.query_one("#sweep-title", Static).update(
            f" search {search.sweep} · {len(trials)}/{search.trials} trials ({search.sampler}): "
            f"{states or 'none yet'}"
        )
        weighed = [(trial.number, trial.value) for trial in trials if trial.state == "COMPLETE"]
        if weighed != self.weighed:
            self.weighed = weighed
            self.weigh(search, trials)
        self.show_best(trials)

    def show_best(self, trials: list[Trial]) -> None:
        best = best_trial(trials)
        line = (
            Text(
                f"best: trial {best.number} (run {best.run.id}) {best.params_text} → val acc "
                f"{100 * (best.value or 0.0):.1f}%"
            )
            if best
            else Text("best: none yet (no trial has completed)")
        )
        self.query_one("#sweep-search", Static).update(Text("\n").join([line, self.importance]))

    @work(thread=True, exclusive=True, group="importances")
    def weigh(self, search: Search, trials: list[Trial]) -> None:
        """Each parameter's importance, in a thread: Optuna is slow to load and to weigh."""
        found = importances(search, trials)
        if isinstance(found, str):
            text = Text(f"importance: {found}")
        else:
            parts = [f"{name.replace('_', '-')} {value:.2f}" for name, value in found.items()]
            text = Text(f"importance: {', '.join(parts)}")
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show_importance, text, trials)

    def show_importance(self, text: Text, trials: list[Trial]) -> None:
        self.importance = text
        if self.is_attached:
            self.show_best(trials)
