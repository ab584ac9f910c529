"""The engine against a hand-written PyTorch loop: training samples/s of both on the same work.

Run: .venv/bin/python bench/engine_speed.py --device cpu        (ResNet-8, the default run)
     python bench/engine_speed.py --device cuda --arch resnet20,resnet18

Both sides train the same model from the same initial weights on the same CIFAR-size data
held on the device (random uint8 images, 32x32x3, 10 classes), with the same batch, optimiser
(AdamW, one-cycle), random crop and flip, and a validation pass after each epoch. The engine
side is `engine.train.loop.Trainer` as a run uses it: events, metrics, the schedule and a
checkpoint every epoch included. An epoch's time on the engine side runs from one
`epoch_ended` event to the next, so it holds the checkpoint of the epoch before. The first
epoch is a warm-up (cuDNN autotuning, compilation) and is left out; each later epoch is one
repeat, and the table gives their median and min-max. With `--rounds R` the two sides take
turns R times (bare, engine, engine, bare, ...), so that a machine whose speed drifts slows
both alike; the ratio is the median of the rounds' ratios, with their min-max. Modes: fp32;
bf16 (autocast); bf16 with channels_last; and those with torch.compile. The bare loop takes
AdamW as torch builds it by default; the engine takes the fused step, one of its own choices
that the comparison is there to show.
"""

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from results import machine
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.contract import events as ev  # noqa: E402
from engine.contract.events import EventWriter  # noqa: E402
from engine.contract.spec import RunSpec  # noqa: E402
from engine.contract.stopping import StopRequest  # noqa: E402
from engine.data.datasets import DatasetBundle  # noqa: E402
from engine.data.splits import TensorSplit  # noqa: E402
from engine.models import build_model  # noqa: E402
from engine.train.loop import Trainer  # noqa: E402
from engine.train.optimisation import lr_factor  # noqa: E402
from engine.train.records import emit_started  # noqa: E402

MODES = {
    "fp32": {"amp": "off", "channels_last": False, "compile": False},
    "bf16": {"amp": "bf16", "channels_last": False, "compile": False},
    "bf16+cl": {"amp": "bf16", "channels_last": True, "compile": False},
    "fp32+compile": {"amp": "off", "channels_last": False, "compile": True},
    "bf16+cl+compile": {"amp": "bf16", "channels_last": True, "compile": True},
}
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def synthetic_bundle(train: int, val: int, seed: int = 0) -> DatasetBundle:
    """CIFAR-size random images: the work of CIFAR-10 without needing its files."""
    generator = torch.Generator().manual_seed(seed)

    def split(count: int) -> TensorSplit:
        images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
        return TensorSplit(images, torch.randint(0, 10, (count,), generator=generator))

    return DatasetBundle(
        name="synthetic",
        classes=[str(i) for i in range(10)],
        channels=3,
        image_size=32,
        natural_images=True,
        mean=MEAN,
        std=STD,
        train=split(train),
        val=split(val),
        test=split(val),
    )


def engine_epochs(spec: RunSpec, bundle: DatasetBundle) -> list[float]:
    """Seconds of each epoch after the first, as a run of the engine spends them."""
    with tempfile.TemporaryDirectory() as folder:
        events_path = Path(folder) / "events.jsonl"
        writer = EventWriter(events_path)
        trainer = Trainer(spec, writer, Path(folder), StopRequest(), bundle=bundle)
        emit_started(trainer)
        trainer.fit()
        writer.close()
        events = ev.read_events(events_path).events
    ends = [event.t for event in events if isinstance(event, ev.EpochEnded)]
    return [later - earlier for earlier, later in zip(ends, ends[1:], strict=False)]


