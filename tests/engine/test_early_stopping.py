"""Early stopping: the rule against a brute-force count, and tiny real runs that it ends
`completed` early, tested on their best checkpoint, counting on across a resume, and on two
ranks (torchrun, DDP on gloo) that stop together."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from engine.contract import events as ev
from engine.contract.spec import RunSpec, SpecError
from engine.contract.stopping import StopRequest
from engine.train.early_stopping import EarlyStopping
from engine.train.loop import Trainer
from engine.train.run import run
from tests.engine.test_distributed import run_engine
from tests.event_log import logged

TINY = {"arch": "resnet8", "width": 4, "limit": 128, "image_size": 16, "device": "cpu"}

# Metrics on a coarse grid, so that ties and exact min-delta steps come up often.
METRICS = st.lists(st.integers(0, 20).map(lambda n: n / 20), min_size=1, max_size=30)
PATIENCE = st.integers(1, 6)
MIN_DELTA = st.sampled_from([0.0, 0.05, 0.1, 0.25])


def first_stop(values: list[float], patience: int, min_delta: float, higher: bool) -> int | None:
    """By brute force, over the whole list at once: the epochs that improve (the first, and
    each that beats the last improving one by more than min_delta), then the first epoch
    whose last `patience` epochs hold none of them."""
    improving = [1]
    for epoch, value in enumerate(values[1:], start=2):
        best = values[improving[-1] - 1]
        if (value - best if higher else best - value) > min_delta:
            improving.append(epoch)
    for epoch in range(1, len(values) + 1):
        window = range(epoch - patience + 1, epoch + 1)
        if epoch > patience and not any(e in improving for e in window):
            return epoch
    return None


def stops(rule: EarlyStopping, values: list[float], metric: str) -> list[int]:
    """The epochs after which `rule` says stop, fed `values` as its metric."""
    said = []
    for epoch, value in enumerate(values, start=1):
        loss, acc = (value, 0.5) if metric == "val_loss" else (0.5, value)
        if rule.update(epoch, loss, acc) is not None:
            said.append(epoch)
    return said


@given(METRICS, PATIENCE, MIN_DELTA)
def test_the_rule_stops_exactly_when_the_brute_force_count_says(values, patience, min_delta):
    said = stops(EarlyStopping(patience, min_delta, "val_acc"), values, "val_acc")
    expected = first_stop(values, patience, min_delta, higher=True)
    assert (said[0] if said else None) == expected
    assert all(epoch > patience for epoch in said)  # never before epoch patience + 1


@given(METRICS, PATIENCE, MIN_DELTA)
def test_val_loss_is_lower_is_better(values, patience, min_delta):
    said = stops(EarlyStopping(patience, min_delta, "val_loss"), values, "val_loss")
    assert (said[0] if said else None) == first_stop(values, patience, min_delta, higher=False)
    mirrored = stops(EarlyStopping(patience, min_delta, "val_acc"), [-v for v in values], "")
    assert said == mirrored


@given(METRICS, PATIENCE)
def test_without_min_delta_it_stops_once_the_last_epochs_beat_nothing_before_them(values, patience):
    """The same count said another way: with min_delta 0, stop at the first epoch whose last
    `patience` epochs are none above the best before them."""
    said = stops(EarlyStopping(patience, 0.0, "val_acc"), values, "val_acc")
    windows = [
        epoch
        for epoch in range(patience + 1, len(values) + 1)
        if max(values[epoch - patience : epoch]) <= max(values[: epoch - patience])
    ]
    assert (said[0] if said else None) == (windows[0] if windows else None)


@given(METRICS, PATIENCE, MIN_DELTA, st.integers(1, 29))
def test_a_rule_restored_from_its_state_counts_on(values, patience, min_delta, cut):
    whole = EarlyStopping(patience, min_delta)
    expected = stops(whole, values, "val_acc")
    before = EarlyStopping(patience, min_delta)
    said = stops(before, values[:cut], "val_acc")
    after = EarlyStopping(patience, min_delta)
    after.restore(before.state())
    for epoch, value in enumerate(values[cut:], start=cut + 1):
        if after.update(epoch, 0.5, value) is not None:
            said.append(epoch)
    assert said == expected


def test_without_a_patience_it_never_stops():
    rule = EarlyStopping(None, 0.0, "val_acc")
    assert stops(rule, [0.9] + [0.1] * 50, "val_acc") == []


def test_the_reason_says_the_metric_the_delta_the_epochs_and_the_best():
    rule = EarlyStopping(2, 0.001, "val_acc")
    for epoch, acc in enumerate([0.5, 0.913, 0.9135, 0.91], start=1):
        reason = rule.update(epoch, 1.0, acc)
    assert reason == "val_acc did not improve by more than 0.001 for 2 epochs"
    assert rule.stop_at(4) == (
        "stopped early after epoch 4: val_acc did not improve by more than 0.001 for 2 epochs "
        "(best 91.3% at epoch 2)"
    )
    assert rule.stopped == {"epoch": 4, "reason": reason, "best": "91.3% at epoch 2"}
    loss = EarlyStopping(1, 0.0, "val_loss")
    loss.update(1, 0.25, 0.0)
    assert loss.update(2, 0.25, 0.0) == "val_loss did not improve for 1 epoch"


def test_a_tiny_run_stops_early_completed_and_tested_on_its_best_checkpoint(tmp_path):
    # No accuracy improves on another by more than 1, so the run must stop after epoch 2.
    spec = RunSpec.from_dict(
        {**TINY, "epochs": 20, "early_stop_patience": 1, "early_stop_min_delta": 1.0}
    )
    assert run(spec, tmp_path / "events.jsonl", tmp_path) == 0
    events = logged(tmp_path / "events.jsonl")
    assert [e["epoch"] for e in events if e["type"] == ev.EPOCH_ENDED] == [1, 2]
    finished = events[-1]
    assert finished["type"] == ev.FINISHED and finished["status"] == "completed"
    assert finished["early_stop"]["epoch"] == 2
    assert finished["early_stop"]["reason"] == "val_acc did not improve by more than 1 for 1 epoch"
    lines = [e["message"] for e in events if e["type"] == ev.LOG and e["level"] == "info"]
    assert f"stopped early after epoch 2: {finished['early_stop']['reason']} (best " in lines[-1]
    assert "at epoch 1)" in lines[-1]
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert finished["test"]["epoch"] == best["epoch"] == finished["best_epoch"]
    assert 0 <= finished["test"]["top1"] <= 1


def test_a_run_stopped_by_its_user_and_resumed_counts_on(tmp_path, monkeypatch):
    """Stopped after epoch 2, in the middle of its count, the resumed run stops early at
    the epoch the run never interrupted did: a count started afresh would go on longer
    (epoch 3 would be its first best)."""
    spec = RunSpec.from_dict(
        {**TINY, "epochs": 8, "early_stop_patience": 2, "early_stop_min_delta": 1.0}
    )
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    assert run(spec, whole / "events.jsonl", whole) == 0
    stop, save = StopRequest(), Trainer.save

    def save_then_ask_to_stop(self, at: int, improved: bool, elapsed: float) -> None:
        save(self, at, improved, elapsed)
        stop.requested = at == 2

    monkeypatch.setattr(Trainer, "save", save_then_ask_to_stop)
    assert run(spec, broken / "events.jsonl", broken, stop=stop) == 3
    assert run(spec, broken / "events.jsonl", broken, resume=True) == 0
    whole_end, broken_events = logged(whole / "events.jsonl")[-1], logged(broken / "events.jsonl")
    assert [e["status"] for e in broken_events if e["type"] == ev.FINISHED] == [
        "stopped",
        "completed",
    ]
    assert whole_end["early_stop"] == {
        "epoch": 3,
        "reason": "val_acc did not improve by more than 1 for 2 epochs",
        "best": whole_end["early_stop"]["best"],
    }
    assert broken_events[-1]["early_stop"] == whole_end["early_stop"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"early_stop_patience": 0}, "--early-stop-patience must be a positive number"),
        ({"early_stop_min_delta": -0.1}, "--early-stop-min-delta must be 0 or more"),
        ({"early_stop_metric": "val_f1"}, "early-stopping metric 'val_f1'"),
        ({"early_stop_min_delta": 0.1}, "add --early-stop-patience"),
        ({"early_stop_metric": "val_loss"}, "add --early-stop-patience"),
    ],
)
def test_bad_early_stop_options_are_one_line(options, message):
    with pytest.raises(SpecError, match=message) as caught:
        RunSpec.from_dict({**TINY, **options})
    assert "\n" not in str(caught.value)


def test_the_metric_is_written_one_way():
    spec = RunSpec.from_dict({**TINY, "early_stop_patience": 3, "early_stop_metric": "VAL-LOSS"})
    assert spec.early_stop_metric == "val_loss"


@pytest.mark.slow
def test_two_ranks_stop_early_together_after_the_same_epoch(tmp_path):
    code, events = run_engine(
        tmp_path / "two",
        {
            **TINY,
            "limit": 256,
            "epochs": 20,
            "nproc": 2,
            "early_stop_patience": 1,
            "early_stop_min_delta": 1.0,
        },
    )
    assert code == 0, (tmp_path / "two" / "engine.log").read_text()[-3000:]
    assert [e["epoch"] for e in events if e["type"] == ev.EPOCH_ENDED] == [1, 2]
    finished = events[-1]
    assert finished["status"] == "completed" and finished["early_stop"]["epoch"] == 2
    assert finished["test"]["epoch"] == finished["best_epoch"]


def test_a_gain_of_exactly_the_delta_in_floats_is_judged_as_its_difference():
    """1.0 - 0.95 is a little above 0.05 in floats; 0.95 + 0.05 is exactly 1.0."""
    values = [0.95, 0.0, 0.0, 1.0]
    said = stops(EarlyStopping(3, 0.05, "val_acc"), values, "val_acc")
    assert said == [] and first_stop(values, 3, 0.05, higher=True) is None
