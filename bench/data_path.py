"""The data path: how fast the engine's loaders hand batches to the model, against torchvision's.

Run: .venv/bin/python bench/data_path.py [--device cpu] [--epochs 4]

No model: each side only produces training batches on the device, augmented and normalised,
and samples/s is images per second of a whole epoch. The first epoch is a warm-up (worker
start, file cache); the table gives the median of the later ones and their min-max.

- In memory (MNIST, the built-in shapes, CIFAR-size random images): the engine's
  `TensorBatches` (the data on the device, augmentation on whole batches) against a
  torchvision Dataset with per-sample transforms in a DataLoader, with 0 and 2 workers, the
  same augmentation as the engine's (digits none, shapes a flip, natural images a padded
  random crop and a flip).
- Image folders (the ants/bees set from ../shared/data): the engine's `FileBatches`
  (decoding and RandomResizedCrop to 224 in worker processes, persistent, pinned on CUDA)
  with 0, 1 and 2 workers.
- A folder of small images (CIFAR-10 as JPEGs, ../shared/data/cifar10_jpg): the first
  decode into the cache (an empty one) and a load from it, then its training split through
  the batched in-memory path against the CIFAR-size random images of the first table (the
  goal: at least 0.9 of their rate), and against decoding its files in workers each epoch.
"""

import argparse
import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torchvision
from results import machine, publish
from torchvision import transforms

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from engine.contract.spec import RunSpec  # noqa: E402
from engine.data.batches import make_batches  # noqa: E402
from engine.data.datasets import DatasetBundle, load_dataset  # noqa: E402
from engine.data.sources import load_image_folder  # noqa: E402
from engine.data.splits import TensorSplit  # noqa: E402

