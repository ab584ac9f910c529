"""The run screen: one run's settings, progress, device load, live charts, log and test report.

Tabs along the top reach every live run from any other; they show only when there is more
than the one run in view.
"""

import io
import json
import socket
import time
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.strip import Strip
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
from resnet_tui.device_load import load_reader
from resnet_tui.display import (
    device_chosen,
    distillation_line,
    error_line,
    fusion_line,
    fusion_title,
    init_lines,
    loss_parts,
    percent,
    policy_line,
    test_report_view,
)
from resnet_tui.store import LIVE_STATUSES, RunStore

CHART_REFRESH_S = 0.5
LOAD_REFRESH_S = 1.0
DETAIL_TABS = ("log-tab", "epochs-tab", "test-tab")


def decimate(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """Every n-th point, so a chart never draws more than `limit` (plotext redraws it all)."""
    if len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    return points[::stride] + [points[-1]]


class MetricChart(PlotextPlot):
    """A plotext chart of named series, drawn only when asked, in a thread of its own.

    `draw()` hands a copy of the series (each cut to about as many points as there are dots
    across) to a worker thread, which builds the picture and cuts it into lines; the widget
    shows those lines until the next picture is ready. The app's thread never waits for
    plotext, so key presses are not held up by a chart, and repaints for other reasons cost
    nothing here. A draw asked for while one is under way follows when it is done.
    """

    def __init__(self, title: str, y_label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.y_label = y_label
        self.log_scale = False
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.dirty = False
        self.drawing = False  # a picture is being built in the worker thread
        self.drawn_at = 0.0
        self.lines: list[Strip] = []

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.draw())

    def on_resize(self) -> None:
        self.draw()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y < len(self.lines):
            return self.lines[y].crop_extend(0, width, None)
        return Strip.blank(width)

    def draw(self) -> None:
        """Build the picture again from the series, in the worker thread."""
        width, height = self.size
        if self.drawing or not width or not height:
            self.dirty = True
            return
        self.dirty = False
        self.drawing = True
        self.drawn_at = time.monotonic()
        limit = max(100, 2 * width)
        series = {label: decimate(points, limit) for label, points in self.series.items()}
        # The library's own name for the app's theme, as its render() would use.
        theme = self._get_plotext_theme_name(self.app.theme)
        self.run_worker(
            partial(self._picture, series, width, height, theme, self.log_scale),
            thread=True,
            group="charts",
        )

    def _picture(
        self,
        series: dict[str, list[tuple[float, float]]],
        width: int,
        height: int,
        theme: str,
        log_scale: bool,
    ) -> None:
        """In the worker thread: plotext's picture of `series`, as lines, then shown."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.plotsize(width, height)
        plt._set_size(width, height)  # as PlotextPlot.render does: an empty plot needs both
        plt.theme(theme)
        plt.title(self.title)
        plt.xlabel("epoch")
        plt.yscale("log" if log_scale else "linear")
        for label, points in series.items():
            if points:
                plt.plot(
                    [x for x, _ in points], [y for _, y in points], label=label, marker="braille"
                )
        console = Console(width=width, height=height, color_system="truecolor", file=io.StringIO())
        options = console.options.update_dimensions(width, height)
        lines = console.render_lines(Text.from_ansi(plt.build()), options, pad=True)
        # Posted, not called: the thread never waits for the app's thread, which may be
        # closing; one that has closed its event loop has no use for the picture.
        with suppress(RuntimeError):
            self.post_message(self.PictureReady([Strip(line, width) for line in lines]))

    class PictureReady(Message):
        """A picture built in the worker thread, as lines to show."""

        def __init__(self, lines: list[Strip]) -> None:
            super().__init__()
            self.lines = lines

    def on_metric_chart_picture_ready(self, message: PictureReady) -> None:
        self.lines = message.lines
        self.drawing = False
        self.refresh()


def lineage_text(store: RunStore, run_id: int) -> str:
    """` · from run 3 (name) ← run 1 (name)`: the runs this one started from, and the
    teachers it was distilled from, or nothing."""
    text = ""
    chain = store.lineage(run_id)
    if chain:
        text += " · from " + " ← ".join(escape(f"run {r['id']} ({r['name']})") for r in chain)
    teachers = json.loads(store.run(run_id)["teachers"] or "[]")
    if teachers:
        text += " · distilled from " + ", ".join(f"run {t}" for t in teachers)
    return text


class RunScreen(Screen[None]):
    """One run, live while it trains; Escape goes back to the history."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "stop_run", "Stop"),
        Binding("a", "launch_again", "Again"),
        Binding("t", "switch_tab", "Tabs"),
        Binding("right_square_bracket", "next_run(1)", "Next run"),
        Binding("left_square_bracket", "next_run(-1)", "Previous run", show=False),
    ]

    def __init__(self, store: RunStore, run_id: int) -> None:
        super().__init__()
        self.store = store
        self.run_id = run_id
        run = store.run(run_id)
        self.events_path = Path(run["run_dir"]) / "events.jsonl"
        self.steps_per_epoch = 1
        self.load_reader: Any = None
        self.tab_run_ids = [run_id]
        self.last_seq = 0
        self.composed = False
        self.pending_bars: dict[str, Any] = {}
        self.lines_shown: dict[str, str] = {}  # what `set_line` last showed, by selector

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="run-tabs")
        yield Static(id="settings")
        with Horizontal(id="bars"):
            yield Static("epochs", classes="bar-label", id="epoch-label")
            yield ProgressBar(id="epoch-bar", show_eta=False)
            yield Static("steps", classes="bar-label", id="step-label")
            yield ProgressBar(id="step-bar", show_eta=False)
        with Horizontal(id="status-line"):
            yield Static(id="speed")
            yield Static(id="load")
        with Horizontal(id="charts"):
            yield MetricChart("loss", "loss", id="loss-chart")
            yield MetricChart("accuracy", "accuracy", id="acc-chart")
        with TabbedContent(id="log-pane"):
            with TabPane("Log", id="log-tab"):
                yield RichLog(id="log", wrap=True, markup=True)
            with TabPane("Epochs", id="epochs-tab"):
                yield DataTable(id="epochs", zebra_stripes=True, cursor_type="row")
            with TabPane("Test", id="test-tab"), VerticalScroll():
                yield Static("The test report appears when the run completes.", id="test")
        yield Footer()

    def on_mount(self) -> None:
        self.composed = True
        epochs = self.query_one("#epochs", DataTable)
        for column in ("epoch", "train loss", "train acc", "val loss", "val acc", "seconds"):
            epochs.add_column(column)
        self.show_settings()
        events, _ = ev.read_events(self.events_path, 0)
        self.apply_events(events)
        self.redraw()
        self.show_run_tabs()
        self.set_interval(CHART_REFRESH_S, self.redraw)
        self.set_interval(LOAD_REFRESH_S, self.show_load)

    def show_run_tabs(self) -> None:
        """A line of this run and every live run, this one highlighted, each one clickable."""
        if not self.composed:  # the app's poll can come before the screen is mounted
            return
        self.tab_run_ids = sorted(set(getattr(self.app, "followers", {})) | {self.run_id})
        labels = []
        for run_id in self.tab_run_ids:
            run = self.store.run(run_id)
            if run is None:
                continue
            mark = " ●" if run["status"] in LIVE_STATUSES else ""
            label = escape(f" {run_id} {run['name']}{mark} ")
            if run_id == self.run_id:
                labels.append(f"[reverse]{label}[/]")
            else:
                labels.append(f"[@click=screen.show_run({run_id})]{label}[/]")
        self.set_line("#run-tabs", "runs: " + " ".join(labels))
        tabs = self.query_one("#run-tabs", Static)
        if tabs.display != (len(labels) > 1):
            tabs.display = len(labels) > 1

    def set_line(self, selector: str, text: str) -> None:
        """Show `text` in a one-line Static, only if it changed: its size stays, so no layout
        of the screen (the costliest repaint there is, several times a second otherwise)."""
        if self.lines_shown.get(selector) == text:
            return
        self.lines_shown[selector] = text
        self.query_one(selector, Static).update(text, layout=False)

    def action_show_run(self, run_id: int) -> None:
        if run_id != self.run_id:
            self.app.switch_run(run_id)

    def action_next_run(self, step: int) -> None:
        ids = self.tab_run_ids
        if len(ids) < 2:
            self.notify("no other live run")
            return
        self.app.switch_run(ids[(ids.index(self.run_id) + step) % len(ids)])

    def show_load(self) -> None:
        """The load of the run's device, read while the run is live on this machine."""
        if self.load_reader is None or self.run_id not in getattr(self.app, "followers", {}):
            self.set_line("#load", "")
            return
        self.set_line("#load", self.load_reader.sample().describe())

    def show_settings(self) -> None:
        run = self.store.run(self.run_id)
        spec = RunSpec.from_json(run["spec"])
        self.sub_title = f"run {run['id']} · {run['status']}"
        if run["kind"] != "train":
            recipe = json.loads(run["recipe"] or "{}")
            members = [member["run"] for member in recipe.get("members", [])]
            self.query_one("#settings", Static).update(
                f"[b]run {run['id']}: {escape(run['name'])}[/] · {run['status']} · "
                f"{escape(fusion_title({**recipe, 'members': members}))} · {spec.dataset} · "
                f"device {recipe.get('device', 'auto')}{lineage_text(self.store, self.run_id)}"
            )
            return
        self.query_one("#settings", Static).update(
            f"[b]run {run['id']}: {escape(run['name'])}[/] · {run['status']} · {spec.arch} on "
            f"{escape(spec.dataset)} · weights {escape(spec.init)} · policy {spec.freeze} · "
            f"{spec.optimizer} lr {spec.peak_lr:g} · batch {spec.batch_size} · {spec.epochs} "
            f"epoch{'s' if spec.epochs != 1 else ''} · "
            f"device {device_chosen(spec.device, json.loads(run['engine_info'] or '{}'))}"
            f"{lineage_text(self.store, self.run_id)}"
        )

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        """Fold new events into the bars, the chart series and the log, each event once.

        Events can come twice, from the file read on mount and from the app's follower; and
        before the screen is mounted they wait for that read.
        """
        events = [event for event in events if event["seq"] > self.last_seq]
        if not events or not self.composed:
            return
        self.last_seq = events[-1]["seq"]
        log = self.query_one(RichLog)
        loss_chart = self.query_one("#loss-chart", MetricChart)
        accuracy_chart = self.query_one("#acc-chart", MetricChart)
        loss, accuracy = loss_chart.series, accuracy_chart.series
        epoch_bar = self.query_one("#epoch-bar", ProgressBar)
        step_bar = self.query_one("#step-bar", ProgressBar)
        epoch_position: float | None = None
        last_progress: dict[str, Any] | None = None
        for event in events:
            kind = event["type"]
            if kind == ev.STARTED:
                self.steps_per_epoch = event["steps_per_epoch"]
                run = self.store.run(self.run_id)
                if self.load_reader is None and run["host"] in (None, socket.gethostname()):
                    self.load_reader = load_reader(
                        event["device"], event.get("pid"), event.get("device_uuid")
                    )
                fusion = event.get("fusion")
                epoch_bar.update(total=fusion["steps"] if fusion else event["epochs"], progress=0)
                step_bar.update(total=event["steps_per_epoch"], progress=0)
                if fusion:  # a fusion weighs candidates; it has no steps
                    self.query_one("#epoch-label", Static).update("candidates")
                    step_bar.display = self.query_one("#step-label").display = False
                what = fusion_title(fusion) if fusion else f"{event['parameters']:,} parameters"
                log.write(
                    f"started on {event['device']} ({event['device_name']}) · "
                    f"{escape(what)} · {event['sizes']['train']:,} training images"
                )
                for line in init_lines(event.get("init")):
                    log.write(line)
                distilling = distillation_line(event.get("distillation"))
                if distilling:
                    log.write(escape(distilling))
                if event.get("resumed_from_epoch"):
                    self.forget_after(event["resumed_from_epoch"])
            elif kind == ev.PROGRESS:
                last_progress = event
                epoch_position = event["epoch"] - 1 + event["step"] / event["steps"]
                x = event["global_step"] / self.steps_per_epoch
                loss.setdefault("step loss", []).append((x, event["loss"]))
                loss_chart.dirty = True
            elif kind == ev.EPOCH_ENDED:
                epoch_position = event["epoch"]
                for split in ("train", "val"):
                    loss.setdefault(f"{split} loss", []).append(
                        (event["epoch"], event[f"{split}_loss"])
                    )
                    accuracy.setdefault(split, []).append((event["epoch"], event[f"{split}_acc"]))
                for part in ("ce", "kd"):  # a distilled run's loss, in its two parts
                    if f"train_{part}_loss" in event:
                        loss.setdefault(f"train {part}", []).append(
                            (event["epoch"], event[f"train_{part}_loss"])
                        )
                loss_chart.dirty = accuracy_chart.dirty = True
                self.query_one("#epochs", DataTable).add_row(
                    str(event["epoch"]),
                    f"{event['train_loss']:.4f}{loss_parts(event, 'train_')}",
                    percent(event["train_acc"]),
                    f"{event['val_loss']:.4f}",
                    percent(event["val_acc"]),
                    f"{event['seconds']:.1f}",
                    key=str(event["epoch"]),
                )
                log.write(
                    f"epoch {event['epoch']}/{event['epochs']}: train loss "
                    f"{event['train_loss']:.4f}{loss_parts(event, 'train_')} "
                    f"acc {percent(event['train_acc'])} · val loss "
                    f"{event['val_loss']:.4f} acc {percent(event['val_acc'])} · "
                    f"{event['seconds']:.1f} s"
                )
            elif kind == ev.LOG:
                log.write(f"[dim]{event['level']}: {event['message']}[/]")
            elif kind == ev.POLICY:
                log.write(f"[cyan]{escape(policy_line(event))}[/]")
            elif kind == ev.FUSION:
                epoch_position = event["step"]
                log.write(escape(fusion_line(event)))
            elif kind == ev.FINISHED:
                log.write(f"[b]{event['status']}[/] · best val {percent(event['best_val_acc'])}")
                if event.get("test"):
                    log.write(f"test accuracy {percent(event['test']['top1'])} (see the Test tab)")
                    self.query_one("#test", Static).update(test_report_view(event["test"]))
            elif kind == ev.ERROR:
                log.write(f"[red]failed ({event['kind']}): {escape(error_line(event))}[/]")
        # The bars and the speed show only the newest state, drawn with the charts.
        if epoch_position is not None:
            self.pending_bars["epoch"] = epoch_position
        if last_progress is not None:
            self.pending_bars["progress"] = last_progress
        if any(e["type"] in ev.TERMINAL_TYPES or e["type"] == ev.STARTED for e in events):
            self.show_settings()

    def forget_after(self, epoch: int) -> None:
        """Drop what the run showed after `epoch`: it resumed from there and does it again."""
        for chart in self.query(MetricChart):
            for label, points in chart.series.items():
                chart.series[label] = [(x, y) for x, y in points if x <= epoch]
            chart.dirty = True
        table = self.query_one("#epochs", DataTable)
        for key in list(table.rows):
            if key.value is not None and int(key.value) > epoch:
                table.remove_row(key)
        self.query_one(RichLog).write(f"[b]resumed[/] after epoch {epoch}")

    def redraw(self) -> None:
        """Bring the bars and the speed up to date, and the chart that waited longest."""
        if "epoch" in self.pending_bars:
            self.query_one("#epoch-bar", ProgressBar).update(progress=self.pending_bars["epoch"])
        progress = self.pending_bars.get("progress")
        if progress is not None:
            self.query_one("#step-bar", ProgressBar).update(progress=progress["step"])
            self.set_line(
                "#speed", f"{progress['samples_per_s']:,.0f} img/s · lr {progress['lr']:.2e}"
            )
        self.pending_bars = {}
        # One chart a tick, the longest-waiting first: two pictures built at once would
        # share the processor with the app's thread the more.
        dirty = [chart for chart in self.query(MetricChart) if chart.dirty and not chart.drawing]
        if dirty:
            chart = min(dirty, key=lambda chart: chart.drawn_at)
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
        tabs.active = DETAIL_TABS[(DETAIL_TABS.index(tabs.active) + 1) % len(DETAIL_TABS)]
