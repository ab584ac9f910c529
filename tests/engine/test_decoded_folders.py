"""Folders of small images decoded once: the pixels evaluation would see, a cache that is
reused, renewed when a file changes, and survives damage, forgery, races and a full disk."""

import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.contract.errors import UnreadableImage
from engine.contract.spec import RunSpec
from engine.data import decoded_folders
from engine.data.datasets import load_dataset
from engine.data.decoded_folders import CACHE_FOLDER
from engine.data.image_files import evaluation_framing, read_image
from engine.data.splits import FileSplit, TensorSplit

COLOURS = {"blue": (20, 40, 230), "red": (220, 30, 30)}


def small_folder(root: Path, per_class: int = 6) -> Path:
    """train/ and val/ of two classes of 20 x 14 px pictures, each a little different."""
    for split in ("train", "val"):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                picture = Image.new("RGB", (20, 14), colour)
                picture.putpixel((i % 14, i % 14), (i * 12 % 256, 255 - i * 12, 7))
                picture.save(root / split / name / f"{i}.png")
    return root


def load(root: Path, data_root: Path, lines: list[str] | None = None, **options):
    values = {"dataset": f"imagefolder:{root}", "image_size": 12, "data_root": str(data_root)}
    spec = RunSpec.from_dict({**values, **options})
    return load_dataset(spec, (lines if lines is not None else []).append)


def framed(path: Path, size: int) -> torch.Tensor:
    """The file as evaluation frames it, as uint8 (C, H, W)."""
    picture = read_image(path, "RGB")
    for step in evaluation_framing(size):
        picture = step(picture)
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)


def cache_files(data_root: Path) -> list[Path]:
    return sorted((data_root / CACHE_FOLDER).glob("*.pt"))


def test_small_images_are_held_in_memory_as_evaluation_frames_them(tmp_path):
    root = small_folder(tmp_path / "pictures")
    lines: list[str] = []
    bundle = load(root, tmp_path / "data", lines)
    for split in (bundle.train, bundle.val, bundle.test):
        assert isinstance(split, TensorSplit) and split.images.dtype == torch.uint8
        assert len(split.files) == len(split) and split.images.shape[1:] == (3, 12, 12)
        for image, path, label in zip(split.images, split.files, split.labels, strict=True):
            assert torch.equal(image, framed(path, 12))
            assert path.parent.name == bundle.classes[label]
    assert bundle.sizes() == {"train": 11, "val": 1, "test": 12}
    assert any("held in memory" in note for note in bundle.notes)
    assert lines[0].startswith("decoding 24 images once at 12 px")
    assert lines[-1].startswith("decoded 24 images in")
    assert len(cache_files(tmp_path / "data")) == 1


def test_a_second_load_reads_the_cache_and_a_changed_file_is_decoded_again(tmp_path):
    root = small_folder(tmp_path / "pictures")
    first = load(root, tmp_path / "data")
    lines: list[str] = []
    again = load(root, tmp_path / "data", lines)
    assert lines == [
        "24 images decoded before, read from " + str(cache_files(tmp_path / "data")[0])
    ]
    assert torch.equal(first.test.images, again.test.images)
    changed = root / "val" / "red" / "0.png"
    Image.new("RGB", (20, 14), (0, 255, 0)).save(changed)
    lines.clear()
    renewed = load(root, tmp_path / "data", lines)
    assert lines[0].startswith("decoding 24 images")
    position = renewed.test.files.index(changed)
    assert renewed.test.images[position, :, 6, 6].tolist() == [0, 255, 0]
    assert len(cache_files(tmp_path / "data")) == 1  # the older version's is replaced


def test_another_image_size_is_another_cache(tmp_path):
    root = small_folder(tmp_path / "pictures")
    load(root, tmp_path / "data")
    lines: list[str] = []
    bundle = load(root, tmp_path / "data", lines, image_size=16)
    assert lines[0].startswith("decoding") and bundle.test.images.shape[-1] == 16
    assert len(cache_files(tmp_path / "data")) == 2


