"""The average of the weights (--ema-decay): the update against a brute-force weighted sum,
which weights best.pt takes and says it holds, a resumed run's average equal bit for bit to
an uninterrupted one's, early stopping's words, and tiny real runs on one process and two."""

import pytest
import torch
from torch import nn

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from engine.models import build_model
from engine.train.early_stopping import EarlyStopping
from engine.train.ema import EpochScores, WeightAverage, competing_weights
from engine.train.run import run
from tests.engine.test_distributed import run_engine
from tests.engine.test_resume import Killed, epoch_results, kill_after_checkpoint
from tests.event_log import logged

TINY = {"arch": "resnet8", "width": 4, "limit": 64, "image_size": 16, "device": "cpu"}


def checkpoint(folder, name: str) -> dict:
    return torch.load(folder / "checkpoints" / name, weights_only=True)


def test_the_average_is_the_brute_force_weighted_sum_of_the_weights_it_saw():
    torch.manual_seed(0)
    model = build_model("resnet8", 3, 3, 4)
    model.layer1.requires_grad_(False)  # a frozen part
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    average = WeightAverage(model, decay=0.9)
    seen = [{name: t.clone() for name, t in model.state_dict().items()}]
    for _ in range(6):
        model.train()
        images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()  # the weights move, and BatchNorm's running statistics with them
        average.update()
        seen.append({name: t.clone() for name, t in model.state_dict().items()})

    # Each update n (from 0) keeps min(0.9, (1 + n) / (10 + n)) of the average, so the
    # weights after update k count (1 - d[k-1]) times the d of every update after it.
    decays = [min(0.9, (1 + n) / (10 + n)) for n in range(6)]
    shares = [torch.tensor(decays).prod().item()]
    for k in range(1, 7):
        shares.append((1 - decays[k - 1]) * torch.tensor(decays[k:] or [1.0]).prod().item())
    assert sum(shares) == pytest.approx(1.0)
    for name, tensor in average.weights.items():
        if tensor.is_floating_point():
            expected = sum(
                share * weights[name] for share, weights in zip(shares, seen, strict=True)
            )
            torch.testing.assert_close(tensor, expected, rtol=1e-5, atol=1e-6)
            assert tensor.dtype == torch.float32
        else:  # BatchNorm's batch count is the model's, not an average
            assert torch.equal(tensor, seen[-1][name]), name
    for name, tensor in model.layer1.state_dict().items():
        if name.endswith(("weight", "bias")):  # frozen: the average stays equal, bit for bit
            assert torch.equal(average.weights[f"layer1.{name}"], tensor), name
    assert not torch.equal(average.weights["fc.weight"], model.fc.weight)


def test_the_average_restores_from_its_state_and_refuses_another_models():
    model = build_model("resnet8", 3, 3, 4)
    average = WeightAverage(model, decay=0.99)
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    average.update()
    again = WeightAverage(model, decay=0.99)
    again.restore(average.state())
    assert again.updates == 1
    assert all(torch.equal(again.weights[k], v) for k, v in average.weights.items())
    with pytest.raises(RuntimeError):
        again.restore(WeightAverage(build_model("resnet20", 3, 3, 4), 0.99).state())


@pytest.mark.parametrize(
    "best_from, raw, ema, chosen",
    [
        ("either", 0.50, 0.60, "ema"),
        ("either", 0.60, 0.50, "raw"),
        ("either", 0.55, 0.55, "raw"),  # level: the raw weights
        ("raw", 0.50, 0.90, "raw"),
        ("ema", 0.90, 0.50, "ema"),
    ],
)
def test_the_best_is_chosen_from_the_weights_best_from_says(best_from, raw, ema, chosen):
    weights = competing_weights(best_from, raw, ema)
    assert weights == chosen
    scores = EpochScores(1.0, raw, 2.0, ema, weights)
    assert (scores.acc, scores.loss) == ((ema, 2.0) if chosen == "ema" else (raw, 1.0))
    assert scores.fields() == {
        "val_loss": 1.0,
        "val_acc": raw,
        "ema_val_loss": 2.0,
        "ema_val_acc": ema,
    }


def test_early_stopping_says_which_weights_it_watches():
    spec = RunSpec.from_dict({**TINY, "ema_decay": 0.9, "best_from": "ema"})
    spec.early_stop_patience = 1
    rule = EarlyStopping.for_spec(spec)
    rule.update(1, 1.0, 0.5)
    assert rule.update(2, 1.0, 0.4) is not None
    assert rule.stop_at(2).startswith(
        "stopped early after epoch 2: val_acc of the EMA weights did not improve for 1 epoch"
    )
    plain = EarlyStopping.for_spec(RunSpec.from_dict({**TINY, "early_stop_patience": 1}))
    assert plain.watched == "val_acc"


