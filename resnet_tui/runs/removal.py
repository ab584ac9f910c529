"""Deleting the runs a user chose: the CLI's `rm`, the history's delete, the queue's cancel.

The user looks, is asked, says yes; meanwhile a worker may take a queued run, or a resume
start a stopped one. `delete_runs` lets the store decide inside one write which runs may
still go, and says what became of each, so a caller only words the outcome.
"""

from dataclasses import dataclass

from resnet_tui.runs.model import Run
from resnet_tui.runs.store import RunStore


@dataclass(frozen=True)
class Deletion:
    """What deleting runs did: each run asked for is in exactly one of the three lists."""

    deleted: list[Run]  # out of the store (and the queue), with metrics and folder
    started: list[Run]  # started meanwhile (a worker took it, a resume): left, as it is now
    gone: list[int]  # deleted meanwhile by someone else


def delete_runs(store: RunStore, runs: list[Run]) -> Deletion:
    """Delete `runs` as the user saw them when asked: one waiting in the queue then goes only
    while it waits there still, any other only while it is not running (its folder goes only
    where it lies in the store's runs/). Refusing runs that were live when asked (stop them
    first) is the caller's, before it asks."""
    waiting = [run.id for run in runs if run.waits_in_queue]
    deleted = store.delete_runs([run.id for run in runs], queued=waiting)
    done = {run.id for run in deleted}
    now = {run.id: store.run(run.id) for run in runs if run.id not in done}
    return Deletion(
        deleted=deleted,
        started=[run for run in now.values() if run is not None],
        gone=[run_id for run_id, run in now.items() if run is None],
    )
