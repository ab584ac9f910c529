"""The run store: creating runs, recording events once, summaries, listing, the queue, what
changed since a revision, stalled runs (migrations and refused files: test_store_files.py)."""

import dataclasses
import os
import stat

import pytest

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.runs import ownership, queries
from resnet_tui.runs.follower import RunFollower
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.schema import SCHEMA_VERSION
from resnet_tui.runs.store import RunStore
from tests.runs.made_events import started, two_epochs, write_log


@pytest.fixture
def store(tmp_path):
    opened = RunStore(tmp_path / "runs.db")
    yield opened
    opened.close()


def feed(store: RunStore, run_id: int, events: list[ev.Event]) -> list[ev.Event]:
    """Write events to a run's events file and record them as a supervisor's follower would;
    returns what the follower found new."""
    run = store.run(run_id)
    write_log(run.events_path, events)
    return RunFollower(store, run).poll()


def test_a_new_store_has_the_schema_version_and_private_files(store, tmp_path):
    version = store.connection.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION
    assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    run_id = store.create_run(RunSpec())
    assert stat.S_IMODE(os.stat(tmp_path / "runs.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "runs" / str(run_id)).st_mode) == 0o700


def test_events_apply_once_and_keep_summaries_current(store):
    run_id = store.create_run(RunSpec(name="first"))
    events = two_epochs()
    run = store.run(run_id)
    write_log(run.events_path, events)
    follower = RunFollower(store, run)
    fresh = follower.poll()
    assert fresh == events
    again = follower.poll()
    assert again == []
    assert RunFollower(store, store.run(run_id)).poll() == []  # nor for a follower started anew
    count = store.connection.execute(
        "SELECT count(*) FROM metrics WHERE run_id = ?", [run_id]
    ).fetchone()
    assert count[0] == 2 * (
        1 + 4 + 1 + 2
    )  # per epoch: a step loss, 4 epoch metrics, seconds, 2 lrs
    run = store.run(run_id)
    assert run.status == "completed"
    assert run.events_offset == run.events_path.stat().st_size
    assert run.last_seq == events[-1].seq
    assert run.epochs_done == 2
    assert run.best_val_acc == 0.5
    assert run.test_acc == 0.61 and run.test_top5 == 0.99
    assert run.test_report["macro_f1"] == 0.6
    table = store.epoch_table(run_id)
    assert [row["epoch"] for row in table] == [1, 2]
    assert table[1]["val_acc"] == 0.45 and table[0]["lr/weights"] == 0.1
    assert store.metric_series(run_id, "step", "loss") == [(10, 1.0), (20, 0.5)]


def test_events_applied_in_pieces_match_events_applied_at_once(store):
    whole = store.create_run(RunSpec())
    pieces = store.create_run(RunSpec())
    events = two_epochs()
    feed(store, whole, events)
    path = store.run(pieces).events_path
    first = RunFollower(store, store.run(pieces))
    follower = first
    for cut in range(0, len(events), 2):
        write_log(path, events[cut : cut + 2])
        if cut == 2:  # the supervisor restarted: a new follower goes on from the stored offset
            follower = RunFollower(store, store.run(pieces))
        assert follower.poll() == events[cut : cut + 2]
    assert first.poll() == events[2:]  # the old one, behind, reads again what was recorded
    columns = ("status", "epochs_done", "best_val_acc", "test_acc", "last_seq")
    assert [getattr(store.run(whole), c) for c in columns] == [
        getattr(store.run(pieces), c) for c in columns
    ]
    assert store.epoch_table(whole) == store.epoch_table(pieces)
    assert store.metric_series(whole, "step", "loss") == store.metric_series(pieces, "step", "loss")


@pytest.mark.parametrize("applied_before_resume", [True, False])
def test_a_resumed_run_keeps_one_row_per_epoch(store, applied_before_resume):
    """Died after epoch 2's metrics but before its checkpoint; resumed from epoch 1."""
    run_id = store.create_run(RunSpec())
    crashed = two_epochs()[:5]  # started, epoch 1, epoch 2 (its checkpoint never written)
    crashed[4] = dataclasses.replace(crashed[4], val_acc=0.9)
    resumed = [dataclasses.replace(event, seq=event.seq + 5) for event in two_epochs()[3:]]
    restart = started(6, t=300.0, pid=7, resumed_from_epoch=1, best_val_acc=0.5)
    if applied_before_resume:
        feed(store, run_id, crashed)
        store.update(run_id, status="crashed")
        feed(store, run_id, [restart, *resumed])  # the resumed run's own supervisor
    else:
        feed(store, run_id, [*crashed, restart, *resumed])
    table = store.epoch_table(run_id)
    assert [row["epoch"] for row in table] == [1, 2]
    assert table[1]["val_acc"] == 0.45  # the resumed epoch 2, not the lost one
    assert store.metric_series(run_id, "step", "loss") == [(10, 1.0), (20, 0.5)]
    run = store.run(run_id)
    assert (run.status, run.best_val_acc, run.started_at) == ("completed", 0.5, 100.0)


def test_an_error_event_marks_the_run_failed_with_its_reason(store):
    run_id = store.create_run(RunSpec())
    error = ev.Error(
        seq=1, t=1.0, kind="diverged", message="the loss became nan", hint="lower --lr"
    )
    feed(store, run_id, [error])
    run = store.run(run_id)
    assert run.status == "failed"
    assert run.error.kind == "diverged"


def test_listing_filters_and_sorts_in_sql(store):
    for index, arch in enumerate(["resnet20", "resnet8", "resnet20"]):
        run_id = store.create_run(RunSpec(arch=arch))
        store.update(run_id, test_acc=[0.3, 0.9, 0.6][index], status="completed")
    assert [r.arch for r in store.list_runs(arch="resnet20")] == ["resnet20", "resnet20"]
    assert [r.test_acc for r in store.list_runs(sort="test_acc")] == [0.9, 0.6, 0.3]
    assert [r.test_acc for r in store.list_runs(sort="test_acc", descending=False)] == [
        0.3,
        0.6,
        0.9,
    ]
    assert len(store.list_runs(limit=2)) == 2
    with pytest.raises(ValueError, match="cannot sort by"):
        store.list_runs(sort="test_acc; DROP TABLE runs")


def test_lineage_is_kept_and_found_by_the_from_filter(store):
    root = store.create_run(RunSpec())
    child = store.create_run(RunSpec(), parents=[root])
    grandchild = store.create_run(RunSpec(), parents=[child])
    store.create_run(RunSpec(name=f"from:{root}"))  # a name that looks like the filter
    assert [r.id for r in store.list_runs(text=f"from:{root}")] == [child]
    assert [r.id for r in store.list_runs(text=f"from:{child}")] == [grandchild]
    assert store.count_runs(text=f" from:{root} ") == 1
    assert [r.id for r in store.lineage(grandchild)] == [child, root]
    assert store.lineage(root) == []


def test_a_filter_typed_by_a_user_cannot_inject_sql(store):
    run_id = store.create_run(RunSpec(name="baseline"))
    for text in (
        "'; DROP TABLE runs; --",
        "%' OR 1=1 --",
        "from:1) OR 1=1 --",
        "\\' UNION SELECT * FROM metrics --",
    ):
        assert store.list_runs(text=text) == [] and store.count_runs(text=text) == 0
    assert store.list_runs(text="_") == []  # LIKE's wildcards are taken literally too
    assert [r.id for r in store.list_runs(text="base")] == [run_id]
    assert store.run(run_id).name == "baseline"  # and the table is still there


def test_the_sweep_filter_finds_one_sweep_through_its_index(store):
    queue = RunQueue(store)
    first = [store.create_run(RunSpec()) for _ in range(2)]
    second = [store.create_run(RunSpec()) for _ in range(3)]
    store.create_run(RunSpec(name="sweep:2"))  # a name that looks like the filter
    assert queue.enqueue(first) == 1 and queue.enqueue(second) == 2
    assert [r.id for r in store.list_runs(text="sweep:2")] == second[::-1]
    assert store.count_runs(text=" sweep:1 ") == 2
    assert store.list_runs(text="sweep:3") == []
    where, args = queries.filters(None, None, None, "sweep:2")
    plan = store.query("EXPLAIN QUERY PLAN SELECT * FROM runs" + where, args)
    assert "idx_runs_sweep" in plan[0]["detail"]


def _queue_order(store: RunStore) -> list[int]:
    return [run.id for run in RunQueue(store).waiting()]


def test_a_queued_run_moves_one_place_up_or_down(store):
    queue = RunQueue(store)
    ids = [store.create_run(RunSpec()) for _ in range(3)]
    queue.enqueue(ids)
    first, second, third = ids
    assert queue.move(third, -1) is True
    assert _queue_order(store) == [first, third, second]
    assert queue.move(third, -1) is True
    assert _queue_order(store) == [third, first, second]
    assert queue.move(third, -1) is False  # first in line already
    assert queue.move(second, 1) is False  # last already
    assert queue.move(third, 1) is True
    assert _queue_order(store) == [first, third, second]
    places = [run.queue_position for run in queue.waiting()]
    assert len(set(places)) == 3  # a swap never makes two runs share a place
    with pytest.raises(ValueError, match="one place"):
        queue.move(first, 2)


def test_a_run_a_worker_took_is_neither_moved_nor_cancelled(store):
    queue = RunQueue(store)
    ids = [store.create_run(RunSpec()) for _ in range(3)]
    queue.enqueue(ids)
    taken = queue.take_next(pid=4242)
    assert taken.id == ids[0]
    assert queue.move(ids[0], 1) is False
    assert queue.move_to_front(ids[0]) is False
    assert store.delete_runs([ids[0]], queued=[ids[0]]) == []  # seen queued: cancel it
    assert store.run(ids[0]).status == "running" and store.run(ids[0]).queue_position is None
    assert store.run(ids[0]).folder.is_dir()  # a refused cancel leaves the folder alone
    assert queue.move(ids[1], -1) is False  # the taken run is no neighbour
    assert queue.move_to_front(ids[2]) is True
    assert _queue_order(store) == [ids[2], ids[1]]


def test_cancelling_a_queued_run_takes_it_out_of_the_queue_and_the_store(store):
    queue = RunQueue(store)
    ids = [store.create_run(RunSpec()) for _ in range(2)]
    queue.enqueue(ids)
    (cancelled,) = store.delete_runs([ids[0]], queued=[ids[0]])  # seen queued: cancel it
    assert cancelled.id == ids[0] and cancelled.run_dir
    assert not cancelled.folder.exists()  # its folder goes with it
    assert store.run(ids[0]) is None
    assert _queue_order(store) == [ids[1]]
    assert store.delete_runs([ids[0]], queued=[ids[0]]) == []  # gone already
    launched = store.create_run(RunSpec())  # queued while being launched: not in the queue
    assert store.delete_runs([launched], queued=[launched]) == []
    assert queue.move_to_front(launched) is False
    assert store.run(launched).queue_position is None


def test_a_teacher_makes_a_student_show_under_the_from_filter(store):
    teacher = store.create_run(RunSpec())
    student = store.create_run(RunSpec(), teachers=[teacher])
    soup = store.create_run(RunSpec(), parents=[student], kind="soup")
    assert [r.id for r in store.list_runs(text=f"from:{teacher}")] == [student]
    assert [r.id for r in store.list_runs(text=f"from:{student}")] == [soup]
    assert [r.id for r in store.list_runs(text="soup")] == [soup]


def test_deleting_runs_removes_their_metrics(store):
    keep, drop = store.create_run(RunSpec()), store.create_run(RunSpec())
    feed(store, drop, two_epochs())
    folder = store.run(drop).folder
    store.delete_runs([drop])
    assert store.run(drop) is None and store.run(keep) is not None
    assert store.connection.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0
    assert not folder.exists() and store.run(keep).folder.is_dir()


@pytest.mark.parametrize(
    "forged",
    ["elsewhere/7", "runs", ".", "runs/2/../../elsewhere/8", "runs/9 (a link to elsewhere/9)"],
)
def test_deleting_runs_never_removes_a_folder_outside_the_stores_runs(store, tmp_path, forged):
    """A damaged or forged row's run_dir may name any folder: only runs/<id> is removed."""
    outside = tmp_path / "elsewhere"
    for name in ("7", "8", "9"):
        (outside / name).mkdir(parents=True)
        (outside / name / "keep.txt").write_text("not the store's\n")
    run_id = store.create_run(RunSpec())
    neighbour = store.create_run(RunSpec())  # run 2, whose folder the third case goes through
    if forged.endswith("(a link to elsewhere/9)"):
        store.runs_dir.joinpath("9").symlink_to(outside / "9", target_is_directory=True)
        forged = "runs/9"
    store.update(run_id, run_dir=str(tmp_path / forged))
    store.delete_runs([run_id])
    assert store.run(run_id) is None
    assert all((outside / name / "keep.txt").exists() for name in ("7", "8", "9"))
    assert store.path.exists() and store.run(neighbour).folder.is_dir()
    assert (store.runs_dir / str(run_id)).is_dir()  # its own folder was not named: it stays


def test_a_running_run_or_one_whose_lock_is_held_is_not_deleted(store):
    """Checked inside the delete's write: a run resumed (or taken by a worker) between a
    user's look and their yes is left to train, folder and all."""
    running = store.create_run(RunSpec(), status="running")
    resumed = store.create_run(RunSpec(), status="stopped")
    lock = ownership.take_run(store.run(resumed).folder)  # a launcher resuming it now
    try:
        assert store.delete_runs([running, resumed]) == []
        assert store.run(running) and store.run(resumed) and store.folder_of(resumed).is_dir()
    finally:
        ownership.release(lock)
    assert [run.id for run in store.delete_runs([running, resumed])] == [resumed]


def test_a_deleted_runs_id_is_never_given_again(store):
    """A departing supervisor or an open screen may still name it."""
    first, newest = store.create_run(RunSpec()), store.create_run(RunSpec())
    store.delete_runs([newest])
    assert store.create_run(RunSpec()) == newest + 1
    assert first < newest


def test_changes_since_a_revision_gives_runs_made_changed_or_deleted_after_it(store):
    start = store.revision()
    nothing = store.changes_since(start)
    assert (nothing.runs, nothing.deleted, nothing.revision) == ([], [], start)

    first, second = store.create_run(RunSpec()), store.create_run(RunSpec())
    made = store.changes_since(start)
    assert [run.id for run in made.runs] == [first, second] and made.deleted == []
    assert made.revision > start and made.revision == store.revision()
    nothing = store.changes_since(made.revision)
    assert (nothing.runs, nothing.deleted, nothing.revision) == ([], [], made.revision)

    store.update(first, status="completed")
    changed = store.changes_since(made.revision)
    assert [(run.id, run.status) for run in changed.runs] == [(first, "completed")]
    assert changed.deleted == [] and changed.revision > made.revision

    feed(store, second, two_epochs()[:3])  # a follower's record is a change too
    fed = store.changes_since(changed.revision)
    assert [(run.id, run.epochs_done) for run in fed.runs] == [(second, 1)]

    RunQueue(store).enqueue([first])  # and so is a place in the queue
    queued = store.changes_since(fed.revision)
    assert [(run.id, run.sweep) for run in queued.runs] == [(first, 1)]

    store.update(second, status="stopped")  # a running run is not deleted (below)
    stopped = store.changes_since(queued.revision)
    store.delete_runs([second])
    deleted = store.changes_since(stopped.revision)
    assert deleted.runs == [] and deleted.deleted == [second]
    everything = store.changes_since(start)
    assert [run.id for run in everything.runs] == [first] and everything.deleted == [second]
    assert store.changes_since(deleted.revision).runs == []
    assert store.changes_since(deleted.revision).deleted == []


def test_a_running_run_silent_past_the_limit_is_stalled_and_each_event_is_a_sign_of_life(
    store,
):
    from engine.contract.events import STALL_AFTER_S

    run_id = store.create_run(RunSpec(), status="running")
    feed(store, run_id, [ev.Heartbeat(seq=1, t=1000.0)])
    run = store.run(run_id)
    assert run.last_event_at == 1000.0
    assert run.stalled_for(now=1000.0 + STALL_AFTER_S - 1) is None
    assert run.stalled_for(now=1000.0 + STALL_AFTER_S + 5) == STALL_AFTER_S + 5
    store.update(run_id, status="stopped")
    assert store.run(run_id).stalled_for(now=1e12) is None  # only a live run can stall
