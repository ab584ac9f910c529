"""Mixup and CutMix of training batches, as timm's Mixup makes them, and their mixed labels.

A mixed batch is blended, on the device, with a shuffled copy of itself: by mixup (each image
lambda of itself and 1 - lambda of its partner) or by CutMix (a box of the partner pasted in,
lambda corrected to the share of the image left outside the box once the box is clipped to
it). Lambda is drawn once a batch from Beta(alpha, alpha). Only training batches are mixed;
evaluation, tests and the LR finder see the batches as they come.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from engine.contract.spec import RunSpec
from engine.data.batches import FileBatches, TensorBatches

# The mixing's own stream of random numbers, apart from the batches' (order, crops, flips,
# policies), so that turning mixing on leaves those as they were.
MIXING_STREAM = 0x6D6978

Loss = TypeVar("Loss", torch.Tensor, tuple[torch.Tensor, ...])


@dataclass(frozen=True)
class MixedLabels:
    """The labels of a mixed batch: each image is `weight` of the image labelled `first`
    and 1 - weight of its partner, labelled `second`."""

    first: torch.Tensor
    second: torch.Tensor
    weight: float

    def __len__(self) -> int:
        return len(self.first)


Labels = torch.Tensor | MixedLabels


def mixture(labels: Labels, loss: Callable[[torch.Tensor], Loss]) -> Loss:
    """`loss` of a batch's labels; of mixed labels weight·loss(first) + (1 - weight)·
    loss(second), part by part where it gives a tuple. That is the loss of the mixed
    targets for any loss linear in its targets: cross-entropy, with label smoothing too."""
    if not isinstance(labels, MixedLabels):
        return loss(labels)
    first, second = loss(labels.first), loss(labels.second)
    weight = labels.weight
    if isinstance(first, tuple):
        return tuple(weight * a + (1 - weight) * b for a, b in zip(first, second, strict=True))
    return weight * first + (1 - weight) * second


def hits(logits: torch.Tensor, labels: Labels) -> torch.Tensor:
    """How many of a batch's predictions are right. A mixed image counts as right when the
    prediction is the label with the larger weight in it (the first where they are equal),
    so that training accuracy under mixup or CutMix stays near the accuracy on the images'
    main content (and lower than on unmixed images)."""
    if isinstance(labels, MixedLabels):
        labels = labels.first if labels.weight >= 0.5 else labels.second
    return (logits.argmax(1) == labels).sum()


class Mixing:
    """The mixing of one epoch's training batches, its random numbers drawn from the seed
    and the epoch alone, so a resumed run mixes as it would have: the share of batches
    mixed, mixup or CutMix, lambda and the box on the host (no step waits for the device),
    the partners on the device."""

    def __init__(self, spec: RunSpec, epoch: int, device: torch.device) -> None:
        self.mixup, self.cutmix = spec.mixup, spec.cutmix
        self.chance, self.switch = spec.mix_prob, spec.mix_switch_prob
        self.numbers = np.random.default_rng([spec.seed, epoch, MIXING_STREAM])
        self.partners = torch.Generator(device).manual_seed(
            (spec.seed * 100_003 + epoch) ^ (MIXING_STREAM << 32)
        )

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Labels]:
        """The batch mixed, with its mixed labels; or as it came, where it is not mixed."""
        if self.numbers.random() >= self.chance:
            return images, labels
        use_cutmix = self.cutmix > 0 and (self.mixup == 0 or self.numbers.random() < self.switch)
        alpha = self.cutmix if use_cutmix else self.mixup
        weight = float(self.numbers.beta(alpha, alpha))
        partner = torch.randperm(len(labels), generator=self.partners, device=images.device)
        if use_cutmix:
            mixed, weight = self.cut(images, partner, weight)
        else:
            mixed = images * weight + images[partner] * (1 - weight)
        return mixed, MixedLabels(labels, labels[partner], weight)

    def cut(
        self, images: torch.Tensor, partner: torch.Tensor, weight: float
    ) -> tuple[torch.Tensor, float]:
        """CutMix: a box of 1 - `weight` of the image's area, centred anywhere in it and
        clipped to it, pasted from each image's `partner` (an index in the batch); and the
        weight of what is left outside the box."""
        height, width = images.shape[-2:]
        side = np.sqrt(1 - weight)
        box_height, box_width = int(height * side), int(width * side)
        centre_y, centre_x = self.numbers.integers(height), self.numbers.integers(width)
        top, bottom = np.clip([centre_y - box_height // 2, centre_y + box_height // 2], 0, height)
        left, right = np.clip([centre_x - box_width // 2, centre_x + box_width // 2], 0, width)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = images[partner, :, top:bottom, left:right]
        return mixed, 1 - float((bottom - top) * (right - left)) / (height * width)


def mixed_batches(
    batches: TensorBatches | FileBatches, spec: RunSpec, epoch: int
) -> Iterator[tuple[torch.Tensor, Labels]]:
    """The epoch's training batches, mixed as the spec says (mixup, CutMix, or as they come
    where both are off)."""
    if spec.mixup == 0 and spec.cutmix == 0:
        yield from batches.epoch(epoch)
        return
    mixing = Mixing(spec, epoch, batches.device)
    for images, labels in batches.epoch(epoch):
        yield mixing(images, labels)
