"""Fault injection: killed engines, shared stores and racing migrations lose nothing.

Each kill trial stops the engine of one run with SIGKILL at a random moment after a
checkpoint, waits for its supervisor to mark the run crashed, checks that the store holds
exactly what the events file held before the kill (by replaying the file into a fresh store
and comparing), and resumes the run, which in the end has exactly one row per epoch. Two
engines and two viewers share one store for 15 s; four processes migrate one old store at
once. The results go into the table the suite prints last (tests/conftest.py).

The kills, and the stops the moment a run starts, are of the real engine: how it ends (its
checkpoints, its last event, its exit) is the point. Where only the supervisors and the
store are (a shared store, a hang-up), runs train on the fake engine (tests/fake_engine.py).
"""

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.runs.follower import RunFollower
from resnet_tui.runs.launcher import launch
from resnet_tui.runs.ownership import Owners
from resnet_tui.runs.schema import SCHEMA_VERSION
from resnet_tui.runs.store import RunStore
from tests.cli.command import TINY, cli, runs_json
from tests.conftest import record_fault
from tests.event_log import logged
from tests.fake_engine import EPOCH_S_VARIABLE
from tests.runs.old_stores import back_to_version_one

# A run that trains in a second or two on a CPU, as a spec's options.
TINY_SPEC = {"arch": "resnet8", "width": 4, "limit": 128, "image_size": 16, "device": "cpu"}
TRIALS = 6
EPOCHS = 1000  # more than the trials get through: the run is stopped after the last one
KILLED = "engine killed (SIGKILL) at a random moment"
# How long a supervisor may take to record its engine's death (it looks four times a second).
CRASH_NOTICED_S = 30


def the_run(cwd: Path) -> dict:
    [run] = runs_json(cwd)
    return run


def wait_until(condition, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def engine_of(db: Path) -> int | None:
    """The process id of the engine of the store's one run once it is running and its
    supervisor has started the engine (None before). The row's pid is the supervisor's; the
    engine's is in the run folder's supervisor.json."""
    try:
        with sqlite3.connect(db) as connection:
            row = connection.execute("SELECT status, run_dir FROM runs").fetchone()
    except sqlite3.OperationalError:  # the table is still being made
        return None
    if not row or row[0] != "running" or not row[1]:
        return None
    owners = Owners.read(db.parent / row[1])  # kept relative to the store
    return owners.engine.pid if owners is not None and owners.engine is not None else None


def metric_rows(db: Path, run_id: int) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT seq, epoch, step, split, name, value FROM metrics WHERE run_id = ? "
            "ORDER BY seq, split, name",
            [run_id],
        ).fetchall()


def replayed_rows(events_file: Path, scratch: Path) -> tuple[list[tuple], int]:
    """The metric rows and last sequence number a store gets from the whole file at once:
    a run of a fresh store in the folder `scratch`, given a copy of the file and followed
    in one poll."""
    scratch.mkdir()
    store = RunStore(scratch / "runs.db")
    run_id = store.create_run(RunSpec())
    run = store.run(run_id)
    assert run is not None
    shutil.copyfile(events_file, run.events_path)
    RunFollower(store, run).poll()
    replayed = store.run(run_id)
    assert replayed is not None
    store.close()
    return metric_rows(scratch / "runs.db", run_id), replayed.last_seq


