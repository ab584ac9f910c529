"""Datasets and batches: built-in shapes, torchvision datasets and image folders.

Small datasets (shapes, MNIST-like, CIFAR) are held as one uint8 tensor on the training
device and augmented a whole batch at a time; image folders are decoded per sample by
DataLoader worker processes.
"""

import gzip
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image, UnidentifiedImageError
from torch.nn import functional as F

from engine.contract import catalog, locate
from engine.contract.errors import RunError, UnreadableImage
from engine.contract.spec import RunSpec, dataset_kind
from engine.data.shapes import ShapeDraws, draw_shapes

SHAPES_SEEDS = {"shapes": (1, 2), "shapes-shift": (11, 12)}
# An image folder without test/ gives up the same test images whatever the run's seed, so
# the test metrics of runs with different seeds are comparable (as for the other datasets).
TEST_HOLD_OUT_SEED = 0
# Likewise every run holds out the same validation images whatever its seed, so runs with
# other seeds compare on validation too, and an ensemble or soup of them is judged on images
# none of its members trained on. The run's seed draws its subsets (few-shot, --limit).
VAL_HOLD_OUT_SEED = 0


@dataclass
class TensorSplit:
    """Images held in memory: uint8 (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.images[index], self.labels[index])


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


@dataclass
class DatasetBundle:
    """A dataset ready for training: its splits and what a model needs to know of it."""

    name: str
    classes: list[str]
    channels: int
    image_size: int
    natural_images: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split
    val: Split
    test: Split
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def load_dataset(spec: RunSpec) -> DatasetBundle:
    """Load the spec's dataset with its class subset, few-shot subset, limit and val split."""
    kind = dataset_kind(spec.dataset)
    info = catalog.DATASETS[kind]
    locate.check_dataset(spec)
    notes: list[str] = []
    if kind in SHAPES_SEEDS:
        train_seed, test_seed = SHAPES_SEEDS[kind]
        shifted = kind == "shapes-shift"
        train_draws = draw_shapes(info.train_size, train_seed, shifted)
        test_draws = draw_shapes(info.test_size, test_seed, shifted)
        train = ShapesSplit(train_draws, train_draws.kinds)
        test = ShapesSplit(test_draws, test_draws.kinds)
        val = None
        classes = list(info.classes)
    elif kind in ("mnist", "fashion-mnist"):
        train, test = _load_idx_dataset(spec)
        val = None
        classes = list(info.classes)
    elif kind in ("cifar10", "cifar100"):
        train, test, classes = _load_cifar(spec)
        val = None
    else:
        train, val, test, classes, notes = _load_image_folder(spec)

    generator = torch.Generator().manual_seed(spec.seed)
    if spec.classes:
        chosen = [classes.index(name) for name in spec.classes]
        train = _keep_classes(train, chosen)
        test = _keep_classes(test, chosen)
        val = _keep_classes(val, chosen) if val is not None else None
        classes = list(spec.classes)
    if spec.fold is not None:
        # Cross-validation: the training data's folds are drawn the same for every fold
        # and seed, so K runs of one --folds K hold out K disjoint parts that cover it.
        held_out = torch.Generator().manual_seed(VAL_HOLD_OUT_SEED)
        torch.randperm(len(train), generator=generator)
        train, val = _fold_split(train, spec.folds, spec.fold, held_out)
    elif val is None:
        held_out = torch.Generator().manual_seed(VAL_HOLD_OUT_SEED)
        # The run's own generator moves past the draw it used to make for the split, so a
        # seed picks the subsets it always picked.
        torch.randperm(len(train), generator=generator)
        train, val = _split_off(train, spec.val_fraction, held_out)
    if spec.train_per_class:
        train = _few_shot(train, spec.train_per_class, len(classes), generator)
    if spec.limit and spec.limit < len(train):
        train = train.subset(torch.randperm(len(train), generator=generator)[: spec.limit])
    train, val, test = (
        split.in_memory() if isinstance(split, ShapesSplit) else split
        for split in (train, val, test)
    )
    if len(train) == 0:
        raise RunError("bad_input", "no training images are left after the subsets", "")
    if len(test) == 0:
        if spec.classes:
            raise RunError(
                "bad_input",
                "the test data has no images of the chosen classes",
                "choose --classes that the test data has",
            )
        raise RunError(
            "bad_input", "the test data has no images", "add images, or a test/ folder of classes"
        )
    if len(val) == 0:
        val = test
        notes.append("validation uses the test data (no images left to hold out)")
    return DatasetBundle(
        name=spec.dataset,
        classes=classes,
        channels=info.channels,
        image_size=spec.image_size or info.image_size,
        natural_images=info.natural_images,
        mean=info.mean,
        std=info.std,
        train=train,
        val=val,
        test=test,
        notes=notes,
    )


