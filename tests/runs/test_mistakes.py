"""Reading a run's test predictions back (resnet_tui/runs/mistakes.py): the summaries agree
with counting by hand, and a damaged or forged file is a MistakesError, never a traceback
nor a path out of the run's folder."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resnet_tui.runs import mistakes
from resnet_tui.runs.mistakes import (
    MAX_BYTES,
    PREDICTIONS_FORMAT,
    MistakesError,
    confused_pairs,
    confusion_matrix,
    per_class,
    read_test_predictions,
    top_losses,
)


def table(labels: list[int], predicted: list[int], classes: int, **fields) -> dict:
    """A file's fields as the engine writes them, less the probabilities' meaning."""
    count = len(labels)
    return {
        "format": PREDICTIONS_FORMAT,
        "classes": [f"class {i}" for i in range(classes)],
        "labels": labels,
        "predicted": predicted,
        "probability": [0.5] * count,
        "true_probability": [0.25] * count,
        "loss": [round(0.1 * ((7 * i) % 13), 6) for i in range(count)],
        "images": {},
        **fields,
    }


def predictions_of(labels: list[int], predicted: list[int], classes: int):
    values = table(labels, predicted, classes)
    columns = ("labels", "predicted", "probability", "true_probability", "loss")
    return mistakes.TestPredictions(
        folder=Path("."),
        classes=tuple(values["classes"]),
        **{name: tuple(values[name]) for name in columns},
    )


@st.composite
def label_lists(draw) -> tuple[list[int], list[int], int]:
    classes = draw(st.integers(1, 6))
    count = draw(st.integers(1, 60))
    each = st.lists(st.integers(0, classes - 1), min_size=count, max_size=count)
    return draw(each), draw(each), classes


@given(label_lists())
def test_per_class_scores_agree_with_counting_by_hand(drawn):
    labels, predicted, classes = drawn
    scores = per_class(predictions_of(labels, predicted, classes))
    assert [s.index for s in scores] == list(range(classes))
    for c, s in enumerate(scores):
        hits = sum(1 for t, p in zip(labels, predicted, strict=True) if t == p == c)
        support, claimed = labels.count(c), predicted.count(c)
        assert s.support == support
        assert s.precision == (hits / claimed if claimed else 0.0)
        assert s.recall == (hits / support if support else 0.0)
        both = s.precision + s.recall
        assert s.f1 == pytest.approx(2 * s.precision * s.recall / both if both else 0.0)


@given(label_lists(), st.integers(0, 40))
def test_confused_pairs_and_the_matrix_agree_with_counting_by_hand(drawn, n):
    labels, predicted, classes = drawn
    predictions = predictions_of(labels, predicted, classes)
    wrong = Counter((t, p) for t, p in zip(labels, predicted, strict=True) if t != p)
    expected = sorted(wrong, key=lambda pair: (-wrong[pair], pair))[:n]
    pairs = confused_pairs(predictions, n)
    assert [(pair.true, pair.predicted) for pair in pairs] == expected
    for pair in pairs:
        assert pair.count == wrong[pair.true, pair.predicted] == len(pair.samples)
        assert all((labels[i], predicted[i]) == (pair.true, pair.predicted) for i in pair.samples)
        losses = [predictions.loss[i] for i in pair.samples]
        assert losses == sorted(losses, reverse=True)
    matrix = confusion_matrix(predictions)
    assert all(matrix[t][p] == wrong[t, p] for t, p in wrong)
    assert sum(map(sum, matrix)) == len(labels)
    assert sum(matrix[c][c] for c in range(classes)) == len(labels) - sum(wrong.values())
    worst = top_losses(predictions, n)
    assert len(worst) == min(n, len(labels))
    assert [s.loss for s in worst] == sorted(predictions.loss, reverse=True)[:n]


def write(folder: Path, content: str | dict) -> Path:
    folder.mkdir(exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / "test-predictions.json").write_text(text)
    return folder


def test_a_good_file_is_read_with_its_images_inside_the_folder(tmp_path):
    folder = write(
        tmp_path / "run",
        table(
            [0, 1, 2],
            [0, 2, 2],
            3,
            images={"1": "mistakes/1.png"},
            sources={"1": "/data/b/[red]x.png"},
        ),
    )
    predictions = read_test_predictions(folder)
    assert len(predictions) == 3
    assert predictions.images == {1: folder / "mistakes" / "1.png"}
    worst, next_worst = top_losses(predictions, 2)  # losses 0, 0.7, 0.1
    assert (worst.index, worst.true, worst.predicted, worst.correct) == (1, 1, 2, False)
    assert (worst.image, worst.source) == (folder / "mistakes" / "1.png", "/data/b/[red]x.png")
    assert (next_worst.index, next_worst.image, next_worst.source) == (2, None, None)
    assert read_test_predictions(tmp_path / "nothing here") is None


GOOD = table([0, 1, 2], [0, 2, 2], 3)

# (case, what the file holds, a fragment of the error)
FORGED = [
    ("not JSON", "{not json", "is damaged"),
    ("a list", "[1, 2, 3]", "not a resnet-tui-test-predictions/1 file"),
    ("another format", {**GOOD, "format": "other/1"}, "not a resnet-tui-test-predictions/1"),
    ("lengths differ", {**GOOD, "loss": [0.1, 0.2]}, "differ in length (2, 3)"),
    ("a class out of range", {**GOOD, "labels": [0, 1, 3]}, "labels are not all classes 0 to 2"),
    ("a negative class", {**GOOD, "predicted": [0, -1, 2]}, "predicted are not all classes"),
    ("a class that is a bool", {**GOOD, "labels": [0, True, 2]}, "labels are not all classes"),
    ("a class that is a float", {**GOOD, "labels": [0, 1.0, 2]}, "labels are not all classes"),
    ("NaN", '{"format": "resnet-tui-test-predictions/1", "loss": [NaN]}', "NaN is not a number"),
    ("a probability over 1", {**GOOD, "probability": [0.5, 2, 0.5]}, "from 0 to 1"),
    ("a negative loss", {**GOOD, "loss": [0.1, -0.2, 0.1]}, "losses are not all numbers"),
    ("no classes", {**GOOD, "classes": []}, "classes are not a list of names"),
    ("a class not a name", {**GOOD, "classes": ["a", 2, "c"]}, "classes are not a list"),
    ("no list", {**GOOD, "labels": "0,1,2"}, "it has no list of labels"),
    ("no images", table([], [], 3), "it holds no test images"),
    ("a path out", {**GOOD, "images": {"0": "../../etc/passwd"}}, "not a path inside the run"),
    ("an absolute path", {**GOOD, "images": {"0": "/etc/passwd"}}, "not a path inside the run"),
    ("a drive", {**GOOD, "images": {"0": "C:\\x.png"}}, "not a path inside the run"),
    ("the folder", {**GOOD, "images": {"0": "."}}, "not a path inside the run"),
    ("an image not tested", {**GOOD, "images": {"3": "mistakes/3.png"}}, "image '3' that is not"),
    ("an image key", {**GOOD, "images": {"x": "mistakes/x.png"}}, "that is not in the test"),
    ("a source not text", {**GOOD, "sources": {"0": 7}}, "sources hold something other"),
    ("images a list", {**GOOD, "images": ["mistakes/0.png"]}, "not one text per test image"),
    ("deep", "[" * 100_000 + "]" * 100_000, "is damaged"),
    ("too many classes", {**GOOD, "classes": ["c"] * 2001}, "it claims 2,001 classes"),
]


@pytest.mark.parametrize(("case", "content", "said"), FORGED, ids=[c[0] for c in FORGED])
def test_a_forged_file_is_a_mistakes_error_saying_what_is_wrong(tmp_path, case, content, said):
    folder = write(tmp_path / "run", content)
    with pytest.raises(MistakesError, match="test-predictions.json") as caught:
        read_test_predictions(folder)
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    folder = write(tmp_path / "run", {**GOOD, "images": {"0": "mistakes/0.png"}})
    (folder / "mistakes").symlink_to(tmp_path)
    with pytest.raises(MistakesError, match="leads out of the run's folder"):
        read_test_predictions(folder)


def test_a_claim_of_ten_million_predictions_is_refused(tmp_path):
    labels = "[" + "0," * (10**7 - 1) + "0]"
    text = json.dumps(GOOD).replace('"labels": [0, 1, 2]', f'"labels": {labels}')
    folder = write(tmp_path / "run", text)
    with pytest.raises(MistakesError, match="it claims 10,000,000 labels, more than 1,000,000"):
        read_test_predictions(folder)


def test_a_file_too_large_is_refused_unread(tmp_path):
    folder = write(tmp_path / "run", "")
    os.truncate(folder / "test-predictions.json", MAX_BYTES + 1)  # sparse: takes no disk
    with pytest.raises(MistakesError, match="more than test predictions take"):
        read_test_predictions(folder)


def test_a_folder_a_fifo_or_a_device_for_the_file_is_refused_unread(tmp_path):
    folder = tmp_path / "run"
    (folder / "test-predictions.json").mkdir(parents=True)
    with pytest.raises(MistakesError, match="test-predictions.json is not a file"):
        read_test_predictions(folder)
    (folder / "test-predictions.json").rmdir()
    os.mkfifo(folder / "test-predictions.json")  # no writer: a blocking read would wait
    with pytest.raises(MistakesError, match="is not a file"):
        read_test_predictions(folder)
    (folder / "test-predictions.json").unlink()
    (folder / "test-predictions.json").symlink_to("/dev/zero")
    with pytest.raises(MistakesError, match="is not a file"):
        read_test_predictions(folder)


def test_a_file_that_cannot_be_opened_is_a_mistakes_error(tmp_path):
    folder = write(tmp_path / "run", json.dumps(GOOD))
    (folder / "test-predictions.json").unlink()
    (folder / "test-predictions.json").symlink_to("test-predictions.json")  # a loop
    with pytest.raises(MistakesError, match="cannot read .*test-predictions.json"):
        read_test_predictions(folder)
