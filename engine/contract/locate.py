"""Where each dataset lives on disk and whether it is there, without torch.

The CLI and the app call `check_dataset` before a run starts, so a missing dataset, an empty
image folder or a class that does not exist is one clear line, not a failed run; the engine
reads its files from the same places.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.contract import catalog
from engine.contract.spec import RunSpec, SpecError, dataset_kind, resolve_classes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_TORCHVISION_FILES = {
    "mnist": (
        "MNIST/raw",
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
    ),
    "fashion-mnist": (
        "FashionMNIST/raw",
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
    ),
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
    ),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
}


class DatasetMissing(SpecError):
    """A dataset that is not on disk; the engine reports it as kind `dataset_missing`."""


def default_data_root() -> Path:
    """$RESNET_TUI_DATA, else ~/.cache/resnet-tui/data."""
    configured = os.environ.get("RESNET_TUI_DATA")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "resnet-tui" / "data"


def data_root(spec: RunSpec) -> Path:
    return Path(spec.data_root).expanduser() if spec.data_root else default_data_root()


def dataset_folder(spec: RunSpec) -> Path:
    """The folder holding a torchvision dataset's files."""
    return data_root(spec) / _TORCHVISION_FILES[spec.dataset][0]


def dataset_file(folder: Path, stem: str) -> Path | None:
    """The file `stem` in `folder`, plain or gzipped, or None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


# The most files an image folder's scan looks at: `imagefolder:/` must not walk a whole disk.
MOST_FILES = 2_000_000


def _files_under(folder: Path) -> Iterator[Path]:
    """The files in `folder` and its subfolders, not following links to folders (a link
    back up would loop)."""
    for parent, folders, files in os.walk(folder, onerror=_raise):
        yield from (Path(parent) / name for name in files)
        folders.sort()


def _raise(error: OSError) -> None:
    raise error


@dataclass
class ImageFolderLayout:
    """The images of an image folder, by split and class."""

    classes: list[str]
    splits: dict[str, dict[str, list[Path]]]  # split -> class -> image files
    skipped: list[Path]


def scan_image_folder(root: Path) -> ImageFolderLayout:
    """Find the classes and images of `root`: with train/ and val/ (and test/) folders, or one
    folder of class folders. Files that are not images by extension are listed as skipped."""
    if not root.is_dir():
        raise DatasetMissing(f"image folder {root} does not exist; give a folder of class folders")
    if (root / "train").is_dir():
        split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    else:
        split_dirs = {"all": root}
    splits: dict[str, dict[str, list[Path]]] = {}
    skipped: list[Path] = []
    seen = 0
    try:
        for split, folder in split_dirs.items():
            by_class: dict[str, list[Path]] = {}
            for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                images = []
                for file in sorted(_files_under(class_dir)):
                    seen += 1
                    if seen > MOST_FILES:
                        raise SpecError(
                            f"image folder {root} holds more than {MOST_FILES:,} files; give "
                            "a folder of class folders of images, not a whole disk"
                        )
                    if file.suffix.lower() in IMAGE_EXTENSIONS:
                        images.append(file)
                    else:
                        skipped.append(file)
                if images:
                    by_class[class_dir.name] = images
            splits[split] = by_class
    except OSError as error:  # a folder that cannot be listed: /proc, another's files
        raise SpecError(
            f"cannot read {error.filename or root} in the image folder {root} "
            f"({error.strerror or error}); give a folder of class folders that you can read"
        ) from None
    first = "train" if "train" in splits else "all"
    classes = sorted(splits[first])
    if not classes:
        raise SpecError(
            f"no images found in {split_dirs[first]}; expected class folders of "
            f"{', '.join(IMAGE_EXTENSIONS[:3])} ... files, e.g. {split_dirs[first]}/cats/1.jpg"
        )
    if len(classes) < 2:
        raise SpecError(
            f"only one class ({classes[0]}) in {split_dirs[first]}; a classifier needs at "
            "least two class folders"
        )
    return ImageFolderLayout(classes=classes, splits=splits, skipped=skipped)


def check_dataset(spec: RunSpec) -> list[str]:
    """Check that the spec's dataset is on disk (or will be downloaded); return its classes.

    Raises SpecError saying where it looked and how to get the data, or which class is wrong.
    """
    kind = dataset_kind(spec.dataset)
    if kind == "imagefolder":
        classes = scan_image_folder(Path(spec.dataset.split(":", 1)[1])).classes
    else:
        classes = list(catalog.DATASETS[kind].classes)
        if kind in _TORCHVISION_FILES and not spec.download:
            folder = dataset_folder(spec)
            missing = [s for s in _TORCHVISION_FILES[kind][1] if dataset_file(folder, s) is None]
            if missing:
                raise DatasetMissing(
                    f"{kind} is not in {folder} (missing {missing[0]}); add --download to "
                    "fetch it, or --data-root to point at a copy"
                )
    if spec.classes and kind == "imagefolder":
        spec.classes = resolve_classes(spec.classes, tuple(classes))
    return classes
