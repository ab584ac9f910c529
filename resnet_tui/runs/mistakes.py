"""A finished run's mistakes: its test predictions read back, the worst ones, the confusions.

The engine writes RUN_DIR/test-predictions.json at the end of a run (engine/use/mistakes.py):
for each test image, in the test split's order, its true and predicted class, the
probabilities of both, its loss, and for some of them a thumbnail in RUN_DIR/mistakes/ and
(image folders) the original file. `read_test_predictions` reads and checks it; a damaged or
forged file is a `MistakesError` saying what is wrong. The other functions summarise it:
`top_losses`, `confused_pairs`, `per_class` and `confusion_matrix`. Pure Python: the CLI
and the app both use it.
"""

import json
import math
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

PREDICTIONS_FILE = "test-predictions.json"
# The format the engine writes (engine/use/mistakes.py PREDICTIONS_FORMAT).
PREDICTIONS_FORMAT = "resnet-tui-test-predictions/1"
# Beyond these a file is forged or damaged, not a test set: a larger one would take the
# memory of the computer that reads it.
MAX_SAMPLES = 1_000_000
MAX_CLASSES = 2_000
MAX_BYTES = 256 * 2**20
LONGEST_TEXT = 4096  # characters of a class name or a path

_PER_SAMPLE = ("labels", "predicted", "probability", "true_probability", "loss")


class MistakesError(ValueError):
    """A test predictions file that cannot be trusted; the message says what is wrong."""


@dataclass(frozen=True)
class TestPredictions:
    """Each test image's prediction, in the test split's order (an image is its index)."""

    folder: Path  # the run's folder
    classes: tuple[str, ...]
    labels: tuple[int, ...]  # true classes
    predicted: tuple[int, ...]
    probability: tuple[float, ...]  # of the predicted class
    true_probability: tuple[float, ...]
    loss: tuple[float, ...]  # cross-entropy
    images: dict[int, Path] = field(default_factory=dict)  # thumbnails, inside `folder`
    sources: dict[int, str] = field(default_factory=dict)  # original files (image folders)

    def __len__(self) -> int:
        return len(self.labels)

    def pairs(self) -> Iterator[tuple[int, int]]:
        """Each test image's (true class, predicted class), in order."""
        return zip(self.labels, self.predicted, strict=True)


@dataclass(frozen=True)
class Sample:
    """One test image's prediction."""

    index: int
    true: int
    predicted: int
    probability: float
    true_probability: float
    loss: float
    image: Path | None  # its thumbnail, where one was kept
    source: str | None  # its original file, for image folders

    @property
    def correct(self) -> bool:
        return self.true == self.predicted


@dataclass(frozen=True)
class ConfusedPair:
    """A true class taken for another `count` times: those images, highest loss first."""

    true: int
    predicted: int
    count: int
    samples: tuple[int, ...]


@dataclass(frozen=True)
class ClassScores:
    """A class's precision, recall and F1 on the test set, and its images there (support).
    A class never predicted has precision 0, one with no images recall 0."""

    index: int
    name: str
    precision: float
    recall: float
    f1: float
    support: int


def read_test_predictions(run_folder: Path | str) -> TestPredictions | None:
    """The run's test predictions; None where the run has none (the file is missing).
    Raises MistakesError for a file that cannot be read or is not what the engine writes."""
    folder = Path(run_folder)
    path = folder / PREDICTIONS_FILE
    data = _file_bytes(path)
    if data is None:
        return None
    try:
        values = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise MistakesError(
            f"{path} is damaged ({_not_json(error)}); train the run again"
        ) from None
    try:
        return _checked(values, folder)
    except MistakesError as error:
        raise MistakesError(f"{path} is damaged: {error}; train the run again") from None


