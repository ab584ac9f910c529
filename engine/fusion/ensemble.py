"""Ensembles: the weighted mean of the members' class probabilities, of any architectures."""

from typing import Any

import torch

from engine.fusion.members import Fusion


def ensemble_probabilities(job: Fusion, batches: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted mean of the members' probabilities over a split, and its labels."""
    total, labels = None, None
    for member, adapter, weight in zip(job.members, job.adapters, job.weights, strict=True):
        probabilities, labels = job.probabilities(member.model, adapter, batches)
        total = weight * probabilities if total is None else total + weight * probabilities
    assert total is not None and labels is not None
    return total, labels


def ensemble(job: Fusion) -> tuple[float, dict[str, Any]]:
    """Weigh each member, then the ensemble, on the validation data."""
    steps = len(job.members) + 1
    job.started_event(steps)
    members, _ = job.weigh_members(steps)
    probabilities = sum(w * p for w, p in zip(job.weights, members, strict=True))
    val_acc = float((probabilities.argmax(1) == job.val_labels).float().mean())
    job.step(steps, steps, "ensemble", val_acc)
    return val_acc, {"members": job.ids, "weights": job.weights}
