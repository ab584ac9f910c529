"""The typical size of an image folder's images, read from headers, and the image size a run
chooses from it: small images train at their own size, large ones at the catalog's."""

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from engine.contract import image_sizes
from engine.contract.image_sizes import (
    MOST_READ,
    SAMPLE,
    SMALL_SIDE,
    choose_image_size,
    default_image_size,
    image_size_of,
    sample_images,
    typical_image_size,
)
from engine.contract.locate import scan_image_folder
from engine.contract.spec import RunSpec
from tests.conftest import _shared, record_fault

UNREADABLE = "unreadable image files: skipped when sizing a folder, no crash"


def folder_of(root: Path, sizes: dict[str, list[tuple[int, int]]], split: str = "train") -> Path:
    """An image folder `root` with `split`/CLASS/N.png of the given (width, height) sizes."""
    for name, of_class in sizes.items():
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for index, size in enumerate(of_class):
            Image.new("RGB", size, (index * 30 % 256, 0, 0)).save(
                root / split / name / f"{index}.png"
            )
    return root


def test_small_images_are_their_own_size(tmp_path):
    folder = folder_of(tmp_path, {"cats": [(32, 32)] * 5, "dogs": [(32, 32)] * 5})
    assert typical_image_size(folder) == 32
    assert default_image_size(32, 224) == 32


def test_one_folder_of_classes_without_train_is_sized_too(tmp_path):
    folder = folder_of(tmp_path, {"a": [(28, 28)] * 3, "b": [(28, 28)] * 3}, split="")
    assert typical_image_size(folder) == 28


def test_mixed_sizes_give_the_median_longer_side(tmp_path):
    sizes = [(32, 32)] * 4 + [(40, 30), (30, 40), (24, 24), (600, 400)]
    folder = folder_of(tmp_path, {"a": sizes[:4], "b": sizes[4:]})
    assert typical_image_size(folder) == 32  # sides 24, 32 x4, 40, 40, 600


def test_large_images_keep_the_catalog_default(tmp_path):
    folder = folder_of(tmp_path, {"a": [(300, 200)] * 3, "b": [(500, 375)] * 3})
    assert typical_image_size(folder) in (300, 500)
    assert default_image_size(typical_image_size(folder), 224) == 224


@pytest.mark.parametrize(
    "typical, expected",
    [(None, 224), (1, 1), (32, 32), (SMALL_SIDE, SMALL_SIDE), (SMALL_SIDE + 1, 224), (5000, 224)],
)
def test_the_rule_uses_small_sizes_only(typical, expected):
    assert default_image_size(typical, 224) == expected
    assert default_image_size(64, 28) == 28  # never larger than the catalog's own default


def _write(content: bytes):
    return lambda path: path.write_bytes(content)


def _truncated(fmt: str, keep: int):
    def make(path: Path) -> None:
        Image.new("RGB", (32, 32)).save(path, fmt)
        path.write_bytes(path.read_bytes()[:keep])

    return make


# Files with an image's extension that are not images whose size can be read: each is
# skipped, and the folder is still sized by its good images.
UNREADABLE_FILES = [
    ("text.jpg", _write(b"just some notes, not a picture\n"), "text named .jpg"),
    ("empty.png", _write(b""), "empty file"),
    ("cut.png", _truncated("PNG", 14), "PNG cut inside its header"),
    ("cut.jpg", _truncated("JPEG", 40), "JPEG cut before its frame header"),
    ("cut.bmp", _truncated("BMP", 16), "BMP cut inside its header"),
    ("cut.webp", _truncated("WEBP", 20), "WebP cut inside its header"),
    ("cut.tif", _truncated("TIFF", 9), "TIFF cut before its tags"),
    ("noise.ppm", _write(b"P6\n# only a comment\n"), "PPM without a size"),
    ("zero.png", _write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(8)), "PNG of 0x0"),
    ("loop.jpg", _write(b"\xff\xd8" + b"\xff\xe0\x00\x02" * 2000), "JPEG of endless segments"),
    ("gone.png", lambda path: path.symlink_to(path.parent / "nowhere.png"), "dangling link"),
    ("folder.jpg", lambda path: path.mkdir(), "a folder named .jpg"),
]


@pytest.mark.parametrize(
    "name, make, what", UNREADABLE_FILES, ids=[row[2] for row in UNREADABLE_FILES]
)
def test_unreadable_files_are_skipped(tmp_path, name, make, what):
    folder = folder_of(tmp_path, {"a": [(32, 32)] * 2, "b": [(32, 32)] * 2})
    bad = folder / "train" / "a" / name
    make(bad)
    try:
        survived = image_size_of(bad) is None and typical_image_size(folder) == 32
    except Exception:  # a crash is what this counts
        survived = False
    record_fault(UNREADABLE, survived)
    assert survived, what