def _keep_classes(split: AnySplit, chosen: list[int]) -> AnySplit:
    """Keep images of the `chosen` class indices, relabelled 0..k-1 in that order."""
    relabel = torch.full((int(split.labels.max()) + 1 if len(split) else 1,), -1)
    for new, old in enumerate(chosen):
        if old < len(relabel):
            relabel[old] = new
    kept = relabel[split.labels] >= 0
    result = split.subset(kept.nonzero().flatten())
    result.labels = relabel[result.labels]
    return result


def _split_off(
    split: AnySplit, fraction: float, generator: torch.Generator
) -> tuple[AnySplit, AnySplit]:
    order = torch.randperm(len(split), generator=generator)
    held = int(round(len(split) * fraction))
    return split.subset(order[held:].sort().values), split.subset(order[:held].sort().values)


def _fold_split(
    split: AnySplit, folds: int, fold: int, generator: torch.Generator
) -> tuple[AnySplit, AnySplit]:
    """The training data less fold `fold` of `folds`, and that fold (for validation)."""
    parts = torch.randperm(len(split), generator=generator).tensor_split(folds)
    rest = torch.cat([part for index, part in enumerate(parts) if index != fold])
    return split.subset(rest.sort().values), split.subset(parts[fold].sort().values)


def _few_shot(
    split: AnySplit, per_class: int, classes: int, generator: torch.Generator
) -> AnySplit:
    order = torch.randperm(len(split), generator=generator)
    chosen = []
    for label in range(classes):
        of_class = order[split.labels[order] == label]
        chosen.append(of_class[:per_class])
    return split.subset(torch.cat(chosen).sort().values)


