"""Resume: a run killed at an epoch boundary and resumed ends exactly as one never interrupted,
whatever became of its starting weights or of the device it ran on."""

import errno
import shutil

import pytest
import torch

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from engine.train.failures import device_lost
from engine.train.loop import Trainer
from engine.train.run import run
from tests.engine.tiny_runs import trained_run
from tests.event_log import logged

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
    "policy, killed_after, probe",
    [("full", 1, "sgd"), ("gradual", 2, "sgd"), ("lp-ft", 1, "sgd"), ("lp-ft", 1, "lbfgs")],
)
def test_a_killed_and_resumed_run_ends_bit_for_bit_as_an_uninterrupted_one(
    tmp_path, monkeypatch, policy, killed_after, probe
):
    spec = RunSpec.from_dict(
        {**TINY, "epochs": 3, "freeze": policy, "probe_epochs": 1, "probe": probe}
    )
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    assert run(spec, whole / "events.jsonl", whole) == 0

    with monkeypatch.context() as patch:
        kill_after_checkpoint(patch, killed_after)
        with pytest.raises(Killed):
            run(spec, broken / "events.jsonl", broken)
    assert run(spec, broken / "events.jsonl", broken, resume=True) == 0

    whole_events = logged(whole / "events.jsonl")
    broken_events = logged(broken / "events.jsonl")
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
    events = logged(tmp_path / "events.jsonl")
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
    events = logged(tmp_path / "events.jsonl")
    assert events[-1]["type"] == ev.ERROR and events[-1]["kind"] == "disk_full"
    assert "the previous checkpoint is kept" in events[-1]["message"]
    assert "resume" in events[-1]["hint"]
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and not list((tmp_path / "checkpoints").glob("*.tmp"))

    assert run(spec, tmp_path / "events.jsonl", tmp_path, resume=True) == 0
    events = logged(tmp_path / "events.jsonl")
    assert events[-1]["type"] == ev.FINISHED and events[-1]["status"] == "completed"


def test_a_run_resumes_after_its_starting_weights_and_teacher_are_deleted(tmp_path, monkeypatch):
    source = tmp_path / "source"
    trained_run(source, epochs=1)
    best = source / "checkpoints" / "best.pt"
    spec = RunSpec.from_dict(
        {**TINY, "epochs": 2, "init": "run:1", "l2sp": 0.01, "teacher": ["run:1"]}
    )
    spec.init_checkpoint, spec.teacher_checkpoints = str(best), [str(best)]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    assert run(RunSpec.from_json(spec.to_json()), whole / "events.jsonl", whole) == 0
    with monkeypatch.context() as patch:
        kill_after_checkpoint(patch, 1)
        with pytest.raises(Killed):
            run(RunSpec.from_json(spec.to_json()), broken / "events.jsonl", broken)
    kept = broken / "sources" / "init.pt"
    assert kept.stat().st_ino == best.stat().st_ino  # a hard link: no space taken
    assert (broken / "sources" / "teacher-1.pt").is_file()

    shutil.rmtree(source)  # `resnet-tui rm 1`, say
    assert run(RunSpec.from_json(spec.to_json()), broken / "events.jsonl", broken, resume=True) == 0
    whole_events = logged(whole / "events.jsonl")
    broken_events = logged(broken / "events.jsonl")
    assert epoch_results(broken_events) == epoch_results(whole_events)


def test_a_device_lost_mid_run_fails_it_as_device_lost_and_it_resumes_elsewhere(
    tmp_path, monkeypatch
):
    """What torch raises when a GPU fails under a run (AcceleratorError, e.g. after an Xid
    error) is reported as `device_lost` with the last checkpoint kept; the run then resumes
    on another device. The error is raised in epoch 2 here: CI has no GPU to lose."""
    spec = RunSpec.from_dict({**TINY, "epochs": 3})
    train_epoch = Trainer.train_epoch

    def fail_in_epoch_2(self, epoch):
        if epoch == 2:
            raise torch.AcceleratorError("CUDA error: unspecified launch failure")
        return train_epoch(self, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", fail_in_epoch_2)
        assert run(spec, tmp_path / "events.jsonl", tmp_path) == 1
    events = logged(tmp_path / "events.jsonl")
    error = events[-1]
    assert error["type"] == ev.ERROR and error["kind"] == "device_lost"
    assert "unspecified launch failure" in error["message"]
    assert "nvidia-smi" in error["hint"] and "--device" in error["hint"]
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert run(spec, tmp_path / "events.jsonl", tmp_path, resume=True) == 0


@pytest.mark.parametrize(
    "error, lost",
    [
        (torch.AcceleratorError("CUDA error: uncorrectable ECC error encountered"), True),
        (RuntimeError("CUDA driver error: device not ready"), True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (torch.AcceleratorError("CUDA error: device-side assert triggered"), False),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("CUDA error: not from torch"), False),
    ],
)
def test_only_errors_of_the_device_itself_count_as_a_lost_device(error, lost):
    assert (device_lost(error) is not None) == lost
