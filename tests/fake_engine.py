"""A stand-in for the engine, without torch, for tests where the real one is not the point.

`python -m tests.fake_engine run|fuse ...` takes the real engine's arguments and replays a
real run's recorded event log (tests/recorded/) as a run of the spec's epochs: through the
contract's `EventWriter`, so it writes only what the real engine may write, a few times a
second, an epoch every RESNET_TUI_FAKE_EPOCH_S seconds; after the epoch that
RESNET_TUI_FAKE_WAIT_AFTER_EPOCH names, if any, it waits for a stop (so a test stops it there
however slow the machine). It starts in a fraction of a second
(the real engine spends several loading torch) and does what the supervisor and the viewers
rely on: the stop signals caught as the engine catches them (`StopRequest`, installed first
thing, so a hang-up is ignored too), a stopped run ended by a partial epoch, a `last`
checkpoint and `finished` `stopped` with exit code 3, `--resume` going on after the last
checkpoint (a small JSON file standing in for last.pt), and a completed run's test report.
The tests choose it through the supervisor's RESNET_TUI_ENGINE_MODULE (the `fake_engine`
fixture in tests/conftest.py). The recordings are of `python -m engine run` on a tiny spec
(resnet8, width 4, 256 shapes of 16 px, 2 epochs on the CPU) and `python -m engine fuse` of
an ensemble of two such runs; record them again when the event format changes.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from engine.contract import events as ev
from engine.contract.events import EventWriter
from engine.contract.spec import FusionSpec, RunSpec, SpecError
from engine.contract.stopping import StopRequest

RECORDED = Path(__file__).resolve().parent / "recorded"
EPOCH_S_VARIABLE = "RESNET_TUI_FAKE_EPOCH_S"
EPOCH_S = 0.5
WAIT_AFTER_EPOCH_VARIABLE = "RESNET_TUI_FAKE_WAIT_AFTER_EPOCH"
# The fields the writer fills in itself.
_WRITTEN = ("seq", "t", "type")


def recorded(name: str) -> list[dict[str, Any]]:
    """A recorded event log, each event as its line's fields less seq, t and type."""
    return [
        {"type": event.type, **{k: v for k, v in event.to_dict().items() if k not in _WRITTEN}}
        for event in ev.read_events(RECORDED / name).events
    ]


