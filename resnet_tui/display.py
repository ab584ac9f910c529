"""A run in words and Rich tables, as the CLI, the app and the sweeps' summaries all show it.

The CLI's live progress bars are `resnet_tui/cli/progress.py`.
"""

import math
import re
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from engine.contract import events as ev
from resnet_tui.runs.model import Run

# What a terminal would act on rather than show: C0 controls (newline and tab too), DEL, C1
# controls (0x9b starts a sequence as ESC [ does), lone surrogates (undecodable bytes in argv
# or a file name) and the bidi controls that reorder what follows them.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object) -> str:
    """Any text as it can be shown in a terminal: each control character, lone surrogate or
    bidi override written as a visible escape (`\\x1b`, `\\u202e`), never emitted as it is."""
    return _UNSAFE.sub(_visible, str(text))


def shown(text: object, style: str = "") -> Text:
    """User text (a name, tag, path, message) for Rich: made safe, and never read as markup."""
    return Text(safe(text), style=style)


def markup_safe(text: object) -> str:
    """User text to put inside a markup string: made safe, its brackets escaped."""
    return escape(safe(text))


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
    """The test metrics and the confusion matrix of a finished run; a value a damaged or
    forged report holds in the wrong shape shows as `-`, a confusion matrix as a note."""
    summary = Table(title="Test metrics", show_header=False, box=None, padding=(0, 2))
    summary.add_row("top-1", percent(_fraction(report.get("top1"))))
    k, classes = report.get("top5_k", 5), report.get("classes")
    if not (isinstance(k, int) and isinstance(classes, list) and k >= len(classes)):
        # top-k of k classes or more is always 100%: said only where it tells something
        summary.add_row(shown(f"top-{k}"), percent(_fraction(report.get("top5"))))
    summary.add_row("macro-F1", _formatted(report.get("macro_f1"), ".4f"))
    summary.add_row("macro AUROC", _formatted(report.get("auroc"), ".4f"))
    summary.add_row("loss", _formatted(report.get("loss"), ".4f"))
    old_task = report.get("old_task")
    if isinstance(old_task, dict):
        summary.add_row(
            shown(f"old task top-1 ({old_task.get('dataset')})"),
            f"{percent(_fraction(old_task.get('top1')))} "
            f"(the source: {percent(_fraction(old_task.get('source_top1')))})",
        )
    summary.add_row("images", shown(str(report.get("samples", "-"))))
    classes, matrix = report.get("classes"), report.get("confusion")
    if not _is_confusion(classes, matrix):
        return Group(summary, "", Text("the confusion matrix is damaged", style="dim"))
    confusion = Table(title="Confusion matrix (rows: true class)", box=None, padding=(0, 1))
    confusion.add_column("", style="bold")
    for index in range(len(classes)):
        confusion.add_column(str(index), justify="right")
    confusion.add_column("acc", justify="right")
    per_class = report.get("per_class_accuracy")
    per_class = per_class if isinstance(per_class, dict) else {}
    for index, (name, row) in enumerate(zip(classes, matrix, strict=True)):
        cells = [
            f"[bold green]{count}[/]" if column == index else (str(count) if count else "[dim]·[/]")
            for column, count in enumerate(row)
        ]
        accuracy = percent(_fraction(per_class.get(str(name))))
        confusion.add_row(shown(f"{index} {name}"), *cells, accuracy)
    return Group(summary, "", confusion)


def _fraction(value: Any) -> float | None:
    """A number of a report, or None where it holds something else."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if is_number and math.isfinite(value) else None


def _formatted(value: Any, form: str) -> str:
    number = _fraction(value)
    return "-" if number is None else format(number, form)


def _is_confusion(classes: Any, matrix: Any) -> bool:
    """Whether a report's classes and confusion matrix have the shape of one: a square of
    whole numbers, a row per class."""
    if not isinstance(classes, list) or not isinstance(matrix, list):
        return False
    return len(matrix) == len(classes) and all(
        isinstance(row, list)
        and len(row) == len(classes)
        and all(isinstance(count, int) and not isinstance(count, bool) for count in row)
        for row in matrix
    )


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
