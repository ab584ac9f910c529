"""An engine that dies without a final event, and a run whose spec is damaged: the run says
what happened in one line (a SIGKILL as the kernel's out-of-memory killer it often is), and a
resume of a damaged run is refused before anything starts.

The runs train on the fake engine (tests/fake_engine.py): what is tested is the supervisor's
and the launcher's."""

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.runs.launcher import launch, stop
from resnet_tui.runs.ownership import Owners
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.supervisor import how_it_ended
from tests.cli.command import cli
from tests.conftest import record_fault

FAULTS = "engine faults (disk full, out of memory, bad files): named, no traceback"
DEADLINE_S = 30
TINY = {"arch": "resnet8", "width": 4, "limit": 256, "image_size": 16, "device": "cpu"}
OOM_KILLER = "killed by SIGKILL (often the kernel's out-of-memory killer)"

pytestmark = pytest.mark.usefixtures("fake_engine")


def poll(condition, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def error_of(db: Path, run_id: int) -> tuple[str, dict]:
    connection = sqlite3.connect(db)
    try:
        status, error = connection.execute(
            "SELECT status, error FROM runs WHERE id = ?", [run_id]
        ).fetchone()
    finally:
        connection.close()
    return status, json.loads(error) if error else {}


DEATHS = [
    # signal, what the message must say, what it must not, what the hint must say
    (signal.SIGKILL, OOM_KILLER, "exited with code", "--batch-size"),
    (signal.SIGSEGV, "killed by SIGSEGV without a final event", "out-of-memory", "resume"),
]


@pytest.mark.parametrize("sent, says, not_said, hint", DEATHS, ids=lambda d: str(d))
def test_an_engine_killed_by_a_signal_is_a_crashed_run_that_names_it(
    tmp_path, sent, says, not_said, hint
):
    store = RunStore(tmp_path / "runs.db")
    run_id, supervisor = launch(store, RunSpec.from_dict({**TINY, "epochs": 1000}))
    folder = store.run(run_id).folder
    engine = poll(lambda: (owners := Owners.read(folder)) and owners.engine, "the engine")
    os.kill(engine.pid, sent)
    supervisor.wait(timeout=DEADLINE_S)
    status, error = error_of(tmp_path / "runs.db", run_id)
    store.close()
    ok = (
        status == "crashed"
        and error.get("kind") == "crashed"
        and says in error.get("message", "")
        and not_said not in error.get("message", "")
        and hint in error.get("hint", "")
        and "Traceback" not in json.dumps(error)
    )
    record_fault(FAULTS, ok)
    assert ok, (status, error)


@pytest.mark.parametrize(
    "exit_code, says",
    [(-9, OOM_KILLER), (-15, "killed by SIGTERM without"), (1, "exited with code 1 without")],
)
def test_how_an_engine_ended_is_one_line(tmp_path, exit_code, says):
    (tmp_path / "engine.log").write_text("Traceback (most recent call last):\nMemoryError\n")
    message, hint = how_it_ended(exit_code, tmp_path)
    assert says in message and message.endswith("(MemoryError)") and "\n" not in message
    assert ("--batch-size" in hint) == (exit_code == -9)


SPEC_DAMAGE = [
    ("not JSON", b"{not json"),
    ("not UTF-8", b"\xff\xfe{}"),
    ("not a spec", b'{"arch": "resnet9000"}'),
]


@pytest.mark.parametrize("name, content", SPEC_DAMAGE, ids=[row[0] for row in SPEC_DAMAGE])
def test_resuming_a_run_whose_spec_is_damaged_is_refused_in_one_line(tmp_path, name, content):
    store = RunStore(tmp_path / "runs.db")
    run_id, supervisor = launch(store, RunSpec.from_dict({**TINY, "epochs": 1000}))
    poll(lambda: (store.run(run_id).epochs_done or 0) >= 1, "a checkpoint")
    assert stop(store.run(run_id))
    supervisor.wait(timeout=DEADLINE_S)
    (store.run(run_id).folder / "spec.json").write_bytes(content)
    store.close()
    resumed = cli("resume", str(run_id), "--detach", cwd=tmp_path)
    lines = resumed.stderr.strip().splitlines()
    status, _ = error_of(tmp_path / "runs.db", run_id)
    ok = (
        resumed.returncode == 2
        and len(lines) == 1
        and f"run {run_id} cannot be resumed: its spec.json is damaged" in lines[0]
        and f"--init run:{run_id}" in lines[0]
        and status == "stopped"  # untouched: nothing started
    )
    record_fault(FAULTS, ok)
    assert ok, (resumed.returncode, resumed.stderr, status)
