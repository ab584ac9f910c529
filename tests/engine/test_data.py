"""Datasets and batches: subsets, splits, the in-memory path, real MNIST and an image folder."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.contract import locate
from engine.contract.errors import RunError
from engine.contract.locate import DatasetMissing, check_dataset, scan_image_folder
from engine.contract.spec import RunSpec, SpecError
from engine.data.batches import FileBatches, TensorBatches, make_batches
from engine.data.datasets import load_dataset

CPU = torch.device("cpu")


def spec(**values) -> RunSpec:
    return RunSpec.from_dict({"device": "cpu", **values})


def test_shapes_splits_into_train_val_and_a_fixed_test_set():
    bundle = load_dataset(spec())
    assert bundle.sizes() == {"train": 9000, "val": 1000, "test": 2000}  # val_fraction 0.1
    assert bundle.channels == 3 and bundle.image_size == 32 and len(bundle.classes) == 10
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.labels.dtype == torch.int64
    other = load_dataset(spec(val_fraction=0.25, seed=7))
    assert other.sizes() == {"train": 7500, "val": 2500, "test": 2000}
    assert torch.equal(bundle.test.images, other.test.images)  # one test set for all runs
    again = load_dataset(spec())
    assert torch.equal(bundle.val.images, again.val.images)


def test_every_seed_holds_out_the_same_validation_images_and_picks_its_own_subsets():
    first, second = (
        load_dataset(spec(train_per_class=5)),
        load_dataset(spec(train_per_class=5, seed=3)),
    )
    assert torch.equal(first.val.images, second.val.images)
    assert not torch.equal(first.train.images, second.train.images)
    held_out = {bytes(image.numpy()) for image in first.val.images}
    assert not any(bytes(image.numpy()) in held_out for image in second.train.images)


def test_no_validation_share_validates_on_the_test_data():
    bundle = load_dataset(spec(val_fraction=0, limit=50))
    assert bundle.val is bundle.test
    assert any("validation uses the test data" in note for note in bundle.notes)


def test_a_class_subset_is_relabelled_in_order_and_filters_the_test_data():
    bundle = load_dataset(spec(classes="star,0"))
    assert bundle.classes == ["star", "circle"]
    for split in (bundle.train, bundle.val, bundle.test):
        assert sorted(split.labels.unique().tolist()) == [0, 1]
    full = load_dataset(spec())
    assert (bundle.test.labels == 0).sum() == (full.test.labels == 3).sum()  # stars
    assert (bundle.test.labels == 1).sum() == (full.test.labels == 0).sum()  # circles
    assert len(bundle.test) == int(((full.test.labels == 3) | (full.test.labels == 0)).sum())
    stars = full.test.images[full.test.labels == 3]
    assert torch.equal(bundle.test.images[bundle.test.labels == 0], stars)


def test_few_shot_and_limit_subsets_follow_the_seed():
    few = load_dataset(spec(train_per_class=5))
    assert torch.bincount(few.train.labels).tolist() == [5] * 10
    assert len(few.val) == 1000  # held out before the few-shot choice
    again = load_dataset(spec(train_per_class=5))
    assert torch.equal(few.train.images, again.train.images)
    other = load_dataset(spec(train_per_class=5, seed=3))
    assert not torch.equal(few.train.images, other.train.images)
    limited = load_dataset(spec(limit=100))
    assert len(limited.train) == 100 and len(limited.val) == 1000
    # only the kept images are drawn, and they are the images of the whole set
    whole = load_dataset(spec())
    assert torch.equal(limited.val.images, whole.val.images)
    whole_train = {bytes(image.numpy()) for image in whole.train.images}
    assert all(bytes(image.numpy()) in whole_train for image in limited.train.images)
    few_and_limited = load_dataset(spec(classes="0,1,2", train_per_class=4, limit=6))
    assert len(few_and_limited.train) == 6 and few_and_limited.train.labels.max() <= 2


def test_in_memory_batches_are_normalised_augmented_and_resized():
    bundle = load_dataset(spec(limit=200, image_size=16))
    assert bundle.image_size == 16
    train = make_batches(bundle.train, bundle, 64, CPU, True, spec())
    assert isinstance(train, TensorBatches) and len(train) == 4
    batches = list(train.epoch(1))
    assert [len(labels) for _, labels in batches] == [64, 64, 64, 8]
    images, labels = batches[0]
    assert images.shape == (64, 3, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert -1 < images.mean() < 1 and 0.5 < images.std() < 2  # roughly standardised
    seen = torch.cat([y for _, y in batches])
    assert torch.equal(seen.sort().values, bundle.train.labels.sort().values)  # each image once
    evaluation = make_batches(bundle.val, bundle, 100, CPU, False, spec())
    first = torch.cat([x for x, _ in evaluation.epoch(0)])
    second = torch.cat([x for x, _ in evaluation.epoch(5)])
    assert first.shape == (1000, 3, 16, 16)
    assert torch.equal(first, second)  # evaluation is in order and not augmented
    assert torch.equal(torch.cat([y for _, y in evaluation.epoch(0)]), bundle.val.labels)


def test_normalisation_uses_the_datasets_mean_and_std():
    bundle = load_dataset(spec(limit=8))
    batches = make_batches(bundle.val, bundle, 4, CPU, False, spec())
    images, _ = next(batches.epoch(0))
    raw = bundle.val.images[:4].float() / 255
    assert torch.allclose(images, (raw - 0.5) / 0.25, atol=1e-5)


def test_augmentation_keeps_shapes_and_differs_between_epochs_but_not_seeds():
    bundle = load_dataset(spec(limit=64))
    batches = make_batches(bundle.train, bundle, 64, CPU, True, spec())
    plain = make_batches(bundle.train, bundle, 64, CPU, True, spec(augment=False))
    epoch_one = next(batches.epoch(1))[0]
    assert epoch_one.shape == next(plain.epoch(1))[0].shape == (64, 3, 32, 32)
    assert not torch.equal(epoch_one, next(batches.epoch(2))[0])
    assert torch.equal(epoch_one, next(batches.epoch(1))[0])
    # shapes are only flipped: each augmented image is the plain one or its mirror image
    augmented, labels = next(batches.epoch(1))
    unaugmented, same_labels = next(plain.epoch(1))
    assert torch.equal(labels, same_labels)
    flipped = [
        not torch.equal(a, b) and torch.equal(a, b.flip(2))
        for a, b in zip(augmented, unaugmented, strict=True)
    ]
    kept = [torch.equal(a, b) for a, b in zip(augmented, unaugmented, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_real_mnist_loads_from_the_gzipped_files(mnist_root):
    full = load_dataset(spec(dataset="mnist", data_root=str(mnist_root), val_fraction=0))
    assert len(full.train) == 60_000 and len(full.test) == 10_000
    assert full.channels == 1 and full.train.images.shape[1:] == (1, 28, 28)
    assert full.classes == [str(d) for d in range(10)]
    assert torch.bincount(full.test.labels).tolist()[0] == 980  # zeros in the MNIST test set
    bundle = load_dataset(spec(dataset="mnist", data_root=str(mnist_root), image_size=16))
    assert bundle.sizes() == {"train": 54_000, "val": 6_000, "test": 10_000}
    batches = make_batches(bundle.test, bundle, 32, CPU, False, spec(dataset="mnist"))
    images, labels = next(batches.epoch(0))
    assert images.shape == (32, 1, 16, 16) and torch.equal(labels, bundle.test.labels[:32])


def test_a_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(SpecError) as caught:
        check_dataset(spec(dataset="mnist", data_root=str(tmp_path)))
    message = str(caught.value)
    assert str(tmp_path) in message and "--download" in message and "\n" not in message
    with pytest.raises(SpecError, match="--download"):
        load_dataset(spec(dataset="mnist", data_root=str(tmp_path)))


def test_the_ants_and_bees_folder_is_found_and_its_stray_gif_reported(hymenoptera):
    layout = scan_image_folder(hymenoptera)
    assert layout.classes == ["ants", "bees"]
    assert set(layout.splits) == {"train", "val"}
    assert [p.name for p in layout.skipped] == ["imageNotFound.gif"]
    assert check_dataset(spec(dataset=f"imagefolder:{hymenoptera}")) == ["ants", "bees"]
    # at more than 64 px, photos are decoded per batch by workers
    bundle = load_dataset(spec(dataset=f"imagefolder:{hymenoptera}", image_size=72, workers=0))
    # train/ has 245 files less the gif, a tenth of it held out for validation; val/ is the
    # test data, never the validation data
    assert bundle.sizes() == {"train": 220, "val": 24, "test": 153}
    assert not set(bundle.val.files) & set(bundle.test.files)
    assert all("/train/" in str(path) for path in bundle.val.files)
    assert all("/val/" in str(path) for path in bundle.test.files)
    assert any("imageNotFound.gif" in note for note in bundle.notes)
    assert any("test metrics are on val/" in note for note in bundle.notes)
    assert any("held out of train/ (--val-fraction 0.1)" in note for note in bundle.notes)
    batches = make_batches(bundle.train, bundle, 8, CPU, True, spec(workers=0))
    assert isinstance(batches, FileBatches) and len(batches) == 28
    images, labels = next(batches.epoch(1))
    assert images.shape == (8, 3, 72, 72) and images.dtype == torch.float32
    assert labels.shape == (8,) and set(labels.tolist()) <= {0, 1}
    evaluation = make_batches(bundle.test, bundle, 4, CPU, False, spec(workers=0))
    images, labels = next(evaluation.epoch(0))
    assert images.shape == (4, 3, 72, 72) and torch.equal(labels, bundle.test.labels[:4])


def test_an_image_folder_class_subset_by_index(hymenoptera):
    bundle = load_dataset(spec(dataset=f"imagefolder:{hymenoptera}", classes="1,0", workers=0))
    assert bundle.classes == ["bees", "ants"]
    assert all(
        path.parent.name == ("bees" if label == 0 else "ants")
        for path, label in zip(bundle.train.files, bundle.train.labels.tolist(), strict=True)
    )


def write_images(folder: Path, per_class: int) -> None:
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 10), colour).save(folder / name / f"{i}.png")


def test_a_single_folder_of_classes_holds_out_a_test_share(tmp_path):
    write_images(tmp_path / "colours", 10)
    (tmp_path / "colours" / "red" / "notes.txt").write_text("not an image")
    bundle = load_dataset(spec(dataset=f"imagefolder:{tmp_path / 'colours'}", image_size=8))
    assert bundle.classes == ["blue", "red"]
    assert bundle.sizes() == {"train": 16, "val": 2, "test": 2}
    assert any("held out as test data" in note for note in bundle.notes)
    assert any("notes.txt" in note for note in bundle.notes)
    assert not set(bundle.train.files) & set(bundle.test.files)
    batches = make_batches(bundle.train, bundle, 5, CPU, True, spec(workers=0))
    assert [tuple(x.shape) for x, _ in batches.epoch(1)][0] == (5, 3, 8, 8)


def test_a_folder_without_images_or_with_one_class_is_refused(tmp_path: Path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SpecError, match="no images found"):
        scan_image_folder(tmp_path / "nothing")
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(SpecError, match="no images found") as caught:
        scan_image_folder(tmp_path / "empty")
    assert "\n" not in str(caught.value)
    (tmp_path / "one" / "cats").mkdir(parents=True)
    (tmp_path / "one" / "cats" / "a.jpg").write_bytes(b"")
    with pytest.raises(SpecError, match=r"only one class \(cats\)") as caught:
        scan_image_folder(tmp_path / "one")
    assert "at least two class folders" in str(caught.value)
    with pytest.raises(SpecError, match="does not exist"):
        scan_image_folder(tmp_path / "missing")
    with pytest.raises(SpecError, match="only one class"):
        load_dataset(spec(dataset=f"imagefolder:{tmp_path / 'one'}"))


def test_an_image_folder_class_that_is_not_there_is_refused(tmp_path):
    write_images(tmp_path / "colours", 2)
    with pytest.raises(SpecError, match="no class 'green'.*0=blue, 1=red"):
        check_dataset(spec(dataset=f"imagefolder:{tmp_path / 'colours'}", classes="red,green"))


def test_an_image_folder_class_named_twice_by_index_and_name_is_refused(tmp_path):
    write_images(tmp_path / "colours", 2)
    with pytest.raises(SpecError, match=r"names a class twice \(red\)"):
        check_dataset(spec(dataset=f"imagefolder:{tmp_path / 'colours'}", classes="1,red"))
    with pytest.raises(SpecError, match="names a class twice"):
        load_dataset(spec(dataset=f"imagefolder:{tmp_path / 'colours'}", classes="blue,0"))


def test_a_missing_image_folder_is_a_missing_dataset(tmp_path):
    with pytest.raises(DatasetMissing, match="does not exist"):
        check_dataset(spec(dataset=f"imagefolder:{tmp_path / 'gone'}"))
    write_images(tmp_path / "one", 1)
    (tmp_path / "one" / "blue" / "0.png").unlink()
    with pytest.raises(SpecError, match="only one class") as caught:
        check_dataset(spec(dataset=f"imagefolder:{tmp_path / 'one'}"))
    assert not isinstance(caught.value, DatasetMissing)  # there, but not usable as it is


def test_the_test_hold_out_of_a_train_only_folder_is_the_same_for_every_seed(tmp_path):
    write_images(tmp_path / "data" / "train", 20)
    options = {"dataset": f"imagefolder:{tmp_path / 'data'}", "image_size": 8}
    first = load_dataset(spec(**options))
    assert first.sizes() == {"train": 32, "val": 4, "test": 4}
    assert any("training images held out as test data" in note for note in first.notes)
    again = load_dataset(spec(**options))
    other_seed = load_dataset(spec(**options, seed=5))
    assert first.test.files == again.test.files == other_seed.test.files
    assert first.train.files == again.train.files
    assert not set(first.test.files) & set(first.train.files + first.val.files)
    assert first.val.files == other_seed.val.files  # and so is the validation hold-out


def test_test_data_without_the_training_classes_is_an_error(tmp_path):
    write_images(tmp_path / "data" / "train", 4)
    (tmp_path / "data" / "val" / "green").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "val" / "green" / "0.png")
    with pytest.raises(RunError) as caught:
        load_dataset(spec(dataset=f"imagefolder:{tmp_path / 'data'}"))
    assert caught.value.kind == "bad_input"
    val = tmp_path / "data" / "val"
    assert caught.value.message == f"{val} has no images of the training classes (blue, red)"
    assert "val/" in caught.value.hint


def test_no_test_images_of_the_chosen_classes_says_so(tmp_path):
    write_images(tmp_path / "data" / "train", 2)
    write_images(tmp_path / "data" / "test", 1)
    for name in ("green", "yellow"):
        (tmp_path / "data" / "train" / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / "data" / "train" / name / "0.png")
    dataset = f"imagefolder:{tmp_path / 'data'}"
    assert load_dataset(spec(dataset=dataset, classes="green,red")).sizes()["test"] == 1
    with pytest.raises(RunError, match="^the test data has no images of the chosen classes$"):
        load_dataset(spec(dataset=dataset, classes="green,yellow"))


def test_a_hold_out_too_small_for_one_test_image_says_so(tmp_path):
    write_images(tmp_path / "colours", 2)  # 10% of 4 images rounds to none
    with pytest.raises(RunError, match="^the test data has no images$") as caught:
        load_dataset(spec(dataset=f"imagefolder:{tmp_path / 'colours'}"))
    assert caught.value.kind == "bad_input" and caught.value.hint


def test_an_image_folder_scan_is_bounded_and_names_a_folder_it_cannot_read(tmp_path, monkeypatch):
    write_images(tmp_path / "colours", 3)
    monkeypatch.setattr(locate, "MOST_FILES", 5)
    with pytest.raises(SpecError, match="holds more than 5 files; give a folder of class"):
        scan_image_folder(tmp_path / "colours")
    if Path("/proc/1").is_dir():
        with pytest.raises(SpecError, match=r"^cannot read /proc/\S+ in the image folder /proc"):
            check_dataset(spec(dataset="imagefolder:/proc"))


def test_a_train_and_val_folder_validates_on_held_out_training_images(tmp_path):
    for split in ("train", "val"):
        write_images(tmp_path / "colours" / split, 10)
    options = {"dataset": f"imagefolder:{tmp_path / 'colours'}", "image_size": 8}
    bundle = load_dataset(spec(**options))
    assert bundle.sizes() == {"train": 18, "val": 2, "test": 20}
    assert all("/train/" in str(path) for path in bundle.val.files)
    assert all("/val/" in str(path) for path in bundle.test.files)
    # a run stored before the rule (its spec has no val_from_train) validates on val/ still
    stored = RunSpec.from_json(json.dumps({**options, "val_fraction": 0.1}))
    old = load_dataset(stored)
    assert old.sizes() == {"train": 20, "val": 20, "test": 20}
    assert old.val.files == old.test.files
    assert any("from before validation was held out" in note for note in old.notes)
