"""What the run screen says in words: its settings line and a line of the log per event."""

from engine.contract import events as ev
from engine.contract.spec import SpecError
from resnet_tui.display import (
    device_chosen,
    distillation_line,
    duration,
    epoch_line,
    fusion_line,
    fusion_title,
    init_lines,
    markup_safe,
    percent,
    policy_line,
)
from resnet_tui.runs.model import Run
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore


def lineage_text(store: RunStore, run: Run) -> str:
    """` · from run 3 (name) ← run 1 (name)`: the runs this one started from, and the
    teachers it was distilled from, or nothing."""
    text = ""
    chain = store.lineage(run.id)
    if chain:
        text += " · from " + " ← ".join(markup_safe(f"run {r.id} ({r.name})") for r in chain)
    if run.teachers:
        text += " · distilled from " + ", ".join(f"run {t}" for t in run.teachers)
    return text


def settings_text(store: RunStore, run: Run) -> str:
    """The run's name, status and settings in one line of markup (user text escaped)."""
    title = f"[b]run {run.id}: {markup_safe(run.name)}[/] · {run.status}"
    lineage = lineage_text(store, run)
    if not run.trained:
        recipe = run.recipe or {}
        members = [m["run"] for m in recipe.get("members", []) if isinstance(m, dict)]
        return (
            f"{title} · {markup_safe(fusion_title({**recipe, 'members': members}))} · "
            f"{markup_safe(run.dataset)} · device {recipe.get('device', 'auto')}{lineage}"
        )
    spec = run.spec_values
    epochs = spec.get("epochs", run.epochs)
    try:
        lr = f"{run.spec.peak_lr:g}"
    except SpecError:  # a damaged spec in the store: show what can be shown
        lr = "?"
    what = f"{run.arch} on {run.dataset}"
    what = "" if run.name == what else f"{markup_safe(what)} · "  # a default name says it
    return (
        f"{title} · {what}weights {markup_safe(run.init)} · "
        f"policy {run.freeze} · {spec.get('optimizer')} lr {lr} · batch "
        f"{spec.get('batch_size')} · {epochs} epoch{'s' if epochs != 1 else ''} · "
        f"device {markup_safe(device_chosen(run.device, run.engine_info))}{lineage}"
    )


def completed_words(seconds: float | None, state: RunState) -> str:
    """`completed in 3:17`, or (markup, the engine's words escaped) where early stopping
    ended the run: `completed early in 3:17 (epoch 12 of 30: val_acc did not improve for 5
    epochs)`."""
    early = state.early_stop
    if early is None:
        return f"completed in {duration(seconds)}"
    planned = state.epochs_planned
    when = f"epoch {early.epoch} of {planned}: " if early.epoch is not None and planned else ""
    return f"completed early in {duration(seconds)} ({when}{markup_safe(early.reason)})"


def pruned_words(state: RunState) -> str:
    """`pruned at epoch 3 of 10: best val acc 41.2% is below ...` (markup, the reason
    escaped), as the run's events tell why its sweep's pruning ended it."""
    pruned = state.pruned
    if pruned is None:  # the store has it pruned; its events are still being read
        return "pruned by its sweep"
    planned = state.epochs_planned
    of = f" of {planned}" if planned else ""
    return f"pruned at epoch {pruned.epoch}{of}: {markup_safe(pruned.reason)}"


def start_lines(event: ev.Started) -> list[str]:
    """The log's lines for an engine's start: where, what, from which weights."""
    fusion = event.fusion
    what = fusion_title(fusion) if fusion else f"{event.parameters:,} parameters"
    lines = [
        f"started on {markup_safe(event.device)} ({markup_safe(event.device_name)}) · "
        f"{markup_safe(what)} · {event.sizes.get('train', 0):,} training images"
    ]
    lines += [markup_safe(line) for line in init_lines(event.init)]
    distilling = distillation_line(event.distillation)
    if distilling:
        lines.append(markup_safe(distilling))
    if event.resumed_from_epoch:
        lines.append(f"[b]resumed[/] after epoch {event.resumed_from_epoch}")
    return lines


def event_lines(event: ev.Event) -> list[str]:
    """The log's lines (markup, user text escaped) for any event but a start."""
    if isinstance(event, ev.EpochEnded):
        ema = event.ema_val_acc  # with an average of the weights (--ema-decay)
        averaged = f"  EMA val acc {percent(ema)}" if ema is not None else ""
        return [markup_safe(epoch_line(event) + averaged)]
    if isinstance(event, ev.Log):
        return [f"[dim]{markup_safe(event.level)}: {markup_safe(event.message)}[/]"]
    if isinstance(event, ev.Policy):
        return [f"[cyan]{markup_safe(policy_line(event))}[/]"]
    if isinstance(event, ev.Fusion):
        return [markup_safe(fusion_line(event))]
    if isinstance(event, ev.Finished):
        lines = [f"[b]{markup_safe(event.status)}[/] · best val {percent(event.best_val_acc)}"]
        if event.test:
            weights = event.test.get("weights")  # raw or ema, with an average of the weights
            tested = f" of the {markup_safe(weights)} weights" if isinstance(weights, str) else ""
            top1 = percent(event.test.get("top1"))
            lines.append(f"test accuracy {top1}{tested} (see the Test tab)")
        return lines
    if isinstance(event, ev.Error):
        return [f"[red]failed ({markup_safe(event.kind)}): {markup_safe(event.line)}[/]"]
    return []
