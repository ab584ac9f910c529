"""Ensembles, model soups and WiSE-FT, made by the engine from tiny finished runs."""

import shutil

import pytest
import torch
from PIL import Image

from engine.contract import events as ev
from engine.contract.spec import FusionSpec
from engine.data.batches import make_batches
from engine.data.datasets import load_dataset
from engine.fusion.run import run_fusion
from engine.fusion.wise_ft import WISE_ALPHAS
from engine.transfer.weights import load_run_model
from tests.engine.tiny_runs import trained_run
from tests.event_log import logged

# Zeros and ones of the real MNIST: tiny networks tell them apart in one epoch, so a
# member that hurts a soup shows in its validation accuracy.
DIGITS = {"dataset": "mnist", "classes": ["0", "1"], "limit": 512}


def member(folder, run_id: int) -> dict:
    return {"run": run_id, "name": folder.name, "checkpoint": str(best(folder))}


def best(folder):
    return folder / "checkpoints" / "best.pt"


def fuse(tmp_path, kind: str, members: list[dict], **options) -> list[dict]:
    """Run the engine's fusion in tmp_path/fused; returns its events."""
    folder = tmp_path / "fused"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    code = run_fusion(FusionSpec(kind, members, **options), folder / "events.jsonl", folder)
    events = logged(folder / "events.jsonl")
    assert code == 0, events[-1]
    return events


def finished(events: list[dict]) -> dict:
    assert events[-1]["type"] == ev.FINISHED and events[-1]["status"] == "completed"
    return events[-1]


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_mnist_root):
    """A run from scratch, two fine-tuned from it, and one of another architecture."""
    root = tmp_path_factory.mktemp("runs")
    digits = {**DIGITS, "data_root": str(shared_mnist_root)}
    trained_run(root / "start", **digits)
    start = str(best(root / "start"))
    for seed in (1, 2):
        trained_run(root / f"tuned{seed}", **digits, seed=seed, init=f"file:{start}")
    trained_run(root / "cnn", **digits, arch="cnn")
    return root


def test_an_ensemble_of_one_run_matches_the_run(tmp_path, runs):
    events = fuse(tmp_path, "ensemble", [member(runs / "tuned1", 2)])
    own = logged(runs / "tuned1" / "events.jsonl")
    assert finished(events)["test"]["top1"] == finished(own)["test"]["top1"]
    assert finished(events)["test"]["confusion"] == finished(own)["test"]["confusion"]
    assert finished(events)["best_val_acc"] == pytest.approx(finished(own)["best_val_acc"])


def test_an_ensemble_weighs_its_members_and_takes_any_architecture(tmp_path, runs):
    only_first = fuse(
        tmp_path, "ensemble", [member(runs / "cnn", 4), member(runs / "tuned1", 2)], weights=[1, 0]
    )
    own = logged(runs / "cnn" / "events.jsonl")
    assert finished(only_first)["test"]["confusion"] == finished(own)["test"]["confusion"]
    steps = [e for e in only_first if e["type"] == ev.FUSION]
    assert [s["candidate"] for s in steps] == ["run 4", "run 2", "ensemble"]
    assert not (tmp_path / "fused" / "checkpoints").exists()  # outputs fuse, not weights


def test_a_soup_of_identical_models_is_that_model_with_batchnorm_measured_again(tmp_path, runs):
    events = fuse(tmp_path, "soup", [member(runs / "tuned1", 2), member(runs / "tuned1", 3)])
    soup, tuned = weights(best(tmp_path / "fused")), weights(best(runs / "tuned1"))
    parameters = [k for k in tuned if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(soup[k], tuned[k]) for k in parameters)
    assert not torch.equal(soup["bn1.running_mean"], tuned["bn1.running_mean"])

    # The stem's BatchNorm mean is now the mean of its input over the training batches.
    tuned_run = load_run_model(best(runs / "tuned1"), "tuned1")
    spec = tuned_run.spec
    bundle = load_dataset(spec)
    bundle.mean, bundle.std = tuned_run.mean, tuned_run.std
    batches = make_batches(bundle.train, bundle, spec.batch_size, torch.device("cpu"), True, spec)
    conv = tuned_run.model.conv1
    with torch.no_grad():
        means = [conv(images).mean((0, 2, 3)) for images, _ in batches.epoch(1)]
    assert torch.allclose(soup["bn1.running_mean"], torch.stack(means).mean(0), atol=1e-5)
    assert finished(events)["fusion"]["kept"] == [2, 3]


