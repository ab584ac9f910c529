"""Augmentation on the in-memory path: what RandAugment, TrivialAugmentWide, random erasing and
mixup/CutMix cost per batch, alone and inside a ResNet-20's training epoch.

Run: .venv/bin/python bench/augmentation.py [--device cpu] [--rounds 3]

CIFAR-size random images (uint8, 32x32x3, 10 classes) held on the device, batches of 128.
- Data path: the engine's training batches (`TensorBatches`, then `mixed_batches`), no model:
  samples/s of an epoch of 5,120 images, crop and flip alone and with each addition.
- Training: `Trainer.train_epoch` of a ResNet-20 (fp32, AdamW) over 1,280 of those images,
  the same cases: samples/s of the epoch, and the share of its time spent making its
  batches (waiting on the batches' iterator: order, crop, flip, the policy, erasing,
  mixing), measured inside the epoch, so that a shared machine's load weighs on both parts
  alike.
The cases take turns (each round runs every case once), so that a machine whose speed drifts
slows them alike; the first round is a warm-up; the table gives the median of the others
with their min-max.
"""

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torchvision
from data_path import cifar_size_bundle as cifar_size_images
from results import machine, publish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.contract.events import EventWriter  # noqa: E402
from engine.contract.spec import RunSpec  # noqa: E402
from engine.contract.stopping import StopRequest  # noqa: E402
from engine.data.batches import make_batches  # noqa: E402
from engine.data.datasets import DatasetBundle  # noqa: E402
from engine.data.splits import TensorSplit  # noqa: E402
from engine.train import loop  # noqa: E402
from engine.train.loop import Trainer  # noqa: E402
from engine.train.mixing import mixed_batches  # noqa: E402

BATCH = 128
DATA_IMAGES, TRAINING_IMAGES = 5_120, 1_280
CASES = {
    "crop + flip": {},
    "+ randaugment (2 ops, magnitude 9)": {"auto_augment": "randaugment"},
    "+ trivialaugment": {"auto_augment": "trivialaugment"},
    "+ random erasing 0.25": {"random_erasing": 0.25},
    "+ mixup 0.2 / cutmix 1.0": {"mixup": 0.2, "cutmix": 1.0},
    "+ randaugment, erasing, mixup/cutmix": {
        "auto_augment": "randaugment",
        "random_erasing": 0.25,
        "mixup": 0.2,
        "cutmix": 1.0,
    },
}


def cifar_size_bundle(count: int) -> DatasetBundle:
    """data_path's CIFAR-size random images, held out to 256 of them so that an epoch's
    evaluation stays short beside its training."""
    bundle = cifar_size_images(count)
    held_out = TensorSplit(bundle.train.images[:256], bundle.train.labels[:256])
    return dataclasses.replace(bundle, val=held_out, test=held_out)


def case_spec(options: dict, device: torch.device) -> RunSpec:
    base = {"arch": "resnet20", "batch_size": BATCH, "device": str(device), "amp": "off"}
    return RunSpec.from_dict({**base, "epochs": 100, **options})


def data_rate(spec: RunSpec, bundle: DatasetBundle, device: torch.device, epoch: int) -> float:
    """Samples/s of one epoch of training batches, mixed where the spec says."""
    batches = make_batches(bundle.train, bundle, BATCH, device, True, spec)
    start, count = time.perf_counter(), 0
    for images, labels in mixed_batches(batches, spec, epoch):
        count += len(labels)
        if device.type == "cuda":
            images.sum().item()  # wait for the batch, as the step would
    return count / (time.perf_counter() - start)


class TimedBatches:
    """The training loop's batches, with the time spent waiting on them counted."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.mixed_batches = loop.mixed_batches

    def __call__(self, *args: Any) -> Iterator[tuple[torch.Tensor, Any]]:
        batches = iter(self.mixed_batches(*args))
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is not None and batch[0].device.type == "cuda":
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start
            if batch is None:
                return
            yield batch


def training_rate(trainer: Trainer, epoch: int, timed: TimedBatches) -> tuple[float, float]:
    """Samples/s of one training epoch of the trainer's run, and the share of its time
    spent making its batches."""
    timed.seconds = 0.0
    start = time.perf_counter()
    trainer.train_epoch(epoch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return len(trainer.bundle.train) / seconds, timed.seconds / seconds


def summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the first a warm-up")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    data_bundle = cifar_size_bundle(DATA_IMAGES)
    training_bundle = cifar_size_bundle(TRAINING_IMAGES)
    data: dict[str, list[float]] = {name: [] for name in CASES}
    training: dict[str, list[float]] = {name: [] for name in CASES}
    shares: dict[str, list[float]] = {name: [] for name in CASES}
    timed = TimedBatches()
    loop.mixed_batches = timed  # the loop's own name for them
    with tempfile.TemporaryDirectory() as folder:
        trainers = {}
        for index, (name, options) in enumerate(CASES.items()):
            run_dir = Path(folder) / str(index)
            run_dir.mkdir()
            writer = EventWriter(run_dir / "events.jsonl")
            spec = case_spec(options, device)
            trainers[name] = Trainer(spec, writer, run_dir, StopRequest(), bundle=training_bundle)
        for round_ in range(args.rounds):
            for name, options in CASES.items():
                spec = case_spec(options, device)
                data_sample = data_rate(spec, data_bundle, device, round_ + 1)
                training_sample, share = training_rate(trainers[name], round_ + 1, timed)
                if round_ > 0:
                    data[name].append(data_sample)
                    training[name].append(training_sample)
                    shares[name].append(share)
                print(
                    f"round {round_} {name}: data {data_sample:,.0f}, "
                    f"training {training_sample:,.0f} samples/s, batches {share:.1%}",
                    flush=True,
                )
    rows = []
    for name in CASES:
        share = statistics.median(shares[name])
        rows.append(
            f"| {name} | {summary(data[name])} | {BATCH / statistics.median(data[name]) * 1e3:.1f} "
            f"| {summary(training[name])} | {share:.1%} ({min(shares[name]):.1%}-"
            f"{max(shares[name]):.1%}) |"
        )
    load = os.getloadavg()[0]
    lines = [
        f"Machine: {machine()}; torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}; device {device}; load average {load:.1f} at the end "
        f"(a shared machine). Batches of {BATCH} CIFAR-size images; {args.rounds} rounds, "
        "the first a warm-up; samples/s median (min-max).",
        "",
        "| training batches | data path samples/s | data ms/batch | ResNet-20 epoch "
        "samples/s | batches' share of the epoch |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]
    publish(__file__, "augmentation", "Augmentation on the in-memory path", lines)


if __name__ == "__main__":
    main()
