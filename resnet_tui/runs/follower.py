"""Following a run's events file into the store, and catching up runs nobody supervises.

The supervisor follows its run with a `RunFollower`. A viewer never writes a run its
supervisor owns; where a supervisor is gone (killed, or the run is from an older
resnet-tui), the next viewer catches the run up from its events file with the same code, and
marks it crashed once its engine is gone too. Both are idempotent on (run, seq).
"""

import os
import socket
from pathlib import Path

from engine.contract import events as ev
from resnet_tui.runs import ownership
from resnet_tui.runs.model import Run
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore


class RunFollower:
    """Tails one run's events.jsonl from the offset stored with the run, folding what it
    reads into `state` (which starts from everything before that offset) and recording it."""

    def __init__(self, store: RunStore, run: Run) -> None:
        self.store = store
        self.run_id = run.id
        self.path = run.events_path
        before = ev.read_events(self.path, 0, end=run.events_offset)
        self.state = RunState(keep_steps=False).apply_read(before)
        self.offset = before.offset
        self.rejected: list[tuple[int, str]] = []  # lines skipped by the last poll, and why

    def poll(self, final: bool = False) -> list[ev.Event]:
        """Record what the engine wrote since the last poll; return the new events. Lines
        that are not events of the contract are skipped, listed in `rejected` and noted in
        the state. `final`: the engine is gone, so a last line without its newline is read
        as it is (an epoch whose newline was lost is kept)."""
        read = ev.read_events(self.path, self.offset, final=final)
        self.rejected = read.rejected
        self.state.apply_read(read)
        if read.offset == self.offset:
            return []
        self.store.record(self.run_id, self.state, read.events, read.offset)
        self.offset = read.offset
        return read.events


def engine_gone(run: Run) -> bool:
    """Whether the engine of a run no supervisor owns is gone: as the owner file names it,
    or, for a run of an older resnet-tui (or one whose supervisor died first thing), its
    recorded process."""
    engine = ownership.engine_alive(run.folder)
    if engine is None:
        engine = ownership.process_alive(run.pid)
    return not engine


def catch_up(store: RunStore, followers: dict[int, RunFollower] | None = None) -> None:
    """Bring every running run of this machine that no supervisor owns up to date with its
    events file, and mark it crashed where its engine is gone without a final event.

    Each run is caught up holding its lock, as a supervisor would, so a resume cannot start
    it meanwhile; a run whose lock is held is its owner's. A run whose folder cannot be read
    is left as it is, and the others are still caught up. A viewer that catches up again
    and again (the app, twice a second) passes its own `followers` to keep, so each look
    reads only what is new in a file.
    """
    kept = {} if followers is None else followers
    unowned = set()
    for run in store.live_runs():
        if run.status != "running" or run.host not in (None, socket.gethostname()):
            continue
        try:
            lock = ownership.take_run(run.folder, patience=0)
        except ownership.RunBusy:
            continue
        except OSError:
            if not run.folder.is_dir() and engine_gone(run):
                store.record_end(
                    run.id,
                    "crashed",
                    "crashed",
                    f"the run's folder {run.run_dir} is gone, and its engine with it",
                    "its metrics up to its last event are kept here; launch it again to train more",
                )
            continue
        unowned.add(run.id)
        try:
            _catch_up_one(store, kept, run)
        except OSError:
            pass
        finally:
            ownership.release(lock)
    for run_id in set(kept) - unowned:
        del kept[run_id]


def _catch_up_one(store: RunStore, kept: dict[int, RunFollower], run: Run) -> None:
    dead = engine_gone(run)
    follower = kept.get(run.id)
    if follower is None:
        follower = kept[run.id] = RunFollower(store, run)
    follower.poll(final=dead)
    after = store.run(run.id)
    if dead and after is not None and after.live:
        store.record_end(
            run.id,
            "crashed",
            "crashed",
            "the run's engine and supervisor are gone without a final event"
            + _trouble_with(follower.path),
            f"see engine.log in {run.run_dir}; its metrics up to its last event are kept; "
            f"`resnet-tui resume {run.id}` goes on from its last checkpoint, where it saved one",
        )


def _trouble_with(log: Path) -> str:
    """What is wrong with a run's events file, if anything, as the end of a sentence."""
    if not os.path.lexists(log):
        return f", and its events file {log} is gone"
    if not log.is_file():
        return f", and its events file {log} is not a file"
    if not os.access(log, os.R_OK):
        return f", and its events file {log} cannot be read"
    return ""