def test_a_greedy_soup_keeps_a_member_only_if_validation_accuracy_holds(tmp_path, runs):
    noisy = torch.load(best(runs / "tuned2"), weights_only=True)
    generator = torch.Generator().manual_seed(0)
    noisy["model"] = {
        key: 100 * torch.randn(value.shape, generator=generator)
        if value.is_floating_point() and "running" not in key
        else value
        for key, value in noisy["model"].items()
    }
    torch.save(noisy, tmp_path / "noisy.pt")
    members = [
        member(runs / "tuned1", 2),
        {"run": 9, "name": "noisy", "checkpoint": str(tmp_path / "noisy.pt")},
        member(runs / "tuned2", 3),
    ]
    events = fuse(tmp_path, "soup", members, greedy=True)
    steps = [e for e in events if e["type"] == ev.FUSION]
    alone = {s["candidate"]: s["val_acc"] for s in steps[:3]}
    best_so_far = max(alone.values())
    for step in steps[3:]:  # each addition is kept exactly when accuracy does not drop
        assert step["kept"] == (step["val_acc"] >= best_so_far)
        best_so_far = max(best_so_far, step["val_acc"]) if step["kept"] else best_so_far
    result = finished(events)
    assert 9 not in result["fusion"]["kept"]
    assert result["best_val_acc"] >= max(alone.values())
    assert result["best_val_acc"] == pytest.approx(best_so_far)


def test_wise_ft_mixes_the_backbone_with_its_start_and_keeps_the_tuned_head(tmp_path, runs):
    start, tuned = weights(best(runs / "start")), weights(best(runs / "tuned1"))
    fuse(tmp_path, "wise-ft", [member(runs / "tuned1", 2)], alpha=0.0)
    mixed = weights(best(tmp_path / "fused"))
    assert torch.equal(mixed["fc.weight"], tuned["fc.weight"])
    assert torch.equal(mixed["layer2.0.conv1.weight"], start["layer2.0.conv1.weight"])

    fuse(tmp_path, "wise-ft", [member(runs / "tuned1", 2)], alpha=0.25)
    quarter = weights(best(tmp_path / "fused"))
    expected = 0.75 * start["conv1.weight"] + 0.25 * tuned["conv1.weight"]
    assert torch.allclose(quarter["conv1.weight"], expected)

    fuse(tmp_path, "wise-ft", [member(runs / "tuned1", 2)], alpha=1.0)
    whole = weights(best(tmp_path / "fused"))
    assert all(torch.equal(whole[k], tuned[k]) for k in tuned)  # the tuned run itself


def test_wise_ft_auto_tries_every_alpha_and_keeps_the_best(tmp_path, runs):
    events = fuse(tmp_path, "wise-ft", [member(runs / "tuned1", 2)])
    steps = [e for e in events if e["type"] == ev.FUSION]
    assert len(steps) == len(WISE_ALPHAS)
    result = finished(events)
    assert result["best_val_acc"] == max(s["val_acc"] for s in steps)
    chosen = next(s for s in steps if s["val_acc"] == result["best_val_acc"])
    assert chosen["candidate"] == f"alpha {result['fusion']['alpha']:g}"


def test_a_soup_of_different_networks_is_refused(tmp_path, runs):
    folder = tmp_path / "fused"
    folder.mkdir()
    members = [member(runs / "tuned1", 2), member(runs / "cnn", 4)]
    code = run_fusion(FusionSpec("soup", members), folder / "events.jsonl", folder)
    events = logged(folder / "events.jsonl")
    assert code == 1 and events[-1]["type"] == ev.ERROR and events[-1]["kind"] == "bad_input"
    assert "run 4 is not the same network as run 2" in events[-1]["message"]


def test_members_validated_by_different_rules_are_named_in_a_note(tmp_path):
    """An image folder of train/ and val/: a run from before validation was held out of
    train/ validated on val/, so a fusion judged on held-out images may favour one side."""
    for split in ("train", "val"):
        for name, colour in (("red", (220, 30, 30)), ("blue", (20, 40, 230))):
            (tmp_path / "colours" / split / name).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (12, 12), colour).save(
                    tmp_path / "colours" / split / name / f"{i}.png"
                )
    folder = {"dataset": f"imagefolder:{tmp_path / 'colours'}", "image_size": 8, "workers": 0}
    trained_run(tmp_path / "new", **folder)
    trained_run(tmp_path / "old", **folder, val_from_train=False, seed=1)
    events = fuse(tmp_path, "ensemble", [member(tmp_path / "new", 1), member(tmp_path / "old", 2)])
    finished(events)
    said = [e["message"] for e in events if e["type"] == ev.LOG]
    assert any("run 2 and run 1 validated by different rules" in line for line in said), said
    same = fuse(tmp_path, "ensemble", [member(tmp_path / "new", 1), member(tmp_path / "new", 3)])
    assert not any("different rules" in e.get("message", "") for e in same)
