"""Deeper plain nets train worse, deeper ResNets do not: plain-20/32/56 against ResNet-20/32/56
on CIFAR-10 (He et al. 2016, Fig. 6), on a budget a CPU can afford.

Every run goes through the tool (so it lands in the store and can be compared in the app):
the paper's optimiser (SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, the rate ÷10
at half and three quarters of the steps), crop and flip, on a subset of the training images
for a few epochs (both stated in the report). Validation: 2,000 other training images held
out; test: the official 10,000 test images (the folder's val/).

    python experiments/degradation.py --data-root ../shared/data --db /tmp/degradation/runs.db

Writes experiments/RESULTS-degradation.md (per-epoch training and validation error, final
test error) and experiments/degradation.png (the curves, drawn from the store's metrics).
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from transfer import as_flags, device_used, train

from engine.contract.spec import SpecError
from resnet_tui.runs.store import RunStore

DEPTHS = (20, 32, 56)
FAMILIES = ("plain", "resnet")
PAPER = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 1e-4,
    "batch_size": 128,
    "schedule": "step",
    "lr_gamma": 0.1,
    "val_fraction": 0.04,
}
COLOURS = {20: (31, 119, 180), 32: (255, 127, 14), 56: (214, 39, 40)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("runs.db"), help="run store")
    parser.add_argument("--data-root", default="../shared/data", help="holds cifar10_jpg/")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every run")
    parser.add_argument("--per-class", type=int, default=500, help="training images a class")
    parser.add_argument("--depths", default="20,32,56", help="depths of both families")
    parser.add_argument(
        "--warmup-epochs", type=float, default=0, help="the rate rising to 0.1 over these"
    )
    parser.add_argument("--tag", default="", help="written to RESULTS-degradation-TAG.md")
    args = parser.parse_args()
    depths = [int(depth) for depth in args.depths.split(",")]
    suffix = f"-{args.tag}" if args.tag else ""
    results = Path(__file__).with_name(f"RESULTS-degradation{suffix}.md")
    chart = Path(__file__).with_name(f"degradation{suffix}.png")
    paper = {**PAPER, **({"warmup_epochs": args.warmup_epochs} if args.warmup_epochs else {})}
    folder = Path(args.data_root).expanduser().resolve() / "cifar10_jpg"
    if not folder.is_dir():
        parser.exit(2, f"error: no {folder}; give --data-root, the folder holding cifar10_jpg\n")
    common: dict[str, Any] = {
        **paper,
        "dataset": f"imagefolder:{folder}",
        "train_per_class": args.per_class,
        "epochs": args.epochs,
        "device": args.device,
    }
    store = RunStore(args.db)
    started = time.perf_counter()
    ids: dict[tuple[str, int], int] = {}
    try:
        for depth in depths:
            for family in FAMILIES:
                arch = f"{family}{depth}"
                ids[family, depth] = train(store, {**common, "arch": arch, "name": f"{arch}"})
    except SpecError as error:
        sys.exit(f"error: {error}")
    minutes = (time.perf_counter() - started) / 60
    curves = {key: error_curves(store, run_id) for key, run_id in ids.items()}
    draw_chart(curves, chart)
    command = "python experiments/degradation.py " + " ".join(sys.argv[1:])
    options = as_flags(paper)
    results.write_text(
        "# Degradation: plain nets against ResNets on CIFAR-10\n\n"
        f"`{command.strip()}` on {device_used(store, list(ids.values()))}, "
        f"{time.strftime('%Y-%m-%d')}: {minutes:.0f} minutes in all.\n\n"
        f"Each run: `resnet-tui run --arch ARCH --dataset imagefolder:…/cifar10_jpg "
        f"--train-per-class {args.per_class} --epochs {args.epochs} {options}`: "
        f"{10 * args.per_class:,} training images, crop and flip. Errors in percent; "
        "training error is measured on the augmented batches as they train (as the paper's "
        "thin lines), validation error on 2,000 held-out training images after each epoch, "
        "test error once at the end on the official 10,000 test images.\n\n"
        + final_table(store, ids)
        + f"\n\n![Training (dashed) and validation (solid) error by epoch]({chart.name})\n\n"
        + epoch_table(curves)
        + "\n"
    )
    print(f"written to {results} and {chart}")


def error_curves(store: RunStore, run_id: int) -> dict[str, list[float]]:
    """The run's training and validation error in percent, epoch by epoch."""
    return {
        split: [100 * (1 - acc) for _, acc in store.metric_series(run_id, split, "acc")]
        for split in ("train", "val")
    }


