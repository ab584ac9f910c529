"""Batches for training and evaluation: in-memory splits on the device, image files by workers."""

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from PIL import Image
from torch.nn import functional as F

from engine.contract.spec import RunSpec
from engine.data.augment_policies import AugmentPolicy
from engine.data.datasets import DatasetBundle
from engine.data.image_files import evaluation_framing, evaluation_transform, read_image
from engine.data.splits import FileSplit, Split, TensorSplit


class TensorBatches:
    """Batches of an in-memory split, already on the device, augmented a batch at a time.

    Training batches of natural images get a random crop (padding of 1/8 of the side) and a
    horizontal flip; shapes, whose positions are random already, only the flip; digits
    nothing. All are resized to `image_size` and normalised. A training `policy` then
    applies RandAugment or TrivialAugmentWide to each image at that size (before
    normalising) and random erasing (after), all drawn from the epoch's generator.

    With a `shard` (rank, ranks) of a run on several processes, training batches are this
    rank's share of each global batch of `batch_size` (every rank draws the same order; a last
    global batch that does not split evenly loses its remainder, at most ranks - 1 images),
    and evaluation covers this rank's contiguous part of the split.
    """

    def __init__(
        self,
        split: TensorSplit,
        bundle: DatasetBundle,
        batch_size: int,
        device: torch.device,
        train: bool,
        augment: bool,
        seed: int,
        shard: tuple[int, int] = (0, 1),
        policy: AugmentPolicy | None = None,
    ) -> None:
        self.rank, self.ranks = shard
        if not train and self.ranks > 1:
            part = torch.arange(len(split.labels)).tensor_split(self.ranks)[self.rank]
            split = split.subset(part)
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.train = train
        self.augment = augment and train
        self.crop = bundle.natural_images
        self.flip = bundle.natural_images or bundle.name.startswith("shapes")
        self.size = bundle.image_size
        self.mean = torch.tensor(bundle.mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(bundle.std, device=device).view(1, -1, 1, 1) * 255
        self.seed = seed
        self.device = device
        self.policy = policy if train else None

    def __len__(self) -> int:
        count = len(self.labels)
        if self.train and self.ranks > 1 and count % self.batch_size < self.ranks:
            return count // self.batch_size
        return math.ceil(count / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.labels)
        # Random numbers come from a generator on the device, so that no step waits for a
        # copy from the host (a copy from pageable memory would sync with the GPU each step).
        generator = torch.Generator(self.device).manual_seed(self.seed * 100_003 + epoch)
        if self.train:
            order = torch.randperm(count, generator=generator, device=self.device)
        else:
            order = torch.arange(count, device=self.device)
        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            if self.train and self.ranks > 1:
                even = len(index) - len(index) % self.ranks
                if even == 0:
                    break
                index = index[:even].view(self.ranks, -1)[self.rank]
            images = self.images[index]
            if self.augment:
                images = self._augment(images, generator)
            images = images.float()
            if images.shape[-1] != self.size or images.shape[-2] != self.size:
                images = F.interpolate(
                    images, size=(self.size, self.size), mode="bilinear", antialias=True
                )
            if self.policy is not None:
                images = self.policy.augment(images, generator)
            images = (images - self.mean) / self.std
            if self.policy is not None:
                images = self.policy.erase(images, generator)
            yield images, self.labels[index]

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.crop:
            images = self._crop(images, generator)
        if self.flip:
            flip = torch.rand(len(images), generator=generator, device=self.device) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
        return images

    def _crop(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        count, _, height, width = images.shape
        pad = max(1, height // 8)
        padded = F.pad(images, (pad, pad, pad, pad))
        shape = (count, 1, 1)
        dy = torch.randint(0, 2 * pad + 1, shape, generator=generator, device=self.device)
        dx = torch.randint(0, 2 * pad + 1, shape, generator=generator, device=self.device)
        rows = (dy + torch.arange(height, device=self.device).view(1, -1, 1)).expand(-1, -1, width)
        cols = (dx + torch.arange(width, device=self.device).view(1, 1, -1)).expand(-1, height, -1)
        batch = torch.arange(count, device=self.device).view(-1, 1, 1)
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


class ImageFileDataset(torch.utils.data.Dataset):
    """Decodes image files one at a time, for DataLoader workers."""

    def __init__(self, split: FileSplit, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        picture = read_image(self.split.files[index], "RGB")
        return self.transform(picture), int(self.split.labels[index])


class FileBatches:
    """Batches of an image-folder split, decoded by worker processes into pinned memory."""

    def __init__(
        self,
        split: FileSplit,
        bundle: DatasetBundle,
        batch_size: int,
        device: torch.device,
        train: bool,
        augment: bool,
        workers: int,
        seed: int,
        shard: tuple[int, int] = (0, 1),
        policy: AugmentPolicy | None = None,
    ) -> None:
        """With a `shard` (rank, ranks), training batches of `batch_size` / ranks come from
        this rank's part of each epoch's order (DistributedSampler), and evaluation reads this
        rank's contiguous part of the split. A training `policy` adds torchvision's
        RandAugment or TrivialAugmentWide and random erasing to each image."""
        from torchvision import transforms  # loaded only where used: see engine/__init__.py

        size = bundle.image_size
        if train and (augment or policy is not None):
            steps: list[Any] = evaluation_framing(size)
            if augment:
                steps = [
                    transforms.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
                    transforms.RandomHorizontalFlip(),
                ]
            picture, tensor = policy.file_transforms() if policy is not None else ([], [])
            normalise = transforms.Normalize(bundle.mean, bundle.std)
            steps += [*picture, transforms.ToTensor(), normalise, *tensor]
            transform = transforms.Compose(steps)
        else:
            transform = evaluation_transform(size, bundle.mean, bundle.std)
        self.seed = seed
        self.generator = torch.Generator()
        rank, ranks = shard
        dataset: torch.utils.data.Dataset = ImageFileDataset(split, transform)
        self.sampler: torch.utils.data.DistributedSampler | None = None
        if ranks > 1 and train:
            self.sampler = torch.utils.data.DistributedSampler(
                dataset, num_replicas=ranks, rank=rank, shuffle=True, seed=seed
            )
            batch_size //= ranks
        elif ranks > 1:
            part = torch.arange(len(split)).tensor_split(ranks)[rank]
            dataset = torch.utils.data.Subset(dataset, part.tolist())
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train and self.sampler is None,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            generator=self.generator,
        )
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches; its order and the workers' seeds depend on the seed and the
        epoch alone, so a resumed run sees the batches it would have seen."""
        self.generator.manual_seed(self.seed * 100_003 + epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        for images, labels in self.loader:
            yield (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )


def make_batches(
    split: Split,
    bundle: DatasetBundle,
    batch_size: int,
    device: torch.device,
    train: bool,
    spec: RunSpec,
    shard: tuple[int, int] = (0, 1),
) -> TensorBatches | FileBatches:
    """Batches of `split` for training (shuffled, augmented) or evaluation (in order); with
    a `shard` (rank, ranks), this rank's part of them. Training batches go through the
    spec's augmentation policy and random erasing, whether or not crop and flip are on."""
    policy = AugmentPolicy.for_spec(spec) if train else None
    if isinstance(split, TensorSplit):
        return TensorBatches(
            split, bundle, batch_size, device, train, spec.augment, spec.seed, shard, policy
        )
    workers = spec.workers if spec.workers is not None else min(4, torch.get_num_threads())
    return FileBatches(
        split, bundle, batch_size, device, train, spec.augment, workers, spec.seed, shard, policy
    )