def checkpoints_written(events_file: Path) -> int:
    events = logged(events_file)
    return sum(e["type"] == ev.CHECKPOINT for e in events)


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing_and_the_run_resumes_each_time(tmp_path):
    # The real engine: what a kill at any moment leaves (a torn line, checkpoints written
    # to a temporary name) and what its resume makes of it are the engine's.
    rng = random.Random(0)
    args = [*TINY, "--epochs", str(EPOCHS), "--detach"]
    run_id = int(cli("run", *args, cwd=tmp_path).stdout)
    events_file = tmp_path / "runs" / str(run_id) / "events.jsonl"
    for trial in range(TRIALS):
        before = checkpoints_written(events_file)
        wait_until(lambda before=before: checkpoints_written(events_file) > before)
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere in the next epoch, or at its end
        run = the_run(tmp_path)
        assert run["status"] == "running", f"trial {trial}: {run['status']}"
        pid = engine_of(tmp_path / "runs.db")  # the supervisor's child, not the row's pid
        assert pid is not None and pid != run["pid"], f"trial {trial}"
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists() or _zombie(pid))

        # The engine is gone without a final event: its supervisor marks the run crashed.
        wait_until(lambda: the_run(tmp_path)["status"] != "running", CRASH_NOTICED_S)
        run = the_run(tmp_path)
        assert run["status"] == "crashed", f"trial {trial}: {run['status']}"
        assert run["error"]["kind"] == "crashed", f"trial {trial}: {run['error']}"
        expected, last_seq = replayed_rows(events_file, tmp_path / f"replay{trial}")
        kept = metric_rows(tmp_path / "runs.db", run_id)
        lost = len(set(expected) - set(kept)) + len(kept) - len(set(kept))
        resumed = cli("resume", str(run_id), "--detach", cwd=tmp_path)
        record_fault(KILLED, resumed.returncode == 0 and kept == expected, lost)
        assert kept == expected and run["last_seq"] == last_seq, f"trial {trial}"
        assert resumed.returncode == 0, resumed.stderr

    before = checkpoints_written(events_file)  # the last resume is under way: stop it
    wait_until(lambda: checkpoints_written(events_file) > before)
    assert cli("stop", str(run_id), cwd=tmp_path).returncode == 0
    wait_until(lambda: the_run(tmp_path)["status"] == "stopped")
    done = the_run(tmp_path)["epochs_done"]
    shown = json.loads(cli("show", str(run_id), "--json", cwd=tmp_path).stdout)
    assert [row["epoch"] for row in shown["epoch_table"]] == list(range(1, done + 1))


def _zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


VIEWER = """
import sys, time
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.store import RunStore
store = RunStore(sys.argv[1])
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    catch_up(store)
    store.list_runs(limit=50)
    time.sleep(0.02)
"""
SHARED_FOR_S = 15
SHARED = f"two engines and two viewers on one runs.db, {SHARED_FOR_S} s"


