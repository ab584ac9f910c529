"""The dataset a run asks for: loaded from its source, cut to its classes and subsets, and
split into training, validation and test data.

Small datasets (shapes, MNIST-like, CIFAR, image folders of small images) are held as one
uint8 tensor on the training device and augmented a whole batch at a time
(engine/data/batches.py); image folders of larger images are decoded per sample by
DataLoader worker processes.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.contract import catalog, locate
from engine.contract.errors import RunError
from engine.contract.spec import RunSpec, dataset_kind
from engine.data.decoded_folders import decode_once, fits_in_memory
from engine.data.shapes import draw_shapes
from engine.data.sources import load_cifar, load_idx_dataset, load_image_folder, unreadable_data
from engine.data.splits import ShapesSplit, Split, few_shot, fold_split, keep_classes, split_off

SHAPES_SEEDS = {"shapes": (1, 2), "shapes-shift": (11, 12)}
# Every run holds out the same validation images whatever its seed (as an image folder without
# test/ holds out the same test images), so runs with other seeds compare on validation too,
# and an ensemble or soup of them is judged on images none of its members trained on. The
# run's seed draws its subsets (few-shot, --limit).
VAL_HOLD_OUT_SEED = 0


@dataclass
class DatasetBundle:
    """A dataset ready for training: its splits and what a model needs to know of it."""

    name: str
    classes: list[str]
    channels: int
    image_size: int
    natural_images: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split
    val: Split
    test: Split
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def load_dataset(spec: RunSpec, report: Callable[[str], None] = lambda line: None) -> DatasetBundle:
    """Load the spec's dataset with its class subset, few-shot subset, limit and val split;
    `report` is told, in lines, how the first decode of a folder of small images goes."""
    kind = dataset_kind(spec.dataset)
    info = catalog.DATASETS[kind]
    try:
        locate.check_dataset(spec)
    except OSError as error:
        raise unreadable_data(error, spec) from None
    notes: list[str] = []
    folder_files: list[Path] = []  # an image folder's files, whatever the run keeps of them
    if kind in SHAPES_SEEDS:
        train_seed, test_seed = SHAPES_SEEDS[kind]
        shifted = kind == "shapes-shift"
        train_draws = draw_shapes(info.train_size, train_seed, shifted)
        test_draws = draw_shapes(info.test_size, test_seed, shifted)
        train = ShapesSplit(train_draws, train_draws.kinds)
        test = ShapesSplit(test_draws, test_draws.kinds)
        val = None
        classes = list(info.classes)
    elif kind in ("mnist", "fashion-mnist"):
        train, test = load_idx_dataset(spec)
        val = None
        classes = list(info.classes)
    elif kind in ("cifar10", "cifar100"):
        train, test, classes = load_cifar(spec)
        val = None
    else:
        train, val, test, classes, notes = load_image_folder(spec)
        folder_files = [path for split in (train, val, test) if split for path in split.files]

    generator = torch.Generator().manual_seed(spec.seed)
    if spec.classes:
        chosen = [classes.index(name) for name in spec.classes]
        train = keep_classes(train, chosen)
        test = keep_classes(test, chosen)
        val = keep_classes(val, chosen) if val is not None else None
        classes = list(spec.classes)
    if spec.fold is not None:
        # Cross-validation: the training data's folds are drawn the same for every fold
        # and seed, so K runs of one --folds K hold out K disjoint parts that cover it.
        held_out = torch.Generator().manual_seed(VAL_HOLD_OUT_SEED)
        torch.randperm(len(train), generator=generator)
        train, val = fold_split(train, spec.folds, spec.fold, held_out)
    elif val is None:
        held_out = torch.Generator().manual_seed(VAL_HOLD_OUT_SEED)
        # The run's own generator moves past the draw it used to make for the split, so a
        # seed picks the subsets it always picked.
        torch.randperm(len(train), generator=generator)
        train, val = split_off(train, spec.val_fraction, held_out)
    if spec.train_per_class:
        train = few_shot(train, spec.train_per_class, len(classes), generator)
    if spec.limit and spec.limit < len(train):
        train = train.subset(torch.randperm(len(train), generator=generator)[: spec.limit])
    train, val, test = (
        split.in_memory() if isinstance(split, ShapesSplit) else split
        for split in (train, val, test)
    )
    if kind == "imagefolder" and spec.decode_small_folders:
        size = spec.image_size or info.image_size
        if fits_in_memory([train, val, test], size, info.channels):
            root = Path(spec.dataset.split(":", 1)[1])
            cache = locate.data_root(spec)
            splits = decode_once([train, val, test], folder_files, root, size, cache, report)
            train, val, test = splits
            notes.append(f"images of {size} px decoded once and held in memory")
    if len(train) == 0:
        raise RunError("bad_input", "no training images are left after the subsets", "")
    if len(test) == 0:
        if spec.classes:
            raise RunError(
                "bad_input",
                "the test data has no images of the chosen classes",
                "choose --classes that the test data has",
            )
        raise RunError(
            "bad_input", "the test data has no images", "add images, or a test/ folder of classes"
        )
    if len(val) == 0:
        val = test
        notes.append("validation uses the test data (no images left to hold out)")
    return DatasetBundle(
        name=spec.dataset,
        classes=classes,
        channels=info.channels,
        image_size=spec.image_size or info.image_size,
        natural_images=info.natural_images,
        mean=info.mean,
        std=info.std,
        train=train,
        val=val,
        test=test,
        notes=notes,
    )
