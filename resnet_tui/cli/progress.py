"""The live view of a run in the terminal: bars for epochs and steps, a line per epoch."""

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from engine.contract import events as ev
from resnet_tui.display import (
    distillation_line,
    duration,
    epoch_line,
    fusion_line,
    fusion_title,
    init_lines,
    loss_parts,
    percent,
    policy_line,
    run_error,
    shown,
    test_report_view,
)
from resnet_tui.runs.model import Run
from resnet_tui.runs.state import RunState


class RunProgress:
    """Turns a run's events into Rich output: bars for epochs and steps, a line per epoch."""

    def __init__(self, console: Console, run_id: int) -> None:
        self.console = console
        self.run_id = run_id
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            refresh_per_second=4,
        )
        self.epochs = self.progress.add_task("epochs", total=None, detail="")
        self.steps = self.progress.add_task("steps ", total=None, detail="")
        self.showing = False

    def __enter__(self) -> "RunProgress":
        """Show the bars on a terminal; output to a file or a pipe gets the lines alone."""
        if self.console.is_terminal:
            self.progress.start()
            self.showing = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._hide_bars()

    def _hide_bars(self) -> None:
        if self.showing:
            self.progress.stop()
            self.showing = False

    def update(self, state: RunState, events: list[ev.Event]) -> None:
        """Show what `events` (just folded into `state`) said: a line for each that speaks,
        and the bars as the state stands now."""
        for event in events:
            self._print(event)
        started = state.started
        if started is None:
            return
        if started.fusion:
            self.progress.update(self.epochs, completed=len(state.fusion_steps))
            return
        self.progress.update(self.epochs, completed=state.position)
        progress = state.progress
        if progress is not None and not state.superseded(progress.seq, progress.epoch):
            position = progress.step if state.ended or state.position > state.epochs_done else 0
            self.progress.update(
                self.steps,
                completed=position,
                detail=f"loss {progress.loss:.3f}{loss_parts(progress)} · "
                f"{progress.samples_per_s:,.0f} img/s",
            )

    def _print(self, event: ev.Event) -> None:
        if isinstance(event, ev.Started) and event.fusion:
            sizes = event.sizes
            self.console.print(
                Text.assemble(
                    (f"run {self.run_id}", "bold"),
                    shown(
                        f": {fusion_title(event.fusion)} on {event.device} "
                        f"({event.device_name}) · {sizes['val']:,} val / "
                        f"{sizes['test']:,} test images · {len(event.classes)} classes"
                    ),
                )
            )
            self.progress.update(self.epochs, description="fusing", total=event.fusion["steps"])
            self.progress.update(self.steps, visible=False)
        elif isinstance(event, ev.Started):
            sizes = event.sizes
            self.console.print(
                Text.assemble(
                    (f"run {self.run_id}", "bold"),
                    shown(
                        f" on {event.device} ({event.device_name}, {event.threads} threads) · "
                        f"{event.parameters:,} parameters · {sizes['train']:,} train / "
                        f"{sizes['val']:,} val / {sizes['test']:,} test images · "
                        f"{len(event.classes)} classes"
                    ),
                )
            )
            for line in init_lines(event.init):
                self.console.print(shown(line))
            distilling = distillation_line(event.distillation)
            if distilling:
                self.console.print(shown(distilling))
            self.progress.update(self.epochs, total=event.epochs)
            self.progress.update(self.steps, total=event.steps_per_epoch)
        elif isinstance(event, ev.EpochEnded):
            self.console.print(shown(epoch_line(event)))
        elif isinstance(event, ev.Log):
            self.console.print(shown(f"{event.level}: {event.message}", style="dim"))
        elif isinstance(event, ev.Policy):
            self.console.print(shown(policy_line(event), style="cyan"))
        elif isinstance(event, ev.Fusion):
            self.console.print(shown(fusion_line(event)))

    def summary(self, run: Run) -> None:
        """The closing lines: the test report of a completed run, else its status."""
        self._hide_bars()
        if run.status == "completed" and run.test_report:
            self.console.print(test_report_view(run.test_report))
            self.console.print(
                f"[green]completed[/] run {self.run_id}: test accuracy "
                f"{percent(run.test_acc)}, best val {percent(run.best_val_acc)}, "
                f"{duration(run.seconds)}"
            )
        elif run.status == "stopped":
            self.console.print(
                f"[yellow]stopped[/] run {self.run_id} after {run.epochs_done} "
                f"epoch{'' if run.epochs_done == 1 else 's'}; "
                "its last checkpoint is kept"
            )
        elif run.status == "pruned":
            self.console.print(
                f"[magenta]pruned[/] run {self.run_id} after {run.epochs_done} "
                f"epoch{'' if run.epochs_done == 1 else 's'} by its sweep's rule "
                f"(`resnet-tui show {self.run_id}` says why); its curves are kept"
            )
        elif run.status == "crashed":
            self.console.print(
                Text.assemble(("crashed", "red"), f" run {self.run_id}: ", shown(run_error(run)))
            )
