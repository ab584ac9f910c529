"""RandAugment, TrivialAugmentWide and random erasing: each operation as torchvision's, per image
on whole batches, grey images, image folders, and tiny runs that finish and repeat exactly."""

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from engine.contract.spec import RunSpec
from engine.data.augment_policies import (
    OPERATIONS,
    AugmentPolicy,
    apply_operations,
    erase_boxes,
    magnitudes,
)
from engine.data.batches import FileBatches, TensorBatches, make_batches
from engine.data.datasets import DatasetBundle, load_dataset
from engine.data.splits import TensorSplit
from tests.engine.test_data import write_images
from tests.engine.tiny_runs import TINY, trained_run
from tests.event_log import logged

CPU = torch.device("cpu")
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


def spec(**values) -> RunSpec:
    return RunSpec.from_dict({**TINY, **values})


def torchvision_operation(name: str, image: torch.Tensor, strength: float) -> torch.Tensor:
    """torchvision's RandAugment operation `name` on one uint8 image, as transforms.v2 does it."""
    shear = math.degrees(math.atan(strength))
    affine = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0, 0.0]}
    operations = {
        "Identity": lambda: image,
        "ShearX": lambda: TF.affine(image, **{**affine, "shear": [shear, 0.0]}, center=[0, 0]),
        "ShearY": lambda: TF.affine(image, **{**affine, "shear": [0.0, shear]}, center=[0, 0]),
        "TranslateX": lambda: TF.affine(image, **{**affine, "translate": [int(strength), 0]}),
        "TranslateY": lambda: TF.affine(image, **{**affine, "translate": [0, int(strength)]}),
        "Rotate": lambda: TF.rotate(image, strength),
        "Brightness": lambda: TF.adjust_brightness(image, 1 + strength),
        "Color": lambda: TF.adjust_saturation(image, 1 + strength),
        "Contrast": lambda: TF.adjust_contrast(image, 1 + strength),
        "Sharpness": lambda: TF.adjust_sharpness(image, 1 + strength),
        "Posterize": lambda: TF.posterize(image, int(strength)),
        "Solarize": lambda: TF.solarize(image, strength),
        "AutoContrast": lambda: TF.autocontrast(image),
        "Equalize": lambda: TF.equalize(image),
    }
    return operations[name]()


def pictures(count: int, channels: int = 3, size: int = 24) -> torch.Tensor:
    """Smooth random uint8 images, like photographs more than like noise."""
    generator = torch.Generator().manual_seed(channels)
    noise = torch.rand(count, channels, size, size, generator=generator) * 255
    return TF.gaussian_blur(noise.round().to(torch.uint8), [5, 5])


@pytest.mark.parametrize("channels", [3, 1], ids=["rgb", "grey"])
@pytest.mark.parametrize("wide", [False, True], ids=["randaugment", "trivialaugment"])
@pytest.mark.parametrize("operation", range(len(OPERATIONS)), ids=OPERATIONS)
def test_each_operation_on_a_batch_is_torchvisions_on_each_image(operation, wide, channels):
    images = pictures(6, channels)
    table = magnitudes(wide, 24, 24, CPU)
    name = OPERATIONS[operation]
    # one batch, each image its own strength and sign
    strengths = [float(table[operation, b]) for b in (3, 9, 15, 21, 27, 30)]
    signs = [1, -1, 1, -1, 1, -1] if name not in ("Posterize", "Solarize") else [1] * 6
    strength = torch.tensor([s * sign for s, sign in zip(strengths, signs, strict=True)])
    ours = apply_operations(images.float(), torch.full((6,), operation), strength)
    assert ours.shape == images.shape and ours.dtype == torch.float32
    for index, image in enumerate(images):
        theirs = torchvision_operation(name, image, float(strength[index])).float()
        difference = (ours[index] - theirs).abs()
        if name in GEOMETRIC:  # nearest pixel: only points exactly between two may differ
            assert (difference == 0).float().mean() > 0.95, name
        else:  # torchvision rounds uint8 results down where these stay floats
            assert difference.max() < 2.0, name


