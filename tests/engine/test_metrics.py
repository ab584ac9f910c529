"""Test metrics checked against hand computations."""

import pytest
import torch

from engine.metrics import classification_report, confusion_matrix, macro_auroc, macro_f1


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(predicted, labels, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_macro_f1_by_hand():
    confusion = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    # class 0: p=1/2 r=1/2 f=1/2; class 1: p=1/2 r=1 f=2/3; class 2: p=1 r=2/3 f=4/5
    assert macro_f1(confusion) == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)


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


def test_report_has_top1_top5_and_per_class_accuracy():
    logits = torch.eye(6)[[0, 1, 2, 3, 4, 5, 0]] * 5
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 5])
    report = classification_report(logits, labels, list("abcdef"))
    assert report["top1"] == pytest.approx(6 / 7)
    assert report["top5"] == pytest.approx(1.0)
    assert report["per_class_accuracy"]["f"] == pytest.approx(0.5)
    assert report["confusion"][5] == [1, 0, 0, 0, 0, 1]
    assert report["samples"] == 7
