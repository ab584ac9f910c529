"""SIGTERM to a foreground `resnet-tui run` stops its run as Ctrl-C does, leaving no engine."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from resnet_tui.runs.ownership import Owners
from tests.cli.command import TINY, runs_json
from tests.conftest import record_fault
from tests.fake_engine import WAIT_AFTER_EPOCH_VARIABLE
from tests.integration.test_faults import engine_of, wait_until


def _alive(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_sigterm_to_a_foreground_run_stops_it_cleanly(tmp_path, fake_engine, monkeypatch):
    """The follower passes the stop on: the engine finishes its step and keeps `last`, the
    run ends `stopped`, the follower exits 130 (as after Ctrl-C) and no engine is left."""
    monkeypatch.setenv(WAIT_AFTER_EPOCH_VARIABLE, "1")  # trains on until it is asked to stop
    follower = subprocess.Popen(
        [sys.executable, "-m", "resnet_tui", "run", *TINY, "--epochs", "50"],
        cwd=tmp_path,
        env={**os.environ, "RESNET_TUI_DATA": str(tmp_path / "data")},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    db = tmp_path / "runs.db"
    wait_until(lambda: db.exists() and engine_of(db) is not None, timeout=60)
    engine_pid = engine_of(db)
    assert engine_pid is not None
    follower.send_signal(signal.SIGTERM)
    out, err = follower.communicate(timeout=60)
    [run] = runs_json(tmp_path)
    owners = Owners.read(Path(run["run_dir"]))
    last = Path(run["run_dir"]) / "checkpoints" / "last.pt"
    survived = (
        follower.returncode == 130
        and run["status"] == "stopped"
        and last.is_file()
        and not _alive(engine_pid)
    )
    record_fault("SIGTERM to a foreground `resnet-tui run`: stopped, last kept", survived)
    assert follower.returncode == 130, (out, err)
    assert "stopping after this step" in err
    assert run["status"] == "stopped", run
    assert last.is_file()
    assert not _alive(engine_pid)
    assert owners is None or owners.engine is None or not _alive(owners.engine.pid)
