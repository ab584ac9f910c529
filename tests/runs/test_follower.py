"""Viewers catching up runs no supervisor owns: a damaged folder stops nothing else."""

import json
import os
import shutil

from engine.contract.spec import RunSpec
from resnet_tui.runs import ownership
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.store import RunStore
from tests.runs.made_events import started, two_epochs, write_log


def a_running_run(store: RunStore, pid: int | None = None) -> int:
    """A run the store says is running, as an engine of an older resnet-tui left it."""
    run_id = store.create_run(RunSpec(), status="running")
    store.update(run_id, pid=pid)
    return run_id


def test_a_run_of_an_older_resnet_tui_is_caught_up_and_ended_by_a_viewer(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    done = a_running_run(store)  # its engine is gone (no pid), its log whole
    write_log(store.run(done).events_path, two_epochs())
    alive = a_running_run(store, pid=os.getpid())  # its engine is there
    write_log(store.run(alive).events_path, [started(1)])
    catch_up(store)
    assert (store.run(done).status, store.run(done).epochs_done) == ("completed", 2)
    assert store.run(alive).status == "running" and store.run(alive).last_seq == 1


def test_a_damaged_run_folder_leaves_the_other_runs_caught_up(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    folder_log = a_running_run(store)  # events.jsonl is a folder
    store.run(folder_log).events_path.mkdir()
    forged = a_running_run(store, pid=os.getpid())  # an owner file of the wrong shape
    (store.run(forged).folder / ownership.OWNER_FILE).write_text(
        json.dumps({"supervisor": {"pid": "12", "started": 1}, "engine": {"pid": [1]}})
    )
    gone = a_running_run(store)  # its folder deleted by hand
    shutil.rmtree(store.run(gone).folder)
    fine = a_running_run(store)
    write_log(store.run(fine).events_path, two_epochs())
    catch_up(store)
    assert store.run(fine).status == "completed"
    assert store.run(folder_log).status == "crashed"  # nothing to read, no engine: crashed
    assert store.run(forged).status == "running"  # the process named by its pid lives
    assert store.run(gone).status == "crashed"
    assert "folder" in store.run(gone).error.message
    assert ownership.Owners.read(store.run(forged).folder) is None


def test_a_run_whose_lock_is_held_is_left_to_its_owner(tmp_path):
    """As a resume starts it: no viewer calls it crashed meanwhile."""
    store = RunStore(tmp_path / "runs.db")
    run_id = a_running_run(store)  # no engine named: dead, were it not owned
    lock = ownership.take_run(store.run(run_id).folder)
    try:
        catch_up(store)
        assert store.run(run_id).status == "running"
    finally:
        ownership.release(lock)
    catch_up(store)
    assert store.run(run_id).status == "crashed"