def flip_a_pixel(path: Path) -> None:
    """A byte of the images changed in place: torch reads it without complaint."""
    held = torch.load(path, weights_only=True)
    held["images"][0, 0, 0, 0] ^= 1
    torch.save(held, path)


def compress(path: Path) -> None:
    """The same entries, deflated: a forged file of this kind could inflate to any size."""
    with zipfile.ZipFile(path) as original:
        entries = [(entry, original.read(entry)) for entry in original.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as forged:
        for entry, data in entries:
            forged.writestr(entry.filename, data)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[:100]),  # cut short
        lambda path: path.write_bytes(b"\x00" * 64),  # garbage
        lambda path: torch.save({"images": torch.zeros(3, 3, 12, 12, dtype=torch.uint8)}, path),
        lambda path: torch.save({"images": torch.zeros(24, 3, 12, 12)}, path),  # floats
        lambda path: torch.save([1, 2, 3], path),  # not the cache's layout
        flip_a_pixel,
        compress,
    ],
)
def test_a_damaged_or_forged_cache_is_decoded_again_and_replaced(tmp_path, damage):
    root = small_folder(tmp_path / "pictures")
    first = load(root, tmp_path / "data")
    (cached,) = cache_files(tmp_path / "data")
    damage(cached)
    lines: list[str] = []
    again = load(root, tmp_path / "data", lines)
    assert "decoding again" in lines[0] and "\n" not in lines[0]
    assert torch.equal(first.train.images, again.train.images)
    lines.clear()
    load(root, tmp_path / "data", lines)
    assert lines[0].startswith("24 images decoded before")  # the file was mended


def test_a_cache_that_cannot_be_written_costs_a_decode_and_nothing_else(tmp_path):
    root = small_folder(tmp_path / "pictures")
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    lines: list[str] = []
    bundle = load(root, blocked, lines)
    assert isinstance(bundle.train, TensorSplit) and len(bundle.train) == 11
    assert any(line.startswith("the decoded images could not be cached") for line in lines)


