"""Where a dataset's images come from: MNIST's IDX files, torchvision's CIFAR, image folders."""

import gzip
import math
from pathlib import Path

import torch

from engine.contract import locate
from engine.contract.errors import RunError
from engine.contract.spec import RunSpec
from engine.data.splits import FileSplit, TensorSplit, split_off

# An image folder without test/ gives up the same test images whatever the run's seed, so
# the test metrics of runs with different seeds are comparable (as for the other datasets).
TEST_HOLD_OUT_SEED = 0


def _read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (MNIST's format), plain or gzipped, as a uint8 tensor."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise RunError("bad_data", f"cannot read {path}: {error}", "download it again") from None
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    body = data[4 + 4 * dims :]
    if data[2] != 0x08 or len(body) != math.prod(shape):
        raise RunError("bad_data", f"{path} is not a valid IDX file", "download it again")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def load_idx_dataset(spec: RunSpec) -> tuple[TensorSplit, TensorSplit]:
    """MNIST or Fashion-MNIST's training and test images (downloaded first if asked)."""
    if spec.download:
        import torchvision  # loaded only where used: see engine/__init__.py

        dataset_class = {
            "mnist": torchvision.datasets.MNIST,
            "fashion-mnist": torchvision.datasets.FashionMNIST,
        }[spec.dataset]
        dataset_class(str(locate.data_root(spec)), train=True, download=True)
    folder = locate.dataset_folder(spec)
    splits = []
    for prefix in ("train", "t10k"):
        images = _read_idx(locate.dataset_file(folder, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(locate.dataset_file(folder, f"{prefix}-labels-idx1-ubyte"))
        splits.append(TensorSplit(images[:, None].contiguous(), labels.long()))
    return splits[0], splits[1]


def load_cifar(spec: RunSpec) -> tuple[TensorSplit, TensorSplit, list[str]]:
    """CIFAR-10 or CIFAR-100's training and test images, and its class names."""
    import torchvision  # loaded only where used: see engine/__init__.py

    dataset_class = {
        "cifar10": torchvision.datasets.CIFAR10,
        "cifar100": torchvision.datasets.CIFAR100,
    }[spec.dataset]
    root = str(locate.data_root(spec))
    splits = []
    for train in (True, False):
        try:
            dataset = dataset_class(root, train=train, download=spec.download)
        except RuntimeError as error:
            raise RunError("dataset_missing", str(error), "add --download to fetch it") from None
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        splits.append(TensorSplit(images, torch.tensor(dataset.targets, dtype=torch.long)))
    return splits[0], splits[1], list(dataset.classes)


def unreadable_data(error: OSError, spec: RunSpec) -> RunError:
    """The run's error for a dataset folder that cannot be read: one in an image folder that
    the user may not list (/proc, another's files), say."""
    kind, _, folder = spec.dataset.partition(":")
    where = f"the image folder {folder}" if kind == "imagefolder" else str(locate.data_root(spec))
    return RunError(
        "bad_data",
        f"cannot read {error.filename or folder} in {where}: {error.strerror or error}",
        "give a folder of class folders of images that you can read"
        if kind == "imagefolder"
        else "check the permissions of the data folder (--data-root)",
    )


def load_image_folder(
    spec: RunSpec,
) -> tuple[FileSplit, FileSplit | None, FileSplit, list[str], list[str]]:
    """An image folder's train, val (None without val/) and test splits, its classes and notes
    on what was skipped or held out."""
    root = Path(spec.dataset.split(":", 1)[1])
    try:
        layout = locate.scan_image_folder(root)
    except OSError as error:
        raise unreadable_data(error, spec) from None
    classes = layout.classes
    notes = []
    if layout.skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in layout.skipped[:3])
        more = f" and {len(layout.skipped) - 3} more" if len(layout.skipped) > 3 else ""
        notes.append(f"skipped {len(layout.skipped)} file(s) that are not images: {shown}{more}")

    def as_split(by_class: dict[str, list[Path]]) -> FileSplit:
        files, labels = [], []
        for label, name in enumerate(classes):
            files.extend(by_class.get(name, []))
            labels.extend([label] * len(by_class.get(name, [])))
        return FileSplit(files, torch.tensor(labels, dtype=torch.long))

    if "all" in layout.splits:
        everything = as_split(layout.splits["all"])
        generator = torch.Generator().manual_seed(TEST_HOLD_OUT_SEED)
        rest, test = split_off(everything, max(spec.val_fraction, 0.1), generator)
        notes.append(f"one folder: {len(test)} images held out as test data")
        return rest, None, test, classes, notes
    train = as_split(layout.splits["train"])
    has_test = "test" in layout.splits
    # Without test/, val/ is the test data and validation is held out of train/ (by
    # --val-fraction, in load_dataset): the best checkpoint is never chosen on the images
    # its test metrics come from. A run stored before this rule goes on validating on val/.
    val_folder = has_test or not spec.val_from_train
    val = as_split(layout.splits["val"]) if "val" in layout.splits and val_folder else None
    if has_test or "val" in layout.splits:
        folder = "test" if has_test else "val"
        test = as_split(layout.splits[folder])
        if len(test) == 0:
            raise RunError(
                "bad_input",
                f"{root / folder} has no images of the training classes ({', '.join(classes)})",
                f"give {folder}/ the class folders of train/",
            )
        if folder == "val" and val is not None:
            notes.append(
                "test metrics are on val/ (the folder has no test/), and so is validation: "
                "the run is from before validation was held out of train/"
            )
        elif folder == "val":
            notes.append(
                "test metrics are on val/ (the folder has no test/); validation images are "
                "held out of train/ "
                + (
                    f"(fold {spec.fold})"
                    if spec.fold is not None
                    else f"(--val-fraction {spec.val_fraction:g})"
                )
            )
    else:
        generator = torch.Generator().manual_seed(TEST_HOLD_OUT_SEED)
        train, test = split_off(train, max(spec.val_fraction, 0.1), generator)
        notes.append(f"no val/ or test/: {len(test)} training images held out as test data")
    return train, val, test, classes, notes
