"""The compare screen: several runs' curves of one metric overlaid, and their differences."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Static

from resnet_tui.app.messages import RunsChanged, RunsRemoved
from resnet_tui.app.widgets.charts import MetricChart
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.app.widgets.tables import Table
from resnet_tui.display import safe, shown
from resnet_tui.runs.compare import CURVES, comparison, curve, table_rows
from resnet_tui.runs.store import RunStore


class CompareScreen(Screen[None]):
    """Marked runs side by side in the run screen's chart: `m` picks the metric, `g` cycles
    the smoothing, `l` toggles the log scale of a loss."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="compare.back"),
        Binding("m", "next_metric", "Metric", id="compare.metric"),
        Binding("g", "cycle_smoothing", "Smoothing", id="compare.smoothing"),
        Binding("l", "toggle_log", "Log scale", id="compare.log_scale"),
    ]

    def __init__(self, store: RunStore, run_ids: list[int]) -> None:
        super().__init__()
        self.store = store
        self.run_ids = run_ids
        self.metric = "val acc"
        self.log_scale = True  # of the loss; accuracy is in percent

    @property
    def smoothing(self) -> float:
        """The chart's EMA factor (0: off)."""
        return self.query_one(MetricChart).smoothing

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="compare-title")
        yield MetricChart("", "accuracy", id="compare-chart")
        yield Table(id="differences", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.show_comparison()

    def show_comparison(self) -> None:
        """The table and the chart as the store has the runs now."""
        self.sub_title = "compare " + ", ".join(str(run_id) for run_id in self.run_ids)
        result = comparison(self.store, self.run_ids)
        table = self.query_one(Table)
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
        """The chart of the metric, each run's curve as the store has it now."""
        chart = self.query_one(MetricChart)
        chart.title = self.metric
        chart.kind = "accuracy" if CURVES[self.metric][1] == "acc" else "loss"
        chart.log_scale = self.log_scale and chart.kind == "loss"
        chart.series = {
            f"{run_id} {self.names[run_id]}": curve(self.store, run_id, self.metric)
            for run_id in self.run_ids
        }
        chart.draw()
        self.show_title()

    def show_title(self) -> None:
        """The line above the chart: the metric, the runs, the keys and their settings."""
        chart = self.query_one(MetricChart)
        log_scale = "on" if chart.log_scale else "off" if chart.kind == "loss" else "-"
        smoothing = f"ema {chart.smoothing:g}" if chart.smoothing else "off"
        self.query_one("#compare-title", Static).update(
            f" {self.metric} of {len(self.run_ids)} runs · m: metric · g: smoothing {smoothing}"
            f" · l: log scale {log_scale}"
        )

    def action_next_metric(self) -> None:
        names = list(CURVES)
        self.metric = names[(names.index(self.metric) + 1) % len(names)]
        self.draw()

    def action_cycle_smoothing(self) -> None:
        self.query_one(MetricChart).cycle_smoothing()
        self.show_title()

    def action_toggle_log(self) -> None:
        if not self.query_one(MetricChart).toggle_log():
            self.app.tell("accuracy is in percent: the log scale is for a loss")
            return
        self.log_scale = not self.log_scale
        self.show_title()
