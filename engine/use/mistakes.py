"""A finished run's test predictions, one per test image, and pictures of its worst mistakes.

Written at the end of a run, after the test of its best checkpoint: RUN_DIR/test-predictions.json
(the format `resnet_tui/runs/mistakes.py` reads) and PNG thumbnails in RUN_DIR/mistakes/ of
the highest-loss images and of a few images of each most confused pair of classes. What
cannot be written (a full disk) is a warning in the event log, never the run's failure.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.nn import functional as F

from engine.contract import events as ev
from engine.contract.events import EventWriter
from engine.data.datasets import DatasetBundle
from engine.data.splits import Split

PREDICTIONS_FILE = "test-predictions.json"
# The file's `format`: a reader checks it before trusting the fields below it.
PREDICTIONS_FORMAT = "resnet-tui-test-predictions/1"
THUMBNAILS = "mistakes"
TOP_LOSSES = 64  # thumbnails of the images the model was most wrong about
CONFUSED_PAIRS = 10  # and of the most confused (true, predicted) pairs of classes,
PER_PAIR = 8  # this many each, the highest losses first
LONGEST_SIDE = 256  # an image-folder thumbnail is at most this many pixels on each side
DIGITS = 6  # significant digits of the probabilities and losses kept


def keep_test_predictions(
    run_dir: Path,
    logits: torch.Tensor,
    labels: torch.Tensor,
    bundle: DatasetBundle,
    writer: EventWriter,
) -> dict[str, str]:
    """Write the test split's predictions (its `logits` and `labels`, in the split's order)
    and the thumbnails of its mistakes into `run_dir`; returns the test report's entry that
    names the file, or nothing where it could not be written (a `log` warning says why)."""
    table = prediction_table(logits, labels, bundle.classes)
    images: dict[str, str] = {}
    try:
        images = write_thumbnails(run_dir / THUMBNAILS, bundle.test, pictured(table))
    except OSError as error:
        _warn(writer, f"could not write the thumbnails of the test mistakes: {_reason(error)}")
    if bundle.test.files is not None:
        table["sources"] = {str(i): str(path) for i, path in enumerate(bundle.test.files)}
    table["images"] = images
    path = run_dir / PREDICTIONS_FILE
    try:
        text = json.dumps(table, allow_nan=False, separators=(",", ":"))
    except ValueError:
        _warn(writer, "the test predictions are not finite numbers; they are not kept")
        return {}
    try:
        write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    except OSError as error:
        _warn(writer, f"could not write {PREDICTIONS_FILE}: {_reason(error)}")
        return {}
    return {"predictions": PREDICTIONS_FILE}


def prediction_table(
    logits: torch.Tensor, labels: torch.Tensor, classes: list[str]
) -> dict[str, Any]:
    """The file's fields but its pictures: each test image's true class, predicted class,
    the probabilities of both and its cross-entropy loss."""
    logits, labels = logits.float().cpu(), labels.cpu()
    probabilities = logits.softmax(1)
    probability, predicted = probabilities.max(1)
    return {
        "format": PREDICTIONS_FORMAT,
        "classes": list(classes),
        "labels": labels.tolist(),
        "predicted": predicted.tolist(),
        "probability": _rounded(probability),
        "true_probability": _rounded(probabilities.gather(1, labels[:, None]).squeeze(1)),
        "loss": _rounded(F.cross_entropy(logits, labels, reduction="none")),
    }


def _rounded(values: torch.Tensor) -> list[float]:
    return [float(f"{value:.{DIGITS}g}") for value in values.tolist()]


def pictured(table: dict[str, Any]) -> list[int]:
    """The images to picture: the TOP_LOSSES highest losses, then up to PER_PAIR of each of
    the CONFUSED_PAIRS pairs of classes most often confused (highest losses first)."""
    losses, labels, predicted = table["loss"], table["labels"], table["predicted"]
    by_loss = sorted(range(len(losses)), key=lambda i: (-losses[i], i))
    pairs: dict[tuple[int, int], list[int]] = {}
    for index in by_loss:
        if labels[index] != predicted[index]:
            pairs.setdefault((labels[index], predicted[index]), []).append(index)
    confused = sorted(pairs, key=lambda pair: (-len(pairs[pair]), pair))[:CONFUSED_PAIRS]
    chosen = by_loss[:TOP_LOSSES] + [i for pair in confused for i in pairs[pair][:PER_PAIR]]
    return list(dict.fromkeys(chosen))


def write_thumbnails(folder: Path, split: Split, indices: list[int]) -> dict[str, str]:
    """Write the images `indices` of the split as PNGs in `folder`: in-memory images as they
    are, image files shrunk to LONGEST_SIDE; returns each one's path in the run folder. An
    image file that can no longer be read is left out."""
    folder.mkdir(exist_ok=True)
    written = {}
    for index in indices:
        picture = _picture(split, index)
        if picture is None:
            continue
        path = folder / f"{index}.png"
        write_atomically(path, lambda temporary, image=picture: image.save(temporary, "PNG"))
        written[str(index)] = f"{folder.name}/{path.name}"
    return written


def _picture(split: Split, index: int) -> Image.Image | None:
    """The test image `index` as its thumbnail shows it: from its file where it has one (an
    image folder's, decoded in memory or not), else its pixels."""
    if split.files is None:
        pixels = split.images[index]  # uint8 (C, H, W)
        channels, height, width = pixels.shape
        data = bytes(pixels.permute(1, 2, 0).reshape(-1).tolist())
        return Image.frombytes("L" if channels == 1 else "RGB", (width, height), data)
    try:
        with Image.open(split.files[index]) as image:
            image.draft("RGB", (LONGEST_SIDE, LONGEST_SIDE))
            picture = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    picture.thumbnail((LONGEST_SIDE, LONGEST_SIDE))
    return picture


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Have `write` write a temporary file beside `path`, then rename it into place: a reader
    sees the whole file or none, and a failed write leaves nothing behind."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _warn(writer: EventWriter, message: str) -> None:
    writer.emit(ev.LOG, level="warning", message=f"{message}; the run's results are kept")