def test_grouped_by_operation_as_on_the_cpu_or_masked_as_on_a_gpu_the_images_are_the_same():
    # channels last in memory, as a cropped batch comes
    images = pictures(200).float().permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    generator = torch.Generator().manual_seed(3)
    operations = torch.randint(len(OPERATIONS), (200,), generator=generator)
    table = magnitudes(True, 24, 24, CPU)
    strength = table[operations, torch.randint(31, (200,), generator=generator)]
    grouped = apply_operations(images, operations, strength, grouped=True)
    assert torch.equal(grouped, apply_operations(images, operations, strength, grouped=False))
    assert torch.equal(grouped, apply_operations(images, operations, strength))
    kept = operations == OPERATIONS.index("Identity")
    assert kept.any() and torch.equal(grouped[kept], images[kept])


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
def test_every_image_of_a_batch_draws_its_own_operations(policy):
    images = pictures(1).float().expand(64, -1, -1, -1)
    generator = torch.Generator().manual_seed(0)
    augmented = AugmentPolicy(policy, 9, 0.0).augment(images, generator)
    assert augmented.shape == images.shape and augmented.dtype == images.dtype
    distinct = {augmented[i].numpy().tobytes() for i in range(64)}
    assert len(distinct) > 20  # one operation for the whole batch would give one image
    assert augmented.min() >= 0 and augmented.max() <= 255


def test_randaugments_magnitude_sets_how_far_images_move():
    images = pictures(64).float()

    def change(magnitude: int) -> float:
        generator = torch.Generator().manual_seed(1)
        augmented = AugmentPolicy("randaugment", magnitude, 0.0).augment(images, generator)
        return (augmented - images).abs().mean().item()

    assert change(0) < change(9) < change(30)


def test_random_erasing_fills_one_box_of_each_chosen_image_with_noise():
    images = torch.full((200, 3, 32, 32), 7.0)
    erased = erase_boxes(images, 0.5, torch.Generator().manual_seed(0))
    changed = (erased != 7.0).all(1)  # noise in every channel of a box
    chosen = changed.flatten(1).any(1)
    assert 70 < int(chosen.sum()) < 130
    for box in changed[chosen]:
        rows, columns = box.any(1), box.any(0)
        assert int(box.sum()) == int(rows.sum() * columns.sum())  # a rectangle
        assert 0.015 <= box.float().mean().item() <= 0.36  # 2-33% of the image, rounded
    noise = erased[(erased != 7.0)]
    assert abs(noise.mean().item()) < 0.1 and abs(noise.std().item() - 1) < 0.1
    assert torch.equal(erase_boxes(images, 0.0, torch.Generator()), images)


def test_grey_images_go_through_every_policy_and_stay_grey():
    images = pictures(32, channels=1).float()
    for policy in ("randaugment", "trivialaugment"):
        augmented = AugmentPolicy(policy, 15, 1.0).augment(images, torch.Generator())
        assert augmented.shape == (32, 1, 24, 24) and torch.isfinite(augmented).all()
    erased = AugmentPolicy("off", 9, 1.0).erase(images, torch.Generator())
    assert erased.shape == images.shape


def batches_of(options: dict, train: bool = True, epoch: int = 1) -> list[torch.Tensor]:
    options = spec(limit=64, **options)
    bundle = load_dataset(options)
    batches = make_batches(bundle.train, bundle, 16, CPU, train, options)
    assert isinstance(batches, TensorBatches)
    return [images for images, _ in batches.epoch(epoch)]


def test_the_in_memory_path_augments_training_batches_alone_and_repeats_for_a_seed():
    plain = batches_of({})
    for options in ({"auto_augment": "randaugment"}, {"auto_augment": "trivialaugment"}):
        augmented = batches_of({**options, "random_erasing": 0.25})
        assert [b.shape for b in augmented] == [b.shape for b in plain]
        assert all(b.dtype == torch.float32 for b in augmented)
        assert not any(torch.equal(a, b) for a, b in zip(augmented, plain, strict=True))
        again = batches_of({**options, "random_erasing": 0.25})
        assert all(torch.equal(a, b) for a, b in zip(augmented, again, strict=True))
        evaluation = batches_of({**options, "random_erasing": 0.25}, train=False)
        assert all(
            torch.equal(a, b) for a, b in zip(evaluation, batches_of({}, train=False), strict=True)
        )
    no_crop = batches_of({"augment": False, "auto_augment": "randaugment"})
    assert not any(
        torch.equal(a, b) for a, b in zip(no_crop, batches_of({"augment": False}), strict=True)
    )


