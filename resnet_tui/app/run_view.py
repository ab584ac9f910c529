"""The run screen: one run's settings, progress, live loss and accuracy charts, and its log."""

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    ProgressBar,
    RichLog,
    Static,
    TabbedContent,
    TabPane,
)
from textual_plotext import PlotextPlot

from engine import events as ev
from engine.spec import RunSpec
from resnet_tui.display import percent, test_report_view
from resnet_tui.store import LIVE_STATUSES, RunStore

CHART_REFRESH_S = 0.5
MAX_POINTS = 1000


def decimate(
    points: list[tuple[float, float]], limit: int = MAX_POINTS
) -> list[tuple[float, float]]:
    """Every n-th point, so a chart never draws more than `limit` (plotext redraws it all)."""
    if len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    return points[::stride] + [points[-1]]


class MetricChart(PlotextPlot):
    """A plotext chart of named series, redrawn only when asked."""

    def __init__(self, title: str, y_label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.y_label = y_label
        self.log_scale = False
        self.series: dict[str, list[tuple[float, float]]] = {}

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel("epoch")
        plt.yscale("log" if self.log_scale else "linear")
        for label, points in self.series.items():
            if points:
                shown = decimate(points)
                plt.plot(
                    [x for x, _ in shown], [y for _, y in shown], label=label, marker="braille"
                )
        self.refresh()


class RunScreen(Screen[None]):
    """One run, live while it trains; Escape goes back to the history."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "stop_run", "Stop"),
        Binding("a", "launch_again", "Again"),
        Binding("t", "switch_tab", "Log/Epochs"),
    ]

    def __init__(self, store: RunStore, run_id: int) -> None:
        super().__init__()
        self.store = store
        self.run_id = run_id
        run = store.run(run_id)
        self.events_path = Path(run["run_dir"]) / "events.jsonl"
        self.steps_per_epoch = 1
        self.dirty = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="settings")
        with Horizontal(id="bars"):
            yield Static("epochs", classes="bar-label")
            yield ProgressBar(id="epoch-bar", show_eta=False)
            yield Static("steps", classes="bar-label")
            yield ProgressBar(id="step-bar", show_eta=False)
        yield Static(id="speed")
        with Horizontal(id="charts"):
            yield MetricChart("loss", "loss", id="loss-chart")
            yield MetricChart("accuracy", "accuracy", id="acc-chart")
        with TabbedContent(id="log-pane"):
            with TabPane("Log", id="log-tab"):
                yield RichLog(id="log", wrap=True, markup=True)
            with TabPane("Epochs", id="epochs-tab"):
                yield DataTable(id="epochs", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        epochs = self.query_one("#epochs", DataTable)
        for column in ("epoch", "train loss", "train acc", "val loss", "val acc", "seconds"):
            epochs.add_column(column)
        self.show_settings()
        events, _ = ev.read_events(self.events_path, 0)
        self.apply_events(events)
        self.redraw()
        self.set_interval(CHART_REFRESH_S, self.redraw)

    def show_settings(self) -> None:
        run = self.store.run(self.run_id)
        spec = RunSpec.from_json(run["spec"])
        self.sub_title = f"run {run['id']} · {run['status']}"
        self.query_one("#settings", Static).update(
            f"[b]run {run['id']}: {run['name']}[/] · {run['status']} · {spec.arch} on "
            f"{spec.dataset} · weights {spec.init} · policy {spec.freeze} · {spec.optimizer} "
            f"lr {spec.peak_lr:g} · batch {spec.batch_size} · {spec.epochs} epochs · "
            f"device {spec.device}"
        )

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        """Fold new events into the bars, the chart series and the log."""
        if not events:
            return
        log = self.query_one(RichLog)
        loss = self.query_one("#loss-chart", MetricChart).series
        accuracy = self.query_one("#acc-chart", MetricChart).series
        epoch_bar = self.query_one("#epoch-bar", ProgressBar)
        step_bar = self.query_one("#step-bar", ProgressBar)
        for event in events:
            kind = event["type"]
            if kind == ev.STARTED:
                self.steps_per_epoch = event["steps_per_epoch"]
                epoch_bar.update(total=event["epochs"], progress=0)
                step_bar.update(total=event["steps_per_epoch"], progress=0)
                log.write(
                    f"started on {event['device']} ({event['device_name']}) · "
                    f"{event['parameters']:,} parameters · "
                    f"{event['sizes']['train']:,} training images"
                )
            elif kind == ev.PROGRESS:
                step_bar.update(progress=event["step"])
                epoch_bar.update(progress=event["epoch"] - 1 + event["step"] / event["steps"])
                x = event["global_step"] / self.steps_per_epoch
                loss.setdefault("step loss", []).append((x, event["loss"]))
                self.query_one("#speed", Static).update(
                    f"{event['samples_per_s']:,.0f} img/s · lr {event['lr']:.2e}"
                )
            elif kind == ev.EPOCH_ENDED:
                epoch_bar.update(progress=event["epoch"])
                for split in ("train", "val"):
                    loss.setdefault(f"{split} loss", []).append(
                        (event["epoch"], event[f"{split}_loss"])
                    )
                    accuracy.setdefault(split, []).append((event["epoch"], event[f"{split}_acc"]))
                self.query_one("#epochs", DataTable).add_row(
                    str(event["epoch"]),
                    f"{event['train_loss']:.4f}",
                    percent(event["train_acc"]),
                    f"{event['val_loss']:.4f}",
                    percent(event["val_acc"]),
                    f"{event['seconds']:.1f}",
                )
                log.write(
                    f"epoch {event['epoch']}/{event['epochs']}: train loss "
                    f"{event['train_loss']:.4f} acc {percent(event['train_acc'])} · val loss "
                    f"{event['val_loss']:.4f} acc {percent(event['val_acc'])} · "
                    f"{event['seconds']:.1f} s"
                )
            elif kind == ev.LOG:
                log.write(f"[dim]{event['level']}: {event['message']}[/]")
            elif kind == ev.FINISHED:
                log.write(f"[b]{event['status']}[/] · best val {percent(event['best_val_acc'])}")
                if event.get("test"):
                    log.write(test_report_view(event["test"]))
            elif kind == ev.ERROR:
                log.write(f"[red]failed ({event['kind']}): {event['message']}[/] {event['hint']}")
        self.dirty = True
        if any(e["type"] in ev.TERMINAL_TYPES or e["type"] == ev.STARTED for e in events):
            self.show_settings()

    def redraw(self) -> None:
        if self.dirty:
            self.dirty = False
            for chart in self.query(MetricChart):
                chart.draw()

    def action_stop_run(self) -> None:
        run = self.store.run(self.run_id)
        if run["status"] not in LIVE_STATUSES:
            self.notify(f"run {self.run_id} is not running (it is {run['status']})")
            return
        self.app.confirm_stop(self.run_id)

    def action_launch_again(self) -> None:
        self.app.launch_again(self.run_id)

    def action_switch_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "epochs-tab" if tabs.active == "log-tab" else "log-tab"
