"""Evaluating a run's model: predictions over a split, validation metrics, the test report."""

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from engine.data.batches import FileBatches, TensorBatches
from engine.distributed import Ranks, gathered
from engine.train.metrics import classification_report
from engine.transfer.distill import OldTask


@torch.no_grad()
def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: TensorBatches | FileBatches,
    ranks: Ranks | None,
    heartbeat: Callable[[], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits `forward` gives (in float32) and the labels over a whole split, in order;
    on several ranks, those of every rank. `heartbeat` is called after each batch."""
    all_logits, all_labels = [], []
    for images, labels in batches.epoch(0):
        all_logits.append(forward(images).float())
        all_labels.append(labels)
        heartbeat()
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    if ranks is not None:
        return gathered(logits), gathered(labels)
    return logits, labels


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The mean cross-entropy and the top-1 accuracy of a split's logits."""
    loss = float(F.cross_entropy(logits, labels))
    return loss, float((logits.argmax(1) == labels).float().mean())


def test_report(
    logits: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    best_epoch: int,
    old_task: OldTask | None,
    autocast: Callable[[], Any],
) -> dict[str, Any]:
    """The `finished` event's test report: metrics of the best checkpoint's test `logits`,
    its epoch and, learning without forgetting, how the old task fares."""
    report = classification_report(logits, labels, classes)
    report["epoch"] = best_epoch
    if old_task is not None:
        report["old_task"] = old_task.report(autocast)
    return report
