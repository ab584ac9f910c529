"""A trained run's network ready to use, and its inputs' preprocessing as the run evaluated.

What predict and export share. `Preprocessing` turns an image file into the model's input
exactly as the run's evaluation did, and is written into an exported model's JSON sidecar
(`sidecar`), so that the file can be used without this project.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from engine.contract.errors import RunError
from engine.contract.spec import RunSpec, dataset_kind
from engine.data.image_files import evaluation_transform
from engine.transfer.weights import load_run_model

# The sidecar's `format`: a reader checks it before trusting the fields below it.
SIDECAR_FORMAT = "resnet-tui-model/1"

# How an image becomes an input: `whole` resizes the whole image to the size (the batched
# in-memory datasets: MNIST, CIFAR, shapes); `shorter-side-crop` resizes the shorter side to
# 1.14 times the size and crops the centre (image folders).
RESIZE_WHOLE = "whole"
RESIZE_CROP = "shorter-side-crop"


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes the model's input: colour mode, size, resize, normalisation.

    Pixels are scaled to 0-1, then normalised per channel: (x - mean) / std.
    """

    channels: int
    size: int
    resize: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def mode(self) -> str:
        """PIL's colour mode of the input: "L" for one channel, "RGB" for three."""
        return "L" if self.channels == 1 else "RGB"

    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """A function from a decoded image (in `mode`) to its input tensor (C, H, W)."""
        if self.resize == RESIZE_CROP:
            return evaluation_transform(self.size, self.mean, self.std)
        mean = torch.tensor(self.mean).view(-1, 1, 1) * 255
        std = torch.tensor(self.std).view(-1, 1, 1) * 255
        size = self.size

        def whole(image: Image.Image) -> torch.Tensor:
            # as TensorBatches evaluates: uint8 pixels, resized as floats, then normalised
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
            pixels = pixels.view(image.height, image.width, -1).permute(2, 0, 1).float()
            if pixels.shape[-2:] != (size, size):
                pixels = F.interpolate(
                    pixels[None], size=(size, size), mode="bilinear", antialias=True
                )[0]
            return (pixels - mean) / std

        return whole

    def as_json(self) -> dict[str, Any]:
        """The fields a sidecar keeps under `input`."""
        return {
            "channels": self.channels,
            "colour_mode": self.mode,
            "size": self.size,
            "resize": self.resize,
            "resize_shorter_side_to": int(self.size * 1.14) if self.resize == RESIZE_CROP else None,
            "scale": "pixels / 255",
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> "Preprocessing":
        """The preprocessing a sidecar's `input` describes; ValueError where it cannot."""
        try:
            preprocessing = cls(
                channels=_whole_number(fields["channels"], "channels"),
                size=_whole_number(fields["size"], "size"),
                resize=str(fields["resize"]),
                mean=tuple(_finite(value, "mean") for value in fields["mean"]),
                std=tuple(_finite(value, "std") for value in fields["std"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"its input description is incomplete ({error})") from None
        if preprocessing.channels not in (1, 3) or preprocessing.resize not in (
            RESIZE_WHOLE,
            RESIZE_CROP,
        ):
            raise ValueError("its input description names no channels or resize this reads")
        if not 1 <= preprocessing.size <= 4096 or not (
            len(preprocessing.mean) == len(preprocessing.std) == preprocessing.channels
        ):
            raise ValueError("its input size, mean or std do not fit its channels")
        if not all(value > 0 for value in preprocessing.std):
            raise ValueError("its std has a value that is not positive")
        return preprocessing


def _whole_number(value: Any, name: str) -> int:
    """A JSON number that is whole (16 or 16.0); ValueError for 28.7, true or "16"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"its {name} {json.dumps(value)[:40]} is not a number")
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"its {name} {value} is not a whole number")
    return int(value)


def _finite(value: Any, name: str) -> float:
    """A JSON number that is finite; ValueError for NaN, Infinity, true or "0.5"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"its {name} has {json.dumps(value)[:40]}, not a number")
    if not math.isfinite(value):
        raise ValueError(f"its {name} has {json.dumps(value)}, not a finite number")
    return float(value)


@dataclass
class TrainedModel:
    """A run's network (on the CPU, in eval mode), its classes and preprocessing."""

    model: nn.Module
    arch: str
    classes: list[str]
    preprocessing: Preprocessing
    run_id: int | None
    spec: RunSpec  # the run's own
    record: dict[str, Any]  # its checkpoint's record (epoch, best val acc, ...), no weights

    def sidecar(self, model_file: str, model_format: str) -> dict[str, Any]:
        """What an exported model's JSON sidecar says: enough to use the file on its own."""
        return {
            "format": SIDECAR_FORMAT,
            "model_file": model_file,
            "model_format": model_format,
            "run": self.run_id,
            "arch": self.arch,
            "classes": self.classes,
            "input": self.preprocessing.as_json(),
            "input_name": "images",
            "output_name": "logits",
            "output": "logits; softmax gives the probabilities of `classes`, in order",
        }


def load_trained_model(checkpoint: Path, run_id: int | None = None) -> TrainedModel:
    """The network of one of our checkpoints, with the preprocessing its run evaluated with.

    A RunError (bad_input) for a file that is not there or not a resnet-tui checkpoint."""
    if not checkpoint.is_file():
        raise RunError("bad_input", f"{checkpoint} is not there", "check the path")
    what = f"run {run_id}" if run_id is not None else str(checkpoint)
    loaded = load_run_model(checkpoint, what)
    folder = dataset_kind(loaded.spec.dataset) == "imagefolder"
    preprocessing = Preprocessing(
        channels=loaded.channels,
        size=loaded.image_size,
        resize=RESIZE_CROP if folder else RESIZE_WHOLE,
        mean=tuple(loaded.mean),
        std=tuple(loaded.std),
    )
    return TrainedModel(
        model=loaded.model.eval(),
        arch=loaded.arch,
        classes=loaded.classes,
        preprocessing=preprocessing,
        run_id=run_id,
        spec=loaded.spec,
        record=loaded.record,
    )


def sidecar_path(model_file: Path) -> Path:
    """Where an exported model's sidecar lies: beside it, its name with `.json` added."""
    return model_file.with_name(model_file.name + ".json")


def read_sidecar(model_file: Path) -> tuple[list[str], Preprocessing, dict[str, Any]]:
    """An exported model's classes and preprocessing, from its sidecar; RunError (bad_input)
    where the sidecar is missing, not ours, or damaged."""
    path = sidecar_path(model_file)
    hint = f"export the run again (resnet-tui export RUN --out {model_file})"
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(
            "bad_input", f"{model_file} has no sidecar {path.name} beside it", hint
        ) from None
    except (OSError, ValueError) as error:
        raise RunError("bad_input", f"cannot read {path} ({error})", hint) from None
    if not isinstance(fields, dict) or fields.get("format") != SIDECAR_FORMAT:
        raise RunError("bad_input", f"{path} is not a resnet-tui model sidecar", hint)
    classes = fields.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise RunError("bad_input", f"{path} names no classes", hint)
    try:
        preprocessing = Preprocessing.from_json(fields.get("input") or {})
    except ValueError as error:
        raise RunError("bad_input", f"{path}: {error}", hint) from None
    return classes, preprocessing, fields
