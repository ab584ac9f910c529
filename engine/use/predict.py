"""`python -m engine predict`: a trained model's classes for image files, as JSON lines.

Images are decoded by DataLoader worker processes, a batch at a time, while the model
classifies the batch before. Each line on stdout is a JSON object with a `kind`:

- `started`: total (image files found), classes, device, skipped (how many things in the
  folders searched were not taken: other names, pipes, links to devices...) and
  skipped_examples (the paths of the first five);
- `progress`: done, total (at most four times a second, and once at the end);
- `prediction`: path, top ([class, probability] pairs, most probable first), label (the
  image's parent folder where that is one of the classes, else null);
- `bad_image`: path, reason (a file that could not be decoded; the others go on);
- `finished`: predicted, bad, seconds, accuracy (of the labelled images, else null),
  labelled, stopped (a stop request ended it early; exit code 130).

A mistake of the user's (a path not there, no images, a file not ours) is one line on
stderr, `error: MESSAGE; HINT`, and exit code 2.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from engine.contract.errors import RunError, UnreadableImage
from engine.contract.stopping import StopRequest
from engine.data.image_files import read_image
from engine.use.image_files import FoundImages, image_files
from engine.use.trained import Preprocessing, load_trained_model, read_sidecar

PROGRESS_INTERVAL_S = 0.25
EXIT_STOPPED = 130
# The most images in a batch and decoding processes a command line may ask for.
MAX_BATCH_SIZE = 65_536
MAX_WORKERS = 256
CHECKPOINT_HINT = "give a run's checkpoint (best.pt or last.pt), or --model FILE.onnx"

# A batch as the workers hand it over: the indices of its decoded images, those images
# stacked (None where none decoded), and (index, reason) for each file that failed.
Batch = tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]
# From a batch of inputs, the top-k probabilities and their class indices (on any device).
Classifier = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class ImageFiles(torch.utils.data.Dataset):
    """Image files decoded as the model's inputs; a file that cannot be decoded gives its
    reason instead, so that one bad file never stops the others."""

    def __init__(self, files: list[Path], preprocessing: Preprocessing) -> None:
        self.files = files
        self.preprocessing = preprocessing  # the transform is made in each worker: picklable
        self._transform: Callable[[Any], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str]:
        if self._transform is None:
            self._transform = self.preprocessing.transform()
        path = self.files[index]
        try:
            return index, self._transform(read_image(path, self.preprocessing.mode)), ""
        except UnreadableImage as error:
            reason = str(error).removeprefix(f"cannot read image {path}: ")
            if reason.startswith("cannot identify image file"):
                reason = "not an image file (no image format PIL reads)"
            return index, None, reason or "it cannot be decoded"


def collate(items: list[tuple[int, torch.Tensor | None, str]]) -> Batch:
    """A batch of `ImageFiles` items: the decoded ones stacked, the failed ones listed."""
    decoded = [(index, image) for index, image, _ in items if image is not None]
    failed = [(index, reason) for index, image, reason in items if image is None]
    images = torch.stack([image for _, image in decoded]) if decoded else None
    return [index for index, _ in decoded], images, failed


def run_predict(args: argparse.Namespace, stop: StopRequest) -> int:
    """Classify the image files `args.paths` name; JSON lines on stdout; the exit code."""
    try:
        _check_numbers(args)
        found = image_files(args.paths)
        classes, preprocessing, classify, device = _model(args)
    except RunError as error:
        print(f"error: {error.message}; {error.hint}", file=sys.stderr)
        return 2
    try:
        return _predict(found, classes, preprocessing, classify, device, args, stop)
    except BrokenPipeError:  # whoever read our output is gone: nobody is left to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _check_numbers(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise RunError("bad_input", f"--top-k {args.top_k} is less than 1", "give 1 or more")
    if args.batch_size < 1:
        raise RunError(
            "bad_input", f"--batch-size {args.batch_size} is less than 1", "give 1 or more"
        )
    if args.batch_size > MAX_BATCH_SIZE:
        raise RunError(
            "bad_input",
            f"--batch-size {args.batch_size} is more than {MAX_BATCH_SIZE:,}",
            f"give at most {MAX_BATCH_SIZE:,}",
        )
    if args.workers is not None and args.workers < 0:
        raise RunError("bad_input", f"--workers {args.workers} is negative", "give 0 or more")
    if args.workers is not None and args.workers > MAX_WORKERS:
        raise RunError(
            "bad_input",
            f"--workers {args.workers} is more than {MAX_WORKERS}",
            f"give at most {MAX_WORKERS}",
        )


def _model(args: argparse.Namespace) -> tuple[list[str], Preprocessing, Classifier, str]:
    """The classes, preprocessing and classifier of the checkpoint or exported model, and
    the device it runs on."""
    top_k = args.top_k
    if args.model is not None:
        if not args.model.is_file():
            raise RunError("bad_input", f"{args.model} is not there", "check the path of --model")
        classes, preprocessing, _ = read_sidecar(args.model)
        classify = _onnx_classifier(args.model, classes, preprocessing, top_k)
        return classes, preprocessing, classify, "cpu"
    try:
        trained = load_trained_model(args.checkpoint, args.run)
    except RunError as error:  # its hints are for --init; a damaged file keeps its own
        hint = error.hint if "damaged" in error.hint else CHECKPOINT_HINT
        raise RunError(error.kind, error.message, hint) from None
    device = _device(args.device)
    model = trained.model.to(device)
    top_k = min(top_k, len(trained.classes))

    def classify(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(images.to(device, non_blocking=True))
        top = F.softmax(logits.float(), dim=1).topk(top_k, dim=1)
        if device.type != "cuda":
            return top
        # copied as the GPU gets there, read once the next batch is started
        copied = (top[0].to("cpu", non_blocking=True), top[1].to("cpu", non_blocking=True))
        ready = torch.cuda.Event()
        ready.record()
        return _Answers(*copied, ready)

    return trained.classes, trained.preprocessing, classify, str(device)


class _Answers(tuple):
    """A GPU's top-k probabilities and classes, copied to the CPU as the GPU gets to it."""

    def __new__(cls, values: torch.Tensor, indices: torch.Tensor, ready: Any) -> "_Answers":
        answers = super().__new__(cls, (values, indices))
        answers.ready = ready
        return answers