# Forged JPEG headers that would be read to the end of a large file: each is given up on
# within MOST_READ bytes read.
FORGED_JPEGS = [
    ("fill bytes", b"\xff\xd8" + b"\xff" * (20 << 20)),
    ("a marker then fill bytes", b"\xff\xd8\xff\xe0\x00\x10" + bytes(14) + b"\xff" * (20 << 20)),
    ("endless segments", b"\xff\xd8" + b"\xff\xe0\x00\x02" * (1 << 18)),
]


@pytest.mark.parametrize(
    "content", [row[1] for row in FORGED_JPEGS], ids=[r[0] for r in FORGED_JPEGS]
)
def test_a_forged_jpeg_header_is_read_only_so_far(tmp_path, monkeypatch, content):
    path = tmp_path / "forged.jpg"
    path.write_bytes(content)

    class Counted(io.FileIO):
        """A file, read without a buffer, that counts the bytes read from it."""

        def __init__(self, name: Path, mode: str) -> None:
            super().__init__(name, mode)
            self.read_bytes = 0
            opened.append(self)

        def read(self, count: int = -1) -> bytes:
            data = super().read(count)
            self.read_bytes += len(data)
            return data

    opened: list[Counted] = []
    monkeypatch.setattr(image_sizes, "open", Counted, raising=False)
    try:
        survived = image_size_of(path) is None and opened[0].read_bytes <= MOST_READ + 32
    except Exception:  # a crash is what this counts
        survived = False
    record_fault(UNREADABLE, survived)
    assert survived, f"{opened[0].read_bytes if opened else 0} bytes read"


def test_a_folder_whose_files_are_all_unreadable_has_no_size(tmp_path):
    for name, make, _ in UNREADABLE_FILES:
        (tmp_path / "train" / "a").mkdir(parents=True, exist_ok=True)
        make(tmp_path / "train" / "a" / name)
    (tmp_path / "train" / "b").mkdir()
    (tmp_path / "train" / "b" / "notes.txt").write_text("not an image")
    survived = typical_image_size(tmp_path) is None
    record_fault(UNREADABLE, survived)
    assert survived


@pytest.mark.parametrize("made", ["nothing", "empty", "no classes", "a file"])
def test_an_empty_sample_has_no_size(tmp_path, made):
    folder = tmp_path / "data"
    if made == "empty":
        folder.mkdir()
    elif made == "no classes":
        folder.mkdir()
        Image.new("RGB", (32, 32)).save(folder / "loose.png")
    elif made == "a file":
        Image.new("RGB", (32, 32)).save(tmp_path / "data", "PNG")
    assert sample_images(folder) == []
    assert typical_image_size(folder) is None


@pytest.mark.parametrize(
    "fmt, suffix, mode, options",
    [
        ("PNG", "png", "RGBA", {}),
        ("PNG", "png", "P", {}),
        ("JPEG", "jpg", "RGB", {}),
        ("JPEG", "jpg", "L", {"progressive": True}),
        ("JPEG", "jpeg", "RGB", {"exif": b"Exif\x00\x00" + bytes(60_000)}),
        ("JPEG", "jpg", "CMYK", {}),
        ("BMP", "bmp", "RGB", {}),
        ("BMP", "bmp", "P", {}),
        ("WEBP", "webp", "RGB", {}),
        ("WEBP", "webp", "RGB", {"lossless": True}),
        ("WEBP", "webp", "RGBA", {"exif": b"Exif\x00\x00" + bytes(100)}),
        ("PPM", "ppm", "RGB", {}),
        ("PPM", "pgm", "L", {}),
        ("TIFF", "tif", "RGB", {}),
        ("TIFF", "tiff", "L", {"compression": "tiff_lzw"}),
    ],
)
@pytest.mark.parametrize("size", [(1, 1), (37, 21), (640, 4000)])
def test_headers_give_the_size_pillow_gives(tmp_path, fmt, suffix, mode, options, size):
    path = tmp_path / f"image.{suffix}"
    Image.new(mode, size).save(path, fmt, **options)
    assert image_size_of(path) == Image.open(path).size == size


