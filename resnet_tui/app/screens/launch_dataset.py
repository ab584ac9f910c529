"""What the launch form knows of a dataset: whether it is on disk (or what downloading it
costs), and for an image folder its classes, image counts and typical image size, found off
the UI thread."""

from dataclasses import dataclass
from pathlib import Path

from engine.contract import catalog, image_sizes, locate
from engine.contract.spec import RunSpec, SpecError, dataset_kind, resolve_classes
from resnet_tui.app.screens.launch_fields import FOLDER, LABELS, download_size
from resnet_tui.display import markup_safe

# The most classes the form lists by name with their counts; the rest are counted.
CLASSES_LISTED = 8


@dataclass(frozen=True)
class FolderFacts:
    """What scanning an image folder found: its classes, the images of each (in the split
    that trains), and the images' typical side in pixels (None where none could be read)."""

    classes: list[str]
    counts: dict[str, int]
    split_counts: dict[str, int]
    typical_size: int | None


def folder_of(dataset: str) -> str:
    """The path of `imagefolder:PATH`."""
    return dataset.split(":", 1)[1] if dataset.startswith(FOLDER + ":") else ""


def dataset_options(data_root: str) -> list[tuple[str, str]]:
    """The dataset choices, each saying whether it is there under `data_root` (or what it
    takes to download)."""
    options = []
    for name, info in catalog.DATASETS.items():
        if name == FOLDER:
            options.append(("imagefolder  ·  your own images (give the path below)", FOLDER))
            continue
        if info.source == "builtin":
            where = "built in"
        elif is_on_disk(RunSpec(dataset=name, data_root=data_root or None)):
            where = "on disk"
        else:
            where = f"not downloaded ({download_size(name)})"
        options.append((f"{name}  ·  {len(info.classes)} classes  ·  {where}", name))
    return options


def is_on_disk(spec: RunSpec) -> bool:
    """Whether the spec's built-in or torchvision dataset is there without a download."""
    try:
        locate.check_dataset(RunSpec(dataset=spec.dataset, data_root=spec.data_root))
    except SpecError:
        return False
    return True


def check_named_dataset(spec: RunSpec) -> None:
    """Check a built-in or torchvision dataset (a few file lookups); a missing one is said
    in the form's words, with what downloading it costs. Raises SpecError."""
    if spec.download or is_on_disk(spec):
        return
    where = locate.dataset_folder(spec)
    raise SpecError(
        f"{spec.dataset} is not in {where}; switch {LABELS['download']} on to fetch it "
        f"({download_size(spec.dataset)}), or set {LABELS['data_root']} to a folder that "
        "holds a copy"
    )


def download_note(spec: RunSpec) -> str | None:
    """The line saying a launch will download the dataset; None where nothing is fetched."""
    kind = dataset_kind(spec.dataset)
    if catalog.DATASETS[kind].source != "torchvision" or not spec.download or is_on_disk(spec):
        return None
    return (
        f"{spec.dataset} will be downloaded ({download_size(spec.dataset)}) into "
        f"{locate.data_root(spec)}"
    )


def scan_folder(folder: str) -> FolderFacts | SpecError:
    """Scan an image folder and measure its images: slow on a large folder, so called on a
    worker thread. Returns the facts, or why the folder cannot be used."""
    try:
        layout = locate.scan_image_folder(Path(folder))
    except SpecError as error:
        return error
    except OSError as error:  # a path the system refuses outright: too long, say
        return SpecError(
            f"cannot read the image folder {folder} ({error.strerror or error}); give a "
            "folder of class folders that you can read"
        )
    train = "train" if "train" in layout.splits else "all"
    counts = {name: len(layout.splits[train].get(name, [])) for name in layout.classes}
    split_counts = {
        split: sum(len(images) for images in by_class.values())
        for split, by_class in layout.splits.items()
    }
    size = image_sizes.typical_image_size(Path(folder))
    return FolderFacts(layout.classes, counts, split_counts, size)


def resolve_folder_classes(spec: RunSpec, facts: FolderFacts) -> None:
    """Turn the spec's chosen classes into names of the folder's classes (SpecError for a
    class it does not have)."""
    if spec.classes:
        spec.classes = resolve_classes(spec.classes, tuple(facts.classes))


def detected_size(facts: FolderFacts) -> int:
    """The image size a folder's runs train at where neither the form nor a run they start
    from gives one: the images' own size where they are small, else the catalog's default."""
    return image_sizes.default_image_size(facts.typical_size, catalog.DATASETS[FOLDER].image_size)


def folder_lines(facts: FolderFacts, image_size: int | None, from_a_run: bool) -> str:
    """The form's lines on a scanned folder: its classes with their image counts, and the
    size its images train at (markup); `from_a_run` where that size is the one a run it
    starts from or learns from saw."""
    listed = ", ".join(
        f"{markup_safe(name)} {facts.counts[name]:,}" for name in facts.classes[:CLASSES_LISTED]
    )
    more = len(facts.classes) - CLASSES_LISTED
    if more > 0:
        listed += f", … {more} more"
    splits = ", ".join(f"{split} {count:,}" for split, count in facts.split_counts.items())
    lines = [f"{len(facts.classes)} classes: {listed}  [dim]({splits} images)[/]"]
    typical = facts.typical_size
    if typical is not None:
        default = catalog.DATASETS[FOLDER].image_size
        chosen = image_size or default
        said = f"images are about {typical} px: {LABELS['image_size'].lower()} {chosen}"
        if from_a_run:
            said += ", as the run it starts from saw its images"
        elif chosen == typical < default:
            said += f" ({default} would be slow)"
        elif chosen > 2 * typical:
            said += f" (about {typical} would be faster)"
        lines.append(said)
    return "\n".join(lines)
