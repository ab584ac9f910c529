"""What a run writes about itself: its first event, and what each of its checkpoints holds."""

from typing import TYPE_CHECKING, Any

from engine.contract import events as ev
from engine.models import count_parameters
from engine.train.checkpoints import random_state
from engine.train.devices import process_facts
from engine.train.ema import average_note
from engine.train.optimisation import few_steps_note
from engine.transfer.probe import why_not_probed

if TYPE_CHECKING:
    from engine.train.loop import Trainer


def emit_started(trainer: "Trainer") -> None:
    """The run's first event, then the dataset's notes as `log` events."""
    total, trainable = count_parameters(trainer.model)
    trainer.writer.emit(
        ev.STARTED,
        **process_facts(trainer.device),
        parameters=total,
        trainable_parameters=trainable,
        sizes=trainer.bundle.sizes(),
        classes=trainer.bundle.classes,
        image_size=trainer.bundle.image_size,
        amp=str(trainer.amp).replace("torch.", "") if trainer.amp else "off",
        channels_last=trainer.channels_last,
        steps_per_epoch=trainer.steps_per_epoch,
        epochs=trainer.epochs,
        init=trainer.init_report.as_event(),
        processes=trainer.processes,
        nodes=trainer.ranks.nodes if trainer.ranks else 1,
        resumed_from_epoch=trainer.first_epoch - 1,
        best_val_acc=trainer.best_val_acc if trainer.best_val_acc >= 0 else None,
        distillation=trainer.objective.started_info(),
    )
    for note in trainer.bundle.notes:
        trainer.writer.emit(ev.LOG, level="info", message=note)
    averaging = average_note(trainer.spec)
    if averaging is not None:
        trainer.writer.emit(ev.LOG, level="info", message=averaging)
    few = few_steps_note(
        trainer.total_steps, len(trainer.bundle.train), trainer.spec.batch_size, trainer.epochs
    )
    sgd_trains = not (trainer.probe and trainer.spec.freeze == "head")
    if few and sgd_trains and trainer.first_epoch == 1:
        trainer.writer.emit(ev.LOG, level="warning", message=few)
    not_probed = why_not_probed(trainer.spec, trainer.model, trainer.probe_images)
    if not_probed and trainer.first_epoch == 1:
        trainer.writer.emit(ev.LOG, level="info", message=not_probed)


def checkpoint_payload(trainer: "Trainer", epoch: int, elapsed: float) -> dict[str, Any]:
    """What last.pt holds: the network's description, the epoch's counters, and the state of
    every part of training, to resume from or to rebuild the model. With an average of the
    weights, its state too, and `weights`: what "model" holds (`raw` here)."""
    payload = {
        "format": 1,
        "arch": trainer.spec.arch,
        "classes": trainer.bundle.classes,
        "in_channels": trainer.bundle.channels,
        "width": trainer.spec.width,
        "small_stem": trainer.small_stem,
        "image_size": trainer.bundle.image_size,
        "mean": list(trainer.bundle.mean),
        "std": list(trainer.bundle.std),
        "epoch": epoch,
        "step": trainer.step,
        "best_val_acc": trainer.best_val_acc,
        "best_epoch": trainer.best_epoch,
        "elapsed": elapsed,
        "early_stopping": trainer.early_stopping.state(),
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "rng": random_state(trainer.device),
        "spec": trainer.spec.to_json(),
    }
    if trainer.ema is not None:
        averaged = {"ema": trainer.ema.state(), "best_weights": trainer.best_weights}
        payload |= {"weights": "raw", **averaged}
    return payload


def best_payload(trainer: "Trainer", last: dict[str, Any]) -> dict[str, Any] | None:
    """What best.pt holds where it differs from last.pt's payload `last`: where the average
    of the weights won, the average as its "model" (test, predict, export and fusion use it
    as any), and `weights` `ema`; None where best.pt is last.pt's copy."""
    if trainer.ema is None or trainer.best_weights != "ema":
        return None
    best = {key: value for key, value in last.items() if key != "ema"}
    return best | {"model": trainer.ema.weights, "weights": "ema"}
