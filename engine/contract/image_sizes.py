"""The typical size of an image folder's images, from a few files' headers, so that a folder of
small images trains at their own size by default rather than upsampled to 224 px.

Only headers are read (PNG, JPEG, BMP, WebP, TIFF, PPM/PGM), never pixels, and only of a
bounded sample spread over the classes: no torch, no Pillow (the contract imports neither),
a few milliseconds for a folder of any size: no more than MOST_READ bytes of any file are
read. A file that is not an image, is truncated or cannot be read is skipped.
"""

import os
import statistics
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from engine.contract import catalog
from engine.contract.locate import IMAGE_EXTENSIONS
from engine.contract.spec import RunSpec, dataset_kind

# The most images whose headers are read, spread over the classes.
SAMPLE = 64
# The most folder entries looked at for the classes, and then for each class's images: a
# class of 50,000 files is not listed whole (the first images the file system gives are the
# sample), and neither is a class folder that is a whole disk.
MOST_ENTRIES = 4096
# Images whose longer side is at most this train at their own size by default; larger ones
# at the catalog's default (224 px for an image folder), as networks pretrained on ImageNet
# expect.
SMALL_SIDE = 128
# The most JPEG segments (or TIFF tags) looked through for the size before giving up.
_MOST_SEGMENTS = 1024
# The most bytes of one file read for its size, and the chunks they are read in: a forged
# header (a JPEG of fill bytes to its end) is given up on within them.
MOST_READ = 1 << 20
_CHUNK = 4096


def typical_image_size(folder: Path) -> int | None:
    """The typical longer side, in pixels, of the images of the image folder `folder` (with
    train/ and val/, or one folder of class folders): the median over a sample of up to
    SAMPLE images spread over the classes. None where no image in the sample can be read."""
    sides = [max(size) for size in map(image_size_of, sample_images(folder)) if size]
    return statistics.median_low(sides) if sides else None


def default_image_size(typical: int | None, catalog_default: int) -> int:
    """The image size a run trains at when none is given: the images' own `typical` size
    where it is small (at most SMALL_SIDE and below `catalog_default`), else the default."""
    if typical is not None and typical <= SMALL_SIDE and typical < catalog_default:
        return typical
    return catalog_default


def choose_image_size(
    spec: RunSpec,
    sources: list[tuple[int, dict[str, Any]]],
    typical_of: Callable[[Path], int | None] = typical_image_size,
) -> str | None:
    """Where an image-folder run gives no image size, choose it and write it into `spec`, so
    that its stored spec keeps it and a resume never changes its input size or stem: the size
    the first of `sources` (id and stored spec of the runs it starts from or learns from) saw,
    the catalog's for ImageNet's weights (their stem is kept whole), else the size of the
    folder's images where they are small (`default_image_size`), else the catalog's. Returns
    a line saying what was chosen where it is not the catalog's default.

    A spec that gives an image size, or is of another dataset, is left as it is. Resuming never
    calls this: an old run stored without a size goes on at the catalog's default, as it began.
    """
    if spec.image_size is not None or dataset_kind(spec.dataset) != "imagefolder":
        return None
    usual = catalog.DATASETS["imagefolder"].image_size
    if sources:
        run_id, values = sources[0]
        size = values.get("image_size")
        if not isinstance(size, int):  # it ran at its dataset's default
            dataset = catalog.DATASETS.get(dataset_kind(str(values.get("dataset", ""))))
            size = dataset.image_size if dataset else usual
        spec.image_size = size
        said = f"training at {spec.image_size} px, as run {run_id} saw its images"
    elif spec.init == "imagenet":
        # ImageNet's weights were learnt at 224 px through the 7x7 stem a small size replaces.
        spec.image_size = usual
        said = None
    else:
        folder = Path(spec.dataset.split(":", 1)[1])
        typical = typical_of(folder)
        spec.image_size = default_image_size(typical, usual)
        said = f"images in {folder} are about {typical} px: training at {spec.image_size} px"
    return said if spec.image_size != usual else None


