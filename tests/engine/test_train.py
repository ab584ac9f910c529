"""The training loop: schedules, events, checkpoints, reproducibility and reported failures."""

import json

import pytest
import torch

from engine.models import build_model
from engine.spec import RunSpec
from engine.train import lr_factor, run


def events_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def train(tmp_path, name: str = "run", **values) -> tuple[int, list[dict]]:
    folder = tmp_path / name
    folder.mkdir()
    code = run(RunSpec.from_dict(values), folder / "events.jsonl", folder)
    return code, events_of(folder / "events.jsonl")


def test_schedules_have_the_documented_shape():
    total = 100
    onecycle = [lr_factor("onecycle", s, total, 0, 0.1) for s in range(total)]
    assert onecycle[0] < 0.1 and max(onecycle) == pytest.approx(1, abs=0.01)
    assert onecycle.index(max(onecycle)) == 25 and onecycle[-1] < 0.01
    cosine = [lr_factor("cosine", s, total, 10, 0.1) for s in range(total)]
    assert cosine[0] == pytest.approx(0.1) and cosine[9] == pytest.approx(1.0)
    assert cosine[50] < cosine[20] and cosine[-1] < 0.01
    step = [lr_factor("step", s, total, 0, 0.1) for s in range(total)]
    assert step[49] == 1 and step[50] == pytest.approx(0.1) and step[75] == pytest.approx(0.01)
    assert {lr_factor("constant", s, total, 0, 0.1) for s in range(total)} == {1.0}


def test_a_tiny_run_reports_everything_and_keeps_loadable_checkpoints(tmp_path, tiny_spec_options):
    code, events = train(tmp_path, **tiny_spec_options)
    assert code == 0
    types = [e["type"] for e in events]
    assert types[0] == "started" and types[-1] == "finished"
    assert types.count("epoch_ended") == 2 and "progress" in types and "checkpoint" in types
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    started = events[0]
    assert started["device"] == "cpu" and started["threads"] >= 1
    assert started["sizes"]["train"] == 256 and started["parameters"] > 0
    ended = [e for e in events if e["type"] == "epoch_ended"]
    assert set(ended[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    finished = events[-1]
    assert finished["status"] == "completed"
    test = finished["test"]
    assert set(test) >= {"top1", "top5", "macro_f1", "auroc", "per_class_accuracy", "confusion"}
    assert sum(map(sum, test["confusion"])) == test["samples"] == 2000
    for name in ("last", "best"):
        checkpoint = torch.load(tmp_path / "run" / "checkpoints" / f"{name}.pt", weights_only=True)
        model = build_model("resnet8", 10, width=4)
        model.load_state_dict(checkpoint["model"])
        assert checkpoint["classes"][0] == "circle" and checkpoint["arch"] == "resnet8"


def test_a_seeded_cpu_run_is_reproducible_bit_for_bit(tmp_path, tiny_spec_options):
    _, first = train(tmp_path, "first", **tiny_spec_options)
    _, second = train(tmp_path, "second", **tiny_spec_options)
    a = torch.load(tmp_path / "first" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "second" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def metrics(events):
        keys = ("train_loss", "train_acc", "val_loss", "val_acc")
        return [[e[k] for k in keys] for e in events if e["type"] == "epoch_ended"]

    assert metrics(first) == metrics(second)
    _, other = train(tmp_path, "other", **{**tiny_spec_options, "seed": 1})
    assert metrics(other) != metrics(first)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_device_that_is_not_there_is_an_error_not_a_fallback(tmp_path, tiny_spec_options):
    code, events = train(tmp_path, **{**tiny_spec_options, "device": "cuda"})
    assert code != 0
    assert events[-1]["type"] == "error" and events[-1]["kind"] == "device_missing"
    assert "--device cpu" in events[-1]["hint"]


def test_a_diverging_loss_fails_the_run_and_says_what_to_try(tmp_path, tiny_spec_options):
    options = {**tiny_spec_options, "optimizer": "sgd", "lr": 1e12, "schedule": "constant"}
    code, events = train(tmp_path, **options)
    assert code != 0
    error = events[-1]
    assert error["type"] == "error" and error["kind"] == "diverged"
    assert "--lr" in error["hint"]


@pytest.mark.slow
def test_the_default_run_reaches_95_percent_on_shapes(tmp_path):
    code, events = train(tmp_path, device="cpu")
    assert code == 0
    assert events[-1]["test"]["top1"] >= 0.95
