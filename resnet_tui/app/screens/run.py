"""The run screen: one run's settings, progress, device load, live charts, log and test report.

Tabs along the top reach every live run from any other; they show only when there is more
than the one run in view.
"""

import socket
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, ProgressBar, RichLog, Static, TabbedContent, TabPane

from engine.contract import events as ev
from resnet_tui.app.messages import RunsAdded, RunsChanged, RunsRemoved
from resnet_tui.app.screens.run_text import (
    completed_words,
    event_lines,
    pruned_words,
    settings_text,
    start_lines,
)
from resnet_tui.app.widgets.charts import MetricChart, share_x_range
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.app.widgets.tables import Table
from resnet_tui.charts.scale import RunCurves, ended_words
from resnet_tui.display import duration, loss_parts, markup_safe, percent, test_report_view
from resnet_tui.runs.device_load import load_reader
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore

FOLLOW_INTERVAL_S = 0.25
CHART_REFRESH_S = 0.5
LOAD_REFRESH_S = 1.0
DETAIL_TABS = ("log-tab", "epochs-tab", "test-tab")


class RunScreen(Screen[None]):
    """One run, live while it trains; Escape goes back to the history.

    The screen reads the run's events file itself (never writing anything) and folds it
    into a `RunState`, from which the bars, charts and tables are drawn; the store's row,
    which the supervisor keeps, gives the settings line and status.
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="run.back"),
        Binding("x", "stop_run", "Stop", id="run.stop"),
        Binding("u", "resume_run", "Resume", id="run.resume"),
        Binding("a", "launch_again", "Again", id="run.again"),
        Binding("e", "edit_run", "Edit", id="run.edit"),
        Binding("d", "delete_run", "Delete", id="run.delete"),
        Binding("t", "switch_tab", "Tabs", id="run.tab"),
        Binding("p", "predict", "Predict", id="run.predict"),
        Binding("m", "mistakes", "Mistakes", id="run.mistakes"),
        Binding("right_square_bracket", "next_run(1)", "Next run", id="run.next_run"),
        Binding(
            "left_square_bracket", "next_run(-1)", "Previous run", show=False, id="run.previous_run"
        ),
        Binding("l", "toggle_log", "Log scale", id="run.log_scale"),
        Binding("g", "cycle_smoothing", "Smoothing", id="run.smoothing"),
    ]

    def __init__(self, store: RunStore, run_id: int) -> None:
        super().__init__()
        self.store = store
        self.run_id = run_id
        run = store.run(run_id)
        assert run is not None
        self.run = run
        self.state = RunState()
        self.read_to = 0  # bytes of the events file read so far
        self.load_reader: Any = None
        self.tab_run_ids = [run_id]
        self.composed = False
        self.deleted = False  # the run was deleted while the screen was open
        self.epoch_rows: dict[int, int] = {}  # epoch -> seq of the event its row shows
        self.lines_shown: dict[str, str] = {}  # what `set_line` last showed, by selector
        self.curves = RunCurves()

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
            yield MetricChart("loss", "loss", noisy={"step loss"}, id="loss-chart")
            yield MetricChart("accuracy", "accuracy", noisy=(), id="acc-chart")
        with TabbedContent(id="log-pane"):
            with TabPane("Log", id="log-tab"):
                yield RichLog(id="log", wrap=True, markup=True)
            with TabPane("Epochs", id="epochs-tab"):
                yield Table(id="epochs", zebra_stripes=True, cursor_type="row")
            with TabPane("Test", id="test-tab"), VerticalScroll():
                yield Static("The test report appears when the run completes.", id="test")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.composed = True
        epochs = self.query_one("#epochs", Table)
        for column in ("epoch", "train loss", "train acc", "val loss", "val acc", "seconds"):
            epochs.add_column(column)
        self.show_settings()
        self.follow()
        self.redraw()
        self.show_run_tabs()
        self.set_interval(FOLLOW_INTERVAL_S, self.follow)
        self.set_interval(CHART_REFRESH_S, self.redraw)
        self.set_interval(LOAD_REFRESH_S, self.show_load)

    @on(RunsAdded)
    @on(RunsRemoved)
    def runs_came_or_went(self, message: RunsAdded | RunsRemoved) -> None:
        if isinstance(message, RunsRemoved) and self.run_id in message.run_ids:
            self.deleted = True
            if self.run_id not in self.app.deleted_here:  # the app said so when it deleted it
                self.app.tell(f"run {self.run_id} was deleted", severity="warning")
            if self.is_current:
                self.app.pop_screen()
            return
        self.show_run_tabs()

    def on_screen_resume(self) -> None:
        """Back on this screen (from a dialog or the form): if its run went meanwhile, go."""
        if self.deleted:
            self.app.pop_screen()

    def on_runs_changed(self, message: RunsChanged) -> None:
        for run in message.of([self.run_id]):
            ended = self.run.live and not run.live
            self.run = run
            self.show_settings()
            if ended and run.error is not None and not self.state.ended:
                # An end the engine could not write (it was killed): the supervisor's word.
                self.query_one(RichLog).write(
                    f"[red]{markup_safe(run.status)}: {markup_safe(run.error.line)}[/]"
                )
        self.show_run_tabs()

    def show_run_tabs(self) -> None:
        """A line of this run and every live run, this one highlighted, each one clickable."""
        if not self.composed:
            return
        self.tab_run_ids = sorted(set(self.app.live_run_ids()) | {self.run_id})
        labels = []
        for run_id in self.tab_run_ids:
            run = self.run if run_id == self.run_id else self.store.run(run_id)
            if run is None:
                continue
            mark = " ●" if run.live else ""
            label = markup_safe(f" {run_id} {run.name}{mark} ")
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
            self.app.tell("no other live run")
            return
        self.app.switch_run(ids[(ids.index(self.run_id) + step) % len(ids)])

    def show_load(self) -> None:
        """The load of the run's device, read while the run is live on this machine."""
        if self.load_reader is None or self.run.status != "running":
            self.set_line("#load", "")
            return
        self.set_line("#load", self.load_reader.sample().describe())

    def show_settings(self) -> None:
        """The settings line, laid out again only when its words change."""
        self.sub_title = f"run {self.run.id} · {self.run.status}"
        text = settings_text(self.store, self.run)
        if self.lines_shown.get("#settings") != text:
            self.lines_shown["#settings"] = text
            self.query_one("#settings", Static).update(text)

    def follow(self) -> None:
        """Read what the engine wrote since the last look; show it."""
        read = ev.read_events(self.run.events_path, self.read_to)
        if read.offset == self.read_to or not self.composed:
            return
        self.read_to = read.offset
        self.state.apply_all(read.events)
        lines = [line for event in read.events for line in self.take_event(event)]
        if lines:  # one write, so one layout of the screen, however many lines came
            self.query_one(RichLog).write("\n".join(lines))
        self.sync_epoch_table()
        self.chart_series()
        for chart in self.query(MetricChart):
            chart.dirty = True

    def take_event(self, event: ev.Event) -> list[str]:
        """What a new event changes (the bars and the device's load for a start, the test
        report at the end), and its lines for the log."""
        if isinstance(event, ev.Started):
            self.started(event)
            return start_lines(event)
        if isinstance(event, ev.Finished) and event.test:
            self.query_one("#test", Static).update(test_report_view(event.test))
        return event_lines(event)

    def started(self, event: ev.Started) -> None:
        if self.run.host in (None, socket.gethostname()):  # the latest start's engine
            self.load_reader = load_reader(event.device, event.pid, event.device_uuid)
        fusion = event.fusion
        epoch_bar = self.query_one("#epoch-bar", ProgressBar)
        step_bar = self.query_one("#step-bar", ProgressBar)
        epoch_bar.update(total=fusion["steps"] if fusion else event.epochs, progress=0)
        step_bar.update(total=event.steps_per_epoch, progress=0)
        if fusion:  # a fusion weighs candidates; it has no steps
            self.query_one("#epoch-label", Static).update("candidates")
            step_bar.display = self.query_one("#step-label").display = False

    def sync_epoch_table(self) -> None:
        """The Epochs table as the state has them: a resumed run's epochs done again
        replace the ones it lost."""
        table = self.query_one("#epochs", Table)
        wanted = {event.epoch: event for event in self.state.epochs}
        for epoch, seq in list(self.epoch_rows.items()):
            if epoch not in wanted or wanted[epoch].seq != seq:
                table.remove_row(str(epoch))
                del self.epoch_rows[epoch]
        for epoch, event in wanted.items():
            if epoch in self.epoch_rows:
                continue
            table.add_row(
                str(epoch),
                f"{event.train_loss:.4f}{loss_parts(event)}",
                percent(event.train_acc),
                f"{event.val_loss:.4f}",
                percent(event.val_acc),
                f"{event.seconds:.1f}",
                key=str(epoch),
            )
            self.epoch_rows[epoch] = event.seq

    def chart_series(self) -> None:
        """The charts' series, from the state, on one x-axis of epochs."""
        loss, accuracy = self.curves.update(self.state)
        self.query_one("#loss-chart", MetricChart).series = loss
        self.query_one("#acc-chart", MetricChart).series = accuracy
        share_x_range(self.query(MetricChart))

    def redraw(self) -> None:
        """Bring the bars and the speed up to date, and the chart that waited longest."""
        state = self.state
        if state.started is not None:
            fused = state.started.fusion is not None
            position = len(state.fusion_steps) if fused else state.position
            self.query_one("#epoch-bar", ProgressBar).update(progress=position)
        progress = state.progress
        ended = ended_words(self.run.status, state)
        if self.run.status == "pruned":
            ended = pruned_words(state)
        if self.run.status == "completed" and self.run.seconds is not None:
            ended = completed_words(self.run.seconds, state) + (
                f" · {progress.samples_per_s:,.0f} img/s" if progress else ""
            )
        if ended:  # where it got to, still: no bar waits for an engine that is gone
            for bar in self.query(ProgressBar):
                bar.update(total=bar.total or 1)
        if progress is not None and not state.superseded(progress.seq, progress.epoch):
            in_epoch = progress.step if state.ended or state.position > state.epochs_done else 0
            self.query_one("#step-bar", ProgressBar).update(progress=in_epoch)
            eta = state.eta_s if self.run.status == "running" else None
            self.set_line(
                "#speed",
                ended
                or f"{progress.samples_per_s:,.0f} img/s · lr {progress.lr:.2e}"
                + (f" · {duration(eta)} left" if eta is not None else ""),
            )
        elif ended:
            self.set_line("#speed", ended)
        # One chart a tick, the longest-waiting first: two pictures built at once would
        # share the processor with the app's thread the more.
        dirty = [chart for chart in self.query(MetricChart) if chart.dirty and not chart.drawing]
        if dirty:
            chart = min(dirty, key=lambda chart: chart.drawn_at)
            chart.draw()

    def action_toggle_log(self) -> None:
        self.query_one("#loss-chart", MetricChart).toggle_log()

    def action_cycle_smoothing(self) -> None:
        self.query_one("#loss-chart", MetricChart).cycle_smoothing()

    def action_stop_run(self) -> None:
        run = self.store.run(self.run_id)
        if run is None or not run.live:
            status = run.status if run else "deleted"
            self.app.tell(f"run {self.run_id} is not running (it is {status})")
            return
        self.app.confirm_stop(self.run_id)

    def action_resume_run(self) -> None:
        """Go on from the last checkpoint, here: this screen follows the run on."""
        self.app.resume_run(self.run_id, open_its_screen=False)

    def action_launch_again(self) -> None:
        self.app.launch_again(self.run_id)

    def action_edit_run(self) -> None:
        self.app.edit_run(self.run_id)

    def action_delete_run(self) -> None:
        self.app.delete_run(self.run_id)

    def action_predict(self) -> None:
        self.app.open_predict(self.run_id)

    def action_mistakes(self) -> None:
        self.app.open_mistakes(self.run_id)

    def action_switch_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = DETAIL_TABS[(DETAIL_TABS.index(tabs.active) + 1) % len(DETAIL_TABS)]
