"""The worker that runs the queue: one run (or N) per device at a time, each under its own
supervisor, until the queue (or the sweep it was given) is empty.

`resnet-tui worker` runs it in the foreground; `run --folds` runs one for its folds; the app
starts one detached for the folds it launches, so closing the app stops nothing. Both queue
a cross-validation's folds with `queue_folds`.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.contract import events as ev
from engine.contract.spec import RunSpec, SpecError, normalise_device
from resnet_tui.runs.launcher import list_devices, queue, start_queued, stop
from resnet_tui.runs.model import Run
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.sweeps import fold_specs

POLL_INTERVAL_S = 0.5
# More runs at once on one device than this runs the machine out of memory, not faster.
MOST_RUNS_PER_DEVICE = 64


@dataclass
class Slot:
    """A place a run can train: a device, and the run it holds (its supervisor's process)."""

    device: str
    run_id: int | None = None
    supervisor: subprocess.Popen[bytes] | None = None


class Worker:
    """Runs the store's queue on `devices`, `per_device` runs at a time on each, until the
    queue is empty (or, with `wait`, for as long as it lives). Queue state is in the store,
    so several workers (on other devices) can share one queue and none takes a run twice.

    A worker given `among` (the runs of one sweep) runs only those, and takes no more once
    the user stopped one of them: the rest wait in the queue. A run its sweep's pruning
    ended (`pruned`) is done, as a completed one is.
    """

    def __init__(
        self,
        store: RunStore,
        devices: list[str],
        per_device: int = 1,
        wait: bool = False,
        report: Callable[[str], None] = print,
        among: list[int] | None = None,
    ) -> None:
        if not 1 <= per_device <= MOST_RUNS_PER_DEVICE:
            raise SpecError(
                f"--per-device must be 1 or more, up to {MOST_RUNS_PER_DEVICE}, not {per_device}"
            )
        names = [normalise_device(name) for name in devices if name.strip()]
        if not names:
            raise SpecError("--devices needs at least one device, e.g. cuda:0,cuda:1 or cpu")
        if len(set(names)) < len(names):
            raise SpecError("--devices names a device twice; use --per-device for more runs")
        self.store = store
        self.queue = RunQueue(store)
        self.slots = [Slot(name) for name in names for _ in range(per_device)]
        self.wait = wait
        self.report = report
        self.stopping = False
        self.among = among
        self.finished: list[int] = []
        # While a run is being started (taken from the queue, its supervisor spawned), an
        # interrupt waits: raised then, the worker would lose track of a run it had taken.
        self.starting = False
        self.interrupted_while_starting = False

    def step(self) -> bool:
        """End the runs whose supervisors are done and start queued runs on free slots;
        False once there is nothing left to do."""
        for slot in self.slots:
            if slot.supervisor is not None and slot.supervisor.poll() is not None:
                self._ended(slot)
        if not self.stopping:
            for slot in self.slots:
                if slot.run_id is None and not self._start_next(slot):
                    break
        busy = any(slot.run_id is not None for slot in self.slots)
        return busy or (self.wait and not self.stopping)

    def run(self) -> None:
        while self.step():
            time.sleep(POLL_INTERVAL_S)

    def stop_running(self) -> None:
        """Take no more runs, and ask the running ones to stop."""
        self.stopping = True
        for slot in self.slots:
            run = self.store.run(slot.run_id) if slot.run_id is not None else None
            if run is not None:
                stop(run)

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: raise KeyboardInterrupt now, or once the run being started has
        its slot."""
        if self.starting:
            self.interrupted_while_starting = True
            return
        raise KeyboardInterrupt

    def _start_next(self, slot: Slot) -> bool:
        self.starting = True
        try:
            return self._take_and_start(slot)
        finally:
            self.starting = False
            if self.interrupted_while_starting:
                self.interrupted_while_starting = False
                raise KeyboardInterrupt

    def _take_and_start(self, slot: Slot) -> bool:
        run = self.queue.take_next(os.getpid(), self.among)
        if run is None:
            return False
        try:
            slot.supervisor = start_queued(self.store, run, slot.device)
        except (OSError, SpecError) as error:
            self.store.record_end(
                run.id,
                "failed",
                "bad_input",
                f"the run could not start: {error}",
                "check it with `resnet-tui show`, then launch it again",
            )
            self.report(f"run {run.id} could not start: {error}")
            return True
        slot.run_id = run.id
        self.report(f"run {run.id} ({run.name}) started on {slot.device}")
        return True

    def _ended(self, slot: Slot) -> None:
        assert slot.run_id is not None
        run = self.store.run(slot.run_id)
        self.finished.append(slot.run_id)
        self.report(_outcome(run))
        if self.among is not None and run is not None and run.status == "stopped":
            self.stopping = True
            self.report("a run was stopped, so the others wait in the queue")
        slot.run_id, slot.supervisor = None, None


def missing_device(devices: list[str]) -> str | None:
    """The first of `devices` (a worker's, each written as `read_device` writes it) that the
    engine cannot see, with what it sees, as one line; None where all are there. The CPU and
    `auto` are always there; the engine is asked (`list_devices`) only for another device.
    Raises DevicesUnavailable where the engine cannot list its devices."""
    wanted = [name for name in devices if name not in ("cpu", "auto")]
    if not wanted:
        return None
    seen = [str(device["name"]) for device in list_devices()]
    for name in wanted:
        there = any(found.startswith("cuda:") for found in seen) if name == "cuda" else name in seen
        if not there:
            return f"device {name} is not there; the engine sees {', '.join(seen)}"
    return None


def _outcome(run: Run | None) -> str:
    if run is None:
        return "a run was deleted while it trained"
    line = f"run {run.id} ({run.name}) {run.status}"
    if run.status == "pruned":  # and why, as its events tell
        pruned = RunState(keep_steps=False).apply_read(ev.read_events(run.events_path)).pruned
        line = f"run {run.id} ({run.name}) {pruned.line}" if pruned else line
    if run.test_acc is not None:
        line += f": test accuracy {100 * run.test_acc:.1f}%"
    return line


def start_sweep_worker(store: RunStore, sweep: int, device: str) -> subprocess.Popen[bytes]:
    """A worker for one sweep's runs on `device`, detached like a supervisor (closing the
    app or the shell stops nothing), its output in `runs/sweep-N-worker.log`."""
    command = [sys.executable, "-m", "resnet_tui", "worker", "--devices", device]
    command += ["--sweep", str(sweep), "--db", str(Path(store.path).resolve())]
    store.runs_dir.mkdir(mode=0o700, exist_ok=True)
    with open(store.runs_dir / f"sweep-{sweep}-worker.log", "ab") as output:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"},
        )


@dataclass(frozen=True)
class Folds:
    """The K runs of a cross-validation, queued as one sweep, and the worker started for them
    in the background (None where the caller trains them itself)."""

    run_ids: list[int]
    sweep: int
    worker: subprocess.Popen[bytes] | None


def queue_folds(store: RunStore, spec: RunSpec, in_background: bool) -> Folds:
    """Queue the K fold runs of `spec` (`--folds K`) as one sweep, each checked as `launch`
    checks a run; with `in_background`, start their sweep's worker on the spec's device,
    detached. Raises SpecError, before any run is made, for a spec that cannot run."""
    run_ids, sweep = queue(store, fold_specs(spec))
    assert sweep is not None  # K >= 2 runs are always a sweep
    worker = start_sweep_worker(store, sweep, spec.device) if in_background else None
    return Folds(run_ids, sweep, worker)
