"""Datasets and batches: subsets, splits, the in-memory path, real MNIST and an image folder."""

from pathlib import Path

import pytest
import torch

from engine.data import FileBatches, TensorBatches, load_dataset, make_batches
from engine.locate import check_dataset, scan_image_folder
from engine.spec import RunSpec, SpecError


def spec(**values) -> RunSpec:
    return RunSpec.from_dict({"device": "cpu", **values})


def test_shapes_splits_into_train_val_and_a_fixed_test_set():
    bundle = load_dataset(spec(val_fraction=0.2))
    assert bundle.sizes() == {"train": 8000, "val": 2000, "test": 2000}
    assert bundle.channels == 3 and bundle.image_size == 32 and len(bundle.classes) == 10
    other_seed = load_dataset(spec(val_fraction=0.2, seed=7))
    assert torch.equal(bundle.test.images, other_seed.test.images)  # one test set for all runs
    assert not torch.equal(bundle.val.labels, other_seed.val.labels)  # the split follows the seed


def test_a_class_subset_is_relabelled_in_order_and_filters_the_test_data():
    bundle = load_dataset(spec(classes="star,0"))
    assert bundle.classes == ["star", "circle"]
    for split in (bundle.train, bundle.val, bundle.test):
        assert sorted(split.labels.unique().tolist()) == [0, 1]
    full = load_dataset(spec())
    stars = (full.test.labels == 3).sum()
    assert (bundle.test.labels == 0).sum() == stars


def test_few_shot_and_limit_subsets_follow_the_seed():
    few = load_dataset(spec(train_per_class=5))
    assert torch.bincount(few.train.labels).tolist() == [5] * 10
    again = load_dataset(spec(train_per_class=5))
    assert torch.equal(few.train.images, again.train.images)
    assert len(load_dataset(spec(limit=100)).train) == 100


def test_in_memory_batches_are_normalised_augmented_and_resized():
    bundle = load_dataset(spec(limit=200, image_size=16))
    train = make_batches(bundle.train, bundle, 64, torch.device("cpu"), True, spec())
    assert isinstance(train, TensorBatches) and len(train) == 4
    images, labels = next(train.epoch(1))
    assert images.shape == (64, 3, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (64,)
    assert -3 < images.mean() < 3
    evaluation = make_batches(bundle.val, bundle, 100, torch.device("cpu"), False, spec())
    first = torch.cat([x for x, _ in evaluation.epoch(0)])
    second = torch.cat([x for x, _ in evaluation.epoch(5)])
    assert torch.equal(first, second)  # evaluation is in order and not augmented
    assert torch.equal(torch.cat([y for _, y in evaluation.epoch(0)]), bundle.val.labels)


def test_augmentation_differs_between_epochs_but_not_between_identical_seeds():
    bundle = load_dataset(spec(limit=64))
    batches = make_batches(bundle.train, bundle, 64, torch.device("cpu"), True, spec())
    epoch_one = next(batches.epoch(1))[0]
    assert not torch.equal(epoch_one, next(batches.epoch(2))[0])
    assert torch.equal(epoch_one, next(batches.epoch(1))[0])


def test_real_mnist_loads_from_the_gzipped_files(mnist_root):
    bundle = load_dataset(spec(dataset="mnist", data_root=str(mnist_root), val_fraction=0))
    assert len(bundle.train) == 60_000 and len(bundle.test) == 10_000
    assert bundle.channels == 1 and bundle.train.images.shape[1:] == (1, 28, 28)
    assert torch.bincount(bundle.test.labels).tolist()[0] == 980  # zeros in the MNIST test set


def test_a_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(SpecError) as caught:
        check_dataset(spec(dataset="mnist", data_root=str(tmp_path)))
    message = str(caught.value)
    assert str(tmp_path) in message and "--download" in message


def test_the_ants_and_bees_folder_is_found_and_its_stray_gif_reported(hymenoptera):
    layout = scan_image_folder(hymenoptera)
    assert layout.classes == ["ants", "bees"]
    assert [p.name for p in layout.skipped] == ["imageNotFound.gif"]
    bundle = load_dataset(spec(dataset=f"imagefolder:{hymenoptera}", image_size=32, workers=0))
    assert bundle.sizes() == {"train": 244, "val": 153, "test": 153}
    assert any("imageNotFound.gif" in note for note in bundle.notes)
    batches = make_batches(bundle.train, bundle, 8, torch.device("cpu"), True, spec(workers=0))
    assert isinstance(batches, FileBatches)
    images, labels = next(batches.epoch(1))
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8,)


def test_a_folder_without_images_or_with_one_class_is_refused(tmp_path: Path):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(SpecError, match="no images found"):
        scan_image_folder(tmp_path / "empty")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    (tmp_path / "one" / "cats" / "a.jpg").write_bytes(b"")
    with pytest.raises(SpecError, match="only one class"):
        scan_image_folder(tmp_path / "one")