@pytest.mark.slow
def test_two_engines_and_two_viewers_share_one_store_without_locks_or_lost_rows(
    tmp_path, fake_engine
):
    args = [*TINY, "--epochs", "1000", "--detach"]
    run_ids = [int(cli("run", *args, cwd=tmp_path).stdout) for _ in range(2)]
    viewers = [
        subprocess.Popen(
            [sys.executable, "-c", VIEWER, str(tmp_path / "runs.db"), str(SHARED_FOR_S)],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [viewer.communicate(timeout=SHARED_FOR_S + 60)[1] for viewer in viewers]
    for run_id in run_ids:
        assert cli("stop", str(run_id), cwd=tmp_path).returncode == 0
    wait_until(lambda: all(r["status"] == "stopped" for r in runs_json(tmp_path)))

    last_seqs = {run["id"]: run["last_seq"] for run in runs_json(tmp_path)}
    for index, run_id in enumerate(run_ids):
        events_file = tmp_path / "runs" / str(run_id) / "events.jsonl"
        expected, last_seq = replayed_rows(events_file, tmp_path / f"replay{index}")
        kept = metric_rows(tmp_path / "runs.db", run_id)
        lost = len(set(expected) - set(kept)) + len(kept) - len(set(kept))
        viewer_ok = viewers[index].returncode == 0 and "locked" not in outputs[index]
        record_fault(SHARED, viewer_ok and kept == expected, lost)
        assert viewer_ok, outputs[index]
        assert kept == expected and len(expected) > 20
        assert last_seqs[run_id] == last_seq


OPENER = """
import sys
from resnet_tui.runs.store import RunStore
RunStore(sys.argv[1]).close()
"""


def test_processes_opening_an_old_store_at_once_migrate_it_once(tmp_path):
    path = tmp_path / "runs.db"
    store = RunStore(path)
    store.create_run(RunSpec(name="kept"))
    store.close()
    back_to_version_one(path)
    openers = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(path)], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [opener.communicate(timeout=60)[1] for opener in openers]
    survived = all(opener.returncode == 0 for opener in openers)
    record_fault("four processes migrating one old runs.db at once", survived)
    assert survived, errors
    store = RunStore(path)
    assert store.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    [run] = store.list_runs()
    assert run.name == "kept" and run.teachers == () and run.sweep is None


@pytest.mark.slow
def test_a_stop_sent_the_moment_a_run_starts_stops_it_cleanly(tmp_path):
    """SIGINT and SIGTERM sent before the supervisor and its engine have caught them wait
    (each is started with them blocked) and stop the run with a checkpoint, rather than
    killing it: the supervisor lives to pass the stop on, and the engine ends the run with a
    final `stopped` event (a killed engine writes none, and its run is crashed)."""
    # The real engine: a signal that comes before its handlers, and its checkpoint and last
    # event on a stop, are the engine's.
    store = RunStore(tmp_path / "runs.db")
    spec = RunSpec.from_dict({**TINY_SPEC, "epochs": 50})
    for signum, after_s in [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.03)]:
        run_id, supervisor = launch(store, spec)
        time.sleep(after_s)  # 0.03 s: the interpreter is starting, no handler of ours yet
        supervisor.send_signal(signum)
        supervisor.wait(timeout=120)
        run = store.run(run_id)
        assert run is not None
        last = logged(run.events_path)[-1]
        engine_stopped = last["type"] == ev.FINISHED and last["status"] == "stopped"
        survived = supervisor.returncode == 0 and engine_stopped and run.status == "stopped"
        record_fault("SIGINT or SIGTERM the moment the engine starts", survived)
        assert survived, (supervisor.returncode, run.status, run.error, last)
        assert (run.folder / "checkpoints" / "last.pt").is_file()


def test_a_hang_up_of_a_foreground_run_does_not_reach_the_engine(
    tmp_path, fake_engine, monkeypatch
):
    """SSH dropping sends SIGHUP to the terminal's process group: the `resnet-tui run` that
    was following the run dies of it, the engine (in a session of its own, and ignoring
    hang-ups anyway) trains on to the end, and the next look finds the run completed. The
    fake engine ignores a hang-up as the engine does: with the contract's `StopRequest`,
    installed first thing."""
    monkeypatch.setenv(EPOCH_S_VARIABLE, "1")  # the engine still trains when the hang-up comes
    # A suite started under nohup passes its ignored SIGHUP down; a terminal's process
    # does not ignore it, so the follower starts with the default (an ignore survives exec).
    ignored = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        follower = subprocess.Popen(
            [sys.executable, "-m", "resnet_tui", "run", *TINY, "--epochs", "4"],
            cwd=tmp_path,
            env={**os.environ, "RESNET_TUI_DATA": str(tmp_path / "data")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        signal.signal(signal.SIGHUP, ignored)
    # Watched straight from the store, so the hang-up comes the moment the engine starts,
    # before it could set SIGHUP aside itself (a `runs --json` per look is slow enough for
    # a tiny run to finish first).
    db = tmp_path / "runs.db"
    wait_until(lambda: db.exists() and engine_of(db) is not None)
    engine_pid = engine_of(db)
    os.killpg(follower.pid, signal.SIGHUP)
    os.kill(engine_pid, signal.SIGHUP)  # as if it had reached the engine too
    follower.wait(timeout=30)
    wait_until(lambda: the_run(tmp_path)["status"] != "running")
    run = the_run(tmp_path)
    survived = follower.returncode == -signal.SIGHUP and run["status"] == "completed"
    record_fault("SIGHUP to a foreground `resnet-tui run` (SSH dropped)", survived)
    assert follower.returncode == -signal.SIGHUP
    assert run["status"] == "completed" and run["epochs_done"] == 4
