"""Where a run's weights start: scratch, torchvision's ImageNet weights, an earlier run, a file.

Loading is never silent: every key of the source that did not load (missing in the model,
unexpected, or of another shape) is listed in the report that goes into the `started`
event. The classifier head is new unless the source's fits the run and `--keep-head` asks to
keep it. Files are read with `weights_only=True` or as safetensors, so a file can never run
code.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.contract.errors import RunError, load_failure_reason
from engine.contract.spec import RunSpec
from engine.models import build_model, model_stages

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Below this share of the backbone's tensors found with the right shape, a source is taken
# to be another architecture and refused, rather than loaded into a mostly random network.
MIN_BACKBONE_MATCH = 0.5


@dataclass
class InitReport:
    """What loading the starting weights did, for the `started` event and the user."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    head: str = "new"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def as_event(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": self.loaded,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "mismatched": self.mismatched,
            "head": self.head,
        }


def imagenet_weights(arch: str, variant: str | None) -> Any:
    """torchvision's weights enum entry for `arch` (`v1`, `v2` or the best when None)."""
    import torchvision  # loaded only where used: see engine/__init__.py

    weights = torchvision.models.get_model_weights(arch)
    if variant is None:
        return weights.DEFAULT
    name = f"IMAGENET1K_{variant.upper()}"
    if name not in weights.__members__:
        offered = ", ".join(f"imagenet:{w.name.split('_')[-1].lower()}" for w in weights)
        raise RunError("bad_input", f"{arch} has no {name} weights", f"use one of: {offered}")
    return weights[name]


def imagenet_file(arch: str, variant: str | None) -> Path:
    """Where torchvision keeps the weights file of `arch` once downloaded."""
    url = imagenet_weights(arch, variant).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of a weights file, and the run's record where it is one of our checkpoints.

    `.safetensors` files are read as such; anything else with `torch.load(weights_only=True)`,
    which refuses a file that would run code.
    """
    if not path.is_file():
        raise RunError("bad_input", f"no weights file at {path}", "check the path of --init file:")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), {}
        except Exception as error:  # a damaged or foreign file: the library's words say which
            raise RunError("bad_input", f"{path} is not a safetensors file ({error})", "") from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickles with code in them, truncated files, other formats
        raise RunError(
            "bad_input",
            f"{path} cannot be read as weights ({load_failure_reason(error)})",
            "give a state dict saved with torch.save, or a .safetensors file",
        ) from None
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        record = {key: value for key, value in payload.items() if key != "model"}
        return payload["model"], record
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload, {}
    raise RunError(
        "bad_input", f"{path} holds no state dict", "save one with torch.save(model.state_dict())"
    )


def source_of(spec: RunSpec) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any], str]:
    """The starting tensors of `spec` (None for scratch), the source's record, and its name."""
    kind, _, rest = spec.init.partition(":")
    if kind == "scratch":
        return None, {}, "scratch"
    if kind == "imagenet":
        variant = rest or None
        weights = imagenet_weights(spec.arch, variant)
        path = imagenet_file(spec.arch, variant)
        if not path.is_file():
            if not spec.download:
                raise RunError(
                    "dataset_missing",
                    f"ImageNet weights for {spec.arch} are not in torchvision's cache: "
                    f"looked for {path}",
                    f"add --download to fetch them, or copy the file there (from {weights.url})",
                )
            weights.get_state_dict(progress=False, check_hash=True)
        tensors, _ = read_state_dict(path)
        return tensors, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}, weights.name
    if kind == "run":
        if not spec.init_checkpoint:
            raise RunError(
                "bad_input",
                f"--init {spec.init} was not resolved to a checkpoint",
                "launch it with resnet-tui, which finds the run's checkpoint in the store",
            )
        tensors, record = read_state_dict(Path(spec.init_checkpoint))
        return tensors, record, spec.init
    tensors, record = read_state_dict(Path(rest).expanduser())
    return tensors, record, spec.init


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the model's classifier head."""
    names = {id(module): name for name, module in model.named_modules()}
    return tuple(names[id(module)] + "." for module in model_stages(model)["head"])