def test_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    root = small_folder(tmp_path / "pictures")

    def full_disk(held, file):  # as torch's zip writer fails when the disk fills
        file.write(b"PK" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768")

    monkeypatch.setattr(decoded_folders.torch, "save", full_disk)
    lines: list[str] = []
    bundle = load(root, tmp_path / "data", lines)
    assert len(bundle.test) == 12 and "unexpected pos 768" in lines[-1]
    assert [p.suffix for p in (tmp_path / "data" / CACHE_FOLDER).iterdir()] == [".lock"]


def test_two_runs_decoding_the_same_folder_at_once_both_get_it_and_one_cache(tmp_path):
    root = small_folder(tmp_path / "pictures", per_class=20)
    bundles = []
    threads = [
        threading.Thread(target=lambda: bundles.append(load(root, tmp_path / "data")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bundles) == 2 and torch.equal(bundles[0].test.images, bundles[1].test.images)
    assert sorted(p.suffix for p in (tmp_path / "data" / CACHE_FOLDER).iterdir()) == [
        ".lock",
        ".pt",
    ]


def test_larger_images_or_too_many_bytes_stay_files_decoded_by_workers(tmp_path, monkeypatch):
    root = small_folder(tmp_path / "pictures")
    large = load(root, tmp_path / "data", image_size=72, workers=0)
    assert isinstance(large.train, FileSplit) and isinstance(large.test, FileSplit)
    monkeypatch.setattr(decoded_folders, "MOST_BYTES", 24 * 3 * 12 * 12 - 1)
    over = load(root, tmp_path / "data", workers=0)
    assert isinstance(over.train, FileSplit)
    assert not (tmp_path / "data" / CACHE_FOLDER).exists()


def test_subsets_keep_each_images_file(tmp_path):
    root = small_folder(tmp_path / "pictures")
    bundle = load(root, tmp_path / "data", classes="red,blue", train_per_class=3, seed=4)
    assert bundle.classes == ["red", "blue"] and len(bundle.train) == 6
    for split in (bundle.train, bundle.test):
        for image, path, label in zip(split.images, split.files, split.labels, strict=True):
            assert path.parent.name == bundle.classes[label]
            assert torch.equal(image, framed(path, 12))


def test_a_forged_huge_cache_file_is_not_read(tmp_path):
    root = small_folder(tmp_path / "pictures")
    load(root, tmp_path / "data")
    (cached,) = cache_files(tmp_path / "data")
    with cached.open("r+b") as file:
        file.truncate(50 << 30)  # sparse: 50 GB claimed, no disk used
    lines: list[str] = []
    bundle = load(root, tmp_path / "data", lines)
    assert "is not a cache of this folder's images: decoding again" in lines[0]
    assert len(bundle.train) == 11 and cached.stat().st_size < 1 << 20


def test_an_unreadable_image_is_named_and_a_name_of_any_bytes_is_fine(tmp_path):
    root = small_folder(tmp_path / "pictures")
    odd = root / "train" / "red" / os.fsdecode(b"caf\xe9 \xff.png")  # not UTF-8
    Image.new("RGB", (20, 14), (1, 2, 3)).save(odd)
    bundle = load(root, tmp_path / "data")
    assert odd in bundle.train.files or odd in bundle.val.files
    (root / "val" / "blue" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(UnreadableImage, match="cut.png"):
        load(root, tmp_path / "data")


def test_a_file_gone_since_the_folder_was_listed_is_named(tmp_path):
    root = small_folder(tmp_path / "pictures")
    files = [root / "train" / "red" / "0.png", root / "train" / "red" / "gone.png"]
    split = FileSplit(files, torch.tensor([0, 0]))
    with pytest.raises(UnreadableImage, match="gone.png"):
        decoded_folders.decode_once([split], files, root, 12, tmp_path / "data")


def test_a_small_part_of_a_folder_is_decoded_alone_unless_the_folder_is_cached(tmp_path):
    root = small_folder(tmp_path / "pictures", per_class=40) / "train"  # class folders
    lines: list[str] = []
    few = load(root, tmp_path / "data", lines, limit=4, val_fraction=0.05)
    assert few.sizes() == {"train": 4, "val": 4, "test": 8}
    assert lines[0] == "16 of the folder's 80 images kept: decoding them"
    assert not cache_files(tmp_path / "data")
    load(root, tmp_path / "data")  # the whole folder, cached
    lines.clear()
    again = load(root, tmp_path / "data", lines, limit=4, val_fraction=0.05)
    assert lines[0].startswith("80 images decoded before")
    assert torch.equal(few.train.images, again.train.images)


def test_a_run_stored_before_decoding_once_reads_its_files_in_workers(tmp_path):
    root = small_folder(tmp_path / "pictures")
    values = {"dataset": f"imagefolder:{root}", "image_size": 12, "data_root": str(tmp_path)}
    stored = RunSpec.from_json(json.dumps(values))
    assert stored.decode_small_folders is False
    bundle = load_dataset(stored)
    assert isinstance(bundle.train, FileSplit) and isinstance(bundle.test, FileSplit)


def test_a_folder_too_large_to_hold_whole_decodes_only_what_the_run_keeps(tmp_path, monkeypatch):
    root = small_folder(tmp_path / "pictures", per_class=40) / "train"  # class folders
    monkeypatch.setattr(decoded_folders, "MOST_BYTES", 60 * 3 * 12 * 12)  # 60 of its 80
    lines: list[str] = []
    bundle = load(root, tmp_path / "data", lines, limit=40, val_fraction=0.05)
    assert lines[0] == "52 of the folder's 80 images kept: decoding them"
    assert isinstance(bundle.train, TensorSplit) and not cache_files(tmp_path / "data")
