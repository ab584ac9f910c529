"""Showing a run in the terminal with Rich: live progress, a line per epoch, the test report."""

from typing import Any

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from engine.contract import events as ev
from resnet_tui.runs.model import Run
from resnet_tui.runs.state import RunState


def device_chosen(asked: str, started: ev.Started | None) -> str:
    """The device a run asked for, with the one `auto` chose once its engine started."""
    return f"{asked} (chose {started.device})" if asked == "auto" and started else asked


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def test_report_view(report: dict[str, Any]) -> Group:
    """The test metrics and the confusion matrix of a finished run."""
    summary = Table(title="Test metrics", show_header=False, box=None, padding=(0, 2))
    summary.add_row("top-1", percent(report["top1"]))
    summary.add_row(f"top-{report.get('top5_k', 5)}", percent(report["top5"]))
    summary.add_row("macro-F1", f"{report['macro_f1']:.4f}")
    auroc = report.get("auroc")
    summary.add_row("macro AUROC", "-" if auroc is None else f"{auroc:.4f}")
    summary.add_row("loss", f"{report['loss']:.4f}")
    old_task = report.get("old_task")
    if old_task:
        summary.add_row(
            f"old task top-1 ({old_task['dataset']})",
            f"{percent(old_task['top1'])} (the source: {percent(old_task['source_top1'])})",
        )
    summary.add_row("images", str(report.get("samples", "-")))
    classes = report["classes"]
    confusion = Table(title="Confusion matrix (rows: true class)", box=None, padding=(0, 1))
    confusion.add_column("", style="bold")
    for index in range(len(classes)):
        confusion.add_column(str(index), justify="right")
    confusion.add_column("acc", justify="right")
    per_class = report["per_class_accuracy"]
    for index, (name, row) in enumerate(zip(classes, report["confusion"], strict=True)):
        cells = [
            f"[bold green]{count}[/]" if column == index else (str(count) if count else "[dim]·[/]")
            for column, count in enumerate(row)
        ]
        confusion.add_row(f"{index} {name}", *cells, percent(per_class.get(name)))
    return Group(summary, "", confusion)


def policy_line(event: ev.Policy) -> str:
    """One line for a `policy` event: which parts train from this epoch, at what rates."""
    rates = ", ".join(f"{part} {lr:.2g}" for part, lr in event.lr.items())
    return (
        f"epoch {event.epoch}: {', '.join(event.training) or 'nothing'} train "
        f"({event.trainable_parameters:,} parameters); lr {rates}"
    )


def init_lines(init: dict[str, Any] | None) -> list[str]:
    """What loading the starting weights did, from the `started` event: nothing is hidden."""
    if not init or init["source"] == "scratch":
        return []
    lines = [
        f"weights from {init['source']}: {init['loaded']} tensors loaded, "
        f"{'the source head kept' if init['head'] == 'kept' else 'a new head'}"
    ]
    for label in ("mismatched", "missing", "unexpected"):
        if init[label]:
            shown = ", ".join(init[label][:6]) + (" ..." if len(init[label]) > 6 else "")
            lines.append(f"  {len(init[label])} {label} (not loaded): {shown}")
    return lines


def weights_from(run: Run) -> str:
    """Where a run's weights came from, for listings: its --init, or a fusion's members."""
    if run.trained:
        return run.init
    return "runs " + ",".join(str(m) for m in run.parents)


def fusion_line(event: ev.Fusion) -> str:
    """One line for a `fusion` event: a candidate the fusion weighed, and what came of it."""
    kept = "" if event.kept is None else ("  kept" if event.kept else "  left out")
    return f"{event.candidate:<14} val acc {percent(event.val_acc):>6}{kept}"