def test_cropped_natural_images_go_through_the_policies_on_the_device():
    split = TensorSplit(pictures(40, size=16), torch.arange(40) % 10)
    bundle = DatasetBundle(
        name="cifar-size",
        classes=list("0123456789"),
        channels=3,
        image_size=16,
        natural_images=True,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        train=split,
        val=split,
        test=split,
    )
    for policy in ("randaugment", "trivialaugment"):
        options = spec(auto_augment=policy, random_erasing=0.5)
        batches = make_batches(bundle.train, bundle, 16, CPU, True, options)
        shapes = [(tuple(images.shape), images.dtype) for images, _ in batches.epoch(1)]
        assert shapes == [((16, 3, 16, 16), torch.float32)] * 2 + [((8, 3, 16, 16), torch.float32)]


def test_an_image_folder_gets_torchvisions_policies_in_its_workers(tmp_path):
    write_images(tmp_path / "colours", 10)
    # at more than 64 px: smaller images are decoded once and take the batched path
    options = {"dataset": f"imagefolder:{tmp_path / 'colours'}", "image_size": 72, "workers": 0}
    options |= {"auto_augment": "randaugment", "augment_magnitude": 12, "random_erasing": 1.0}
    chosen = spec(**options)
    bundle = load_dataset(chosen)
    batches = make_batches(bundle.train, bundle, 4, CPU, True, chosen)
    assert isinstance(batches, FileBatches)
    steps = batches.loader.dataset.transform.transforms
    kinds = [type(step) for step in steps]
    assert v2.RandAugment in kinds and kinds[-1] is v2.RandomErasing
    assert next(s for s in steps if isinstance(s, v2.RandAugment)).magnitude == 12
    images, labels = next(batches.epoch(1))
    assert images.shape == (4, 3, 72, 72) and images.dtype == torch.float32
    evaluation = make_batches(bundle.test, bundle, 4, CPU, False, chosen)
    assert not any(
        isinstance(s, v2.RandAugment | v2.RandomErasing)
        for s in evaluation.loader.dataset.transform.transforms
    )
    wide = spec(**{**options, "auto_augment": "trivialaugment", "augment": False})
    steps = make_batches(bundle.train, bundle, 4, CPU, True, wide).loader.dataset.transform
    assert any(isinstance(step, v2.TrivialAugmentWide) for step in steps.transforms)


@pytest.mark.parametrize(
    "options",
    [
        {"auto_augment": "randaugment", "augment_magnitude": 20},
        {"auto_augment": "trivialaugment"},
        {"random_erasing": 0.5},
    ],
    ids=["randaugment", "trivialaugment", "erasing"],
)
def test_a_run_with_each_policy_completes_and_repeats_exactly(tmp_path, options):
    tiny = {"limit": 48, "epochs": 2, "batch_size": 16, **options}
    trained_run(tmp_path / "a", **tiny)
    trained_run(tmp_path / "b", **tiny)
    first, second = logged(tmp_path / "a" / "events.jsonl"), logged(tmp_path / "b" / "events.jsonl")
    assert first[-1]["status"] == "completed"
    ended = [e["train_loss"] for e in first if e["type"] == "epoch_ended"]
    assert len(ended) == 2
    assert ended == [e["train_loss"] for e in second if e["type"] == "epoch_ended"]


def test_a_grey_digits_run_with_every_option_completes(tmp_path, mnist_root):
    digits = {"dataset": "mnist", "data_root": str(mnist_root), "limit": 48, "batch_size": 16}
    options = {"auto_augment": "trivialaugment", "random_erasing": 0.5, "cutmix": 1.0}
    trained_run(tmp_path / "digits", **digits, **options)
    assert logged(tmp_path / "digits" / "events.jsonl")[-1]["status"] == "completed"
