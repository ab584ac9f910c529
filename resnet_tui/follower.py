"""Following a run's events file into the store, and noticing runs whose engine died."""

import socket
import time
from pathlib import Path
from typing import Any

from engine import events as ev
from resnet_tui.launcher import process_alive
from resnet_tui.store import LIVE_STATUSES, RunStore


class EventFollower:
    """Tails one run's events.jsonl from the offset stored with the run, applying new events.

    Several followers of one run (the CLI and the app, say) are safe: the store applies each
    sequence number once.
    """

    def __init__(self, store: RunStore, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        run = store.run(run_id)
        self.path = Path(run["run_dir"]) / "events.jsonl"
        self.offset = run["events_offset"] or 0

    def poll(self) -> list[dict[str, Any]]:
        """Apply what the engine wrote since the last poll; return the new events."""
        events, offset = ev.read_events(self.path, self.offset)
        if offset == self.offset:
            return []
        fresh = self.store.apply(self.run_id, events, offset)
        self.offset = offset
        return fresh

    def finish_if_dead(self, pid_alive: bool | None = None) -> dict[str, Any] | None:
        """Mark the run `crashed` if its engine is gone without a final event.

        Returns the run row after the check. `pid_alive` overrides the process check, for a
        caller that holds the process handle.
        """
        run = self.store.run(self.run_id)
        if run is None or run["status"] not in LIVE_STATUSES:
            return run
        if run["status"] == "queued" and run["pid"] is None:
            return run  # waiting for its engine (in the queue, or being launched): not dead
        if run["host"] not in (None, socket.gethostname()):
            return run
        alive = process_alive(run["pid"]) if pid_alive is None else pid_alive
        if alive:
            return run
        self.poll()
        run = self.store.run(self.run_id)
        if run["status"] in LIVE_STATUSES:
            self.store.update(self.run_id, status="crashed", ended_at=time.time())
            run = self.store.run(self.run_id)
        return run


def refresh_live_runs(store: RunStore) -> list[int]:
    """Catch up every queued or running run of this host; returns the ids still live."""
    still_live = []
    for run in store.live_runs():
        follower = EventFollower(store, run["id"])
        follower.poll()
        if run["pid"] is None and run["status"] == "queued":
            still_live.append(run["id"])
            continue
        after = follower.finish_if_dead()
        if after and after["status"] in LIVE_STATUSES:
            still_live.append(run["id"])
    return still_live
