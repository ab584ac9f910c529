"""The converged linear probe: L-BFGS to the optimum, weight decay chosen on validation,
written into the head; `head` trained by it alone, `lp-ft` fine-tuning after it."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.contract import events as ev
from engine.contract.errors import RunError
from engine.contract.spec import RunSpec
from engine.contract.stopping import StopRequest
from engine.models import model_stages
from engine.train.lr_finder import range_test
from engine.train.optimisation import FEW_STEPS, few_steps_note
from engine.train.run import run
from engine.transfer.probe import (
    DECAY_WITHOUT_VALIDATION,
    WEIGHT_DECAYS,
    _fit,
    fit_probe,
    why_not_probed,
)
from tests.engine.tiny_runs import TINY, trained_run


class Backbone(nn.Module):
    """Features as given, then a linear head: `model_stages` needs an architecture's name,
    so the probe's fit is tested on a torchvision-style model with its head at `fc`."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)


def blobs(count: int, features: int, classes: int, seed: int, spread: float = 1.0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, features, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.arange(count) % classes
    noise = torch.randn(count, features, generator=generator) * spread
    # features on very different scales and off-centre, as a backbone's are
    scales = torch.logspace(-2, 2, features)
    return (centres[labels] + noise) * scales + 5.0, labels


@pytest.fixture
def stages(monkeypatch):
    """`model_stages` of the test model: its head alone."""
    monkeypatch.setattr("engine.transfer.probe.model_stages", lambda model: {"head": [model.fc]})


def regularised_loss(weight, bias, features, labels, decay):
    loss = F.cross_entropy(features @ weight.T + bias, labels)
    return loss + 0.5 * decay * weight.pow(2).sum()


def test_the_probe_converges_to_the_regularised_optimum(stages):
    features, labels = blobs(300, 12, 4, seed=1, spread=4.0)
    mean, scale = features.mean(0), features.std(0, unbiased=False)
    standard = (features - mean) / scale
    weight, bias = _fit(standard, labels, torch.zeros(4, 12), torch.zeros(4), 1e-3)
    weight.requires_grad_(True), bias.requires_grad_(True)
    regularised_loss(weight, bias, standard, labels, 1e-3).backward()
    assert weight.grad.abs().max() < 1e-4 and bias.grad.abs().max() < 1e-4


def test_the_head_gives_the_logits_of_the_fit_on_raw_features(stages):
    train, val = blobs(200, 8, 3, seed=1, spread=3.0), blobs(90, 8, 3, seed=2, spread=3.0)
    model = Backbone(8, 3)
    fitted = fit_probe(model, train, val)
    mean, scale = train[0].mean(0), train[0].std(0, unbiased=False)
    decays = [d for d in WEIGHT_DECAYS if d >= fitted.weight_decay]
    weight, bias = torch.zeros(3, 8), torch.zeros(3)
    for decay in decays:  # the same path of warm starts, strongest first
        weight, bias = _fit((train[0] - mean) / scale, train[1], weight, bias, decay)
    with torch.no_grad():
        expected = ((val[0] - mean) / scale) @ weight.T + bias
        assert torch.allclose(model.fc(val[0]), expected, atol=1e-3)


def test_the_weight_decay_kept_scores_best_on_validation(stages):
    train, val = blobs(40, 30, 5, seed=3, spread=6.0), blobs(200, 30, 5, seed=4, spread=6.0)
    fitted = fit_probe(Backbone(30, 5), train, val)
    mean, scale = train[0].mean(0), train[0].std(0, unbiased=False)
    weight, bias = torch.zeros(5, 30), torch.zeros(5)
    accuracies = {}
    for decay in WEIGHT_DECAYS:
        weight, bias = _fit((train[0] - mean) / scale, train[1], weight, bias, decay)
        logits = ((val[0] - mean) / scale) @ weight.T + bias
        accuracies[decay] = float((logits.argmax(1) == val[1]).float().mean())
    assert fitted.val_acc == pytest.approx(max(accuracies.values()))
    assert accuracies[fitted.weight_decay] == max(accuracies.values())
    assert fitted.weight_decay in WEIGHT_DECAYS and fitted.train_images == 40


def test_without_validation_images_a_middling_decay_is_taken_and_said(stages):
    train = blobs(60, 6, 3, seed=5)
    empty = (torch.zeros(0, 6), torch.zeros(0, dtype=torch.long))
    fitted = fit_probe(Backbone(6, 3), train, empty)
    assert fitted.weight_decay == DECAY_WITHOUT_VALIDATION and fitted.val_acc is None
    assert "no validation images" in fitted.line() and fitted.train_acc > 0.9


def events_of(folder):
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny trained run whose backbone the probes stand on."""
    folder = tmp_path_factory.mktemp("source") / "run"
    trained_run(folder, epochs=2, classes="0,1,2,3,4")
    return folder / "checkpoints" / "best.pt"


def transfer(folder, source, **options) -> list[dict]:
    folder.mkdir()
    spec = RunSpec.from_dict(
        {**TINY, "init": f"file:{source}", "classes": "5,6,7,8,9", "epochs": 4, **options}
    )
    assert run(spec, folder / "events.jsonl", folder) == 0
    return events_of(folder)


def test_head_is_trained_by_the_converged_probe_in_one_epoch(tmp_path, source):
    events = transfer(tmp_path / "head", source, freeze="head")
    started = next(e for e in events if e["type"] == ev.STARTED)
    ended = [e for e in events if e["type"] == ev.EPOCH_ENDED]
    logs = [e["message"] for e in events if e["type"] == ev.LOG]
    assert started["epochs"] == 1 and [e["epoch"] for e in ended] == [1]
    assert any(line.startswith("linear probe fitted by L-BFGS") for line in logs)
    assert not any("optimiser steps" in line for line in logs)  # no SGD step to count
    assert events[-1]["type"] == ev.FINISHED and events[-1]["status"] == "completed"
    # the backbone never moved: the source's weights, exactly, outside the head
    best = torch.load(tmp_path / "head" / "checkpoints" / "best.pt", weights_only=False)
    start = torch.load(source, weights_only=False)["model"]
    backbone = [key for key in start if not key.startswith("fc.")]
    assert all(torch.equal(best["model"][key], start[key]) for key in backbone)


def test_head_with_sgd_trains_by_its_epochs(tmp_path, source):
    events = transfer(tmp_path / "sgd", source, freeze="head", probe="sgd")
    ended = [e for e in events if e["type"] == ev.EPOCH_ENDED]
    assert [e["epoch"] for e in ended] == [1, 2, 3, 4]
    assert not any("L-BFGS" in e.get("message", "") for e in events)


def test_lp_ft_fine_tunes_everything_from_the_first_epoch_after_the_probe(tmp_path, source):
    events = transfer(tmp_path / "lpft", source, freeze="lp-ft", ft_lr_scale=0.5, lr=0.1)
    policy = [e for e in events if e["type"] == ev.POLICY]
    assert len(policy) == 1 and policy[0]["epoch"] == 1
    assert policy[0]["training"] == ["stem", "stage1", "stage2", "stage3", "head"]
    full = transfer(tmp_path / "full", source, freeze="full", lr=0.1)
    unscaled = next(e for e in full if e["type"] == ev.POLICY)["lr"]
    assert policy[0]["lr"] == pytest.approx({part: 0.5 * lr for part, lr in unscaled.items()})
    probe = [e for e in events if "L-BFGS" in e.get("message", "")]
    assert len(probe) == 1
    assert [e["epoch"] for e in events if e["type"] == ev.EPOCH_ENDED] == [1, 2, 3, 4]


def test_an_mlp_head_or_distillation_keeps_the_epochs(tmp_path, source):
    events = transfer(tmp_path / "mlp", source, freeze="head", head="mlp", epochs=2)
    assert [e["epoch"] for e in events if e["type"] == ev.EPOCH_ENDED] == [1, 2]
    assert not any("L-BFGS" in e.get("message", "") for e in events)
    said = [e["message"] for e in events if e["type"] == ev.LOG]
    assert "the converged probe fits a linear head, not an mlp one: the head trains by " in (
        " ".join(said)
    )


def test_why_a_run_is_not_probed_is_said_for_each_reason(source):
    from engine.data.datasets import load_dataset
    from engine.train.network import build_network

    spec = RunSpec.from_dict({**TINY, "freeze": "lp-ft", "lwf": 0.5, "init": f"file:{source}"})
    bundle = load_dataset(spec)
    model = build_network(spec, bundle, torch.device("cpu")).model
    assert why_not_probed(spec, model, 100).startswith("learning without forgetting (--lwf)")
    assert why_not_probed(spec, model, 10**9).startswith("learning without forgetting")
    plain = RunSpec.from_dict({**TINY, "freeze": "lp-ft"})
    assert why_not_probed(plain, model, 100) is None
    assert "would take" in why_not_probed(plain, model, 10**9)
    assert why_not_probed(RunSpec.from_dict({**TINY, "freeze": "full"}), model, 10**9) is None


def test_a_run_of_few_optimiser_steps_is_told_so():
    note = few_steps_note(steps=8, images=50, batch_size=64, epochs=8)
    assert note is not None and "only 8 optimiser steps" in note and "--batch-size" in note
    assert few_steps_note(steps=FEW_STEPS, images=6400, batch_size=64, epochs=1) is None


def test_a_few_shot_run_warns_in_its_log(tmp_path):
    events = transfer(tmp_path / "few", tmp_path / "none", init="scratch", limit=40, epochs=2)
    warnings = [e["message"] for e in events if e["type"] == ev.LOG and e["level"] == "warning"]
    assert any("optimiser steps in all" in line for line in warnings)


@pytest.mark.parametrize("freeze", ["head", "lp-ft"])
def test_the_range_test_refuses_a_head_fitted_without_a_learning_rate(freeze):
    spec = RunSpec.from_dict({**TINY, "freeze": freeze, "epochs": 2})
    with pytest.raises(RunError) as refused:
        range_test(spec, 1e-5, 1.0, 4, StopRequest(), lambda message: None)
    assert "fits its head by L-BFGS" in refused.value.message
    assert "--probe sgd" in refused.value.hint
    sgd = RunSpec.from_dict({**TINY, "freeze": freeze, "epochs": 2, "probe": "sgd"})
    assert range_test(sgd, 1e-5, 1.0, 4, StopRequest(), lambda message: None) is not None


def test_a_stored_spec_from_before_the_probe_trains_its_head_by_epochs():
    stored = json.loads(RunSpec(freeze="head").to_json())
    del stored["probe"]
    assert RunSpec.from_json(json.dumps(stored)).probe == "sgd"
    assert RunSpec.from_json(RunSpec(freeze="head").to_json()).probe == "lbfgs"
    assert RunSpec.from_dict({"freeze": "head"}).probe == "lbfgs"  # a new run's options


def test_stochastic_depth_stays_off_in_the_frozen_parts(tmp_path):
    from engine.contract.events import EventWriter
    from engine.models import DropPath
    from engine.train.loop import Trainer

    spec = RunSpec.from_dict({**TINY, "freeze": "last-1", "drop_path": 0.5, "epochs": 1})
    trainer = Trainer(spec, EventWriter(tmp_path / "events.jsonl"), tmp_path, StopRequest())
    trainer.update_policy(1)
    trainer.model.train()
    trainer.freeze.after_train_mode(trainer.model)
    stages = model_stages(trainer.model)
    modes = {
        name: {
            layer.training for part in parts for layer in part.modules() if type(layer) is DropPath
        }
        for name, parts in stages.items()
    }
    assert modes["stage3"] == {True} and modes["stage1"] == modes["stage2"] == {False}