def _read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (MNIST's format), plain or gzipped, as a uint8 tensor."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise RunError("bad_data", f"cannot read {path}: {error}", "download it again") from None
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    body = data[4 + 4 * dims :]
    if data[2] != 0x08 or len(body) != math.prod(shape):
        raise RunError("bad_data", f"{path} is not a valid IDX file", "download it again")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def _load_idx_dataset(spec: RunSpec) -> tuple[TensorSplit, TensorSplit]:
    if spec.download:
        import torchvision  # loaded only where used: see engine/__init__.py

        dataset_class = {
            "mnist": torchvision.datasets.MNIST,
            "fashion-mnist": torchvision.datasets.FashionMNIST,
        }[spec.dataset]
        dataset_class(str(locate.data_root(spec)), train=True, download=True)
    folder = locate.dataset_folder(spec)
    splits = []
    for prefix in ("train", "t10k"):
        images = _read_idx(locate.dataset_file(folder, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(locate.dataset_file(folder, f"{prefix}-labels-idx1-ubyte"))
        splits.append(TensorSplit(images[:, None].contiguous(), labels.long()))
    return splits[0], splits[1]


def _load_cifar(spec: RunSpec) -> tuple[TensorSplit, TensorSplit, list[str]]:
    import torchvision  # loaded only where used: see engine/__init__.py

    dataset_class = {
        "cifar10": torchvision.datasets.CIFAR10,
        "cifar100": torchvision.datasets.CIFAR100,
    }[spec.dataset]
    root = str(locate.data_root(spec))
    splits = []
    for train in (True, False):
        try:
            dataset = dataset_class(root, train=train, download=spec.download)
        except RuntimeError as error:
            raise RunError("dataset_missing", str(error), "add --download to fetch it") from None
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        splits.append(TensorSplit(images, torch.tensor(dataset.targets, dtype=torch.long)))
    return splits[0], splits[1], list(dataset.classes)


def _load_image_folder(
    spec: RunSpec,
) -> tuple[FileSplit, FileSplit | None, FileSplit, list[str], list[str]]:
    root = Path(spec.dataset.split(":", 1)[1])
    layout = locate.scan_image_folder(root)
    classes = layout.classes
    notes = []
    if layout.skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in layout.skipped[:3])
        more = f" and {len(layout.skipped) - 3} more" if len(layout.skipped) > 3 else ""
        notes.append(f"skipped {len(layout.skipped)} file(s) that are not images: {shown}{more}")

    def as_split(by_class: dict[str, list[Path]]) -> FileSplit:
        files, labels = [], []
        for label, name in enumerate(classes):
            files.extend(by_class.get(name, []))
            labels.extend([label] * len(by_class.get(name, [])))
        return FileSplit(files, torch.tensor(labels, dtype=torch.long))

    if "all" in layout.splits:
        everything = as_split(layout.splits["all"])
        generator = torch.Generator().manual_seed(TEST_HOLD_OUT_SEED)
        rest, test = _split_off(everything, max(spec.val_fraction, 0.1), generator)
        notes.append(f"one folder: {len(test)} images held out as test data")
        return rest, None, test, classes, notes
    train = as_split(layout.splits["train"])
    val = as_split(layout.splits["val"]) if "val" in layout.splits else None
    if "test" in layout.splits or val is not None:
        folder = "test" if "test" in layout.splits else "val"
        test = as_split(layout.splits[folder])
        if len(test) == 0:
            raise RunError(
                "bad_input",
                f"{root / folder} has no images of the training classes ({', '.join(classes)})",
                f"give {folder}/ the class folders of train/",
            )
        if folder == "val":
            notes.append("test metrics are on val/ (the folder has no test/)")
    else:
        generator = torch.Generator().manual_seed(TEST_HOLD_OUT_SEED)
        train, test = _split_off(train, max(spec.val_fraction, 0.1), generator)
        notes.append(f"no val/ or test/: {len(test)} training images held out as test data")
    return train, val, test, classes, notes


class TensorBatches:
    """Batches of an in-memory split, already on the device, augmented a batch at a time.

    Training batches of natural images get a random crop (padding of 1/8 of the side) and a
    horizontal flip; shapes, whose positions are random already, only the flip; digits
    nothing. All are resized to `image_size` and normalised.

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
            yield (images - self.mean) / self.std, self.labels[index]

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
        path = self.split.files[index]
        try:
            with Image.open(path) as image:
                picture = image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as error:
            reason = " ".join(str(error).split())  # one line, so train.py can find it
            raise UnreadableImage(f"cannot read image {path}: {reason}") from None
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
    ) -> None:
        """With a `shard` (rank, ranks), training batches of `batch_size` / ranks come from
        this rank's part of each epoch's order (DistributedSampler), and evaluation reads this
        rank's contiguous part of the split."""
        from torchvision import transforms  # loaded only where used: see engine/__init__.py

        size = bundle.image_size
        normalise = transforms.Normalize(bundle.mean, bundle.std)
        if train and augment:
            steps = [
                transforms.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
                transforms.RandomHorizontalFlip(),
            ]
        else:
            steps = [
                transforms.Resize(int(size * 1.14), antialias=True),
                transforms.CenterCrop(size),
            ]
        transform = transforms.Compose([*steps, transforms.ToTensor(), normalise])
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
    a `shard` (rank, ranks), this rank's part of them."""
    if isinstance(split, TensorSplit):
        return TensorBatches(
            split, bundle, batch_size, device, train, spec.augment, spec.seed, shard
        )
    workers = spec.workers if spec.workers is not None else min(4, torch.get_num_threads())
    return FileBatches(
        split, bundle, batch_size, device, train, spec.augment, workers, spec.seed, shard
    )