def _device(name: str) -> torch.device:
    from engine.train.devices import pick_device

    try:
        return pick_device(name)
    except RuntimeError as error:  # a name torch does not know
        raise RunError(
            "bad_input",
            f"--device {name} is not a device ({' '.join(str(error).split())})",
            "give auto, cpu, cuda:N or mps",
        ) from None


def _onnx_classifier(
    model_file: Path, classes: list[str], preprocessing: Preprocessing, top_k: int
) -> Classifier:
    """An exported ONNX model run by onnxruntime on the CPU; a RunError where the model's
    input or output does not fit its sidecar's preprocessing and classes."""
    try:
        import onnxruntime
    except ImportError:
        raise RunError(
            "bad_input",
            "predicting with an .onnx model needs onnxruntime, which is not installed",
            "pip install 'resnet-tui[use]'",
        ) from None
    try:
        session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    except Exception as error:  # not ONNX, damaged, or ops this onnxruntime lacks: its words
        reason = " ".join(str(error).split())[:300]
        raise RunError(
            "bad_input",
            f"{model_file} cannot be loaded as an ONNX model ({reason})",
            "export the run again (resnet-tui export RUN)",
        ) from None
    (given,), (answer, *_) = session.get_inputs(), session.get_outputs()
    if isinstance(answer.shape[-1], int) and answer.shape[-1] != len(classes):
        raise RunError(
            "bad_input",
            f"{model_file} gives {answer.shape[-1]} classes but its sidecar names {len(classes)}",
            "export the run again: model and sidecar must come together",
        )
    _check_input_shape(model_file, list(given.shape), preprocessing)
    fixed = given.shape[0] if isinstance(given.shape[0], int) else None
    top_k = min(top_k, len(classes))

    def classify(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(images)
        if fixed is not None and count % fixed:  # a model exported for batches of `fixed`
            images = F.pad(images, (0, 0, 0, 0, 0, 0, 0, fixed - count % fixed))
        chunks = images.split(fixed or len(images))
        logits = [session.run([answer.name], {given.name: chunk.numpy()})[0] for chunk in chunks]
        scores = torch.cat([torch.from_numpy(chunk) for chunk in logits])[:count]
        return F.softmax(scores.float(), dim=1).topk(top_k, dim=1)

    return classify


def _check_input_shape(model_file: Path, shape: list[Any], preprocessing: Preprocessing) -> None:
    """Refuse a model whose input (batch, channels, height, width), where its dimensions are
    fixed, is not what its sidecar says images are made into, before any image is decoded."""
    wanted = [preprocessing.channels, preprocessing.size, preprocessing.size]
    fits = len(shape) == 4 and all(
        not isinstance(have, int) or have == want
        for have, want in zip(shape[1:], wanted, strict=True)
    )
    if not fits:
        shown = " x ".join("?" if dimension is None else str(dimension) for dimension in shape)
        raise RunError(
            "bad_input",
            f"{model_file} takes inputs of {shown} but its sidecar makes images "
            f"{' x '.join(str(dimension) for dimension in wanted)}",
            "export the run again: model and sidecar must come together",
        )


def _predict(
    found: FoundImages,
    classes: list[str],
    preprocessing: Preprocessing,
    classify: Classifier,
    device: str,
    args: argparse.Namespace,
    stop: StopRequest,
) -> int:
    """Classify the files found a batch at a time, writing each batch's lines as it is done."""
    files = found.files
    started_line = {
        "kind": "started",
        "total": len(files),
        "classes": classes,
        "device": device,
        "skipped": found.skipped,
        "skipped_examples": [str(path) for path in found.skipped_examples],
    }
    _write([started_line])
    known = set(classes)
    labels = [file.parent.name if file.parent.name in known else None for file in files]
    tally = {"predicted": 0, "bad": 0, "labelled": 0, "correct": 0}
    started = time.perf_counter()
    reported = started
    batches = _batches_of_lines(files, preprocessing, classify, args, stop, labels, classes)
    with torch.inference_mode():
        for lines in batches:
            _count(lines, tally)
            now = time.perf_counter()
            done = tally["predicted"] + tally["bad"]
            if now - reported >= PROGRESS_INTERVAL_S or done == len(files):
                lines.append({"kind": "progress", "done": done, "total": len(files)})
                reported = now
            _write(lines)
    labelled = tally["labelled"]

    _write(
        [
            {
                "kind": "finished",
                "predicted": tally["predicted"],
                "bad": tally["bad"],
                "seconds": round(time.perf_counter() - started, 3),
                "accuracy": tally["correct"] / labelled if labelled else None,
                "labelled": labelled,
                "stopped": stop.requested,
            }
        ]
    )
    return EXIT_STOPPED if stop.requested else 0


def _count(lines: list[dict[str, Any]], tally: dict[str, int]) -> None:
    """Add a batch's predictions and bad images to the tally."""
    for line in lines:
        if line["kind"] == "prediction":
            tally["predicted"] += 1
            if line["label"] is not None:
                tally["labelled"] += 1
                tally["correct"] += line["label"] == line["top"][0][0]
        else:
            tally["bad"] += 1


def _batches_of_lines(
    files: list[Path],
    preprocessing: Preprocessing,
    classify: Classifier,
    args: argparse.Namespace,
    stop: StopRequest,
    labels: list[str | None],
    classes: list[str],
) -> Iterator[list[dict[str, Any]]]:
    """Each batch's lines (bad images, predictions). The classifier of a batch is started
    before the answers of the batch before are read, so a GPU is never left waiting for
    the lines to be written."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = args.workers if args.workers is not None else max(1, min(8, (cores or 1) - 1))
    loader = torch.utils.data.DataLoader(
        ImageFiles(files, preprocessing),
        batch_size=args.batch_size,
        num_workers=workers if len(files) > args.batch_size else 0,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available() and args.model is None,
    )
    pending: tuple[list[int], tuple[torch.Tensor, torch.Tensor]] | None = None
    for indices, images, failed in loader:
        lines = [
            {"kind": "bad_image", "path": str(files[index]), "reason": reason}
            for index, reason in failed
        ]
        answers = (indices, classify(images)) if images is not None else None
        if pending is not None:
            lines += _prediction_lines(*pending, files, labels, classes)
        pending = answers
        yield lines
        if stop.requested:
            break
    if pending is not None:
        yield _prediction_lines(*pending, files, labels, classes)


def _prediction_lines(
    indices: list[int],
    answers: tuple[torch.Tensor, torch.Tensor],
    files: list[Path],
    labels: list[str | None],
    classes: list[str],
) -> list[dict[str, Any]]:
    if isinstance(answers, _Answers):
        answers.ready.synchronize()
    probabilities, picks = (answer.cpu().tolist() for answer in answers)
    return [
        {
            "kind": "prediction",
            "path": str(files[index]),
            "top": [[classes[c], round(p, 7)] for c, p in zip(chosen, chances, strict=True)],
            "label": labels[index],
        }
        for index, chosen, chances in zip(indices, picks, probabilities, strict=True)
    ]


def _write(lines: list[dict[str, Any]]) -> None:
    """Write JSON lines to stdout, and flush them so the reader sees them now."""
    if lines:
        sys.stdout.write("".join(json.dumps(line) + "\n" for line in lines))
        sys.stdout.flush()
