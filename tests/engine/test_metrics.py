"""Test metrics (confusion matrix, macro-F1, AUROC, top-k) checked against hand computations."""

import pytest
import torch

from engine.train.metrics import classification_report, confusion_matrix, macro_auroc, macro_f1


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(predicted, labels, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix_keeps_rows_and_columns_of_absent_classes():
    matrix = confusion_matrix(torch.tensor([1, 1]), torch.tensor([1, 0]), 4)
    assert matrix.tolist() == [[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_macro_f1_by_hand():
    confusion = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    # class 0: p=1/2 r=1/2 f=1/2; class 1: p=1/2 r=1 f=2/3; class 2: p=1 r=2/3 f=4/5
    assert macro_f1(confusion) == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)


def test_macro_f1_is_one_when_perfect_and_counts_absent_classes_as_zero():
    assert macro_f1(torch.diag(torch.tensor([3, 1, 4]))) == pytest.approx(1.0)
    # class 2 neither occurs nor is predicted: it scores 0 and still counts in the mean
    assert macro_f1(torch.tensor([[2, 0, 0], [0, 2, 0], [0, 0, 0]])) == pytest.approx(2 / 3)
    # class 1 is never predicted: F1 0 for it
    assert macro_f1(torch.tensor([[2, 0], [2, 0]])) == pytest.approx((2 * 2 / (4 + 2) + 0) / 2)


def test_auroc_is_one_for_perfect_scores_zero_for_reversed_and_half_for_ties():
    labels = torch.tensor([0, 0, 1, 1])
    perfect = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    assert macro_auroc(perfect, labels) == pytest.approx(1.0)
    assert macro_auroc(perfect.flip(1), labels) == pytest.approx(0.0)
    assert macro_auroc(torch.full((4, 2), 0.5), labels) == pytest.approx(0.5)


def test_auroc_with_ties_matches_the_pair_count():
    scores = torch.tensor([0.1, 0.5, 0.5, 0.9])
    labels = torch.tensor([0, 1, 0, 1])
    probabilities = torch.stack([1 - scores, scores], 1)
    # pairs (positive, negative): (0.5,0.1)=1 (0.5,0.5)=0.5 (0.9,0.1)=1 (0.9,0.5)=1 -> 3.5/4
    assert macro_auroc(probabilities, labels) == pytest.approx(0.875)


def pair_auc(scores: list[float], positive: list[bool]) -> float:
    """AUC by counting (positive, negative) pairs: 1 when ordered, 1/2 when tied."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_multiclass_auroc_is_the_mean_of_one_vs_rest_pair_counts():
    probabilities = torch.tensor(
        [
            [0.6, 0.3, 0.1],
            [0.2, 0.5, 0.3],
            [0.2, 0.2, 0.6],
            [0.4, 0.4, 0.2],
            [0.1, 0.3, 0.6],
            [0.5, 0.2, 0.3],
        ]
    )
    labels = torch.tensor([0, 1, 2, 1, 2, 0])
    expected = [pair_auc(probabilities[:, c].tolist(), (labels == c).tolist()) for c in range(3)]
    assert macro_auroc(probabilities, labels) == pytest.approx(sum(expected) / 3)


def test_auroc_skips_classes_without_positives_and_is_none_without_any():
    probabilities = torch.tensor([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])
    labels = torch.tensor([0, 1, 1])  # class 2 never occurs: it is left out, not counted as 0
    assert macro_auroc(probabilities, labels) == pytest.approx(1.0)
    assert macro_auroc(probabilities, torch.tensor([1, 1, 1])) is None


def test_report_has_top1_top5_and_per_class_accuracy():
    logits = torch.eye(6)[[0, 1, 2, 3, 4, 5, 0]] * 5
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 5])
    report = classification_report(logits, labels, list("abcdef"))
    assert report["top1"] == pytest.approx(6 / 7)
    assert report["top5"] == pytest.approx(1.0)  # ties at 0: label 5 is among the top five
    assert report["top5_k"] == 5
    assert report["per_class_accuracy"]["f"] == pytest.approx(0.5)
    assert report["per_class_accuracy"]["a"] == pytest.approx(1.0)
    assert report["confusion"][5] == [1, 0, 0, 0, 0, 1]
    assert report["samples"] == 7 and report["classes"] == list("abcdef")


def test_top5_misses_a_label_ranked_sixth():
    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1], [1.0, 2, 3, 4, 5, 6]])
    labels = torch.tensor([5, 1])  # ranked 6th, then 5th
    report = classification_report(logits, labels, list("abcdef"))
    assert report["top1"] == 0.0 and report["top5"] == pytest.approx(0.5)


def test_report_with_fewer_than_five_classes_and_an_absent_class():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [2.0, 0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    report = classification_report(logits, labels, ["x", "y", "z"])
    assert report["top5_k"] == 3 and report["top5"] == 1.0
    assert report["top1"] == pytest.approx(1 / 3)
    assert report["per_class_accuracy"] == {"x": 0.5, "y": 0.0, "z": None}
    assert report["confusion"] == [[1, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert report["macro_f1"] == pytest.approx((0.5 + 0 + 0) / 3)
    expected_loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert report["loss"] == pytest.approx(expected_loss)
    softmax = logits.softmax(1)
    by_class = [pair_auc(softmax[:, c].tolist(), (labels == c).tolist()) for c in (0, 1)]
    assert report["auroc"] == pytest.approx(sum(by_class) / 2)  # z has no positives
