"""The run store: creating runs, applying events once, summaries, listing, refusing bad files."""

import json
import os
import sqlite3
import stat

import pytest

from engine.spec import RunSpec
from resnet_tui.store import SCHEMA_VERSION, RunStore, StoreError


def _events(run_epochs: int = 2) -> list[dict]:
    events = [
        {"seq": 1, "t": 100.0, "type": "started", "pid": 4242, "device": "cpu"},
    ]
    seq = 1
    for epoch in range(1, run_epochs + 1):
        seq += 1
        events.append(
            {
                "seq": seq,
                "t": 100.0 + seq,
                "type": "progress",
                "epoch": epoch,
                "step": 1,
                "global_step": epoch * 10,
                "loss": 1.0 / epoch,
            }
        )
        seq += 1
        events.append(
            {
                "seq": seq,
                "t": 100.0 + seq,
                "type": "epoch_ended",
                "epoch": epoch,
                "epochs": 2,
                "train_loss": 1.0 / epoch,
                "train_acc": 0.4 * epoch,
                "val_loss": 1.1 / epoch,
                "val_acc": [0.5, 0.45][epoch - 1],
                "lr": {"weights": 0.1, "norms-and-biases": 0.1},
                "seconds": 2.0,
                "elapsed": 2.0 * epoch,
            }
        )
    seq += 1
    test = {"top1": 0.61, "top5": 0.99, "macro_f1": 0.6, "confusion": [[1]], "classes": ["a"]}
    events.append(
        {
            "seq": seq,
            "t": 200.0,
            "type": "finished",
            "status": "completed",
            "best_val_acc": 0.5,
            "test": test,
            "seconds": 5.0,
        }
    )
    return events


@pytest.fixture
def store(tmp_path):
    opened = RunStore(tmp_path / "runs.db")
    yield opened
    opened.close()