def first_of(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    return next(event for event in events if event["type"] == event_type)


def without_type(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != "type"}


def lift(spec: RunSpec) -> float:
    """A small spec-dependent offset of the accuracies, so runs of a sweep differ."""
    return 0.01 * ((spec.seed + 3 * (spec.fold or 0)) % 7)


class Replay:
    """One run replayed from the recording: epochs of progress, their ends and checkpoints."""

    def __init__(self, spec: RunSpec, writer: EventWriter, run_dir: Path, stop: StopRequest):
        self.spec = spec
        self.writer = writer
        self.checkpoints = run_dir / "checkpoints"
        self.stop = stop
        self.log = recorded("tiny_run.jsonl")
        self.epoch_s = float(os.environ.get(EPOCH_S_VARIABLE, EPOCH_S))
        self.wait_after_epoch = int(os.environ.get(WAIT_AFTER_EPOCH_VARIABLE) or 0)
        self.first_epoch, self.best_val_acc, self.best_epoch = 1, None, None

    def resume(self) -> bool:
        """Go on after the last checkpoint; False where there is none."""
        try:
            saved = json.loads((self.checkpoints / "last.pt").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        self.first_epoch = saved["epoch"] + 1
        self.best_val_acc, self.best_epoch = saved["best_val_acc"], saved["best_epoch"]
        return True

    def started(self) -> None:
        started = without_type(first_of(self.log, ev.STARTED))
        started.update(
            pid=os.getpid(),
            epochs=self.spec.epochs,
            resumed_from_epoch=self.first_epoch - 1,
            best_val_acc=self.best_val_acc,
        )
        self.writer.emit(ev.STARTED, **started)

    def fit(self) -> str:
        """The spec's epochs, each the recording's (its last one again after that);
        `completed`, or `stopped` where a stop came."""
        ends = [event for event in self.log if event["type"] == ev.EPOCH_ENDED]
        for epoch in range(self.first_epoch, self.spec.epochs + 1):
            like = min(epoch, len(ends))  # the recorded epoch this one replays
            steps = [e for e in self.log if e["type"] == ev.PROGRESS and e["epoch"] == like]
            self.writer.emit(ev.EPOCH_STARTED, epoch=epoch, epochs=self.spec.epochs)
            if epoch == 1:  # the policy of the first epoch (a resumed run keeps it)
                self.writer.emit(ev.POLICY, **without_type(first_of(self.log, ev.POLICY)))
            partial = False
            for step in steps:
                time.sleep(self.epoch_s / len(steps))
                global_step = (epoch - 1) * len(steps) + step["step"]
                progress = {**without_type(step), "epoch": epoch, "global_step": global_step}
                self.writer.emit(ev.PROGRESS, **progress)
                if self.stop.requested:
                    partial = True
                    break
            end = without_type(ends[like - 1])
            end.update(epoch=epoch, epochs=self.spec.epochs, partial=partial)
            end["val_acc"] = min(1.0, end["val_acc"] + lift(self.spec) + 0.001 * epoch)
            self.writer.emit(ev.EPOCH_ENDED, **end)
            self.save(epoch, end["val_acc"])
            while epoch == self.wait_after_epoch and not self.stop.requested:
                self.writer.heartbeat()
                time.sleep(0.05)
            if self.stop.requested:
                return "stopped"
        return "completed"

    def save(self, epoch: int, val_acc: float) -> None:
        """The stand-in checkpoints: last.pt each epoch, best.pt where it improved."""
        improved = self.best_val_acc is None or val_acc > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch = val_acc, epoch
        saved = {"epoch": epoch, "best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch}
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        names = ["last", "best"] if improved else ["last"]
        for name in names:
            path = self.checkpoints / f"{name}.pt"
            path.write_text(json.dumps(saved), encoding="utf-8")
            self.writer.emit(
                ev.CHECKPOINT, path=str(path), name=name, epoch=epoch, best=name == "best"
            )

    def finish(self, status: str, seconds: float) -> None:
        test = None
        if status == "completed":
            test = dict(first_of(self.log, ev.FINISHED)["test"])
            test.update(top1=min(1.0, test["top1"] + lift(self.spec)), epoch=self.best_epoch)
        self.writer.emit(
            ev.FINISHED,
            status=status,
            best_val_acc=self.best_val_acc,
            best_epoch=self.best_epoch,
            test=test,
            seconds=seconds,
        )


def train(
    spec: RunSpec, writer: EventWriter, run_dir: Path, stop: StopRequest, resume: bool
) -> int:
    began = time.monotonic()
    replay = Replay(spec, writer, run_dir, stop)
    if resume and not replay.resume():
        writer.emit(
            ev.ERROR,
            kind="bad_input",
            message=f"there is no checkpoint to resume from ({replay.checkpoints / 'last.pt'} "
            "is missing)",
            hint="the run ended before its first epoch; launch it again instead",
        )
        return 1
    replay.started()
    status = replay.fit()
    replay.finish(status, time.monotonic() - began)
    return 0 if status == "completed" else 3


def fuse(fusion: FusionSpec, writer: EventWriter, stop: StopRequest) -> int:
    """An ensemble of the members, replayed from the recorded one: each member weighed, the
    ensemble weighed, the test report (an ensemble keeps no weights of its own)."""
    if fusion.kind != "ensemble":
        print(f"error: the fake engine makes ensembles, not {fusion.kind}", file=sys.stderr)
        return 2
    log = recorded("ensemble.jsonl")
    ids = [member["run"] for member in fusion.members]
    weights = [w / sum(fusion.weights) for w in fusion.weights] if fusion.weights else None
    started = without_type(first_of(log, ev.STARTED))
    started["fusion"] = {**started["fusion"], "members": ids, "weights": fusion.weights}
    writer.emit(ev.STARTED, **{**started, "pid": os.getpid()})
    recorded_steps = [event for event in log if event["type"] == ev.FUSION]
    candidates = [f"run {run_id}" for run_id in ids] + ["ensemble"]
    epoch_s = float(os.environ.get(EPOCH_S_VARIABLE, EPOCH_S))
    for step, candidate in enumerate(candidates, start=1):
        time.sleep(epoch_s / len(candidates))
        if stop.requested:
            writer.emit(ev.FINISHED, status="stopped", best_val_acc=None, test=None)
            return 3
        weighed = recorded_steps[min(step, len(recorded_steps)) - 1]
        val_acc = weighed["val_acc"]
        writer.emit(
            ev.FUSION, step=step, steps=len(candidates), candidate=candidate, val_acc=val_acc
        )
    finished = without_type(first_of(log, ev.FINISHED))
    finished["fusion"] = {"members": ids, "weights": weights or [1 / len(ids)] * len(ids)}
    writer.emit(ev.FINISHED, **finished)
    return 0


def main(argv: list[str] | None = None) -> int:
    stop = StopRequest().install()
    parser = argparse.ArgumentParser(prog="python -m tests.fake_engine")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--spec", required=True, type=Path)
    run.add_argument("--resume", action="store_true")
    fusing = commands.add_parser("fuse")
    fusing.add_argument("--fusion", required=True, type=Path)
    for command in (run, fusing):
        command.add_argument("--events", required=True, type=Path)
        command.add_argument("--run-dir", type=Path)
    args = parser.parse_args(argv)
    run_dir = args.run_dir or args.events.parent
    try:
        if args.command == "fuse":
            what: RunSpec | FusionSpec = FusionSpec.from_json(args.fusion.read_text("utf-8"))
        else:
            what = RunSpec.from_json(args.spec.read_text(encoding="utf-8"))
    except (OSError, SpecError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    writer = EventWriter(args.events)
    try:
        if isinstance(what, FusionSpec):
            return fuse(what, writer, stop)
        return train(what, writer, run_dir, stop, args.resume)
    finally:
        writer.close()


if __name__ == "__main__":
    sys.exit(main())