def sample_images(folder: Path, most: int = SAMPLE) -> list[Path]:
    """Up to `most` image files of `folder`'s training classes (train/ where there is one),
    as many of each class as fit; with more classes than `most`, one of each of `most`
    classes spread evenly through them."""
    split = folder / "train" if (folder / "train").is_dir() else folder
    # Class folders may be links, as the scan and the trainer take them; within a class only
    # real subfolders are looked into, so a link back up is listed once and never loops.
    classes = sorted(_entries(split, True, MOST_ENTRIES, [MOST_ENTRIES], follow=True))
    if not classes:
        return []
    if len(classes) > most:
        classes = [classes[index * len(classes) // most] for index in range(most)]
    share = -(-most // len(classes))  # rounded up
    images: list[Path] = []
    for class_folder in classes:
        images += _images_under(class_folder, min(share, most - len(images)))
    return images


def _entries(
    folder: Path, folders: bool, wanted: int, budget: list[int], follow: bool = False
) -> list[Path]:
    """Up to `wanted` of `folder`'s subfolders (links to folders too where `follow`), or of its
    files with an image's extension; none where it cannot be listed. Each entry looked at takes
    one from `budget[0]`, and the listing stops where none is left."""
    found: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if budget[0] <= 0 or len(found) >= wanted:
                    break
                budget[0] -= 1
                if not folders and not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=follow) if folders else entry.is_file():
                        found.append(Path(entry.path))
                except OSError:
                    continue
    except OSError:
        return []
    return found


def _images_under(folder: Path, most: int) -> list[Path]:
    """Up to `most` files with an image's extension in `folder` and its subfolders (looked
    into only where `folder` itself has too few), within MOST_ENTRIES entries looked at."""
    images: list[Path] = []
    waiting, budget = [folder], [MOST_ENTRIES]
    while waiting and len(images) < most and budget[0] > 0:
        current = waiting.pop(0)
        images += _entries(current, False, most - len(images), budget)
        if len(images) < most:
            waiting += sorted(_entries(current, True, MOST_ENTRIES, budget))
    return images


def image_size_of(path: Path) -> tuple[int, int] | None:
    """(width, height) of the image file `path` from its header, or None where it is not an
    image of a known format, is cut short, or cannot be read."""
    try:
        with open(path, "rb") as file:
            head = file.read(32)
            for matches, read in _FORMATS:
                if matches(head):
                    size = read(file, head)
                    break
            else:
                return None
    except (OSError, struct.error, ValueError, IndexError):
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _png(file: BinaryIO, head: bytes) -> tuple[int, int] | None:
    if head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _bmp(file: BinaryIO, head: bytes) -> tuple[int, int] | None:
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:  # OS/2 bitmaps
        width, height = struct.unpack("<HH", head[18:22])
    else:
        width, height = struct.unpack("<ii", head[18:26])
    return width, abs(height)  # a negative height: rows stored top down


def _webp(file: BinaryIO, head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    return None


def _netpbm(file: BinaryIO, head: bytes) -> tuple[int, int] | None:
    text = head + file.read(480)
    words = b" ".join(line.split(b"#", 1)[0] for line in text.splitlines()).split()
    if len(words) < 3:  # the magic, the width and the height
        return None
    return int(words[1]), int(words[2])


def _tiff(file: BinaryIO, head: bytes) -> tuple[int, int] | None:
    order = "<" if head[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", head[4:8])
    file.seek(offset)
    (count,) = struct.unpack(order + "H", file.read(2))
    sides: dict[int, int] = {}
    for _ in range(min(count, _MOST_SEGMENTS)):
        tag, kind, _number, value = struct.unpack(order + "HHI4s", file.read(12))
        if tag in (256, 257) and kind in (3, 4):  # ImageWidth, ImageLength: SHORT or LONG
            short = kind == 3
            sides[tag] = struct.unpack(
                order + ("H" if short else "I"), value[:2] if short else value
            )[0]
    return (sides[256], sides[257]) if len(sides) == 2 else None


# JPEG markers that start a frame and carry its size: SOF0-SOF15 less DHT, JPG and DAC.
_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM and the restart markers.
_BARE = {0x01, *range(0xD0, 0xD8)}


class _Header:
    """A file's bytes from `at` on, read in chunks of _CHUNK and kept while they are looked
    through, never more than MOST_READ of them in all: past that, as past the file's end,
    there are none."""

    def __init__(self, file: BinaryIO, at: int) -> None:
        self.file, self.at, self.left = file, at, MOST_READ
        self.start, self.chunk = at, b""  # the chunk last read and where it starts

    def _from_here(self, count: int) -> bytes:
        """The bytes in hand from `at`, reading a chunk there where fewer than `count` are."""
        offset = self.at - self.start
        if (offset < 0 or offset + count > len(self.chunk)) and self.left > 0:
            self.file.seek(self.at)
            self.start, offset = self.at, 0
            self.chunk = self.file.read(min(_CHUNK, self.left))
            self.left -= len(self.chunk)
        return self.chunk[offset:] if offset >= 0 else b""

    def take(self, count: int) -> bytes:
        """The next `count` bytes, fewer at the end."""
        taken = self._from_here(count)[:count]
        self.at += len(taken)
        return taken

    def skip(self, count: int) -> None:
        self.at += count

    def skip_fill(self) -> None:
        """Past any 0xFF bytes."""
        while True:
            here = self._from_here(1)
            fill = len(here) - len(here.lstrip(b"\xff"))
            self.at += fill
            if fill < len(here) or not here:
                return


def _jpeg(file: BinaryIO, head: bytes) -> tuple[int, int] | None:
    header = _Header(file, 2)
    for _ in range(_MOST_SEGMENTS):
        if header.take(1) != b"\xff":
            return None
        header.skip_fill()  # fill bytes before a marker
        marker = header.take(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # the end, or pixels before any frame
            return None
        if marker[0] in _BARE:
            continue
        (length,) = struct.unpack(">H", header.take(2))
        if marker[0] in _FRAMES:
            height, width = struct.unpack(">xHH", header.take(5))
            return width, height
        header.skip(length - 2)
    return None


# How to tell each format by its first bytes, and how to read its size.
_FORMATS: tuple[
    tuple[Callable[[bytes], bool], Callable[[BinaryIO, bytes], tuple[int, int] | None]], ...
] = (
    (lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    (lambda head: head.startswith(b"\xff\xd8"), _jpeg),
    (lambda head: head.startswith(b"BM"), _bmp),
    (lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP", _webp),
    (lambda head: head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6"), _netpbm),
    (lambda head: head[:4] in (b"II*\x00", b"MM\x00*"), _tiff),
)
