"""Files and paths that could hang, exhaust or trip a command: each gets one line and exit
code 2, and the store is as it was (cases an outside adversarial try found)."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.runs.store import RunStore
from tests.cli.command import TINY, invoke, runs_json
from tests.conftest import record_fault
from tests.fake_engine import EPOCH_S_VARIABLE

HOSTILE_FILES = "hostile files and paths: one line, exit 2, nothing hangs"
LONG = "a" * 300  # a file name longer than any file system takes


def _nested_json(folder: Path) -> list[str]:
    (folder / "deep.json").write_text("[" * 100_000)
    return ["run", "--config", "deep.json"]


def _nested_toml(folder: Path) -> list[str]:
    (folder / "deep.toml").write_text("x = " + "[" * 5_000 + "]" * 5_000)
    return ["run", "--config", "deep.toml"]


def _fifo(folder: Path) -> list[str]:
    os.mkfifo(folder / "pipe.toml")
    return ["run", "--config", "pipe.toml"]


def _big(folder: Path) -> list[str]:
    (folder / "big.toml").write_text("# padding\n" * 200_000)
    return ["run", "--config", "big.toml"]


def _spec_of_a_stopped_run(folder: Path, text: str) -> str:
    store = RunStore(folder / "runs.db")
    run_id = store.create_run(RunSpec.from_dict({"arch": "resnet8"}), status="stopped")
    run_folder = store.run(run_id).folder
    (run_folder / "checkpoints").mkdir()
    (run_folder / "checkpoints" / "last.pt").write_bytes(b"kept")
    (run_folder / "spec.json").write_text(text)
    return str(run_id)


# (row, what makes the case and gives the command line, a fragment of the one line)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("config nested JSON", _nested_json, "nested too deeply"),
    ("config nested TOML", _nested_toml, "nested too deeply"),
    ("config a FIFO", _fifo, "is not a regular file"),
    ("config /dev/zero", lambda f: ["run", "--config", "/dev/zero"], "is not a regular file"),
    ("config over 1 MiB", _big, "is over 1 MiB"),
    ("--db too long", lambda f: ["runs", "--db", f"{LONG}.db"], "File name too long"),
    ("--db in no folder", lambda f: ["runs", "--db", "nowhere/x.db"], "there is no folder"),
    ("--init too long", lambda f: ["run", *TINY, "--init", f"file:/{LONG}"], "too long"),
    ("imagefolder too long", lambda f: ["run", "--dataset", f"imagefolder:/{LONG}"], "too long"),
    (
        "--data-root too long",
        lambda f: ["run", "--data-root", f"/{LONG}", "--dataset", "cifar10"],
        "too long",
    ),
    (
        "spec.json nested",
        lambda f: ["resume", _spec_of_a_stopped_run(f, "{" * 100_000)],
        "spec.json is damaged",
    ),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_file_or_path_gets_one_line(tmp_path, make, message):
    args = make(tmp_path)
    before = runs_json(tmp_path) if (tmp_path / "runs.db").exists() else []
    result = invoke(*args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    survived = (
        result.returncode == 2
        and len(lines) == 1
        and message in lines[0]
        and "Traceback" not in result.stderr
    )
    record_fault(HOSTILE_FILES, survived)
    assert survived, (args[:3], result.returncode, result.stderr[-500:])
    if before:
        assert runs_json(tmp_path) == before


def test_a_nested_owner_file_does_not_stop_stop(tmp_path, fake_engine):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run(RunSpec.from_dict({"arch": "resnet8"}), status="running")
    (store.run(run_id).folder / "supervisor.json").write_text("[" * 100_000)
    result = invoke("stop", str(run_id), cwd=tmp_path)
    survived = result.returncode in (1, 2) and "Traceback" not in result.stderr
    record_fault(HOSTILE_FILES, survived and result.stderr.count("\n") == 1)
    assert survived and result.stderr.count("\n") == 1, result.stderr


def test_sigterm_to_a_worker_takes_no_more_runs_and_waits_for_the_running_one(
    tmp_path, fake_engine, monkeypatch, tiny_spec_options
):
    monkeypatch.setenv(EPOCH_S_VARIABLE, "1")
    store = RunStore(tmp_path / "runs.db")
    for seed in (0, 1):
        run_id = store.create_run(RunSpec.from_dict({**tiny_spec_options, "seed": seed}))
        store.update(run_id, queue_position=float(run_id))
    worker = subprocess.Popen(
        [sys.executable, "-m", "resnet_tui", "worker", "--devices", "cpu"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while store.run(1).status != "running":
        assert time.monotonic() < deadline, "the worker took no run"
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=120)
    statuses = [store.run(run_id).status for run_id in (1, 2)]
    survived = worker.returncode == 0 and statuses == ["completed", "queued"]
    record_fault("SIGTERM to a worker: no more runs taken, the running one finishes", survived)
    assert worker.returncode == 0, err
    assert "taking no more runs" in out and statuses == ["completed", "queued"]
