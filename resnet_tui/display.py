"""A run in words and Rich tables, as the CLI, the app and the sweeps' summaries all show it.

The CLI's live progress bars are `resnet_tui/cli/progress.py`.
"""

from typing import Any

from rich.console import Group
from rich.table import Table

from engine.contract import events as ev
from resnet_tui.runs.model import Run


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


def run_error(run: Run) -> str:
    """What a failed or crashed run ended with, as one line."""
    if run.error is not None:
        return run.error.line
    return f"the engine ended without a final event; see {run.run_dir}/engine.log"
