"""Image folders of small images decoded once, kept as uint8 tensors in a cache beside the
datasets, and trained through the same batched in-memory path as MNIST and CIFAR."""

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from engine.contract.errors import UnreadableImage
from engine.data.image_files import evaluation_framing, read_image
from engine.data.splits import FileSplit, TensorSplit

# Images of at most this many pixels a side are "small", as for the network's small stem: a
# folder of them is decoded once and augmented a batch at a time (crop with padding, flip).
# Larger ones keep torchvision's per-image RandomResizedCrop in DataLoader workers.
SMALL_IMAGE_SIDE = 64
# The most memory a run's decoded images may take to be held in memory (and on the GPU).
MOST_BYTES = 2 << 30
# A run that keeps fewer than this share of a folder's images (--limit, a few-shot subset)
# decodes only those, and caches nothing, unless the whole folder is cached already.
SMALL_PART = 0.25
# The cache's folder under the data root, and the version of what its files hold.
CACHE_FOLDER = "decoded-folders"
CACHE_FORMAT = 1
# More bytes than its images a cache file holds (torch's zip layout): a larger file is no
# cache of the folder, and is not read (a forged file could be huge).
SMALLEST_OVERHEAD = 1 << 20
# A partial cache file this old is one a killed run left: removed when the next is written.
STALE_PARTIAL_S = 3600
# Seconds between two progress lines while decoding.
PROGRESS_EVERY_S = 2.0

Report = Callable[[str], None]


def fits_in_memory(splits: list[FileSplit], size: int, channels: int) -> bool:
    """Whether images decoded at `size` px are small, and all of `splits` fit in MOST_BYTES."""
    files = {path for split in splits for path in split.files}
    return size <= SMALL_IMAGE_SIDE and len(files) * channels * size * size <= MOST_BYTES


def decode_once(
    splits: list[FileSplit],
    folder_files: list[Path],
    root: Path,
    size: int,
    cache_root: Path,
    report: Report = lambda line: None,
) -> list[TensorSplit]:
    """`splits` (cut from the image folder `root`, whose files are `folder_files`) as
    in-memory splits of uint8 RGB images framed at `size` as evaluation frames an image file,
    so a prediction on a file sees what training saw. The folder's images come from the
    cache where it holds them at this size; else the whole folder is decoded (on all cores)
    and cached, one process at a time, or only the kept files where they are a small part
    of it or the whole would not fit in MOST_BYTES. `report` is told the progress and what
    happened, in lines."""
    kept = sorted({path for split in splits for path in split.files})
    everything = sorted(set(folder_files) | set(kept))
    name = hashlib.sha256(os.fsencode(f"{root.resolve()}\0{size}")).hexdigest()[:12]
    cache_file = cache_root / CACHE_FOLDER / f"{name}-{cache_key(everything, root, size)}.pt"
    fits_whole = len(everything) * 3 * size * size <= MOST_BYTES
    with _one_process_at_a_time(cache_file):
        images = _read_cache(cache_file, len(everything), size, report)
        if images is not None:
            files = everything
        elif len(kept) < SMALL_PART * len(everything) or not fits_whole:
            report(f"{len(kept):,} of the folder's {len(everything):,} images kept: decoding them")
            files, images = kept, _decode(kept, size, report)
        else:
            files, images = everything, _decode(everything, size, report)
            _write_cache(cache_file, images, report)
    index = {path: position for position, path in enumerate(files)}
    return [
        TensorSplit(images[[index[path] for path in split.files]], split.labels, split.files)
        for split in splits
    ]


