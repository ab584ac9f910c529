"""Events as an engine writes them, made in memory for the tests of the run layer."""

from typing import Any

from engine.contract import events as ev


def started(seq: int, t: float = 100.0, resumed_from_epoch: int = 0, **values: Any) -> ev.Started:
    fields: dict[str, Any] = {
        "device": "cpu",
        "device_name": "CPU",
        "torch_version": "2",
        "torchvision_version": "0",
        "threads": 2,
        "pid": 4242,
        "parameters": 100,
        "trainable_parameters": 100,
        "sizes": {"train": 8, "val": 2, "test": 2},
        "classes": ["a", "b"],
        "image_size": 16,
        "amp": "off",
        "channels_last": False,
        "steps_per_epoch": 10,
        "epochs": 2,
        "resumed_from_epoch": resumed_from_epoch,
    }
    return ev.Started(seq=seq, t=t, **{**fields, **values})


def progress(seq: int, epoch: int, global_step: int, loss: float, t: float = 0.0) -> ev.Progress:
    return ev.Progress(
        seq=seq,
        t=t or 100.0 + seq,
        epoch=epoch,
        step=1,
        steps=10,
        global_step=global_step,
        loss=loss,
        samples_per_s=100.0,
        lr=0.1,
    )


def epoch_ended(seq: int, epoch: int, val_acc: float, **values: Any) -> ev.EpochEnded:
    fields: dict[str, Any] = {
        "epochs": 2,
        "train_loss": 1.0 / epoch,
        "train_acc": 0.4 * epoch,
        "val_loss": 1.1 / epoch,
        "val_acc": val_acc,
        "lr": {"weights": 0.1, "norms-and-biases": 0.1},
        "seconds": 2.0,
        "elapsed": 2.0 * epoch,
    }
    return ev.EpochEnded(seq=seq, t=100.0 + seq, epoch=epoch, **{**fields, **values})


TEST_REPORT = {"top1": 0.61, "top5": 0.99, "macro_f1": 0.6, "confusion": [[1]], "classes": ["a"]}


def finished(seq: int, status: str = "completed", **values: Any) -> ev.Finished:
    fields: dict[str, Any] = {"best_val_acc": 0.5, "test": TEST_REPORT, "seconds": 5.0}
    return ev.Finished(seq=seq, t=200.0, status=status, **{**fields, **values})


def two_epochs() -> list[ev.Event]:
    """A completed run of two epochs: started, a step and an end per epoch, finished."""
    return [
        started(1),
        progress(2, 1, 10, 1.0),
        epoch_ended(3, 1, 0.5),
        progress(4, 2, 20, 0.5),
        epoch_ended(5, 2, 0.45),
        finished(6),
    ]


def write_log(path: Any, events: list[ev.Event]) -> None:
    """Write events as lines of an events file (appending)."""
    import json

    with open(path, "a", encoding="utf-8") as file:
        for event in events:
            file.write(json.dumps(event.to_dict()) + "\n")
