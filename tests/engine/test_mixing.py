"""Mixup and CutMix: mixed images and their lambda, the mixed loss (with label smoothing and
with distillation), accuracy under mixing, and tiny runs that mix, repeat and resume exactly."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from engine.data.batches import make_batches
from engine.data.datasets import load_dataset
from engine.train.mixing import MixedLabels, Mixing, hits, mixed_batches, mixture
from engine.train.objective import Objective, load_teachers
from engine.train.run import run
from engine.transfer.distill import soft_target_loss
from tests.engine.test_resume import Killed, epoch_results, kill_after_checkpoint
from tests.engine.tiny_runs import TINY, trained_run
from tests.event_log import logged

CPU = torch.device("cpu")


def spec(**values) -> RunSpec:
    return RunSpec.from_dict({**TINY, **values})


def distinct_images(count: int, height: int = 8, width: int = 8) -> torch.Tensor:
    """A batch whose images are each one value, their index: a pixel tells its image."""
    return torch.arange(count, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, height, width)


@given(
    alpha=st.floats(0.05, 5.0),
    seed=st.integers(0, 1000),
    epoch=st.integers(1, 50),
    count=st.integers(1, 40),
)
def test_mixup_blends_each_image_with_its_partner_by_lambda(alpha, seed, epoch, count):
    images = torch.randn(count, 3, 6, 6)
    labels = torch.arange(count)
    mixed, mixed_labels = Mixing(spec(mixup=alpha, seed=seed), epoch, CPU)(images, labels)
    assert isinstance(mixed_labels, MixedLabels) and 0 <= mixed_labels.weight <= 1
    weight, partner = mixed_labels.weight, mixed_labels.second
    assert torch.equal(mixed_labels.first, labels)
    assert sorted(partner.tolist()) == labels.tolist()  # a permutation of the batch
    expected = weight * images + (1 - weight) * images[partner]
    assert torch.allclose(mixed, expected, atol=1e-6)
    assert mixed.shape == images.shape and mixed.dtype == images.dtype


@given(
    alpha=st.floats(0.05, 5.0),
    seed=st.integers(0, 1000),
    size=st.tuples(st.integers(1, 20), st.integers(1, 20)),
)
def test_cutmix_pastes_one_box_whose_area_is_what_lambda_leaves(alpha, seed, size):
    images = distinct_images(16, *size)
    labels = torch.arange(16)
    mixed, mixed_labels = Mixing(spec(cutmix=alpha, seed=seed), 1, CPU)(images, labels)
    weight, partner = mixed_labels.weight, mixed_labels.second
    own = mixed == images
    from_partner = mixed == images[partner]
    assert bool((own | from_partner).all())  # every pixel is the image's or its partner's
    for index in range(16):
        if partner[index] != index:
            assert own[index].float().mean().item() == pytest.approx(weight)
    pasted = ~own[partner != labels][:, 0]  # the box, where partners differ
    if len(pasted) and pasted.any():
        rows, columns = pasted[0].any(1), pasted[0].any(0)
        box = rows.sum() * columns.sum()
        assert int(pasted[0].sum()) == int(box)  # a rectangle
        assert (pasted == pasted[0]).all()  # the same box in every image


def test_with_both_on_the_switch_chooses_cutmix_or_mixup_and_mix_prob_the_share_mixed():
    images = distinct_images(32)
    labels = torch.arange(32)

    def kinds(**options) -> list[str]:
        mixing = Mixing(spec(mixup=1.0, cutmix=1.0, **options), 1, CPU)
        found = []
        for _ in range(200):
            mixed, mixed_labels = mixing(images, labels)
            if not isinstance(mixed_labels, MixedLabels):
                found.append("none")
            elif torch.equal(mixed.round(), mixed):  # only whole pixels: pasted, not blended
                found.append("cutmix")
            else:
                found.append("mixup")
        return found

    assert set(kinds(mix_switch_prob=1.0)) == {"cutmix"}
    assert set(kinds(mix_switch_prob=0.0)) == {"mixup"}
    both = kinds(mix_switch_prob=0.5)
    assert 60 < both.count("cutmix") < 140
    assert 120 < kinds(mix_prob=0.25).count("none") < 180


def test_an_epochs_mixing_depends_on_the_seed_and_the_epoch_alone():
    images, labels = torch.randn(16, 3, 8, 8), torch.arange(16)

    def first_batches(seed: int, epoch: int) -> list[tuple[torch.Tensor, float]]:
        mixing = Mixing(spec(mixup=0.4, cutmix=1.0, seed=seed), epoch, CPU)
        return [(m, y.weight) for m, y in (mixing(images, labels) for _ in range(5))]

    same = zip(first_batches(3, 2), first_batches(3, 2), strict=True)
    assert all(torch.equal(a, b) and wa == wb for (a, wa), (b, wb) in same)
    assert first_batches(3, 2)[0][1] != first_batches(3, 3)[0][1]
    assert first_batches(3, 2)[0][1] != first_batches(4, 2)[0][1]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_loss_of_mixed_labels_is_the_mixture_of_smoothed_targets(smoothing):
    torch.manual_seed(0)
    logits, classes = torch.randn(12, 5), 5
    first, second = torch.randint(0, classes, (12,)), torch.randint(0, classes, (12,))
    labels = MixedLabels(first, second, 0.3)
    objective = Objective(spec(label_smoothing=smoothing), None, None)
    loss, parts = objective.loss(logits, torch.zeros(12, 3, 4, 4), labels)

    def smoothed(target: torch.Tensor) -> torch.Tensor:
        return F.one_hot(target, classes) * (1 - smoothing) + smoothing / classes

    targets = 0.3 * smoothed(first) + 0.7 * smoothed(second)  # timm's mixed soft targets
    brute_force = -(targets * logits.log_softmax(1)).sum(1).mean()
    assert parts is None and loss.item() == pytest.approx(brute_force.item(), rel=1e-5)
    plain, _ = objective.loss(logits, torch.zeros(12, 3, 4, 4), first)
    unmixed = -(smoothed(first) * logits.log_softmax(1)).sum(1).mean()
    assert plain.item() == pytest.approx(unmixed.item(), rel=1e-5)


def test_distillation_mixes_the_hard_labels_and_keeps_kd_on_the_mixed_images(tmp_path):
    trained_run(tmp_path / "teacher")
    student = spec(
        teacher=["run:1"],
        teacher_checkpoints=[str(tmp_path / "teacher" / "checkpoints" / "best.pt")],
        kd_alpha=0.6,
        label_smoothing=0.1,
        mixup=0.2,
    )
    bundle = load_dataset(student)
    teachers = load_teachers(student, bundle, CPU, torch.contiguous_format)
    objective = Objective(student, None, teachers)
    images, first = next(iter(make_batches(bundle.train, bundle, 8, CPU, True, student).epoch(1)))
    second, logits = first.roll(1), torch.randn(8, len(bundle.classes))
    loss, parts = objective.loss(logits, images, MixedLabels(first, second, 0.8))

    def cross_entropy(target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=0.1)

    mixed_ce = 0.8 * cross_entropy(first) + 0.2 * cross_entropy(second)
    kd = soft_target_loss(logits, teachers.logits(images), student.kd_temperature)
    assert loss.item() == pytest.approx((0.4 * mixed_ce + 0.6 * kd).item(), rel=1e-5)
    assert parts.tolist() == pytest.approx([mixed_ce.item(), kd.item()], rel=1e-5)


def test_a_mixed_image_counts_as_right_against_its_label_of_larger_weight():
    logits = F.one_hot(torch.tensor([0, 1, 2, 3]), 4).float()
    first, second = torch.tensor([0, 1, 0, 0]), torch.tensor([3, 3, 2, 3])
    assert hits(logits, MixedLabels(first, second, 0.7)).item() == 2
    assert hits(logits, MixedLabels(first, second, 0.3)).item() == 2  # 2 and 3 of second
    assert hits(logits, MixedLabels(first, second, 0.5)).item() == 2  # equal: the first
    assert hits(logits, first).item() == 2
    assert mixture(first, lambda y: y.float().sum()).item() == 1.0


def test_without_mixup_or_cutmix_the_batches_come_as_they_are():
    options = spec(limit=64, mix_prob=0.5, mix_switch_prob=0.2)  # harmless without mixing
    bundle = load_dataset(options)
    batches = make_batches(bundle.train, bundle, 16, CPU, True, options)
    for (a, y), (b, z) in zip(batches.epoch(1), mixed_batches(batches, options, 1), strict=True):
        assert torch.equal(a, b) and torch.equal(y, z)


def mixed_epochs(events: list[dict]) -> list[tuple[float, float]]:
    return [(e["train_loss"], e["train_acc"]) for e in events if e["type"] == ev.EPOCH_ENDED]


@pytest.mark.parametrize(
    "options",
    [{"mixup": 0.2}, {"cutmix": 1.0}, {"mixup": 0.2, "cutmix": 1.0, "mix_prob": 0.5}],
    ids=["mixup", "cutmix", "both"],
)
def test_a_mixed_run_completes_and_a_second_seeded_run_repeats_it_exactly(tmp_path, options):
    tiny = {"limit": 48, "epochs": 2, "batch_size": 16, **options}
    trained_run(tmp_path / "a", **tiny)
    trained_run(tmp_path / "b", **tiny)
    first, second = logged(tmp_path / "a" / "events.jsonl"), logged(tmp_path / "b" / "events.jsonl")
    assert first[-1]["status"] == "completed"
    assert len(mixed_epochs(first)) == 2 and mixed_epochs(first) == mixed_epochs(second)
    plain = trained_run(tmp_path / "plain", limit=48, epochs=2, batch_size=16)
    assert plain.mixup == 0
    assert mixed_epochs(logged(tmp_path / "plain" / "events.jsonl")) != mixed_epochs(first)


def test_a_run_with_mixing_and_augmentation_killed_and_resumed_ends_bit_for_bit(
    tmp_path, monkeypatch
):
    options = {"mixup": 0.4, "cutmix": 1.0, "auto_augment": "randaugment", "random_erasing": 0.3}
    mixed = spec(epochs=3, **options)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    assert run(mixed, whole / "events.jsonl", whole) == 0
    with monkeypatch.context() as patch:
        kill_after_checkpoint(patch, 1)
        with pytest.raises(Killed):
            run(mixed, broken / "events.jsonl", broken)
    assert run(mixed, broken / "events.jsonl", broken, resume=True) == 0
    whole_events, broken_events = logged(whole / "events.jsonl"), logged(broken / "events.jsonl")
    assert epoch_results(broken_events) == epoch_results(whole_events)
    assert broken_events[-1]["test"] == whole_events[-1]["test"]
