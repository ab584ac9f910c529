"""The run specification: every choice of one training run, its validation and its JSON form.

Torch-free: the CLI and the app validate a spec before anything starts, with the same
one-line messages, and the engine reads the JSON back. Each field's metadata holds its help
text, so the CLI's flags are made from this one list.
"""

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.contract import catalog


class SpecError(ValueError):
    """A spec that cannot run; the message is one line saying what is wrong and what to do."""


def _option(default: Any, help: str, internal: bool = False) -> Any:
    """A spec field with its help text; `internal` ones are set by resnet-tui, not by users."""
    return field(default=default, metadata={"help": help, "internal": internal})


@dataclass
class RunSpec:
    """Everything that defines one training run."""

    name: str | None = _option(None, "A name for the run (default: arch on dataset).")
    arch: str = _option("resnet8", "Architecture; `resnet-tui archs` lists them.")
    width: int | None = _option(
        None, "Channels of the first stage, for CIFAR ResNets and cnn (default: 16; 8 for resnet8)."
    )
    small_stem: bool | None = _option(
        None, "3x3 stride-1 stem for torchvision ResNets (default: on for images <= 64 px)."
    )
    dataset: str = _option("shapes", "Dataset, or imagefolder:PATH; `resnet-tui datasets`.")
    data_root: str | None = _option(
        None, "Where datasets live (default $RESNET_TUI_DATA or ~/.cache/resnet-tui/data)."
    )
    download: bool = _option(False, "Download a missing torchvision dataset.")
    classes: list[str] | None = _option(
        None, "Train on these classes only, by index or name, e.g. 0,1,2 or cat,dog."
    )
    train_per_class: int | None = _option(
        None, "Few-shot: this many training images per class, chosen by the seed."
    )
    val_fraction: float = _option(0.1, "Share of the training data held out for validation.")
    folds: int | None = _option(
        None,
        "Cross-validation: K runs, each validating on one of K folds of the training data and "
        "training on the rest; the mean and spread of their metrics are reported.",
    )
    fold: int | None = _option(None, "Which fold of --folds this run validates on.", internal=True)
    limit: int | None = _option(None, "Train on at most this many images (quick runs).")
    image_size: int | None = _option(None, "Resize images to this many pixels a side.")
    augment: bool = _option(True, "Random crop and flip for natural images and shapes.")
    init: str = _option(
        "scratch", "Where the weights start: scratch, imagenet, run:ID[:last] or file:PATH."
    )
    keep_head: bool = _option(False, "Keep the source's classifier head when its classes fit.")
    head: str = _option("linear", "A new classifier head: linear or mlp.")
    head_init: str = _option(
        "default", "The new head's initialisation: default (PyTorch's) or normal (N(0, 0.01))."
    )
    freeze: str = _option("full", "Which parts train: full, head, last-K, gradual or lp-ft.")
    unfreeze_every: int = _option(1, "gradual: epochs between thawing one more stage.")
    probe_epochs: int = _option(1, "lp-ft: epochs of the linear probe before fine-tuning.")
    ft_lr_scale: float = _option(0.1, "lp-ft: fine-tuning runs at this times the lr.")
    backbone_lr_scale: float = _option(1.0, "Learning rate of the backbone, times the lr.")
    layer_decay: float = _option(
        1.0,
        "Layer-wise lr decay: each stage below the head learns at this times the one above "
        "(e.g. 0.7).",
    )
    l2sp: float = _option(
        0.0,
        "L2-SP: pull the backbone toward its starting weights with this strength, in place of "
        "weight decay on it (e.g. 0.01).",
    )
    bn: str = _option(
        "frozen", "BatchNorm in frozen parts: frozen (statistics kept), eval or train."
    )
    init_checkpoint: str | None = _option(
        None, "The checkpoint file --init run:ID stands for.", internal=True
    )
    teacher: list[str] | None = _option(
        None,
        "Distil from these runs: run:ID, or several (run:3,run:5) whose logits are averaged.",
    )
    kd_alpha: float = _option(
        0.9, "Distillation: the KD share of the loss; (1 - alpha) is cross-entropy."
    )
    kd_temperature: float = _option(
        4.0, "Distillation: the temperature that softens teacher and student outputs."
    )
    lwf: float = _option(
        0.0,
        "Learning without forgetting: keep the --init run's head and its answers on the new "
        "data, this share of the loss (e.g. 0.5); 0 is off.",
    )
    teacher_checkpoints: list[str] | None = _option(
        None, "The checkpoint files --teacher stands for.", internal=True
    )
    device: str = _option("auto", "auto, cpu, cuda, cuda:N or mps.")
    devices: list[str] | None = _option(
        None,
        "Train on several devices at once, one process each (torchrun and DDP), e.g. "
        "cuda:0,cuda:1; the batch size is the global batch, split across them.",
    )
    nproc: int | None = _option(
        None,
        "Processes for DDP on this machine: with --device cuda one GPU each (cuda:0, cuda:1, "
        "...), with --device cpu each on its share of the cores.",
    )
    sync_bn: bool = _option(False, "DDP: BatchNorm statistics over the global batch (SyncBN).")
    nnodes: int | None = _option(
        None,
        "Machines the run spans (torchrun --nnodes): start the same command on each, with "
        "--rdzv-endpoint; each keeps the run's events and checkpoints in its own store.",
    )
    rdzv_endpoint: str | None = _option(
        None,
        "host:port where the machines of a run with --nnodes meet (torchrun rendezvous), "
        "e.g. node0:29500: a machine of the run, and a port free on it.",
    )
    optimizer: str = _option("adamw", "adamw, sgd or adam.")
    lr: float | None = _option(
        None, "Peak learning rate (default: 5e-3 for adamw, 0.1 for sgd, 1e-3 for adam)."
    )
    momentum: float = _option(0.9, "SGD momentum.")
    nesterov: bool = _option(True, "Nesterov momentum for SGD.")
    weight_decay: float | None = _option(
        None, "Weight decay, not on norms and biases (default: 5e-4 sgd, 0.05 adamw, 0 adam)."
    )
    schedule: str = _option("onecycle", "Learning-rate schedule: onecycle, cosine, step, constant.")
    warmup_epochs: float = _option(0.0, "Linear warm-up epochs for cosine, step and constant.")
    lr_gamma: float = _option(0.1, "Factor of the step schedule.")
    label_smoothing: float = _option(0.0, "Label smoothing of the cross-entropy loss.")
    grad_clip: float | None = _option(None, "Clip the gradient norm to this value.")
    amp: str = _option(
        "auto", "Mixed precision: auto (bf16/fp16 on CUDA, off on CPU), off, bf16, fp16."
    )
    channels_last: bool | None = _option(None, "channels_last memory format (default: on CUDA).")
    compile: bool = _option(
        False, "Compile the model with torch.compile (slower first epoch, faster after, on CUDA)."
    )
    epochs: int = _option(8, "Training epochs.")
    batch_size: int = _option(64, "Training batch size.")
    eval_batch_size: int | None = _option(None, "Evaluation batch size (default 2x batch size).")
    workers: int | None = _option(None, "Data-loading processes for image folders.")
    seed: int = _option(0, "Random seed; a seeded CPU run is reproducible bit for bit.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(
                f"the spec is not valid JSON ({error.msg} at line {error.lineno})"
            ) from None
        if not isinstance(data, dict):
            raise SpecError("the spec must be a JSON object of option names and values")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        """Build and validate a spec from option names (`batch_size` or `batch-size`)."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in known:
                flags = [option.replace("_", "-") for option in known]
                name = _resolve(str(key), flags, "option").replace("-", "_")
            if value is not None:
                values[name] = _coerce(name, value, known[name].type)
        spec = cls(**values)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Check every choice; resolve names to their canonical spelling. Raises SpecError."""
        self.arch = _resolve(self.arch, list(catalog.ARCHITECTURES), "architecture")
        self.dataset = normalise_dataset(self.dataset)
        self.optimizer = _resolve(self.optimizer, list(catalog.OPTIMIZERS), "optimizer")
        self.schedule = _resolve(self.schedule, list(catalog.SCHEDULES), "schedule")
        self.init = normalise_init(self.init)
        if (
            self.init.startswith("imagenet")
            and catalog.ARCHITECTURES[self.arch].family != "torchvision"
        ):
            raise SpecError(
                f"{self.arch} has no ImageNet weights; --init imagenet needs a torchvision "
                "ResNet, e.g. --arch resnet18"
            )
        self.freeze = normalise_freeze(self.freeze)
        if self.teacher is not None:
            self.teacher = normalise_teachers(self.teacher)
        self.head = _resolve(self.head, list(catalog.HEADS), "head")
        self.head_init = _resolve(self.head_init, list(catalog.HEAD_INITS), "head initialisation")
        self.bn = _resolve(self.bn, list(catalog.BATCHNORM_MODES), "BatchNorm mode")
        self.amp = _resolve(self.amp, list(catalog.AMP_MODES), "amp mode")
        self.device = normalise_device(self.device)
        self._validate_processes()
        for option in fields(self):
            value = getattr(self, option.name)
            if isinstance(value, float) and not math.isfinite(value):
                flag = option.name.replace("_", "-")
                raise SpecError(f"--{flag} must be a finite number, not {value}")
        _positive("epochs", self.epochs)
        _positive("batch-size", self.batch_size)
        for name in ("lr", "width", "train_per_class", "limit", "image_size", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None:
                _positive(name.replace("_", "-"), value)
        if self.grad_clip is not None:
            _positive("grad-clip", self.grad_clip)
        for name in ("unfreeze_every", "probe_epochs", "ft_lr_scale", "backbone_lr_scale"):
            _positive(name.replace("_", "-"), getattr(self, name))
        if not 0 < self.layer_decay <= 1:
            raise SpecError("--layer-decay must be above 0 and at most 1, e.g. 0.7 (1 is off)")
        if self.l2sp < 0:
            raise SpecError("--l2sp must be 0 (off) or more, e.g. 0.01")
        if self.l2sp > 0 and self.init == "scratch":
            raise SpecError(
                "--l2sp pulls toward the starting weights, which scratch does not have; "
                "give --init (imagenet, run:ID or file:PATH) or leave --l2sp out"
            )
        if not 0 <= self.lwf < 1:
            raise SpecError("--lwf must be at least 0 and below 1, e.g. 0.5 (0 is off)")
        if self.lwf > 0:
            if not self.init.startswith(("run:", "file:")):
                raise SpecError(
                    "--lwf keeps the source run's head beside the new one; give the source "
                    "with --init run:ID (or file: of a resnet-tui checkpoint)"
                )
            if self.keep_head:
                raise SpecError(
                    "--lwf keeps the source's head beside a new one; leave --keep-head out"
                )
            if self.teacher:
                raise SpecError("--lwf and --teacher both distil; choose one")
        if not 0 <= self.kd_alpha <= 1:
            raise SpecError("--kd-alpha must be between 0 and 1, e.g. 0.9 (0 is plain training)")
        _positive("kd-temperature", self.kd_temperature)
        if self.freeze == "lp-ft" and self.probe_epochs >= self.epochs:
            raise SpecError(
                f"--probe-epochs ({self.probe_epochs}) leaves no epoch to fine-tune in; "
                f"give fewer than --epochs ({self.epochs})"
            )
        if self.weight_decay is not None and self.weight_decay < 0:
            raise SpecError("--weight-decay must be 0 or more")
        if self.workers is not None and self.workers < 0:
            raise SpecError("--workers must be 0 or more")
        if self.folds is not None and not 2 <= self.folds <= 20:
            raise SpecError("--folds must be from 2 to 20, e.g. --folds 5")
        if self.fold is not None and (self.folds is None or not 0 <= self.fold < self.folds):
            raise SpecError("a run's fold must be one of its --folds (0 to K-1)")
        if not 0 <= self.val_fraction < 1:
            raise SpecError("--val-fraction must be at least 0 and below 1, e.g. 0.1")
        if not 0 <= self.label_smoothing < 1:
            raise SpecError("--label-smoothing must be at least 0 and below 1, e.g. 0.1")
        if not 0 <= self.momentum < 1:
            raise SpecError("--momentum must be at least 0 and below 1, e.g. 0.9")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            raise SpecError("--warmup-epochs must be 0 or more and fewer than --epochs")
        if not 0 < self.lr_gamma <= 1:
            raise SpecError("--lr-gamma must be above 0 and at most 1, e.g. 0.1")
        arch = catalog.ARCHITECTURES[self.arch]
        if self.width is not None and arch.family == "torchvision":
            raise SpecError(f"--width applies to CIFAR ResNets and cnn, not to {self.arch}")
        if self.classes is not None:
            self.classes = [c.strip() for c in self.classes if c.strip()]
            if len(self.classes) < 2:
                raise SpecError("--classes needs at least two classes, e.g. --classes 0,1")
            known = catalog.DATASETS[dataset_kind(self.dataset)].classes
            if known:
                self.classes = resolve_classes(self.classes, known)
            else:  # an image folder's classes are known once it is scanned (contract/locate.py)
                _refuse_repeats(self.classes)

    def _validate_processes(self) -> None:
        """Check --devices and --nproc; with --devices, --device becomes the first of them."""
        if self.nproc is not None:
            _positive("nproc", self.nproc)
        if self.devices is not None:
            self.devices = [normalise_device(name) for name in self.devices if name.strip()]
            kinds = {name.split(":")[0] for name in self.devices}
            if not self.devices or kinds - {"cpu", "cuda"} or len(kinds) > 1:
                raise SpecError(
                    "--devices takes CUDA devices or cpu, one kind, e.g. cuda:0,cuda:1 or cpu,cpu"
                )
            cuda = [name for name in self.devices if name.startswith("cuda")]
            if "cuda" in cuda or len(set(cuda)) < len(cuda):
                raise SpecError("--devices: name each GPU once, by number, e.g. cuda:0,cuda:1")
            if self.nproc is not None and self.nproc != len(self.devices):
                raise SpecError(
                    f"--nproc {self.nproc} and {len(self.devices)} --devices disagree; give one"
                )
            self.device = self.devices[0]
        elif self.processes > 1 and (self.device == "mps" or self.device.startswith("cuda:")):
            raise SpecError(
                "--nproc needs --device cuda (one GPU a process), cpu or auto; "
                "for chosen GPUs give --devices cuda:0,cuda:1"
            )
        self._validate_nodes()
        if self.sync_bn and self.world == 1:
            raise SpecError("--sync-bn is for several processes; add --devices or --nproc")
        if self.sync_bn and self.device == "cpu":
            raise SpecError("--sync-bn needs CUDA devices: PyTorch's SyncBatchNorm runs on GPUs")
        if self.batch_size % self.world:
            raise SpecError(
                f"--batch-size {self.batch_size} is the global batch and must split evenly "
                f"across {self.world} processes, e.g. --batch-size "
                f"{self.world * max(1, self.batch_size // self.world)}"
            )

    def _validate_nodes(self) -> None:
        """Check --nnodes and --rdzv-endpoint: both or neither, the endpoint as host:port."""
        if self.nnodes is not None:
            _positive("nnodes", self.nnodes)
        if self.nodes > 1 and not self.rdzv_endpoint:
            raise SpecError(
                f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT, where the machines "
                "meet, e.g. --rdzv-endpoint node0:29500"
            )
        if self.rdzv_endpoint is None:
            return
        if self.nodes == 1:
            raise SpecError("--rdzv-endpoint is for a run on several machines; add --nnodes N")
        host, _, port = self.rdzv_endpoint.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SpecError(
                f"--rdzv-endpoint {self.rdzv_endpoint!r} is not HOST:PORT; write e.g. node0:29500"
            )
        self.rdzv_endpoint = f"{host}:{int(port)}"

    def on_one_device(self, device: str) -> "RunSpec":
        """This spec trained on `device` alone: a run on several devices or machines goes on
        in one process (a worker's device, or `resume --device`)."""
        alone = {"devices": None, "nproc": None, "sync_bn": False}
        alone |= {"nnodes": None, "rdzv_endpoint": None, "device": device}
        return RunSpec.from_dict({**asdict(self), **alone})

    @property
    def placement(self) -> str:
        """Where the run trains, in a word: cuda:0, or cuda:0,cuda:1, or cpu x2, and on how
        many machines: cuda x8 on 2 nodes."""
        if self.devices and len(self.devices) > 1:
            here = ",".join(self.devices)
        else:
            here = f"{self.device} x{self.processes}" if self.processes > 1 else self.device
        return f"{here} on {self.nodes} nodes" if self.nodes > 1 else here

    @property
    def processes(self) -> int:
        """How many training processes the run has on each machine: 1, or one per device."""
        return len(self.devices) if self.devices else (self.nproc or 1)

    @property
    def nodes(self) -> int:
        """How many machines the run spans."""
        return self.nnodes or 1

    @property
    def world(self) -> int:
        """How many training processes the run has in all (DDP ranks): 1 on one device."""
        return self.processes * self.nodes

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else catalog.DEFAULT_LR[self.optimizer]

    @property
    def decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return catalog.DEFAULT_WEIGHT_DECAY[self.optimizer]

    @property
    def display_name(self) -> str:
        return self.name or f"{self.arch} on {self.dataset}"


FUSION_KINDS = {
    "ensemble": "the averaged probabilities of several runs",
    "soup": "the averaged weights of runs fine-tuned from the same starting weights",
    "wise-ft": "a fine-tuned run's backbone mixed with its starting weights (WiSE-FT)",
}


@dataclass
class FusionSpec:
    """An ensemble, a model soup or a WiSE-FT mix of finished runs: what the engine fuses.

    `members` are `{"run": id, "name": ..., "checkpoint": path}`, checked against the store
    by resnet-tui before the engine starts. `alpha` is WiSE-FT's share of the fine-tuned
    weights; None picks it on validation data.
    """

    kind: str
    members: list[dict[str, Any]]
    weights: list[float] | None = None
    greedy: bool = False
    alpha: float | None = None
    device: str = "auto"
    data_root: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FusionSpec":
        try:
            data = json.loads(text)
            fusion = cls(**data)
        except (json.JSONDecodeError, TypeError) as error:
            raise SpecError(f"the fusion spec is not valid ({error})") from None
        fusion.validate()
        return fusion

    def validate(self) -> None:
        """Check what can be checked without the store. Raises SpecError."""
        self.kind = _resolve(self.kind, list(FUSION_KINDS), "fusion")
        self.device = normalise_device(self.device)
        if self.kind == "wise-ft" and len(self.members) != 1:
            raise SpecError("--with-init mixes one run with its starting weights; give one id")
        if self.kind != "wise-ft" and len(self.members) < 2:
            article = "an" if self.kind == "ensemble" else "a"
            raise SpecError(f"{article} {self.kind} needs two runs or more, e.g. 3 4 5")
        if self.weights is not None:
            if len(self.weights) != len(self.members):
                raise SpecError(
                    f"--weights has {len(self.weights)} numbers for {len(self.members)} runs; "
                    "give one per run"
                )
            if any(not math.isfinite(w) or w < 0 for w in self.weights) or not sum(self.weights):
                raise SpecError("--weights must be 0 or more, and not all 0, e.g. 2,1,1")
        if self.greedy and self.kind != "soup":
            raise SpecError("--greedy is for soups; leave it out here")
        if self.greedy and self.weights is not None:
            raise SpecError("--greedy chooses the members itself; leave --weights out")
        if self.alpha is not None and self.kind != "wise-ft":
            raise SpecError("an alpha is for --with-init (WiSE-FT) only")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise SpecError(
                "--with-init must be between 0 and 1 (1 is the fine-tuned run), or auto"
            )


def spec_options() -> list[tuple[str, Any, Any, str]]:
    """Each user's option as (name, type, default, help), in the order users read them."""
    return [
        (f.name, f.type, f.default, f.metadata["help"])
        for f in fields(RunSpec)
        if not f.metadata["internal"]
    ]


INIT_FORMS = "scratch, imagenet, imagenet:v1, imagenet:v2, run:ID, run:ID:last or file:PATH"


def normalise_init(init: str) -> str:
    """Check an --init source and write it one way: `run:12`, `file:/abs/path.pt`..."""
    kind, _, rest = init.strip().partition(":")
    kind = kind.lower()
    if kind == "scratch" and not rest:
        return "scratch"
    if kind == "imagenet" and rest.lower() in ("", "v1", "v2"):
        return f"imagenet:{rest.lower()}" if rest else "imagenet"
    if kind == "run":
        run_id, _, which = rest.partition(":")
        if run_id.isdigit() and which in ("", "best", "last"):
            return f"run:{int(run_id)}" + (":last" if which == "last" else "")
        raise SpecError(f"--init {init}: write run:ID or run:ID:last, e.g. run:12")
    if kind == "file":
        if not rest:
            raise SpecError("--init file: needs a path, e.g. file:~/weights/resnet20.pt")
        return "file:" + str(Path(os.path.expanduser(rest)).resolve())
    raise SpecError(f"unknown --init {init!r}; use {INIT_FORMS}")


def normalise_teachers(teachers: list[str]) -> list[str]:
    """Check --teacher runs and write each as `run:ID` (or `run:ID:last`); a bare id will do."""
    named = []
    for item in (t.strip() for t in teachers):
        if not item:
            continue
        try:
            source = normalise_init(f"run:{item}" if item.isdigit() else item)
        except SpecError:
            source = ""
        if not source.startswith("run:"):
            raise SpecError(f"--teacher {item}: a teacher is a run in the store, e.g. run:12")
        if source in named:
            raise SpecError(f"--teacher names {source} twice; list each teacher once")
        named.append(source)
    if not named:
        raise SpecError("--teacher needs a run, e.g. --teacher run:12")
    return named


def normalise_freeze(freeze: str) -> str:
    """Check a --freeze policy and write it one way (`last-2`, `lp-ft`)."""
    text = freeze.strip().lower().replace("_", "-")
    if text.startswith("last"):
        count = text.removeprefix("last").lstrip("-")
        if count.isdigit() and int(count) >= 1:
            return f"last-{int(count)}"
        raise SpecError(f"--freeze {freeze}: write last-K with K a stage count, e.g. last-1")
    if text in ("lpft", "lp-ft"):
        return "lp-ft"
    named = [policy for policy in catalog.FREEZE_POLICIES if policy != "last-K"]
    return _resolve(text, named, "freeze policy", listed=list(catalog.FREEZE_POLICIES))


def dataset_kind(dataset: str) -> str:
    """The catalog entry of a dataset name: `imagefolder` for any `imagefolder:PATH`."""
    return "imagefolder" if dataset.startswith("imagefolder:") else dataset


def normalise_dataset(dataset: str) -> str:
    if dataset.lower().startswith(("imagefolder:", "folder:")):
        path = dataset.split(":", 1)[1]
        if not path:
            raise SpecError("imagefolder needs a path, e.g. --dataset imagefolder:~/data/pets")
        return "imagefolder:" + str(Path(os.path.expanduser(path)).resolve())
    if dataset.lower() == "imagefolder":
        raise SpecError("imagefolder needs a path, e.g. --dataset imagefolder:~/data/pets")
    choices = [name for name in catalog.DATASETS if name != "imagefolder"]
    return _resolve(dataset, choices + ["imagefolder"], "dataset")


def normalise_device(device: str) -> str:
    """Check the form of a device name; whether it is there is the engine's to say."""
    name = device.strip().lower()
    if name in ("auto", "cpu", "cuda", "mps"):
        return name
    if name.startswith("cuda:") and name[5:].isdigit():
        return name
    raise SpecError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps")


def resolve_classes(chosen: list[str], known: tuple[str, ...]) -> list[str]:
    """Turn class indices or names into names of `known`; raise SpecError for any other."""
    names = []
    for item in chosen:
        if item.isdigit() and int(item) < len(known) and item not in known:
            names.append(known[int(item)])
        elif item in known:
            names.append(item)
        else:
            raise SpecError(
                f"--classes: no class '{item}'; the classes are "
                + ", ".join(f"{i}={c}" for i, c in enumerate(known[:20]))
                + (" ..." if len(known) > 20 else "")
            )
    _refuse_repeats(names)
    return names


def _refuse_repeats(names: list[str]) -> None:
    """Raise SpecError if a class is named twice (by index and by name counts as twice)."""
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        raise SpecError(f"--classes names a class twice ({repeated[0]}); list each class once")


def _resolve(name: str, choices: list[str], what: str, listed: list[str] | None = None) -> str:
    try:
        return catalog.resolve_name(name, choices, what, listed)
    except ValueError as error:
        raise SpecError(str(error)) from None


def _positive(flag: str, value: float) -> None:
    if not value > 0:
        raise SpecError(f"--{flag} must be a positive number, not {value}")


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Turn a value from JSON, TOML or the command line into the field's type."""
    flag = "--" + name.replace("_", "-")
    text = str(kind)
    try:
        if "list" in text:
            if isinstance(value, str):
                return [part for part in value.split(",")]
            return [str(part) for part in value]
        if "bool" in text:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "on", "1"):
                return True
            if str(value).lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if "int" in text:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if "float" in text:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        wanted = next(w for w in ("list", "bool", "int", "float", "str") if w in text)
        words = {"list": "a comma-separated list", "bool": "true or false", "int": "a whole number"}
        expected = words.get(wanted, "a number" if wanted == "float" else "text")
        raise SpecError(f"{flag} must be {expected}, not {value!r}") from None