def random_crop(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """A random 32x32 window of each image padded by `pad` zeros, in one gather."""
    count, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (count, 1, 1), device=images.device)
    dx = torch.randint(0, 2 * pad + 1, (count, 1, 1), device=images.device)
    rows = (dy + torch.arange(height, device=images.device).view(1, -1, 1)).expand(-1, -1, width)
    cols = (dx + torch.arange(width, device=images.device).view(1, 1, -1)).expand(-1, height, -1)
    batch = torch.arange(count, device=images.device).view(-1, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def bare_epochs(spec: RunSpec, bundle: DatasetBundle, device: torch.device) -> list[float]:
    """Seconds of each epoch after the first of the loop a user would write by hand."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.arch, 10, 3, spec.width, True).to(device)
    memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    forward = torch.compile(model) if spec.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.peak_lr, weight_decay=0.05)
    steps = math.ceil(len(bundle.train) / spec.batch_size)
    total = spec.epochs * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor("onecycle", step, total, 0, 0.1)
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.amp == "bf16")
    train_x, train_y = bundle.train.images.to(device), bundle.train.labels.to(device)
    val_x, val_y = bundle.val.images.to(device), bundle.val.labels.to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255

    def prepare(images: torch.Tensor) -> torch.Tensor:
        return ((images.float() - mean) / std).contiguous(memory_format=memory_format)

    seconds = []
    last = time.perf_counter()
    for _ in range(spec.epochs):
        model.train()
        order = torch.randperm(len(train_y), device=device)
        for start in range(0, len(order), spec.batch_size):
            index = order[start : start + spec.batch_size]
            images = random_crop(train_x[index])
            flip = torch.rand(len(index), device=device) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
            with autocast:
                loss = F.cross_entropy(forward(prepare(images)), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        correct = torch.zeros((), device=device)
        with torch.no_grad(), autocast:
            for start in range(0, len(val_y), 2 * spec.batch_size):
                logits = forward(prepare(val_x[start : start + 2 * spec.batch_size]))
                correct += (logits.argmax(1) == val_y[start : start + 2 * spec.batch_size]).sum()
        float(correct)  # a loop by hand reads its validation accuracy too
        if device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        seconds.append(now - last)
        last = now
    return seconds[1:]


def summary(seconds: list[float], images: int) -> tuple[float, str]:
    rates = [images / s for s in seconds]
    return statistics.median(rates), f"{min(rates):,.0f}-{max(rates):,.0f}"


def machine_with_device(device: torch.device) -> str:
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (
        f"{machine()} ({torch.get_num_threads()} threads){gpu}; torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--arch", default=None, help="comma-separated (default by device)")
    parser.add_argument("--modes", default=None, help=f"comma-separated of {', '.join(MODES)}")
    parser.add_argument("--batch", type=int, default=None, help="default 64 on CPU, 256 on CUDA")
    parser.add_argument("--images", type=int, default=None, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs, the first a warm-up")
    parser.add_argument(
        "--rounds", type=int, default=1, help="turns each side takes, alternating (drift)"
    )
    parser.add_argument("--out", type=Path, default=None, help="markdown file for the table")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    archs = (args.arch or ("resnet20,resnet18" if on_cuda else "resnet8")).split(",")
    modes = (args.modes or (",".join(MODES) if on_cuda else "fp32")).split(",")
    batch = args.batch or (256 if on_cuda else 64)
    images = args.images or (45_000 if on_cuda else 9_000)
    bundle = synthetic_bundle(images, images // 9)
    if not on_cuda:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    lines = [
        f"Machine: {machine_with_device(device)}. Batch {batch}, {images:,} training and "
        f"{images // 9:,} validation images an epoch, {args.epochs} epochs of which the first "
        "is a warm-up; "
        "samples/s are training images per second of whole epochs (validation included), "
        "median of the measured epochs with min-max"
        + (
            f"; {args.rounds} rounds taken in turns, the ratio the median of theirs (min-max)."
            if args.rounds > 1
            else "."
        ),
        "",
        "| arch | mode | bare loop samples/s | engine samples/s | engine / bare |",
        "| --- | --- | --- | --- | --- |",
    ]
    print("\n".join(lines), flush=True)
    results = []
    for arch in archs:
        for mode in modes:
            spec = RunSpec.from_dict(
                {
                    "arch": arch,
                    "device": args.device,
                    "batch_size": batch,
                    "epochs": args.epochs,
                    **MODES[mode],
                }
            )
            bare_seconds, engine_seconds, ratios = [], [], []
            for turn in range(args.rounds):
                sides = ["bare", "engine"] if turn % 2 == 0 else ["engine", "bare"]
                measured = {
                    side: bare_epochs(spec, bundle, device)
                    if side == "bare"
                    else engine_epochs(spec, bundle)
                    for side in sides
                }
                bare_seconds += measured["bare"]
                engine_seconds += measured["engine"]
                ratios.append(
                    statistics.median(measured["bare"]) / statistics.median(measured["engine"])
                )
            bare, bare_spread = summary(bare_seconds, images)
            engine, engine_spread = summary(engine_seconds, images)
            ratio = f"{statistics.median(ratios):.3f}"
            if args.rounds > 1:
                ratio += f" ({min(ratios):.3f}-{max(ratios):.3f})"
            line = (
                f"| {arch} | {mode} | {bare:,.0f} ({bare_spread}) | "
                f"{engine:,.0f} ({engine_spread}) | {ratio} |"
            )
            print(line, flush=True)
            lines.append(line)
            results.append(
                {"arch": arch, "mode": mode, "bare": bare, "engine": engine, "ratios": ratios}
            )
    text = "\n".join(lines) + "\n"
    out = args.out or ROOT / "bench" / f"RESULTS-engine-{device.type}.md"
    shown = [f"--{k} {v}" for k, v in vars(args).items() if v is not None and k != "out"]
    command = " ".join(["python bench/engine_speed.py", *shown])
    out.write_text(f"# Engine against a bare loop ({device.type})\n\n`{command}`\n\n{text}")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
