"""What a user can choose (architectures, datasets, optimisers, schedules) as plain data.

Torch-free, so the CLI and the app fill their menus and check names without loading torch.
Parameter counts are for 10 classes, RGB input, the default width and the small-input stem;
a test checks them against the built models, and that each architecture's stage table names
every module that has parameters.
"""

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class StageTable:
    """The parts of a family's networks by the names of their modules, as timm's group_matcher
    has them: the stem, the stages from the input up, and the head. Freeze policies, layer-wise
    learning rates and L2-SP all see a network through its table."""

    stem: tuple[str, ...]
    stages: tuple[str, ...]
    head: tuple[str, ...]
    # A run that learns without forgetting keeps its source's head beside the new one, by this
    # name; where the network has it, it is part of the head.
    old_head: str = "old_fc"

    def parts(self) -> dict[str, tuple[str, ...]]:
        """Each part's modules in model order: `stem` (where there is one), `stage1`..`stageN`
        (one module each), `head`."""
        parts = {"stem": self.stem} if self.stem else {}
        parts.update({f"stage{index}": (name,) for index, name in enumerate(self.stages, 1)})
        parts["head"] = self.head
        return parts


STAGE_TABLES = {
    "cifar-resnet": StageTable(
        stem=("conv1", "bn1"), stages=("layer1", "layer2", "layer3"), head=("fc",)
    ),
    "small-cnn": StageTable(stem=(), stages=("layer1", "layer2", "layer3"), head=("fc",)),
    "torchvision-resnet": StageTable(
        stem=("conv1", "bn1"), stages=("layer1", "layer2", "layer3", "layer4"), head=("fc",)
    ),
}


@dataclass(frozen=True)
class Architecture:
    """One network the engine can build."""

    name: str
    family: str  # "cifar", "torchvision" or "cnn"
    stage_table: str  # its parts: a key of STAGE_TABLES
    description: str
    parameters: int
    depth: int = 0
    shortcuts: bool = True
    default_width: int = 16
    imagenet_weights: bool = False


@dataclass(frozen=True)
class Dataset:
    """One dataset the engine can load; `imagefolder` stands for any `imagefolder:PATH`."""

    name: str
    description: str
    source: str  # "builtin", "torchvision" or "folder"
    image_size: int
    channels: int
    classes: tuple[str, ...]
    train_size: int
    test_size: int
    natural_images: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _cifar(depth: int, shortcuts: bool, width: int, parameters: int) -> Architecture:
    name = f"resnet{depth}" if shortcuts else f"plain{depth}"
    kind = "ResNet" if shortcuts else "plain net (no shortcuts)"
    channels = f"{width}/{2 * width}/{4 * width}"
    source = "narrow, for quick runs" if depth == 8 else "He et al. 2016"
    return Architecture(
        name=name,
        family="cifar",
        stage_table="cifar-resnet",
        description=f"CIFAR-style {depth}-layer {kind}, {channels} channels ({source})",
        parameters=parameters,
        depth=depth,
        shortcuts=shortcuts,
        default_width=width,
    )


# depth -> (default width, parameters). The paper's nets (6n+2, n = 3, 5, 7, 9, 18) start at 16
# channels; ResNet-8 (n = 1), not in the paper, is made narrow so the default run takes
# well under a minute on two CPU cores.
_CIFAR_SIZES = {
    8: (8, 19_218),
    20: (16, 269_722),
    32: (16, 464_154),
    44: (16, 658_586),
    56: (16, 853_018),
    110: (16, 1_727_962),
}

_TORCHVISION = (
    ("resnet18", "ResNet-18, basic blocks, 4 stages (torchvision)", 11_173_962),
    ("resnet34", "ResNet-34, basic blocks, 4 stages (torchvision)", 21_282_122),
    ("resnet50", "ResNet-50, bottleneck blocks, 4 stages (torchvision)", 23_520_842),
    ("resnet101", "ResNet-101, bottleneck blocks, 4 stages (torchvision)", 42_512_970),
    ("resnet152", "ResNet-152, bottleneck blocks, 4 stages (torchvision)", 58_156_618),
    ("wide_resnet50_2", "Wide ResNet-50-2, twice the bottleneck width (torchvision)", 66_847_050),
    ("resnext50_32x4d", "ResNeXt-50 32x4d, grouped bottlenecks (torchvision)", 22_992_714),
)

ARCHITECTURES: dict[str, Architecture] = {}
for _shortcuts in (True, False):
    for _depth, (_width, _count) in _CIFAR_SIZES.items():
        _arch = _cifar(_depth, _shortcuts, _width, _count)
        ARCHITECTURES[_arch.name] = _arch
for _name, _description, _count in _TORCHVISION:
    ARCHITECTURES[_name] = Architecture(
        name=_name,
        family="torchvision",
        stage_table="torchvision-resnet",
        description=_description,
        parameters=_count,
        default_width=64,
        imagenet_weights=True,
    )
ARCHITECTURES["cnn"] = Architecture(
    name="cnn",
    family="cnn",
    stage_table="small-cnn",
    description="Small plain CNN baseline: three conv-BN-ReLU-pool stages",
    parameters=24_346,
    default_width=16,
)


def stage_table_of(arch: str) -> StageTable:
    """The stage table of architecture `arch` (a catalog name)."""
    return STAGE_TABLES[ARCHITECTURES[arch].stage_table]


