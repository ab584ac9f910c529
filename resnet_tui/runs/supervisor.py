"""The supervisor: the small torch-free process that owns one run while its engine lives.

Started by the launcher (detached, in a session of its own, holding the run's lock), it
starts the engine as its child, follows `events.jsonl` into `runs.db` as it is written, and
records how the engine ended the moment it ends: a run whose engine dies without a final
event is `crashed` within a poll, with the exit code or signal, whether or not anyone is
looking. A stop (SIGINT or SIGTERM) is passed on to the engine, its own child, so no reused
process id is ever signalled. A run of a pruned sweep (`--prune`) is judged after each
epoch against its sweep's other runs (sweeps.SweepPruning); one pruned is stopped, and ends
`pruned`. `python -m resnet_tui.runs.supervisor --db DB --run ID --lock-fd FD [--resume]
[--fusion]`. The engine is `python -m engine`, or the module that
RESNET_TUI_ENGINE_MODULE names (the tests' torch-free stand-in, say).
"""

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.contract import events as ev
from engine.contract.stopping import signals_held
from resnet_tui.runs.follower import RunFollower
from resnet_tui.runs.model import Run
from resnet_tui.runs.ownership import Owners, ProcessName
from resnet_tui.runs.pruning import Pruned
from resnet_tui.runs.state import Lifecycle
from resnet_tui.runs.store import RunStore, StoreError
from resnet_tui.runs.sweeps import SweepPruning

# How often the supervisor reads the events file: the engine reports progress about four
# times a second, and the store need not be fresher than that.
POLL_INTERVAL_S = 0.25
ENGINE_LOG = "engine.log"
SUPERVISOR_LOG = "supervisor.log"
# Names the module `python -m` runs as the engine, where it is not `engine`: the tests'
# stand-in (tests/fake_engine.py) replays a recorded run without loading torch.
ENGINE_MODULE_VARIABLE = "RESNET_TUI_ENGINE_MODULE"
# The signals a launcher holds while a supervisor starts: they wait for its handlers.
_HELD = {signal.SIGINT, signal.SIGTERM} | ({signal.SIGHUP} if hasattr(signal, "SIGHUP") else set())