def load_initial_weights(model: nn.Module, spec: RunSpec) -> InitReport:
    """Load the spec's starting weights into `model` and say what happened."""
    tensors, record, source = source_of(spec)
    report = InitReport(source=source)
    if tensors is None:
        return report
    if record.get("arch") and record["arch"] != spec.arch:
        raise RunError(
            "bad_input",
            f"{spec.init} holds {record['arch']} weights; this run is a {spec.arch}",
            f"use --arch {record['arch']}, or start from weights of a {spec.arch}",
        )
    own = model.state_dict()
    heads = head_prefixes(model)
    keep_head = spec.keep_head and all(
        key in tensors and tensors[key].shape == own[key].shape
        for key in own
        if key.startswith(heads)
    )
    chosen: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if key.startswith(heads) and not keep_head:
            continue
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != tensor.shape:
            report.mismatched.append(f"{key} {tuple(tensor.shape)} -> {tuple(own[key].shape)}")
        else:
            chosen[key] = tensor
    backbone = [key for key in own if not key.startswith(heads)]
    matched = sum(key in chosen for key in backbone)
    if backbone and matched < MIN_BACKBONE_MATCH * len(backbone):
        raise RunError(
            "bad_input",
            f"{spec.init} does not fit a {spec.arch}: only {matched} of its {len(backbone)} "
            "backbone tensors match by name and shape",
            "check --arch and --width against the source's",
        )
    model.load_state_dict(chosen, strict=False)
    report.loaded = len(chosen)
    report.missing = [key for key in backbone if key not in chosen]
    report.head = "kept" if keep_head else "new"
    if "mean" in record and "std" in record:
        report.mean, report.std = tuple(record["mean"]), tuple(record["std"])
    return report


def replace_head(model: nn.Module, kind: str, init: str) -> None:
    """Give the model a new head of `kind` (`linear` or `mlp`) and `init` (`default`, `normal`).

    The MLP's hidden layer is as wide as the features; `normal` draws weights from N(0, 0.01)
    and zeroes the biases, else PyTorch's default initialisation stays.
    """
    old = model_stages(model)["head"][0]
    features, classes = old.in_features, old.out_features
    if kind == "mlp":
        head: nn.Module = nn.Sequential(
            nn.Linear(features, features), nn.ReLU(inplace=True), nn.Linear(features, classes)
        )
    else:
        head = nn.Linear(features, classes)
    if init == "normal":
        for layer in head.modules():
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
    model.fc = head


@dataclass
class RunModel:
    """A finished run's network, rebuilt from its checkpoint, with what it was trained on."""

    model: nn.Module
    arch: str
    width: int | None
    small_stem: bool
    classes: list[str]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    spec: RunSpec
    record: dict[str, Any]  # the checkpoint's record: all it holds but the weights


def network_of_record(record: dict[str, Any]) -> nn.Module:
    """A network as a checkpoint's record describes it (architecture, classes, channels,
    width, stem, head), with the weights it starts with, not the run's."""
    spec = RunSpec.from_json(record["spec"])
    model = build_model(
        record["arch"],
        len(record["classes"]),
        record["in_channels"],
        record.get("width"),
        record.get("small_stem", True),
    )
    if spec.head != "linear":
        replace_head(model, spec.head, spec.head_init)
    return model


def load_run_model(path: Path, what: str) -> RunModel:
    """Rebuild the network of one of our checkpoints (`what` names it in errors), on the CPU.

    The architecture, width, stem and head come from the run's own record in the file, so
    any run's checkpoint loads, whatever this run's options are.
    """
    tensors, record = read_state_dict(path)
    if not {"arch", "classes", "spec"} <= set(record):
        raise RunError(
            "bad_input",
            f"{what}: {path} is not a resnet-tui checkpoint (it has no run record)",
            "give a run from the store",
        )
    spec = RunSpec.from_json(record["spec"])
    # The second head of a run that learned without forgetting answers its old task; the
    # network others use (as teacher, member or start) is the run's own.
    tensors = {key: value for key, value in tensors.items() if not key.startswith("old_fc.")}
    model = network_of_record(record)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise RunError(
            "bad_input",
            f"{what}: the weights in {path} do not fit its own record ({error})".splitlines()[0],
            "the checkpoint is damaged; train the run again",
        ) from None
    return RunModel(
        model=model,
        arch=record["arch"],
        width=record.get("width"),
        small_stem=record.get("small_stem", True),
        classes=list(record["classes"]),
        channels=record["in_channels"],
        image_size=record["image_size"],
        mean=tuple(record["mean"]),
        std=tuple(record["std"]),
        spec=spec,
        record=record,
    )


class InputAdapter:
    """Re-normalises a batch made for one model's mean and std to another's.

    A network sees images normalised as in its own training; batches normalised for the run
    are turned back into pixels and normalised the member's way, in one multiply-add.
    """

    def __init__(
        self,
        batch_mean: tuple[float, ...],
        batch_std: tuple[float, ...],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
    ) -> None:
        def column(values: tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(values, device=device).view(1, -1, 1, 1)

        self.same = tuple(batch_mean) == tuple(mean) and tuple(batch_std) == tuple(std)
        self.scale = column(batch_std) / column(std)
        self.shift = (column(batch_mean) - column(mean)) / column(std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.same else images * self.scale + self.shift
