"""The compare screen: several runs' curves of one metric overlaid, and their differences."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from resnet_tui.app.messages import RunsChanged, RunsRemoved
from resnet_tui.app.screens.run import MetricChart
from resnet_tui.display import safe, shown
from resnet_tui.runs.compare import CURVES, comparison, smooth, table_rows
from resnet_tui.runs.store import RunStore

SMOOTHING = 0.6


class CompareScreen(Screen[None]):
    """Marked runs side by side: `m` picks the metric, `g` smooths, `l` toggles a log scale."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("m", "next_metric", "Metric"),
        Binding("g", "toggle_smoothing", "Smooth"),
        Binding("l", "toggle_log", "Log scale"),
    ]

    def __init__(self, store: RunStore, run_ids: list[int]) -> None:
        super().__init__()
        self.store = store
        self.run_ids = run_ids
        self.metric = "val acc"
        self.smoothing = False
        self.log_scale = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="compare-title")
        yield MetricChart("", "", id="compare-chart")
        yield DataTable(id="differences", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.show_comparison()

    def show_comparison(self) -> None:
        """The table and the chart as the store has the runs now."""
        self.sub_title = "compare " + ", ".join(str(run_id) for run_id in self.run_ids)
        result = comparison(self.store, self.run_ids)
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        table.add_column("")
        for run in result["runs"]:
            table.add_column(shown(f"{run['id']} {run['name']}"))
        for cells in table_rows(result):
            table.add_row(*(shown(cell) for cell in cells))
        table.move_cursor(row=row)
        self.names = {run["id"]: safe(run["name"]) for run in result["runs"]}
        self.draw()

    def on_runs_changed(self, message: RunsChanged) -> None:
        """Compared runs that train on: their rows and curves follow."""
        if message.of(self.run_ids):
            self.show_comparison()

    def on_runs_removed(self, message: RunsRemoved) -> None:
        gone = [run_id for run_id in self.run_ids if run_id in message.run_ids]
        if not gone:
            return
        self.run_ids = [run_id for run_id in self.run_ids if run_id not in gone]
        self.app.tell(f"run {', '.join(map(str, gone))} was deleted; comparing the rest")
        if self.run_ids:
            self.show_comparison()
        else:
            self.app.pop_screen()

    def draw(self) -> None:
        split, name = CURVES[self.metric]
        chart = self.query_one(MetricChart)
        chart.title = self.metric + (" (smoothed)" if self.smoothing else "")
        chart.log_scale = self.log_scale
        chart.series = {}
        for run_id in self.run_ids:
            points = self.store.metric_series(run_id, split, name)
            if split == "step":
                steps = max((x for x, _ in points), default=1) or 1
                run = self.store.run(run_id)
                epochs = (run.epochs_done if run else 0) or 1
                points = [(x * epochs / steps, y) for x, y in points]
            ys = [y for _, y in points]
            if self.smoothing:
                ys = smooth(ys, SMOOTHING)
            chart.series[f"{run_id} {self.names[run_id]}"] = [
                (x, y) for (x, _), y in zip(points, ys, strict=True)
            ]
        chart.draw()
        smoothing = "on" if self.smoothing else "off"
        log_scale = "on" if self.log_scale else "off"
        self.query_one("#compare-title", Static).update(
            f" {self.metric} of {len(self.run_ids)} runs · m: metric · g: smoothing {smoothing}"
            f" · l: log scale {log_scale}"
        )

    def action_next_metric(self) -> None:
        names = list(CURVES)
        self.metric = names[(names.index(self.metric) + 1) % len(names)]
        self.draw()

    def action_toggle_smoothing(self) -> None:
        self.smoothing = not self.smoothing
        self.draw()

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self.draw()