def _file_bytes(path: Path) -> bytes | None:
    """What the file at `path` holds; None where there is none. A FIFO, a device or a
    file too large is refused unread (opened without blocking: a FIFO has no writer)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise MistakesError(f"cannot read {path}: {error.strerror or error}") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_BYTES:
        os.close(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise MistakesError(f"{path} is not a file; train the run again")
        raise MistakesError(
            f"{path} holds {status.st_size:,} bytes, more than test predictions take; "
            "it is damaged: train the run again"
        )
    with os.fdopen(descriptor, "rb") as file:
        try:
            return file.read(MAX_BYTES + 1)
        except OSError as error:
            raise MistakesError(f"cannot read {path}: {error.strerror or error}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _not_json(error: Exception) -> str:
    """Why text is not the JSON of a file, in a few words."""
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON: {error.msg} at character {error.pos:,}"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(error, RecursionError):
        return "nested too deep"
    return str(error)


def _checked(values: Any, folder: Path) -> TestPredictions:
    if not isinstance(values, dict) or values.get("format") != PREDICTIONS_FORMAT:
        raise MistakesError(f"it is not a {PREDICTIONS_FORMAT} file")
    classes = _list(values, "classes", MAX_CLASSES)
    if not classes or not all(isinstance(n, str) and len(n) <= LONGEST_TEXT for n in classes):
        raise MistakesError("its classes are not a list of names")
    columns = {name: _list(values, name, MAX_SAMPLES) for name in _PER_SAMPLE}
    lengths = sorted({len(column) for column in columns.values()})
    if len(lengths) > 1:
        raise MistakesError(f"its lists differ in length ({', '.join(map(str, lengths))})")
    if lengths == [0]:
        raise MistakesError("it holds no test images")
    for name in ("labels", "predicted"):
        if not all(_is_int(v) and 0 <= v < len(classes) for v in columns[name]):
            raise MistakesError(f"its {name} are not all classes 0 to {len(classes) - 1}")
    for name in ("probability", "true_probability"):
        if not all(_is_number(v) and 0 <= v <= 1 for v in columns[name]):
            raise MistakesError(f"its {name} are not all numbers from 0 to 1")
    if not all(_is_number(v) and v >= 0 for v in columns["loss"]):
        raise MistakesError("its losses are not all numbers of 0 or more")
    samples = len(columns["labels"])
    images = {i: _inside(folder, name) for i, name in _by_sample(values, "images", samples)}
    return TestPredictions(
        folder=folder,
        classes=tuple(classes),
        **{name: tuple(column) for name, column in columns.items()},
        images=images,
        sources=dict(_by_sample(values, "sources", samples)),
    )


def _list(values: dict[str, Any], name: str, longest: int) -> list[Any]:
    found = values.get(name)
    if not isinstance(found, list):
        raise MistakesError(f"it has no list of {name}")
    if len(found) > longest:
        raise MistakesError(f"it claims {len(found):,} {name}, more than {longest:,}")
    return found


def _by_sample(values: dict[str, Any], name: str, samples: int) -> list[tuple[int, str]]:
    """The (index, text) pairs of an optional object keyed by sample index."""
    found = values.get(name, {})
    if not isinstance(found, dict) or len(found) > samples:
        raise MistakesError(f"its {name} are not one text per test image")
    pairs = []
    for key, text in found.items():
        if not (key.isdecimal() and key.isascii() and int(key) < samples):
            raise MistakesError(f"its {name} name an image {key[:20]!r} that is not in the test")
        if not isinstance(text, str) or not text or len(text) > LONGEST_TEXT:
            raise MistakesError(f"its {name} hold something other than a path")
        pairs.append((int(key), text))
    return pairs


def _inside(folder: Path, name: str) -> Path:
    """`folder`/`name` for a relative path that stays in the folder (symbolic links
    followed); a MistakesError for one that leads out of it."""
    relative = PurePosixPath(name)
    leaves = relative.is_absolute() or PureWindowsPath(name).is_absolute() or ".." in relative.parts
    leaves |= not relative.name  # "." or "" names the folder itself
    path = folder / relative
    if leaves or "\\" in name or "\0" in name:
        raise MistakesError(f"its image {name[:60]!r} is not a path inside the run's folder")
    try:
        real = path.resolve()
        outside = not real.is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a loop of links
        outside = True
    if outside:
        raise MistakesError(f"its image {name[:60]!r} leads out of the run's folder")
    return path


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def sample(predictions: TestPredictions, index: int) -> Sample:
    """Test image `index`'s prediction."""
    p = predictions
    return Sample(
        index=index,
        true=p.labels[index],
        predicted=p.predicted[index],
        probability=p.probability[index],
        true_probability=p.true_probability[index],
        loss=p.loss[index],
        image=p.images.get(index),
        source=p.sources.get(index),
    )


def _by_loss(predictions: TestPredictions, indices: range | list[int]) -> list[int]:
    """`indices` highest loss first (equal losses in the test's order)."""
    return sorted(indices, key=lambda i: (-predictions.loss[i], i))


def top_losses(predictions: TestPredictions, n: int) -> list[Sample]:
    """The `n` test images of the highest loss, highest first: those the model was surest
    of a wrong class, or least sure of the right one."""
    order = _by_loss(predictions, range(len(predictions)))
    return [sample(predictions, i) for i in order[: max(n, 0)]]


def confused_pairs(predictions: TestPredictions, n: int) -> list[ConfusedPair]:
    """The `n` (true, predicted) pairs of different classes most often confused, most first
    (ties in class order), each with its images, highest loss first."""
    pairs: dict[tuple[int, int], list[int]] = {}
    for index, (true, predicted) in enumerate(predictions.pairs()):
        if true != predicted:
            pairs.setdefault((true, predicted), []).append(index)
    chosen = sorted(pairs, key=lambda pair: (-len(pairs[pair]), pair))[: max(n, 0)]
    return [
        ConfusedPair(
            true,
            predicted,
            len(pairs[true, predicted]),
            tuple(_by_loss(predictions, pairs[true, predicted])),
        )
        for true, predicted in chosen
    ]


def per_class(predictions: TestPredictions) -> list[ClassScores]:
    """Each class's precision, recall, F1 and support, in class order; their F1s' mean is the
    test report's macro-F1."""
    correct = Counter(t for t, p in predictions.pairs() if t == p)
    support, guessed = Counter(predictions.labels), Counter(predictions.predicted)
    scores = []
    for index, name in enumerate(predictions.classes):
        hits, actual, claimed = correct[index], support[index], guessed[index]
        scores.append(
            ClassScores(
                index=index,
                name=name,
                precision=hits / claimed if claimed else 0.0,
                recall=hits / actual if actual else 0.0,
                f1=2 * hits / (actual + claimed) if actual + claimed else 0.0,
                support=actual,
            )
        )
    return scores


def confusion_matrix(predictions: TestPredictions) -> list[list[int]]:
    """Counts of (true class, predicted class): a row per true class, a column per
    predicted one; it equals the test report's `confusion`."""
    size = len(predictions.classes)
    matrix = [[0] * size for _ in range(size)]
    for true, predicted in predictions.pairs():
        matrix[true][predicted] += 1
    return matrix