def cache_key(files: list[Path], root: Path, size: int) -> str:
    """What the decoded images depend on: each file's path in the folder, size and time of
    change, the size they are framed at and the cache's format."""
    digest = hashlib.sha256(f"{CACHE_FORMAT} {size}\n".encode())
    for path in files:
        try:
            stat = path.stat()
        except OSError as error:  # gone or unreadable since the folder was listed
            raise UnreadableImage(f"cannot read image {path}: {error.strerror}") from None
        name = path.relative_to(root) if path.is_relative_to(root) else path
        digest.update(os.fsencode(name) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def _one_process_at_a_time(cache_file: Path) -> Iterator[None]:
    """Hold the cache file's lock: ranks of one run, or runs started together, decode the
    folder once and the others read it. Without a writable cache folder, no lock."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(cache_file.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing lets go of the lock


def _decode(files: list[Path], size: int, report: Report) -> torch.Tensor:
    """Every file decoded and framed, on as many threads as torch uses (PIL lets go of the
    interpreter while it decodes and resizes), with a progress line every few seconds."""
    framing = evaluation_framing(size)
    images = torch.empty((len(files), 3, size, size), dtype=torch.uint8)

    def decode(position: int) -> None:
        picture = read_image(files[position], "RGB")
        for step in framing:
            picture = step(picture)
        images[position] = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)

    started = time.perf_counter()
    last_said = started
    report(f"decoding {len(files):,} images once at {size} px")
    pool = ThreadPoolExecutor(max(1, torch.get_num_threads()))
    try:
        for done, _ in enumerate(pool.map(decode, range(len(files))), start=1):
            now = time.perf_counter()
            if now - last_said >= PROGRESS_EVERY_S and done < len(files):
                report(f"decoded {done:,} of {len(files):,} images ({done / len(files):.0%})")
                last_said = now
    finally:  # an unreadable image ends the decode: the images still queued are not decoded
        pool.shutdown(cancel_futures=True)
    report(f"decoded {len(files):,} images in {time.perf_counter() - started:.1f} s")
    return images


def _read_cache(cache_file: Path, count: int, size: int, report: Report) -> torch.Tensor | None:
    """The cached images, or None where there are none or the file is not what it should
    hold (damaged, cut short, forged, changed): then they are decoded again and the file
    replaced. Nothing larger than the images is read, nothing compressed is inflated, and
    the images' checksum must match the one written with them."""
    if not cache_file.is_file():
        return None
    shape = (count, 3, size, size)
    most = count * 3 * size * size + SMALLEST_OVERHEAD
    try:
        if cache_file.stat().st_size > most or not _stored_plainly(cache_file, most):
            report(f"{cache_file} is not a cache of this folder's images: decoding again")
            return None
        held = torch.load(cache_file, map_location="cpu", weights_only=True)
        images = held.get("images") if isinstance(held, dict) else None
        fits = isinstance(images, torch.Tensor) and images.dtype == torch.uint8
        if not fits or tuple(images.shape) != shape or held.get("sha256") != _checksum(images):
            report(f"{cache_file} does not hold this folder's images: decoding again")
            return None
    except Exception:  # any damage to the file: torch.load has no error of its own
        report(f"the decoded images in {cache_file} cannot be read (damaged): decoding again")
        return None
    report(f"{count:,} images decoded before, read from {cache_file}")
    return images


def _stored_plainly(cache_file: Path, most: int) -> bool:
    """Whether the file is a zip (torch's format) of uncompressed entries, at most `most`
    bytes in all: a compressed entry could inflate to any size."""
    try:
        with zipfile.ZipFile(cache_file) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    plain = all(entry.compress_type == zipfile.ZIP_STORED for entry in entries)
    return plain and sum(entry.file_size for entry in entries) <= most


def _checksum(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().data).hexdigest()


def _write_cache(cache_file: Path, images: torch.Tensor, report: Report) -> None:
    """Keep the decoded images for later runs, in place of the folder's older caches at this
    size: written whole under another name, then moved into place, so a run reading the
    cache never sees half a file. A cache that cannot be written (a full disk, no
    permission) costs the next run a decode, nothing else."""
    partial = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(cache_file)
        handle, partial = tempfile.mkstemp(dir=cache_file.parent, suffix=".partial")
        with os.fdopen(handle, "wb") as file:
            held = {"format": CACHE_FORMAT, "images": images, "sha256": _checksum(images)}
            torch.save(held, file)
        os.replace(partial, cache_file)
        partial = None
    except Exception as error:  # a full disk is a RuntimeError from torch's zip writer
        reason = " ".join(str(error).split())
        report(f"the decoded images could not be cached in {cache_file.parent}: {reason}")
    finally:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)


def _remove_leftovers(cache_file: Path) -> None:
    """The folder's earlier caches at this size (its files have changed since), and partial
    files that runs killed while writing left behind."""
    prefix = cache_file.name.split("-", 1)[0]
    for older in cache_file.parent.glob(f"{prefix}-*.pt"):
        if older != cache_file:
            older.unlink(missing_ok=True)
    for partial in cache_file.parent.glob("*.partial"):
        with contextlib.suppress(OSError):
            if time.time() - partial.stat().st_mtime > STALE_PARTIAL_S:
                partial.unlink()