BATCH = 128
Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def epoch_rates(batches: Batches, epochs: int, device: torch.device) -> list[float]:
    """Samples/s of each epoch after the first; every batch is moved to `device` and its
    images touched there, as a training step would."""
    rates = []
    for epoch in range(epochs):
        start = time.perf_counter()
        count = 0
        for images, labels in batches(epoch):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            count += len(labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch > 0:
            rates.append(count / (time.perf_counter() - start))
    return rates


def summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


def per_sample_loader(dataset: torch.utils.data.Dataset, workers: int) -> Batches:
    """torchvision's usual pipeline: a transform per sample, collated by a DataLoader."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    return lambda epoch: loader


class TensorImages(torch.utils.data.Dataset):
    """uint8 images held in memory, each put through `transform` when it is read."""

    def __init__(self, split: TensorSplit, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.split.images[index]), int(self.split.labels[index])


def tensor_transform(bundle: DatasetBundle) -> Callable[[torch.Tensor], torch.Tensor]:
    """The engine's augmentation for this data, as per-sample torchvision transforms."""
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    if bundle.natural_images:
        steps.append(transforms.RandomCrop(bundle.image_size, padding=bundle.image_size // 8))
    if bundle.natural_images or bundle.name.startswith("shapes"):
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ConvertImageDtype(torch.float32), transforms.Normalize(*norm(bundle))]
    return transforms.Compose(steps)


def norm(bundle: DatasetBundle) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return bundle.mean, bundle.std


def cifar_size_bundle(count: int) -> DatasetBundle:
    """CIFAR-size random images: CIFAR-10's work without its files (not on this machine)."""
    generator = torch.Generator().manual_seed(0)
    split = TensorSplit(
        torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (count,), generator=generator),
    )
    return DatasetBundle(
        name="cifar-size",
        classes=list("0123456789"),
        channels=3,
        image_size=32,
        natural_images=True,
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
        train=split,
        val=split,
        test=split,
    )


def mnist_root(folder: Path) -> Path:
    """A data root with the shared MNIST files, unpacked for torchvision too."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for packed in sorted((SHARED_DATA / "MNIST" / "raw").glob("*.gz")):
        shutil.copy(packed, raw / packed.name)
        with gzip.open(packed) as source, open(raw / packed.stem, "wb") as target:
            shutil.copyfileobj(source, target)
    return folder


def in_memory_rows(device: torch.device, epochs: int, folder: Path) -> tuple[list[str], float]:
    """The in-memory table's rows, and the engine's median samples/s on CIFAR-size images."""
    options = {"batch_size": BATCH, "device": str(device)}
    spec = RunSpec.from_dict(options)
    mnist_options = {**options, "dataset": "mnist", "data_root": str(folder)}
    mnist = load_dataset(RunSpec.from_dict(mnist_options))
    mnist_torchvision = torchvision.datasets.MNIST(
        str(folder),
        train=True,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize(*norm(mnist))]),
    )
    cases = [
        ("MNIST", mnist, mnist_torchvision, "torchvision.datasets.MNIST, ToTensor"),
        ("shapes (built-in)", load_dataset(spec), None, "per-sample flip"),
        ("CIFAR-size, random", cifar_size_bundle(45_000), None, "per-sample crop and flip"),
    ]
    rows = []
    for name, bundle, torchvision_set, pipeline in cases:
        engine = make_batches(bundle.train, bundle, BATCH, device, True, spec)
        engine_rates = epoch_rates(engine.epoch, epochs, device)
        engine_rate = summary(engine_rates)
        dataset = torchvision_set or TensorImages(bundle.train, tensor_transform(bundle))
        for workers in (0, 2):
            loader = per_sample_loader(dataset, workers)
            rate = summary(epoch_rates(loader, epochs, device))
            rows.append(
                f"| {name} ({len(bundle.train):,}) | {engine_rate} | {pipeline}, "
                f"{workers} workers | {rate} |"
            )
            print(rows[-1], flush=True)
    return rows, statistics.median(engine_rates)


def image_folder_rows(device: torch.device, epochs: int) -> list[str]:
    folder = SHARED_DATA / "hymenoptera_data"
    rows = []
    for workers in (0, 1, 2):
        spec = RunSpec.from_dict(
            {
                "dataset": f"imagefolder:{folder}",
                "device": str(device),
                "batch_size": 32,
                "workers": workers,
                "val_fraction": 0.1,
            }
        )
        bundle = load_dataset(spec)
        batches = make_batches(bundle.train, bundle, 32, device, True, spec)
        rows.append(
            f"| ants/bees ({len(bundle.train)} photos, {bundle.image_size}x{bundle.image_size}) "
            f"| {workers} | {summary(epoch_rates(batches.epoch, epochs, device))} |"
        )
        print(rows[-1], flush=True)
    return rows


def small_image_folder_rows(device: torch.device, epochs: int, in_memory: float) -> list[str]:
    """The CIFAR-10 folder: its first decode and a cached load, then its training batches
    decoded once against `in_memory` (the random CIFAR-size images' median samples/s) and
    against its files decoded by 2 workers each epoch (10,000 of them)."""
    folder = SHARED_DATA / "cifar10_jpg"
    cache = Path(tempfile.mkdtemp())
    options = {"dataset": f"imagefolder:{folder}", "device": str(device), "data_root": str(cache)}
    spec = RunSpec.from_dict({**options, "batch_size": BATCH, "image_size": 32, "workers": 2})
    try:
        started = time.perf_counter()
        load_dataset(spec)
        first = time.perf_counter() - started
        started = time.perf_counter()
        bundle = load_dataset(spec)
        cached = time.perf_counter() - started
    finally:
        shutil.rmtree(cache)
    rates = epoch_rates(
        make_batches(bundle.train, bundle, BATCH, device, True, spec).epoch, epochs, device
    )
    files, _, _, _, _ = load_image_folder(spec)
    files = files.subset(
        torch.randperm(len(files), generator=torch.Generator().manual_seed(0))[:10_000]
    )
    file_rates = epoch_rates(
        make_batches(files, bundle, BATCH, device, True, spec).epoch, epochs, device
    )
    rows = [
        f"| first decode of {len(bundle.train) + len(bundle.val) + len(bundle.test):,} images "
        f"(32 px) into an empty cache | {first:.1f} s |",
        f"| load from the cache | {cached:.1f} s |",
        f"| training batches, decoded once ({len(bundle.train):,}) | {summary(rates)} samples/s, "
        f"{statistics.median(rates) / in_memory:.2f} of the in-memory CIFAR-size rate |",
        f"| training batches, files decoded by 2 workers each epoch (10,000) | "
        f"{summary(file_rates)} samples/s |",
    ]
    print(*rows, sep="\n", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--epochs", type=int, default=4, help="epochs, the first a warm-up")
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        sys.exit(f"{SHARED_DATA} is missing: this benchmark reads MNIST and ants/bees from there")
    device = torch.device(args.device)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    folder = Path(tempfile.mkdtemp())
    try:
        memory, cifar_size_rate = in_memory_rows(device, args.epochs, mnist_root(folder))
        files = image_folder_rows(device, args.epochs)
        small = small_image_folder_rows(device, args.epochs, cifar_size_rate)
    finally:
        shutil.rmtree(folder)
    lines = [
        f"Machine: {machine()}; torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}; device {device}. Training batches of {BATCH}, "
        f"{args.epochs} epochs of which the first is a warm-up; samples/s median (min-max).",
        "",
        "| in-memory data | engine samples/s | torchvision pipeline | samples/s |",
        "| --- | --- | --- | --- |",
        *memory,
        "",
        "| image folder | workers | engine samples/s |",
        "| --- | --- | --- |",
        *files,
        "",
        "| CIFAR-10 folder (JPEG, cifar10_jpg) | |",
        "| --- | --- |",
        *small,
    ]
    publish(__file__, "data", "The data path", lines)


if __name__ == "__main__":
    main()