def note(line: str) -> None:
    """A line of the supervisor's log (its output, kept in the run folder)."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", flush=True)


def engine_command(run_dir: Path, resume: bool = False, fusion: bool = False) -> list[str]:
    """The engine's command line for the run in `run_dir`: training it, resuming it, or (for
    an ensemble or soup) fusing its members."""
    engine = [sys.executable, "-m", os.environ.get(ENGINE_MODULE_VARIABLE) or "engine"]
    if fusion:
        command = [*engine, "fuse", "--fusion", str(run_dir / "fusion.json")]
    else:
        command = [*engine, "run", "--spec", str(run_dir / "spec.json")]
    command += ["--events", str(run_dir / "events.jsonl"), "--run-dir", str(run_dir)]
    return command + ["--resume"] if resume else command


def start_supervisor(
    db: Path, run: Run, lock_fd: int, resume: bool = False, fusion: bool = False
) -> subprocess.Popen[bytes]:
    """Start the supervisor of `run`, handing it the run's lock (`lock_fd`, from
    `ownership.take_run`; the caller closes its copy). Detached: its own session, no
    terminal, its output in the run folder; the stop signals held until it can pass them
    on."""
    command = [sys.executable, "-m", "resnet_tui.runs.supervisor", "--db", str(db.resolve())]
    command += ["--run", str(run.id), "--lock-fd", str(lock_fd)]
    command += (["--resume"] if resume else []) + (["--fusion"] if fusion else [])
    with open(run.folder / SUPERVISOR_LOG, "ab") as output, signals_held():
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=(lock_fd,),
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def start_engine(
    run_dir: Path, resume: bool = False, fusion: bool = False
) -> subprocess.Popen[bytes]:
    """Start the engine on the run folder's spec, logging to engine.log. It starts with the
    stop signals held, so one sent before its handlers are in place waits for them."""
    command = engine_command(run_dir, resume, fusion)
    with open(run_dir / ENGINE_LOG, "ab") as output, signals_held():
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def how_it_ended(exit_code: int, run_dir: Path) -> tuple[str, str]:
    """What went wrong, and what to do, for an engine that ended without saying how: its
    exit code or the signal that killed it, and the last line it printed."""
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        often = " (often the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
        what = f"the engine was killed by {name}{often} without a final event"
    else:
        what = f"the engine exited with code {exit_code} without a final event"
    last = _last_line(run_dir / ENGINE_LOG)
    resume = "`resnet-tui resume` goes on from its last checkpoint, where it saved one"
    if exit_code == -signal.SIGKILL:
        resume += "; if memory ran out, launch it again with a smaller --batch-size or --limit"
    message = f"{what}{f' ({last})' if last else ''}"
    return message, (f"see engine.log in the run folder; {resume}" if last else resume)


def _last_line(path: Path, most: int = 160) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(max(0, path.stat().st_size - 4096))
            lines = file.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:most] if lines else ""


class Supervisor:
    """One run's engine, followed into the store until it ends."""

    def __init__(self, resume: bool, fusion: bool) -> None:
        self.resume = resume
        self.fusion = fusion
        self.engine: subprocess.Popen[bytes] | None = None
        self.stop_asked = False
        self.pruning: SweepPruning | None = None
        self.pruned: Pruned | None = None

    def ask_to_stop(self, signum: int, frame: Any) -> None:
        """A stop for the run: passed on to the engine (held until it has one)."""
        self.stop_asked = True
        if self.engine is not None and self.engine.poll() is None:
            self.engine.send_signal(signal.SIGINT)

    def supervise(self, store: RunStore, run: Run) -> int:
        """Start the engine, follow it to its end and record the end; returns 0 once the end
        is in the store (1 where the engine could not start)."""
        self.store, self.run = store, run
        me = ProcessName.of(os.getpid())
        Owners(me).write(self.run.folder)
        follower = RunFollower(self.store, self.run)
        if not self.fusion:
            self.pruning = SweepPruning.of(self.store, self.run, follower.state)
        if follower.state.pruned_end is not None:
            note(f"run {self.run.id}: resumed after it was pruned, so it trains on unpruned")
        try:
            self.engine = start_engine(self.run.folder, self.resume, self.fusion)
        except OSError as error:
            self.store.record_end(
                self.run.id,
                "failed",
                "internal",
                f"the engine could not start: {error}",
                "check that Python and resnet-tui are installed where the run's folder is",
            )
            return 1
        Owners(me, ProcessName.of(self.engine.pid)).write(self.run.folder)
        if self.stop_asked:
            self.engine.send_signal(signal.SIGINT)
        note(f"run {self.run.id}: engine {self.engine.pid} started")
        while True:
            exit_code = self.engine.poll()
            if exit_code is not None and self.pruned is not None:
                self.end_pruned(follower)
            # Once the engine is gone, a last line that lost its newline is read as it is.
            events = follow(follower, final=exit_code is not None)
            if exit_code is not None:  # and all it wrote is read
                break
            if self.pruning is not None and self.pruned is None and not self.stop_asked:
                self.judge(events)
            time.sleep(POLL_INTERVAL_S)
        after = self.store.run(self.run.id)
        if after is not None and after.live:  # no end in the log: the engine died
            message, hint = how_it_ended(exit_code, self.run.folder)
            self.store.record_end(self.run.id, "crashed", "crashed", message, hint)
            note(f"run {self.run.id}: {message}")
        else:
            note(f"run {self.run.id}: the engine ended ({_meaning(exit_code)})")
        return 0

    def judge(self, events: list[ev.Event]) -> None:
        """Prune the run where its sweep's rule says so after an epoch it just ended (not its
        last: a run that got there completes). A decision that cannot be made (the store
        cannot be read, say) leaves the run running."""
        assert self.pruning is not None and self.engine is not None
        for event in events:
            if not isinstance(event, ev.EpochEnded) or event.partial or event.epoch >= event.epochs:
                continue
            try:
                found = self.pruning.judge(event.epoch)
            except (sqlite3.Error, OSError, ValueError, TypeError) as error:
                note(f"run {self.run.id}: not judged after epoch {event.epoch}: {error}")
                continue
            if found is not None:
                self.pruned = found
                note(f"run {self.run.id}: {found.line}; stopping it")
                if self.engine.poll() is None:
                    self.engine.send_signal(signal.SIGTERM)
                return

    def end_pruned(self, follower: RunFollower) -> None:
        """Where the engine of a run pruned ended as asked (`stopped`), follow its end in the
        log with why it was pruned and an end of status pruned (its best val acc and time
        the same), so the run's events tell it, and the store from them. An engine that
        ended otherwise (it completed first, or failed) keeps its own end."""
        assert self.pruned is not None
        tail = ev.read_events(follower.path, follower.offset, final=True)
        ends = [e for e in [follower.state.lifecycle, *tail.events] if isinstance(e, Lifecycle)]
        end = max(ends, key=lambda event: event.seq, default=None)
        if not isinstance(end, ev.Finished) or end.status != "stopped":
            note(f"run {self.run.id}: the engine ended before its pruning; its end stands")
            return
        try:
            writer = ev.EventWriter(follower.path)
            try:
                writer.emit(ev.LOG, level="info", message=self.pruned.line)
                writer.emit(
                    ev.FINISHED,
                    status="pruned",
                    best_val_acc=end.best_val_acc,
                    best_epoch=end.best_epoch,
                    seconds=end.seconds,
                )
            finally:
                writer.close()
        except OSError as error:
            note(
                f"run {self.run.id}: its pruning could not be written, so it stays stopped: {error}"
            )


def _meaning(exit_code: int) -> str:
    """What the engine's exit code says (the run's status is in the store)."""
    known = {0: "completed", 1: "failed", 2: "refused its spec", 3: "stopped"}
    return f"exit code {exit_code}: {known.get(exit_code, 'unknown')}"


def follow(follower: RunFollower, final: bool = False) -> list[ev.Event]:
    """Record what the engine wrote since the last look; note the lines skipped. Returns the
    new events."""
    events = follower.poll(final)
    for position, reason in follower.rejected:
        note(f"skipped the line at byte {position} of {follower.path}: {reason}")
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_tui.runs.supervisor")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--run", required=True, type=int)
    # The run's lock, inherited from the launcher: held, never closed, while this lives.
    parser.add_argument("--lock-fd", required=True, type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--fusion", action="store_true")
    args = parser.parse_args(argv)
    supervisor = Supervisor(args.resume, args.fusion)
    signal.signal(signal.SIGINT, supervisor.ask_to_stop)
    signal.signal(signal.SIGTERM, supervisor.ask_to_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # held by the launcher until now (signals_held)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
    try:
        store = RunStore(args.db)
    except StoreError as error:
        note(f"error: {error}")
        return 2
    run = store.run(args.run)
    if run is None:
        note(f"error: run {args.run} is not in {args.db}")
        return 2
    return supervisor.supervise(store, run)


if __name__ == "__main__":
    sys.exit(main())