def test_the_sample_is_bounded_and_spread_over_the_classes(tmp_path):
    classes = {f"class{index:03}": [] for index in range(100)}
    folder = tmp_path / "many"
    for name in classes:
        (folder / "train" / name).mkdir(parents=True)
        for index in range(3):
            (folder / "train" / name / f"{index}.png").write_bytes(b"")
    sample = sample_images(folder)
    assert len(sample) == SAMPLE
    assert len({path.parent.name for path in sample}) == SAMPLE  # one of each of 64 classes
    assert {sample[0].parent.name, sample[-1].parent.name} == {"class000", "class098"}

    big = tmp_path / "big"
    for name in ("a", "b"):
        (big / name).mkdir(parents=True)
        for index in range(2000):
            (big / name / f"{index}.jpg").write_bytes(b"")
    sample = sample_images(big)
    assert len(sample) == SAMPLE
    assert sum(path.parent.name == "a" for path in sample) == SAMPLE // 2


def test_images_in_subfolders_of_a_class_are_found(tmp_path):
    folder = folder_of(tmp_path, {"a": [(32, 32)] * 2, "b": [(32, 32)] * 2})
    deeper = folder / "train" / "a" / "more" / "still"
    deeper.mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(deeper / "x.png")
    os.symlink(folder / "train", folder / "train" / "b" / "loop")  # a link back up: not followed
    sample = sample_images(folder, most=6)
    assert deeper / "x.png" in sample
    assert all("loop" not in path.parts for path in sample)


def test_class_folders_that_are_links_are_sized(tmp_path):
    folder_of(tmp_path / "big", {"a": [(32, 32)] * 3, "b": [(32, 32)] * 3}, split="")
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(tmp_path / "big" / "a", linked / "cats")
    os.symlink(tmp_path / "big" / "b", linked / "dogs")
    assert scan_image_folder(linked).classes == ["cats", "dogs"]
    assert typical_image_size(linked) == 32
    assert {path.parent.name for path in sample_images(linked)} == {"cats", "dogs"}

    split = tmp_path / "split"  # train/ itself a link to a folder of linked classes
    split.mkdir()
    os.symlink(linked, split / "train")
    assert typical_image_size(split) == 32

    os.symlink(linked, linked / "up")  # a class that links back up: listed once, no loop
    sample = sample_images(linked)
    assert all(path.parts.count("up") <= 1 for path in sample)
    assert typical_image_size(linked) == 32


def spec(**values) -> RunSpec:
    return RunSpec.from_dict({"dataset": "imagefolder:/data/pictures", **values})


@pytest.mark.parametrize(
    "values, sources, typical, expected, said",
    [
        ({}, [], 32, 32, "images in /data/pictures are about 32 px: training at 32 px"),
        ({}, [], 500, 224, None),
        ({}, [], None, 224, None),
        ({"image_size": 300}, [], 32, 300, None),  # given: it wins
        ({}, [(5, {"image_size": 64})], 32, 64, "training at 64 px, as run 5 saw its images"),
        ({}, [(5, {"dataset": "imagefolder:/x"})], 32, 224, None),  # an old run saw 224
        ({}, [(5, {"dataset": "cifar10"})], 500, 32, "as run 5 saw"),
        ({"arch": "resnet18", "init": "imagenet"}, [], 32, 224, None),  # its stem kept whole
    ],
)
def test_choosing_writes_the_size_into_the_spec(values, sources, typical, expected, said):
    asked: list[Path] = []

    def typical_of(folder: Path) -> int | None:
        asked.append(folder)
        return typical

    made = spec(**values)
    line = choose_image_size(made, sources, typical_of)
    assert made.image_size == expected
    assert RunSpec.from_json(made.to_json()).image_size == expected
    assert (line is None) if said is None else (said in line)
    assert asked == ([Path("/data/pictures")] if not values and not sources else [])


def test_imagenet_weights_keep_their_size_and_stem():
    made = spec(arch="resnet18", init="imagenet")
    assert choose_image_size(made, [], lambda folder: 32) is None
    assert made.image_size == 224


def test_other_datasets_keep_their_own_size():
    made = RunSpec.from_dict({"dataset": "cifar10"})
    assert choose_image_size(made, [], lambda folder: 8) is None
    assert made.image_size is None


@pytest.mark.parametrize("name, expected", [("cifar10_jpg", 32), ("hymenoptera_data", None)])
def test_the_real_folders(name, expected):
    folder = _shared(name)
    typical = typical_image_size(folder)
    assert typical is not None
    if expected is None:  # photos of a few hundred pixels: trained at 224
        assert typical > SMALL_SIDE and default_image_size(typical, 224) == 224
    else:
        assert typical == expected and default_image_size(typical, 224) == expected
