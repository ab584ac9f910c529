"""Predicting with a trained run: the engine's predict path against a bare model loop, the
decode rate on its own, and onnxruntime against torch on the CPU.

Run: .venv/bin/python bench/predict.py [--images 2000] [--repeats 5]

On CIFAR-size images (32x32 JPEGs of ../shared/data/cifar10_jpg/val) with a ResNet-20 run
trained briefly on that folder (the weights do not change the speed):

- Predict path against a bare loop, decoding excluded: the same decoded batches of 64 go
  through the engine's classifier and the lines it writes for each image (softmax, top-3,
  JSON) or through `model(batch)` under inference_mode, nothing else. Goal: the predict
  path at 0.95 or more of the bare loop's images/s.
- Decoding on its own: the engine's `ImageFiles` dataset in a DataLoader with its default
  workers (read, decode, resize and crop as the run's evaluation, normalise), no model.
- `python -m engine predict` on the folder, as a user runs it: wall time from start to the
  last line, with torch's import and the model's loading.
- onnxruntime against torch on the CPU: the run exported to ONNX, the same random batch of
  64 and of 256 images through each, images per second of a forward pass.

Each figure is the median of the repeats (min-max).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from results import machine, publish

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from engine.contract.spec import RunSpec  # noqa: E402
from engine.train.run import run as train  # noqa: E402
from engine.use.predict import ImageFiles, _model, _prediction_lines, collate  # noqa: E402
from engine.use.trained import load_trained_model  # noqa: E402

BATCH = 64
ONNX_BATCHES = (64, 256)


def trained_checkpoint(folder: Path) -> Path:
    """A ResNet-20 run on the CIFAR-10 folder, one short epoch: its best.pt."""
    spec = RunSpec.from_dict(
        {
            "arch": "resnet20",
            "dataset": f"imagefolder:{SHARED_DATA / 'cifar10_jpg'}",
            "image_size": 32,
            "limit": 512,
            "epochs": 1,
            "device": "cpu",
        }
    )
    run_dir = folder / "run"
    run_dir.mkdir()
    assert train(spec, run_dir / "events.jsonl", run_dir) == 0
    return run_dir / "checkpoints" / "best.pt"


def some_images(count: int) -> list[Path]:
    """`count` CIFAR-10 test JPEGs, the same ones every time, from every class."""
    classes = sorted((SHARED_DATA / "cifar10_jpg" / "val").iterdir())
    per_class = -(-count // len(classes))
    files = [file for folder in classes for file in sorted(folder.iterdir())[:per_class]]
    return files[:count]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def decoded_batches(files: list[Path], checkpoint: Path) -> list[tuple[list[int], torch.Tensor]]:
    trained = load_trained_model(checkpoint)
    dataset = ImageFiles(files, trained.preprocessing)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, collate_fn=collate)
    return [(indices, images) for indices, images, _ in loader]


def decode_rates(files: list[Path], checkpoint: Path, repeats: int) -> list[float]:
    trained = load_trained_model(checkpoint)
    workers = max(1, min(8, len(os.sched_getaffinity(0)) - 1))
    rates = []
    for _ in range(repeats):
        dataset = ImageFiles(files, trained.preprocessing)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, collate_fn=collate, num_workers=workers
        )
        start = time.perf_counter()
        count = sum(len(indices) for indices, _, _ in loader)
        rates.append(count / (time.perf_counter() - start))
    return rates


def model_rates(
    files: list[Path], checkpoint: Path, batches: list, repeats: int
) -> tuple[list[float], list[float]]:
    """Images/s of a bare loop and of the predict path over the same decoded batches,
    alternated so that both see the machine alike."""
    arguments = argparse.Namespace(model=None, checkpoint=checkpoint, run=None, top_k=3)
    arguments.device = "cpu"
    classes, _, classify, _ = _model(arguments)
    model = load_trained_model(checkpoint).model
    labels = [None] * len(files)
    count = sum(len(indices) for indices, _ in batches)
    bare, predict = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for _, images in batches:
                model(images)
            bare.append(count / (time.perf_counter() - start))
            start = time.perf_counter()
            with open(os.devnull, "w") as sink:
                for indices, images in batches:
                    lines = _prediction_lines(indices, classify(images), files, labels, classes)
                    sink.write("".join(json.dumps(line) + "\n" for line in lines))
            predict.append(count / (time.perf_counter() - start))
    return bare, predict


def command_seconds(files: list[Path], checkpoint: Path, folder: Path, repeats: int) -> list[float]:
    images = folder / "images"
    images.mkdir()
    for file in files:
        shutil.copy(file, images / f"{file.parent.name}-{file.name}")
    command = [sys.executable, "-m", "engine", "predict", "--checkpoint", str(checkpoint)]
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([*command, str(images)], cwd=ROOT, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def onnx_rates(checkpoint: Path, folder: Path, repeats: int) -> dict[int, tuple[list, list]]:
    """Images/s of torch and of onnxruntime on the same random batch, by batch size."""
    import onnxruntime

    model = load_trained_model(checkpoint).model
    path = folder / "model.onnx"
    dim = torch.export.Dim("batch")
    torch.onnx.export(
        model, (torch.randn(2, 3, 32, 32),), str(path), dynamo=True, external_data=False,
        input_names=["images"], output_names=["logits"], dynamic_shapes=({0: dim},),
    )  # fmt: skip
    options = onnxruntime.SessionOptions()
    # onnxruntime's threads spin for a while after each run: torch, measured right after,
    # would share the cores with them
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rates = {}
    for size in ONNX_BATCHES:
        batch = torch.randn(size, 3, 32, 32)
        array = batch.numpy()
        torch_rates, onnx_rates = [], []
        with torch.inference_mode():
            for _ in range(repeats):
                start = time.perf_counter()
                model(batch)
                torch_rates.append(size / (time.perf_counter() - start))
                start = time.perf_counter()
                session.run(None, {"images": array})
                onnx_rates.append(size / (time.perf_counter() - start))
        rates[size] = (torch_rates, onnx_rates)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="CIFAR-10 test images used")
    parser.add_argument("--repeats", type=int, default=5, help="measurements of each figure")
    args = parser.parse_args()
    if not (SHARED_DATA / "cifar10_jpg").is_dir():
        sys.exit(f"{SHARED_DATA / 'cifar10_jpg'} is missing: this benchmark reads it")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    folder = Path(tempfile.mkdtemp())
    try:
        checkpoint = trained_checkpoint(folder)
        files = some_images(args.images)
        batches = decoded_batches(files, checkpoint)
        bare, predict = model_rates(files, checkpoint, batches, args.repeats)
        decode = decode_rates(files, checkpoint, args.repeats)
        command = command_seconds(files, checkpoint, folder, min(args.repeats, 3))
        onnx_against_torch = onnx_rates(checkpoint, folder, args.repeats * 4)
    finally:
        shutil.rmtree(folder)
    ratio = statistics.median(p / b for p, b in zip(predict, bare, strict=True))
    lines = [
        f"Machine: {machine()}; torch {torch.__version__}; device cpu. ResNet-20 (width 16, "
        f"272k parameters) on {len(files):,} CIFAR-10 test JPEGs (32x32), batches of {BATCH}; "
        f"median of {args.repeats} (min-max).",
        "",
        "| what | images/s |",
        "| --- | --- |",
        f"| bare loop: `model(batch)`, decoded batches | {spread(bare)} |",
        f"| predict path: classifier, softmax, top-3, JSON lines | {spread(predict)} |",
        f"| predict path / bare loop (goal ≥ 0.95) | {ratio:.3f} |",
        f"| decoding alone (`ImageFiles`, default workers) | {spread(decode)} |",
        *(
            f"| torch CPU / onnxruntime CPU (exported), one batch of {size} | "
            f"{spread(torch_cpu)} / {spread(onnx_cpu)} |"
            for size, (torch_cpu, onnx_cpu) in onnx_against_torch.items()
        ),
        "",
        f"`python -m engine predict` on the {len(files):,} files, start to last line: "
        f"{statistics.median(command):.1f} s ({min(command):.1f}-{max(command):.1f}), "
        f"{len(files) / statistics.median(command):,.0f} images/s with torch's import.",
    ]
    publish(__file__, "predict", "Predicting with a trained run", lines)


if __name__ == "__main__":
    main()
