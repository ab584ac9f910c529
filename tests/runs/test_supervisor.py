"""The supervisor keeps runs.db true with nobody looking: epochs as they end, a killed engine
as `crashed` within seconds, one engine however many resumes race, and a stop that never
reaches a process that merely reuses a dead one's id.

What is tested is the supervisor's, so the runs train on the fake engine (tests/fake_engine.py,
a recorded run replayed without torch); tests/integration/test_faults.py kills, stops and
resumes the real one.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.runs import ownership
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.launcher import launch, stop
from resnet_tui.runs.ownership import Owners, ProcessName
from resnet_tui.runs.store import RunStore
from tests.cli.command import cli

# Deadlines are generous so that a busy machine never makes these tests flake; how fast the
# store really follows is measured in bench/run_state_latency.py.
DEADLINE_S = 30
TINY = {
    "arch": "resnet8",
    "width": 4,
    "limit": 256,
    "image_size": 16,
    "batch_size": 64,
    "device": "cpu",
}
TINY_FLAGS = [f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()]

pytestmark = pytest.mark.usefixtures("fake_engine")


def poll(condition, timeout: float = DEADLINE_S, what: str = "the condition"):
    """Wait until `condition()` is true (returning its value); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def row(db: Path, run_id: int) -> dict | None:
    """The run's row as any SQLite reader sees it: the standard library, no resnet-tui."""
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    try:
        found = connection.execute("SELECT * FROM runs WHERE id = ?", [run_id]).fetchone()
    finally:
        connection.close()
    return dict(found) if found else None


def engine_pid(run_dir: Path) -> int | None:
    owners = Owners.read(run_dir)
    return owners.engine.pid if owners and owners.engine else None


def test_a_detached_runs_epochs_and_its_killed_engine_reach_runs_db_with_nobody_looking(
    tmp_path,
):
    result = cli("run", *TINY_FLAGS, "--epochs", "1000", "--detach", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_id = int(result.stdout)
    db, folder = tmp_path / "runs.db", tmp_path / "runs" / str(run_id)
    poll(lambda: (row(db, run_id) or {}).get("epochs_done", 0) >= 2, what="two epochs")
    during = row(db, run_id)
    assert during["status"] == "running" and during["best_val_acc"] is not None
    count = sqlite3.connect(db).execute("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])
    assert count.fetchone()[0] > 0

    pid = poll(lambda: engine_pid(folder), what="the engine's pid")
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    crashed = poll(lambda: (row(db, run_id) or {})["status"] == "crashed" and row(db, run_id))
    assert time.monotonic() - killed_at < DEADLINE_S
    error = json.loads(crashed["error"])
    assert error["kind"] == "crashed" and "SIGKILL" in error["message"]
    assert crashed["epochs_done"] >= during["epochs_done"] and crashed["ended_at"]


def test_six_resumes_at_once_start_one_engine_and_the_others_say_why_in_one_line(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id, supervisor = launch(store, RunSpec.from_dict({**TINY, "epochs": 1000}))
    poll(lambda: (store.run(run_id).epochs_done or 0) >= 1, what="a checkpoint")
    assert stop(store.run(run_id))
    supervisor.wait(timeout=DEADLINE_S)
    assert store.run(run_id).status == "stopped"
    engines_before = _engines_of(tmp_path)

    command = [sys.executable, "-m", "resnet_tui", "resume", str(run_id), "--detach"]
    racers = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    results = [(racer.wait(timeout=60), *racer.communicate()) for racer in racers]
    started = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] != 0]
    assert len(started) == 1, results
    assert all(code == 2 for code, _, _ in refused), results
    for _, _, stderr in refused:
        lines = stderr.decode().strip().splitlines()
        assert (
            len(lines) == 1 and lines[0].startswith("error: run ") and "Traceback" not in lines[0]
        )
    poll(lambda: len(_engines_of(tmp_path)) > len(engines_before), what="the resumed engine")
    time.sleep(2)  # any second engine would be up by now
    assert len(_engines_of(tmp_path)) - len(engines_before) == 1
    assert stop(store.run(run_id))
    poll(lambda: store.run(run_id).status == "stopped", what="the stop")
    store.close()


def _engines_of(folder: Path) -> list[int]:
    """Engine processes training a run of the store in `folder` (the real engine's or the
    fake's: `python -m MODULE run --spec ...`)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if " run --spec " in command and str(folder) in command:
            found.append(int(proc.name))
    return found


def test_a_stop_never_reaches_a_process_that_reuses_a_dead_ones_id(tmp_path):
    """The owner file names the engine by id and start time: a newcomer with that id (here a
    `sleep`, given the id of the engine as the file remembers it) is left alone."""
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run(RunSpec(), status="running")
    run = store.run(run_id)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        started = ProcessName.of(stranger.pid).started
        assert started > 0, "this test needs /proc"
        Owners(ProcessName(999_999, 1), ProcessName(stranger.pid, started - 1)).write(run.folder)
        store.update(run_id, pid=stranger.pid)
        assert stop(store.run(run_id)) is False
        time.sleep(0.2)
        assert stranger.poll() is None  # not signalled
        Owners(ProcessName(999_999, 1), ProcessName(stranger.pid, started)).write(run.folder)
        assert stop(store.run(run_id)) is True  # the very process it names: signalled
        assert stranger.wait(timeout=5) == -signal.SIGINT
    finally:
        stranger.kill()
        store.close()


def test_a_run_whose_supervisor_was_killed_is_caught_up_by_the_next_viewer(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id, supervisor = launch(store, RunSpec.from_dict({**TINY, "epochs": 4}))
    folder = store.run(run_id).folder
    poll(lambda: engine_pid(folder), what="the engine")
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait()
    assert not ownership.supervised(folder)  # the kernel let go of the lock
    engine = engine_pid(folder)
    poll(lambda: not ownership.process_alive(engine), timeout=120, what="the engine's end")
    assert store.run(run_id).status == "running"  # nobody has looked yet
    catch_up(store)
    run = store.run(run_id)
    assert (run.status, run.epochs_done) == ("completed", 4)
    assert run.test_acc is not None
    store.close()


def test_a_forged_line_in_the_log_is_skipped_and_logged_and_the_run_goes_on(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id, supervisor = launch(store, RunSpec.from_dict({**TINY, "epochs": 3}))
    folder = store.run(run_id).folder
    poll(lambda: (folder / "events.jsonl").exists(), what="the log")
    with open(folder / "events.jsonl", "a") as log:  # between two of the engine's lines
        log.write('{"seq": 9999999, "t": 1, "type": "epoch_ended", "epoch": "lots"}\n')
    supervisor.wait(timeout=120)
    run = store.run(run_id)
    assert (run.status, run.epochs_done) == ("completed", 3)
    assert (
        "'epoch' of an epoch_ended event should be int" in (folder / "supervisor.log").read_text()
    )
    store.close()
