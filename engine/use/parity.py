"""Whether an exported model computes what the run's own network does: the same logits (to
float rounding) and the same top class, on the run's test images or on random inputs.

Export (engine/use/export.py) checks the file it wrote before it keeps it; the figures go
into the model's sidecar and the `exported` line.
"""

import copy
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.contract.errors import RunError, UnreadableImage
from engine.contract.spec import RunSpec
from engine.use.trained import Preprocessing

# Images in the check's first batch; its second takes the first few of them, a batch of
# another size (an ONNX file's batch dimension is dynamic: any size must work).
CHECK_BATCH = 64
SECOND_BATCH = 3
# The largest difference in logits a kept file may show, relative to the logits' size: fp32
# rounding in another runtime gives about 1e-6.
TOLERANCE = 1e-4

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Inputs:
    """The images a check runs on, and what they are in the user's words."""

    images: torch.Tensor
    description: str
    why_random: str | None = None


@dataclass(frozen=True)
class Parity:
    """How closely an exported file's logits match the run's network."""

    runtime: str
    max_abs_diff: float
    top1_identical: bool
    checked_on: str
    batch_sizes: list[int]
    largest_logit: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= TOLERANCE * max(1.0, self.largest_logit)

    def as_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "max_abs_diff": self.max_abs_diff,
            "top1_identical": self.top1_identical,
            "checked_on": self.checked_on,
            "batch_sizes": self.batch_sizes,
        }


def check_inputs(spec: RunSpec, data_root: str | None, preprocessing: Preprocessing) -> Inputs:
    """The first batch of the run's test images, as its evaluation made them; where they
    cannot be read (the data moved, say), a batch of seeded random normal inputs."""
    from engine.data.batches import make_batches
    from engine.data.datasets import load_dataset

    spec = copy.copy(spec)
    spec.workers = 0  # one batch: decoded here, without worker processes
    if data_root is not None:
        spec.data_root = data_root
    try:
        bundle = load_dataset(spec)
        batches = make_batches(bundle.test, bundle, CHECK_BATCH, torch.device("cpu"), False, spec)
        images, _ = next(iter(batches.epoch(0)))
    except (RunError, UnreadableImage, OSError, ValueError, StopIteration) as error:
        reason = error.message if isinstance(error, RunError) else str(error) or "no test images"
        generator = torch.Generator().manual_seed(0)
        size = (CHECK_BATCH, preprocessing.channels, preprocessing.size, preprocessing.size)
        random = torch.randn(size, generator=generator)
        return Inputs(random, f"{CHECK_BATCH} random inputs", " ".join(reason.split()))
    return Inputs(images.float().contiguous(), f"{len(images)} test images")


def compare(model: nn.Module, runner: Runner, runtime: str, inputs: Inputs) -> Parity:
    """Run the inputs through the run's network and the exported file, in a batch of each
    of two sizes, and measure how far apart their logits are."""
    batches = [inputs.images, inputs.images[:SECOND_BATCH]]
    if len(inputs.images) <= SECOND_BATCH:
        batches[1] = inputs.images[:1]
    largest, worst, same_top1 = 0.0, 0.0, True
    for batch in batches:
        with torch.no_grad():
            expected = model(batch)
        got = runner(batch)
        if got.shape != expected.shape:
            raise RunError(
                "failed",
                f"the exported model gave logits of shape {tuple(got.shape)} for a batch of "
                f"{len(batch)}, not {tuple(expected.shape)}",
                "report it as a bug; --format safetensors keeps the weights as they are",
            )
        worst = max(worst, (got - expected).abs().max().item())
        largest = max(largest, expected.abs().max().item())
        same_top1 &= bool(torch.equal(got.argmax(1), expected.argmax(1)))
    return Parity(
        runtime=runtime,
        max_abs_diff=worst,
        top1_identical=same_top1,
        checked_on=inputs.description,
        batch_sizes=[len(batch) for batch in batches],
        largest_logit=largest,
    )


def onnx_runner(path: Path) -> tuple[Runner, str]:
    """The ONNX file run by onnxruntime on the CPU, and the runtime's name and version."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on the graph are not ours to show
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(batch: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(["logits"], {"images": batch.numpy()})
        return torch.from_numpy(logits)

    return run, f"onnxruntime {onnxruntime.__version__}"


def torchscript_runner(path: Path) -> tuple[Runner, str]:
    """The TorchScript file loaded back with torch.jit.load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        loaded = torch.jit.load(str(path), map_location="cpu")
    loaded.eval()

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return loaded(batch)

    return run, f"torch.jit {torch.__version__}"


def safetensors_runner(path: Path, fresh: nn.Module) -> tuple[Runner, str]:
    """The safetensors file loaded into a freshly built network of the run's architecture;
    a file whose tensors do not fit it fails the check."""
    import safetensors
    from safetensors.torch import load_file

    try:
        fresh.load_state_dict(load_file(str(path)))
    except RuntimeError as error:
        raise RunError(
            "failed",
            f"the written weights do not load back into the run's network "
            f"({str(error).splitlines()[0]})",
            "report it as a bug",
        ) from None
    fresh.eval()

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return fresh(batch)

    return run, f"safetensors {safetensors.__version__}"


def metadata_text(sidecar: dict[str, Any]) -> str:
    """The sidecar as one JSON string, for the metadata a model file carries inside it."""
    return json.dumps(sidecar, sort_keys=True)