def fusion_title(fusion: dict[str, Any]) -> str:
    """What a fused run is made of, from its `started` event or its recipe."""
    members = ", ".join(str(m) for m in fusion.get("members", []))
    kind = fusion.get("kind", "fusion")
    if kind == "wise-ft":
        alpha = fusion.get("alpha")
        return f"WiSE-FT of run {members} (alpha {'auto' if alpha is None else alpha})"
    label = "greedy soup" if fusion.get("greedy") else kind
    weights = fusion.get("weights")
    shown = f", weights {', '.join(f'{w:g}' for w in weights)}" if weights else ""
    return f"{label} of runs {members}{shown}"


def distillation_line(distillation: dict[str, Any] | None) -> str | None:
    """What a run distils from: its teachers, or (learning without forgetting) its old task."""
    if not distillation:
        return None
    if "lwf" in distillation:
        classes = distillation["old_classes"]
        shown = ", ".join(classes[:6]) + (" ..." if len(classes) > 6 else "")
        return (
            f"learning without forgetting: the old task ({distillation['old_dataset']}: "
            f"{shown}) keeps {distillation['lwf']:g} of the loss"
        )
    return (
        f"distilling from {', '.join(distillation['teachers'])} (alpha "
        f"{distillation['alpha']:g}, temperature {distillation['temperature']:g})"
    )


def loss_parts(event: ev.Progress | ev.EpochEnded) -> str:
    """ "(ce 0.41 kd 1.20)" for a distilled run's progress or epoch, else nothing."""
    if isinstance(event, ev.Progress):
        ce, kd = event.ce_loss, event.kd_loss
    else:
        ce, kd = event.train_ce_loss, event.train_kd_loss
    if ce is None or kd is None:
        return ""
    return f" (ce {ce:.3f} kd {kd:.3f})"


def epoch_line(event: ev.EpochEnded) -> str:
    """One line for an ended epoch: its losses and accuracies, and how long it took."""
    return (
        f"epoch {event.epoch:>3}/{event.epochs}  "
        f"train loss {event.train_loss:.4f}{loss_parts(event)} "
        f"acc {percent(event.train_acc):>6}  "
        f"val loss {event.val_loss:.4f} acc {percent(event.val_acc):>6}  "
        f"{event.seconds:.1f} s"
    )


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
                f"[bold]run {self.run_id}[/]: {fusion_title(event.fusion)} on "
                f"{event.device} ({event.device_name}) · {sizes['val']:,} val / "
                f"{sizes['test']:,} test images · {len(event.classes)} classes"
            )
            self.progress.update(self.epochs, description="fusing", total=event.fusion["steps"])
            self.progress.update(self.steps, visible=False)
        elif isinstance(event, ev.Started):
            sizes = event.sizes
            self.console.print(
                f"[bold]run {self.run_id}[/] on {event.device} ({event.device_name}, "
                f"{event.threads} threads) · {event.parameters:,} parameters · "
                f"{sizes['train']:,} train / {sizes['val']:,} val / {sizes['test']:,} test images"
                f" · {len(event.classes)} classes"
            )
            for line in init_lines(event.init):
                self.console.print(line, highlight=False)
            distilling = distillation_line(event.distillation)
            if distilling:
                self.console.print(distilling, highlight=False)
            self.progress.update(self.epochs, total=event.epochs)
            self.progress.update(self.steps, total=event.steps_per_epoch)
        elif isinstance(event, ev.EpochEnded):
            self.console.print(epoch_line(event), highlight=False)
        elif isinstance(event, ev.Log):
            self.console.print(Text(f"{event.level}: {event.message}", style="dim"))
        elif isinstance(event, ev.Policy):
            self.console.print(Text(policy_line(event), style="cyan"))
        elif isinstance(event, ev.Fusion):
            self.console.print(fusion_line(event), highlight=False)

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
        elif run.status == "crashed":
            self.console.print(
                Text.assemble(("crashed", "red"), f" run {self.run_id}: ", run_error(run))
            )


def run_error(run: Run) -> str:
    """What a failed or crashed run ended with, as one line."""
    if run.error is not None:
        return run.error.line
    return f"the engine ended without a final event; see {run.run_dir}/engine.log"
