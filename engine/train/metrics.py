"""Test metrics from a model's logits: top-1, top-5, macro-F1, AUROC, per-class accuracy."""

from typing import Any

import torch
from torch.nn import functional as F


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Counts of (true class, predicted class) pairs: rows are true classes."""
    pairs = labels * classes + predicted
    return torch.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def macro_f1(confusion: torch.Tensor) -> float:
    """Unweighted mean over classes of F1; a class never predicted nor present scores 0."""
    true_positive = confusion.diag().double()
    predicted = confusion.sum(0).double()
    actual = confusion.sum(1).double()
    denominator = predicted + actual
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), 0.0)
    return float(f1.mean())


def _average_ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based ranks of `scores`, ties sharing their mean rank."""
    order = scores.argsort()
    sorted_scores = scores[order]
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores, dtype=torch.float64)
    ranks[order] = mean_rank[inverse]
    return ranks


def macro_auroc(probabilities: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Mean one-vs-rest ROC AUC over the classes that have both positives and negatives.

    Uses the rank form of the Mann-Whitney U statistic, so ties count half. None when no
    class has both.
    """
    areas = []
    for cls in range(probabilities.shape[1]):
        positive = labels == cls
        positives = int(positive.sum())
        negatives = len(labels) - positives
        if positives == 0 or negatives == 0:
            continue
        ranks = _average_ranks(probabilities[:, cls].double())
        u = ranks[positive].sum() - positives * (positives + 1) / 2
        areas.append(float(u) / (positives * negatives))
    return sum(areas) / len(areas) if areas else None


def classification_report(
    logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]
) -> dict[str, Any]:
    """Every test metric of one evaluation, as plain numbers and lists for the event log."""
    logits = logits.float().cpu()
    labels = labels.cpu()
    classes = len(class_names)
    predicted = logits.argmax(1)
    k = min(5, classes)
    top_k = logits.topk(k, dim=1).indices
    confusion = confusion_matrix(predicted, labels, classes)
    per_class_total = confusion.sum(1)
    per_class = {
        name: (float(confusion[i, i] / per_class_total[i]) if per_class_total[i] else None)
        for i, name in enumerate(class_names)
    }
    return {
        "loss": float(F.cross_entropy(logits, labels)),
        "top1": float((predicted == labels).float().mean()),
        "top5": float((top_k == labels[:, None]).any(1).float().mean()),
        "top5_k": k,
        "macro_f1": macro_f1(confusion),
        "auroc": macro_auroc(logits.softmax(1), labels),
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
        "classes": class_names,
        "samples": len(labels),
    }
