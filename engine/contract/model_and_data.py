"""The first options of a run, what it trains: its model and its data, each declared with
its kind, help, panel and check; RunOptions (contract/run_options.py) is these and the rest."""

from dataclasses import dataclass

from engine.contract import catalog
from engine.contract.options import Bounds, Choice, Normalised, internal, option, whole_numbers
from engine.contract.values import read_classes, read_dataset

MODEL, DATA = "Model", "Data"

# The most of each kind of count a run takes: beyond them a number is a typo, and SQLite
# (whole numbers below 2**63) and torch (seeds below 2**32) take every number within them.
MOST_EPOCHS = 100_000
MOST_IMAGES = 2**31
MOST_IN_A_BATCH = 65_536
MOST_PIXELS = 4_096
MOST_CHANNELS = 4_096
MOST_PROCESSES = 1_024
MOST_SEED = 2**32 - 1


@dataclass
class ModelAndData:
    """The options of a run's model and data, as declared: the first options of RunOptions,
    in the order `resnet-tui run --help` lists them."""

    name: str | None = option(MODEL, str, None, "A name for the run (default: arch on dataset).")
    arch: str = option(
        MODEL,
        str,
        "resnet8",
        "Architecture; `resnet-tui archs` lists them.",
        Choice(tuple(catalog.ARCHITECTURES), "architecture"),
    )
    width: int | None = option(
        MODEL,
        int,
        None,
        "Channels of the first stage, for CIFAR ResNets and cnn (default: 16; 8 for resnet8).",
        whole_numbers(1, MOST_CHANNELS),
    )
    small_stem: bool | None = option(
        MODEL,
        bool,
        None,
        "3x3 stride-1 stem for torchvision ResNets (default: on for images <= 64 px).",
    )
    dataset: str = option(
        DATA,
        str,
        "shapes",
        "Dataset, or imagefolder:PATH; `resnet-tui datasets`.",
        Normalised(read_dataset),
    )
    data_root: str | None = option(
        DATA,
        str,
        None,
        "Where datasets live (default $RESNET_TUI_DATA or ~/.cache/resnet-tui/data).",
    )
    download: bool = option(DATA, bool, False, "Download a missing torchvision dataset.")
    classes: list[str] | None = option(
        DATA,
        list,
        None,
        "Train on these classes only, by index or name, e.g. 0,1,2 or cat,dog.",
        Normalised(read_classes),
    )
    train_per_class: int | None = option(
        DATA,
        int,
        None,
        "Few-shot: this many training images per class, chosen by the seed.",
        whole_numbers(1, MOST_IMAGES),
    )
    val_fraction: float = option(
        DATA,
        float,
        0.1,
        "Share of the training data held out for validation.",
        Bounds("{flag} must be at least 0 and below 1, e.g. 0.1", at_least=0, below=1),
    )
    folds: int | None = option(
        DATA,
        int,
        None,
        "Cross-validation: K runs, each validating on one of K folds of the training data and "
        "training on the rest; the mean and spread of their metrics are reported.",
        Bounds("{flag} must be from 2 to 20, e.g. --folds 5", at_least=2, at_most=20),
    )
    fold: int | None = internal(
        int,
        None,
        "Which fold of --folds this run validates on.",
        Bounds("a run's fold must be one of its --folds (0 to K-1)", at_least=0, at_most=19),
    )
    decode_small_folders: bool = internal(
        bool,
        True,
        "An image folder of images trained at 64 px or less is decoded once and trained from "
        "memory; a run stored before this decoded its files in workers every epoch.",
    )
    val_from_train: bool = internal(
        bool,
        True,
        "An image folder with train/ and val/ but no test/ validates on --val-fraction of "
        "train/ and tests on val/; a run stored before this rule validated on val/.",
    )
    limit: int | None = option(
        DATA,
        int,
        None,
        "Train on at most this many images (quick runs).",
        whole_numbers(1, MOST_IMAGES),
    )
    image_size: int | None = option(
        DATA, int, None, "Resize images to this many pixels a side.", whole_numbers(1, MOST_PIXELS)
    )
    augment: bool = option(DATA, bool, True, "Random crop and flip for natural images and shapes.")
