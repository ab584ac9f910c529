"""A dataset's splits (in memory, image files, shapes not yet drawn) and the subsets of them."""

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from engine.data.shapes import ShapeDraws


@dataclass
class TensorSplit:
    """Images held in memory: uint8 (N, C, H, W) and int64 labels (N,); `files`, for images
    decoded from an image folder, the file each came from."""

    images: torch.Tensor
    labels: torch.Tensor
    files: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "TensorSplit":
        files = None if self.files is None else [self.files[i] for i in index.tolist()]
        return TensorSplit(self.images[index], self.labels[index], files)


@dataclass
class FileSplit:
    """Images as files on disk, decoded when a batch needs them."""

    files: list[Path]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "FileSplit":
        return FileSplit([self.files[i] for i in index.tolist()], self.labels[index])


@dataclass
class ShapesSplit:
    """Built-in shapes not yet drawn into pixels: the subsets pick from the draws, and only
    the images a run keeps are drawn (with `--limit 256`, 256 training images of 9,000)."""

    draws: ShapeDraws
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "ShapesSplit":
        return ShapesSplit(self.draws.subset(index), self.labels[index])

    def in_memory(self) -> TensorSplit:
        return TensorSplit(self.draws.pixels(), self.labels)


Split = TensorSplit | FileSplit
# A split being cut down to what a run keeps (shapes not drawn yet included).
AnySplit = TypeVar("AnySplit", TensorSplit, FileSplit, ShapesSplit)


def keep_classes(split: AnySplit, chosen: list[int]) -> AnySplit:
    """Keep images of the `chosen` class indices, relabelled 0..k-1 in that order."""
    relabel = torch.full((int(split.labels.max()) + 1 if len(split) else 1,), -1)
    for new, old in enumerate(chosen):
        if old < len(relabel):
            relabel[old] = new
    kept = relabel[split.labels] >= 0
    result = split.subset(kept.nonzero().flatten())
    result.labels = relabel[result.labels]
    return result


def split_off(
    split: AnySplit, fraction: float, generator: torch.Generator
) -> tuple[AnySplit, AnySplit]:
    """The split less a random `fraction` of it, and that fraction (both in their order)."""
    order = torch.randperm(len(split), generator=generator)
    held = int(round(len(split) * fraction))
    return split.subset(order[held:].sort().values), split.subset(order[:held].sort().values)


def fold_split(
    split: AnySplit, folds: int, fold: int, generator: torch.Generator
) -> tuple[AnySplit, AnySplit]:
    """The training data less fold `fold` of `folds`, and that fold (for validation)."""
    parts = torch.randperm(len(split), generator=generator).tensor_split(folds)
    rest = torch.cat([part for index, part in enumerate(parts) if index != fold])
    return split.subset(rest.sort().values), split.subset(parts[fold].sort().values)


def few_shot(split: AnySplit, per_class: int, classes: int, generator: torch.Generator) -> AnySplit:
    """At most `per_class` random images of each of the `classes` labels."""
    order = torch.randperm(len(split), generator=generator)
    chosen = []
    for label in range(classes):
        of_class = order[split.labels[order] == label]
        chosen.append(of_class[:per_class])
    return split.subset(torch.cat(chosen).sort().values)