def final_table(store: RunStore, ids: dict[tuple[str, int], int]) -> str:
    """Per network: its run, parameters, last training and validation error, test error."""
    rows = [
        "| network | run | last train error | last val error | test error | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for (family, depth), run_id in ids.items():
        run = store.run(run_id)
        curves = error_curves(store, run_id)
        test = 100 * (1 - (run.test_acc or 0)) if run else float("nan")
        minutes = (run.seconds or 0) / 60 if run else float("nan")
        rows.append(
            f"| {family}-{depth} | {run_id} | {curves['train'][-1]:.1f} | "
            f"{curves['val'][-1]:.1f} | {test:.1f} | {minutes:.1f} |"
        )
    return "\n".join(rows)


def epoch_table(curves: dict[tuple[str, int], dict[str, list[float]]]) -> str:
    """Training / validation error of every network at every epoch."""
    keys = list(curves)
    epochs = max(len(curve["train"]) for curve in curves.values())
    head = "| epoch | " + " | ".join(f"{family}-{depth} train / val" for family, depth in keys)
    rows = [head + " |", "|---" * (len(keys) + 1) + "|"]
    for epoch in range(epochs):
        cells = [
            f"{c['train'][epoch]:.1f} / {c['val'][epoch]:.1f}" if epoch < len(c["val"]) else "-"
            for c in curves.values()
        ]
        rows.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def draw_chart(curves: dict[tuple[str, int], dict[str, list[float]]], path: Path) -> None:
    """Two panels, plain nets left and ResNets right, as the paper's Fig. 6: error by epoch,
    training dashed, validation solid, a colour a depth."""
    width, height, margin = 1200, 520, 60
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    epochs = max(len(curve["train"]) for curve in curves.values())
    top = max(max(curve["train"] + curve["val"]) for curve in curves.values())
    top = min(100.0, 10 * (int(top) // 10 + 1))
    panel = (width - 3 * margin) // 2
    bottom = height - margin
    for column, family in enumerate(FAMILIES):
        left = margin + column * (panel + margin)

        def point(epoch: int, error: float, left: int = left) -> tuple[float, float]:
            x = left + panel * (epoch - 1) / max(1, epochs - 1)
            return x, bottom - (bottom - margin) * error / top

        draw.rectangle((left, margin, left + panel, bottom), outline="black")
        title = "plain nets" if family == "plain" else "ResNets"
        draw.text((left, margin - 40), f"{title}: error (%) by epoch", fill="black")
        for tick in range(0, int(top) + 1, 10):
            y = point(1, tick)[1]
            draw.line((left, y, left + panel, y), fill=(225, 225, 225))
            draw.text((left - 28, y - 6), str(tick), fill="black")
        for epoch in range(1, epochs + 1):
            draw.text((point(epoch, 0)[0] - 4, bottom + 8), str(epoch), fill="black")
        for depth in DEPTHS:
            curve = curves.get((family, depth))
            if curve is None:
                continue
            colour = COLOURS[depth]
            for split, dashed in (("train", True), ("val", False)):
                points = [point(e, err) for e, err in enumerate(curve[split], start=1)]
                for start, end in zip(points, points[1:], strict=False):
                    line(draw, start, end, colour, dashed)
            draw.text(
                (left + panel - 150, margin + 12 + 16 * DEPTHS.index(depth)),
                f"{family}-{depth}",
                fill=colour,
            )
    draw.text((margin, height - 22), "dashed: training error; solid: validation", fill="black")
    picture.save(path)


def line(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    colour: tuple[int, int, int],
    dashed: bool,
) -> None:
    """A line from `start` to `end`; dashed, it is drawn in pieces of 8 pixels, 6 apart."""
    if not dashed:
        draw.line((*start, *end), fill=colour, width=3)
        return
    length = max(1.0, ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5)
    for offset in range(0, int(length), 14):
        a, b = offset / length, min(1.0, (offset + 8) / length)
        draw.line(
            (
                start[0] + a * (end[0] - start[0]),
                start[1] + a * (end[1] - start[1]),
                start[0] + b * (end[0] - start[0]),
                start[1] + b * (end[1] - start[1]),
            ),
            fill=colour,
            width=2,
        )


if __name__ == "__main__":
    main()