def test_a_new_store_has_the_schema_version_and_private_files(store, tmp_path):
    version = store.connection.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION
    assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    run_id = store.create_run(RunSpec())
    assert stat.S_IMODE(os.stat(tmp_path / "runs.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "runs" / str(run_id)).st_mode) == 0o700


def test_events_apply_once_and_keep_summaries_current(store):
    run_id = store.create_run(RunSpec(name="first"))
    events = _events()
    fresh = store.apply(run_id, events, offset=1234)
    assert len(fresh) == len(events)
    again = store.apply(run_id, events, offset=1234)
    assert again == []
    count = store.connection.execute(
        "SELECT count(*) FROM metrics WHERE run_id = ?", [run_id]
    ).fetchone()
    assert count[0] == 2 * (
        1 + 4 + 1 + 2
    )  # per epoch: a step loss, 4 epoch metrics, seconds, 2 lrs
    run = store.run(run_id)
    assert run["status"] == "completed"
    assert run["events_offset"] == 1234 and run["last_seq"] == events[-1]["seq"]
    assert run["epochs_done"] == 2
    assert run["best_val_acc"] == 0.5
    assert run["test_acc"] == 0.61 and run["test_top5"] == 0.99
    assert json.loads(run["test_report"])["macro_f1"] == 0.6
    table = store.epoch_table(run_id)
    assert [row["epoch"] for row in table] == [1, 2]
    assert table[1]["val_acc"] == 0.45 and table[0]["lr/weights"] == 0.1
    assert store.metric_series(run_id, "step", "loss") == [(10, 1.0), (20, 0.5)]


def test_events_applied_in_pieces_match_events_applied_at_once(store):
    whole = store.create_run(RunSpec())
    pieces = store.create_run(RunSpec())
    events = _events()
    store.apply(whole, events, 10)
    for cut in range(0, len(events), 2):
        store.apply(pieces, events[: cut + 2], 10)  # overlapping reads, as a restarted follower
    columns = ("status", "epochs_done", "best_val_acc", "test_acc", "last_seq")
    assert [store.run(whole)[c] for c in columns] == [store.run(pieces)[c] for c in columns]
    assert store.epoch_table(whole) == store.epoch_table(pieces)


@pytest.mark.parametrize("applied_before_resume", [True, False])
def test_a_resumed_run_keeps_one_row_per_epoch(store, applied_before_resume):
    """Died after epoch 2's metrics but before its checkpoint; resumed from epoch 1."""
    run_id = store.create_run(RunSpec())
    crashed = _events()[:5]  # started, epoch 1, epoch 2 (its checkpoint never written)
    crashed[4] = {**crashed[4], "val_acc": 0.9}
    resumed = [{**event, "seq": event["seq"] + 5} for event in _events()[3:]]
    restart = {"seq": 6, "t": 300.0, "type": "started", "pid": 7, "device": "cpu"}
    restart.update(resumed_from_epoch=1, best_val_acc=0.5)
    if applied_before_resume:
        store.apply(run_id, crashed, 10)
        store.update(run_id, status="crashed")
        store.apply(run_id, [restart, *resumed], 20)
    else:
        store.apply(run_id, [*crashed, restart, *resumed], 20)
    table = store.epoch_table(run_id)
    assert [row["epoch"] for row in table] == [1, 2]
    assert table[1]["val_acc"] == 0.45  # the resumed epoch 2, not the lost one
    assert store.metric_series(run_id, "step", "loss") == [(10, 1.0), (20, 0.5)]
    run = store.run(run_id)
    assert (run["status"], run["best_val_acc"], run["started_at"]) == ("completed", 0.5, 100.0)


def test_an_error_event_marks_the_run_failed_with_its_reason(store):
    run_id = store.create_run(RunSpec())
    store.apply(
        run_id,
        [
            {
                "seq": 1,
                "t": 1.0,
                "type": "error",
                "kind": "diverged",
                "message": "the loss became nan",
                "hint": "lower --lr",
            }
        ],
        50,
    )
    run = store.run(run_id)
    assert run["status"] == "failed"
    assert json.loads(run["error"])["kind"] == "diverged"


def test_listing_filters_and_sorts_in_sql(store):
    for index, arch in enumerate(["resnet20", "resnet8", "resnet20"]):
        run_id = store.create_run(RunSpec(arch=arch))
        store.update(run_id, test_acc=[0.3, 0.9, 0.6][index], status="completed")
    assert [r["arch"] for r in store.list_runs(arch="resnet20")] == ["resnet20", "resnet20"]
    assert [r["test_acc"] for r in store.list_runs(sort="test_acc")] == [0.9, 0.6, 0.3]
    assert [r["test_acc"] for r in store.list_runs(sort="test_acc", descending=False)] == [
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
    assert [r["id"] for r in store.list_runs(text=f"from:{root}")] == [child]
    assert [r["id"] for r in store.list_runs(text=f"from:{child}")] == [grandchild]
    assert store.count_runs(text=f" from:{root} ") == 1
    assert [r["id"] for r in store.lineage(grandchild)] == [child, root]
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
    assert [r["id"] for r in store.list_runs(text="base")] == [run_id]
    assert store.run(run_id)["name"] == "baseline"  # and the table is still there


def test_the_sweep_filter_finds_one_sweep_through_its_index(store):
    first = [store.create_run(RunSpec()) for _ in range(2)]
    second = [store.create_run(RunSpec()) for _ in range(3)]
    store.create_run(RunSpec(name="sweep:2"))  # a name that looks like the filter
    assert store.enqueue(first) == 1 and store.enqueue(second) == 2
    assert [r["id"] for r in store.list_runs(text="sweep:2")] == second[::-1]
    assert store.count_runs(text=" sweep:1 ") == 2
    assert store.list_runs(text="sweep:3") == []
    where, args = store._filters(None, None, None, "sweep:2")
    plan = store.query("EXPLAIN QUERY PLAN SELECT * FROM runs" + where, args)
    assert "idx_runs_sweep" in plan[0]["detail"]


def _queue_order(store: RunStore) -> list[int]:
    return [run["id"] for run in store.queued_runs()]


def test_a_queued_run_moves_one_place_up_or_down(store):
    ids = [store.create_run(RunSpec()) for _ in range(3)]
    store.enqueue(ids)
    first, second, third = ids
    assert store.move_in_queue(third, -1) is True
    assert _queue_order(store) == [first, third, second]
    assert store.move_in_queue(third, -1) is True
    assert _queue_order(store) == [third, first, second]
    assert store.move_in_queue(third, -1) is False  # first in line already
    assert store.move_in_queue(second, 1) is False  # last already
    assert store.move_in_queue(third, 1) is True
    assert _queue_order(store) == [first, third, second]
    places = [run["queue_position"] for run in store.queued_runs()]
    assert len(set(places)) == 3  # a swap never makes two runs share a place
    with pytest.raises(ValueError, match="one place"):
        store.move_in_queue(first, 2)


def test_a_run_a_worker_took_is_neither_moved_nor_cancelled(store):
    ids = [store.create_run(RunSpec()) for _ in range(3)]
    store.enqueue(ids)
    taken = store.take_next_queued(pid=4242)
    assert taken["id"] == ids[0]
    assert store.move_in_queue(ids[0], 1) is False
    assert store.move_to_front(ids[0]) is False
    assert store.cancel_queued(ids[0]) is None
    assert store.run(ids[0])["status"] == "running" and store.run(ids[0])["queue_position"] is None
    assert store.move_in_queue(ids[1], -1) is False  # the taken run is no neighbour
    assert store.move_to_front(ids[2]) is True
    assert _queue_order(store) == [ids[2], ids[1]]


def test_cancelling_a_queued_run_takes_it_out_of_the_queue_and_the_store(store):
    ids = [store.create_run(RunSpec()) for _ in range(2)]
    store.enqueue(ids)
    cancelled = store.cancel_queued(ids[0])
    assert cancelled["id"] == ids[0] and cancelled["run_dir"]
    assert store.run(ids[0]) is None
    assert _queue_order(store) == [ids[1]]
    assert store.cancel_queued(ids[0]) is None  # gone already
    launched = store.create_run(RunSpec())  # queued while being launched: not in the queue
    assert store.cancel_queued(launched) is None and store.move_to_front(launched) is False
    assert store.run(launched)["queue_position"] is None


def test_a_teacher_makes_a_student_show_under_the_from_filter(store):
    teacher = store.create_run(RunSpec())
    student = store.create_run(RunSpec(), teachers=[teacher])
    soup = store.create_run(RunSpec(), parents=[student], kind="soup")
    assert [r["id"] for r in store.list_runs(text=f"from:{teacher}")] == [student]
    assert [r["id"] for r in store.list_runs(text=f"from:{student}")] == [soup]
    assert [r["id"] for r in store.list_runs(text="soup")] == [soup]


def test_deleting_runs_removes_their_metrics(store):
    keep, drop = store.create_run(RunSpec()), store.create_run(RunSpec())
    store.apply(drop, _events(), 10)
    store.delete_runs([drop])
    assert store.run(drop) is None and store.run(keep) is not None
    assert store.connection.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a resnet-tui run store"):
        RunStore(path)
    assert path.read_bytes() == before


def test_a_store_from_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(StoreError, match="newer resnet-tui"):
        RunStore(path)


def test_a_read_only_store_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path).close()
    path.chmod(0o400)
    with pytest.raises(StoreError, match="read-only"):
        RunStore(path)


def test_a_running_run_silent_past_the_limit_is_stalled_and_each_event_is_a_sign_of_life(
    store,
):
    from engine.events import STALL_AFTER_S
    from resnet_tui.store import stalled_for

    run_id = store.create_run(RunSpec(), status="running")
    store.apply(run_id, [{"seq": 1, "t": 1000.0, "type": "heartbeat"}], 10)
    run = store.run(run_id)
    assert run["last_event_at"] == 1000.0
    assert stalled_for(run, now=1000.0 + STALL_AFTER_S - 1) is None
    assert stalled_for(run, now=1000.0 + STALL_AFTER_S + 5) == STALL_AFTER_S + 5
    store.update(run_id, status="stopped")
    assert stalled_for(store.run(run_id), now=1e12) is None  # only a live run can stall
