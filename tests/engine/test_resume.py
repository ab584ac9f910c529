"""Resume: a run killed at an epoch boundary and resumed ends exactly as one never interrupted."""

import errno

import pytest
import torch

from engine import events as ev
from engine.spec import RunSpec
from engine.train import Trainer, run

TINY = {"arch": "resnet8", "width": 4, "limit": 128, "image_size": 16, "device": "cpu"}


class Killed(BaseException):
    """Stands for kill -9: nothing in the engine catches it, no final event is written."""


def kill_after_checkpoint(monkeypatch, epoch: int) -> None:
    """Make the engine die right after it writes the checkpoint of `epoch`."""
    save = Trainer.save

    def save_then_die(self, at: int, improved: bool, elapsed: float) -> None:
        save(self, at, improved, elapsed)
        if at == epoch:
            raise Killed

    monkeypatch.setattr(Trainer, "save", save_then_die)


def epoch_results(events: list[dict]) -> dict[int, dict]:
    """The newest `epoch_ended` of each epoch, without its timings."""
    results = {}
    for event in events:
        if event["type"] == ev.EPOCH_ENDED:
            results[event["epoch"]] = {
                key: value
                for key, value in event.items()
                if key not in ("seq", "t", "seconds", "elapsed", "peak_memory_mb")
            }
    return results


@pytest.mark.parametrize(
    "policy, killed_after",
    [("full", 1), ("gradual", 2), ("lp-ft", 1)],
)
def test_a_killed_and_resumed_run_ends_bit_for_bit_as_an_uninterrupted_one(
    tmp_path, monkeypatch, policy, killed_after
):
    spec = RunSpec.from_dict({**TINY, "epochs": 3, "freeze": policy, "probe_epochs": 1})
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    assert run(spec, whole / "events.jsonl", whole) == 0

    with monkeypatch.context() as patch:
        kill_after_checkpoint(patch, killed_after)
        with pytest.raises(Killed):
            run(spec, broken / "events.jsonl", broken)
    assert run(spec, broken / "events.jsonl", broken, resume=True) == 0

    whole_events, _ = ev.read_events(whole / "events.jsonl", 0)
    broken_events, _ = ev.read_events(broken / "events.jsonl", 0)
    assert epoch_results(broken_events) == epoch_results(whole_events)
    restarted = [e for e in broken_events if e["type"] == ev.STARTED]
    assert [e["resumed_from_epoch"] for e in restarted] == [0, killed_after]
    policies = [e["training"] for e in broken_events if e["type"] == ev.POLICY]
    assert policies == [e["training"] for e in whole_events if e["type"] == ev.POLICY]
    assert broken_events[-1]["test"] == whole_events[-1]["test"]
    for name in ("last.pt", "best.pt"):
        a = torch.load(whole / "checkpoints" / name, weights_only=True)
        b = torch.load(broken / "checkpoints" / name, weights_only=True)
        for key, tensor in a["model"].items():
            assert torch.equal(tensor, b["model"][key]), f"{name}: {key} differs"
        assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


def test_resuming_without_a_checkpoint_fails_with_what_to_do(tmp_path):
    spec = RunSpec.from_dict({**TINY, "epochs": 1})
    assert run(spec, tmp_path / "events.jsonl", tmp_path, resume=True) == 1
    events, _ = ev.read_events(tmp_path / "events.jsonl", 0)
    assert events[-1]["type"] == ev.ERROR
    assert "no checkpoint to resume from" in events[-1]["message"]
    assert "launch it again" in events[-1]["hint"]


def test_a_full_disk_keeps_the_previous_checkpoint_fails_clearly_and_the_run_resumes(
    tmp_path, monkeypatch
):
    spec = RunSpec.from_dict({**TINY, "epochs": 3})
    save = torch.save
    writes = []

    def full_after_the_first(payload, path):
        writes.append(path)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        save(payload, path)

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", full_after_the_first)
        assert run(spec, tmp_path / "events.jsonl", tmp_path) == 1
    events, _ = ev.read_events(tmp_path / "events.jsonl", 0)
    assert events[-1]["type"] == ev.ERROR and events[-1]["kind"] == "disk_full"
    assert "the previous checkpoint is kept" in events[-1]["message"]
    assert "resume" in events[-1]["hint"]
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and not list((tmp_path / "checkpoints").glob("*.tmp"))

    assert run(spec, tmp_path / "events.jsonl", tmp_path, resume=True) == 0
    events, _ = ev.read_events(tmp_path / "events.jsonl", 0)
    assert events[-1]["type"] == ev.FINISHED and events[-1]["status"] == "completed"