_SHAPE_CLASSES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "ellipse",
    "crescent",
    "half-disc",
    "ell",
)
_DIGITS = tuple(str(d) for d in range(10))
_FASHION = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
_CIFAR10 = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS: dict[str, Dataset] = {
    "shapes": Dataset(
        name="shapes",
        description="Built in: ten shapes on noisy backgrounds, RGB 32x32, no download",
        source="builtin",
        image_size=32,
        channels=3,
        classes=_SHAPE_CLASSES,
        train_size=10_000,
        test_size=2_000,
        natural_images=False,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    ),
    "shapes-shift": Dataset(
        name="shapes-shift",
        description="Built in: the same ten shapes, pastel, smaller, on textures (a shift)",
        source="builtin",
        image_size=32,
        channels=3,
        classes=_SHAPE_CLASSES,
        train_size=10_000,
        test_size=2_000,
        natural_images=False,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    ),
    "mnist": Dataset(
        name="mnist",
        description="MNIST handwritten digits, grey 28x28 (torchvision)",
        source="torchvision",
        image_size=28,
        channels=1,
        classes=_DIGITS,
        train_size=60_000,
        test_size=10_000,
        natural_images=False,
        mean=(0.1307,),
        std=(0.3081,),
    ),
    "fashion-mnist": Dataset(
        name="fashion-mnist",
        description="Fashion-MNIST clothing, grey 28x28 (torchvision)",
        source="torchvision",
        image_size=28,
        channels=1,
        classes=_FASHION,
        train_size=60_000,
        test_size=10_000,
        natural_images=False,
        mean=(0.2860,),
        std=(0.3530,),
    ),
    "cifar10": Dataset(
        name="cifar10",
        description="CIFAR-10 natural images, RGB 32x32 (torchvision)",
        source="torchvision",
        image_size=32,
        channels=3,
        classes=_CIFAR10,
        train_size=50_000,
        test_size=10_000,
        natural_images=True,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    ),
    "cifar100": Dataset(
        name="cifar100",
        description="CIFAR-100 natural images, 100 classes, RGB 32x32 (torchvision)",
        source="torchvision",
        image_size=32,
        channels=3,
        classes=tuple(f"class-{i}" for i in range(100)),
        train_size=50_000,
        test_size=10_000,
        natural_images=True,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
    ),
    "imagefolder": Dataset(
        name="imagefolder",
        description="Your own images: imagefolder:PATH with train/ and val/, or one folder",
        source="folder",
        image_size=224,
        channels=3,
        classes=(),
        train_size=0,
        test_size=0,
        natural_images=True,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
    ),
}

OPTIMIZERS = {
    "sgd": "SGD with momentum (Nesterov by default); lr 0.1, weight decay 5e-4",
    "adam": "Adam; lr 1e-3, no weight decay",
    "adamw": "AdamW (decoupled weight decay); lr 5e-3, weight decay 0.05",
}
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 5e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adam": 0.0, "adamw": 0.05}

SCHEDULES = {
    "onecycle": "one-cycle: warm up to lr over the first quarter, then anneal to near zero",
    "cosine": "cosine decay to zero after --warmup-epochs of linear warm-up",
    "step": "multiply lr by --lr-gamma at half and at three quarters of the epochs",
    "constant": "the same lr throughout (after any warm-up)",
}

FREEZE_POLICIES = {
    "full": "everything trains: full training or fine-tuning",
    "head": "feature extraction, a linear probe: only the new head trains",
    "last-K": "the last K stages and the head train, e.g. last-1",
    "gradual": "the head, then one more stage every --unfreeze-every epochs, top down",
    "lp-ft": "a linear probe for --probe-epochs, then everything at --ft-lr-scale x lr",
}
INIT_SOURCES = {
    "scratch": "random initialisation",
    "imagenet": "torchvision's ImageNet weights (imagenet:v1 or imagenet:v2 to choose)",
    "run:ID": "the best checkpoint of run ID in the store (run:ID:last for its last)",
    "file:PATH": "a state dict in a .pt/.pth file, or a .safetensors file",
}
HEADS = ("linear", "mlp")


def describe_init(init: str) -> str:
    """What an --init source means, for forms and listings."""
    kind = init.split(":", 1)[0]
    return {"run": INIT_SOURCES["run:ID"], "file": INIT_SOURCES["file:PATH"]}.get(
        kind, INIT_SOURCES.get(kind, init)
    )


def describe_freeze(freeze: str) -> str:
    """What a --freeze policy means, for forms and listings."""
    return FREEZE_POLICIES["last-K" if freeze.startswith("last-") else freeze]


HEAD_INITS = ("default", "normal")
BATCHNORM_MODES = ("frozen", "eval", "train")
AMP_MODES = ("auto", "off", "bf16", "fp16")


def _squash(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def resolve_name(
    name: str,
    choices: list[str] | tuple[str, ...],
    what: str,
    listed: list[str] | tuple[str, ...] | None = None,
) -> str:
    """Match `name` to one of `choices`, ignoring case, '-' and '_'; raise ValueError if none.

    The error names the nearest valid choices, e.g. "unknown architecture 'resnet21';
    did you mean resnet20?", or else lists them all (`listed`, where the choices are
    written otherwise for people, as `last-K` for last-1, last-2 ...).
    """
    by_key = {_squash(choice): choice for choice in choices}
    if _squash(name) in by_key:
        return by_key[_squash(name)]
    near = difflib.get_close_matches(_squash(name), list(by_key), n=3, cutoff=0.5)
    if near:
        hint = "did you mean " + " or ".join(by_key[key] for key in near) + "?"
    else:
        hint = "choose one of " + ", ".join(listed or choices)
    raise ValueError(f"unknown {what} '{name}'; {hint}")