@pytest.mark.slow
def test_best_pt_holds_the_average_where_it_won_and_says_so(tmp_path):
    spec = RunSpec.from_dict({**TINY, "epochs": 1, "ema_decay": 0.9, "best_from": "ema"})
    assert run(spec, tmp_path / "events.jsonl", tmp_path) == 0
    best, last = checkpoint(tmp_path, "best.pt"), checkpoint(tmp_path, "last.pt")
    assert best["weights"] == "ema" and last["weights"] == "raw"
    assert "ema" not in best and last["best_weights"] == "ema"
    for key, tensor in best["model"].items():  # the average of the epoch, as last.pt keeps it
        assert torch.equal(tensor, last["ema"]["weights"][key]), key
    assert not torch.equal(best["model"]["fc.weight"], last["model"]["fc.weight"])
    events = logged(tmp_path / "events.jsonl")
    written = {e["name"]: e["weights"] for e in events if e["type"] == ev.CHECKPOINT}
    assert written == {"last": "raw", "best": "ema"}
    [epoch] = [e for e in events if e["type"] == ev.EPOCH_ENDED]
    finished = events[-1]
    assert finished["best_val_acc"] == epoch["ema_val_acc"]  # chosen on the average's
    assert finished["test"]["weights"] == "ema"
    notes = [e["message"] for e in events if e["type"] == ev.LOG]
    assert any("best.pt takes the EMA weights" in note for note in notes)

    # A run without an average writes none of it.
    plain = tmp_path / "plain"
    plain.mkdir()
    assert run(RunSpec.from_dict({**TINY, "epochs": 1}), plain / "events.jsonl", plain) == 0
    assert "weights" not in checkpoint(plain, "best.pt")
    events = logged(plain / "events.jsonl")
    assert all(e.get("ema_val_acc") is None for e in events if e["type"] == ev.EPOCH_ENDED)
    assert "weights" not in events[-1]["test"]


@pytest.mark.slow
def test_a_resumed_run_keeps_the_same_average_bit_for_bit(tmp_path, monkeypatch):
    spec = RunSpec.from_dict({**TINY, "epochs": 3, "ema_decay": 0.9, "drop_path": 0.2})
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    assert run(spec, whole / "events.jsonl", whole) == 0
    with monkeypatch.context() as patch:
        kill_after_checkpoint(patch, 1)
        with pytest.raises(Killed):
            run(spec, broken / "events.jsonl", broken)
    assert run(spec, broken / "events.jsonl", broken, resume=True) == 0

    results = epoch_results(logged(whole / "events.jsonl"))
    assert epoch_results(logged(broken / "events.jsonl")) == results
    assert all(result["ema_val_acc"] is not None for result in results.values())
    a, b = checkpoint(whole, "last.pt"), checkpoint(broken, "last.pt")
    assert a["ema"]["updates"] == b["ema"]["updates"] == 3  # one step an epoch
    for key, tensor in a["ema"]["weights"].items():
        assert torch.equal(tensor, b["ema"]["weights"][key]), key
    for key, tensor in checkpoint(whole, "best.pt")["model"].items():
        assert torch.equal(tensor, checkpoint(broken, "best.pt")["model"][key]), key


@pytest.mark.slow
def test_two_ranks_keep_and_evaluate_the_average(tmp_path):
    options = {**TINY, "limit": 256, "epochs": 2, "nproc": 2, "ema_decay": 0.9}
    code, events = run_engine(tmp_path / "two", {**options, "drop_path": 0.1})
    assert code == 0, (tmp_path / "two" / "engine.log").read_text()[-3000:]
    epochs = [e for e in events if e["type"] == ev.EPOCH_ENDED]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(0 <= e["ema_val_acc"] <= 1 and e["ema_val_loss"] > 0 for e in epochs)
    assert events[-1]["status"] == "completed" and events[-1]["test"]["weights"] in ("raw", "ema")


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [
        lambda ema: ema["weights"].pop("fc.weight"),
        lambda ema: ema.update(weights="not weights"),
        lambda ema: ema.update(updates="many"),
    ],
)
def test_a_damaged_average_in_last_pt_is_a_damaged_checkpoint(tmp_path, monkeypatch, damage):
    spec = RunSpec.from_dict({**TINY, "epochs": 2, "ema_decay": 0.9})
    with monkeypatch.context() as patch:
        kill_after_checkpoint(patch, 1)
        with pytest.raises(Killed):
            run(spec, tmp_path / "events.jsonl", tmp_path)
    last = checkpoint(tmp_path, "last.pt")
    damage(last["ema"])
    torch.save(last, tmp_path / "checkpoints" / "last.pt")
    assert run(spec, tmp_path / "events.jsonl", tmp_path, resume=True) == 1
    error = logged(tmp_path / "events.jsonl")[-1]
    assert error["type"] == ev.ERROR and error["kind"] == "bad_data"
    assert "is damaged" in error["message"] and "start a new run" in error["hint"]
