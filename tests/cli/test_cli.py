"""`resnet-tui run` and what follows a run, in a real runs.db.

The runs that matter as a user starts them (end to end, --detach, stop and resume, Ctrl-C)
run `resnet-tui` in a subprocess; the rest run it in the test's process (`invoke`). The
engine is the real one where what it trains is the point (a run end to end, Ctrl-C, real
MNIST, weights from an earlier run); where the command is the point (--json, --detach, stop
and resume) it is the torch-free fake that replays a recorded run.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.cli.command import TINY, cli, invoke, runs_json
from tests.fake_engine import WAIT_AFTER_EPOCH_VARIABLE

# Every test here trains: they start first on the xdist workers.
pytestmark = pytest.mark.slow

PARTS = ["stem", "stage1", "stage2", "stage3", "head"]


def test_a_tiny_run_completes_and_lands_in_the_store(tmp_path):
    result = cli("run", *TINY, "--name", "tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed run 1" in result.stdout
    assert "Confusion matrix" in result.stdout
    [run] = runs_json(tmp_path)
    assert run["name"] == "tiny" and run["status"] == "completed"
    assert run["epochs_done"] == 2 and 0 <= run["test_acc"] <= 1
    assert run["spec"]["arch"] == "resnet8" and run["spec"]["width"] == 4
    assert set(run["test_report"]) >= {"top1", "top5", "macro_f1", "auroc", "confusion"}
    folder = tmp_path / "runs" / "1"
    assert (folder / "spec.json").exists() and (folder / "engine.log").exists()
    assert (folder / "checkpoints" / "last.pt").exists()
    assert (folder / "checkpoints" / "best.pt").exists()
    types = [
        json.loads(line)["type"] for line in (folder / "events.jsonl").read_text().splitlines()
    ]
    assert types[0] == "started" and types[-1] == "finished"
    with sqlite3.connect(tmp_path / "runs.db") as db:
        epochs = db.execute("SELECT count(*) FROM metrics WHERE run_id = 1 AND split = 'val'")
        assert epochs.fetchone()[0] == 4  # loss and accuracy of two epochs

    shown = invoke("show", "1", cwd=tmp_path)
    assert shown.returncode == 0 and "Epochs" in shown.stdout and "macro-F1" in shown.stdout
    listed = invoke("runs", cwd=tmp_path)
    assert "tiny" in listed.stdout and "completed" in listed.stdout
    removed = invoke("rm", "1", "--yes", cwd=tmp_path)
    assert removed.returncode == 0
    assert runs_json(tmp_path) == [] and not folder.exists()


def test_json_mode_prints_events_and_a_config_file_sets_options(tmp_path, fake_engine):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'arch = "resnet8"\nwidth = 4\nlimit = 128\nimage-size = 16\nepochs = 3\n'
        'batch_size = 64\ndevice = "cpu"\n'
    )
    result = invoke("run", "--config", str(config), "--epochs", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["type"] == "started" and events[-1]["type"] == "finished"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    [run] = runs_json(tmp_path)
    assert run["epochs"] == 1  # the flag overrides the file
    assert run["spec"]["limit"] == 128


def test_detach_returns_at_once_and_the_run_finishes_on_its_own(tmp_path, fake_engine):
    result = cli("run", *TINY, "--detach", cwd=tmp_path)
    assert result.returncode == 0
    run_id = int(result.stdout.strip())
    deadline = time.time() + 120
    while time.time() < deadline:
        [run] = runs_json(tmp_path)
        if run["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    assert run["id"] == run_id and run["status"] == "completed"
    assert run["epochs_done"] == 2


def test_a_stopped_run_resumes_in_place_and_completes(tmp_path, fake_engine, monkeypatch):
    # The engine waits for the stop after its second epoch, however slow the machine.
    monkeypatch.setenv(WAIT_AFTER_EPOCH_VARIABLE, "2")
    args = [*TINY, "--epochs", "8", "--limit", "1024", "--detach"]
    run_id = int(cli("run", *args, cwd=tmp_path).stdout)
    assert "nothing to resume" in invoke("resume", str(run_id), cwd=tmp_path).stderr
    deadline = time.time() + 120
    while runs_json(tmp_path)[0]["epochs_done"] < 2:
        assert time.time() < deadline, "no second epoch"
        time.sleep(0.2)
    stopping = cli("stop", str(run_id), cwd=tmp_path)
    assert stopping.returncode == 0 and f"run {run_id} stopped after" in stopping.stdout
    [stopped] = runs_json(tmp_path)  # `stop` returns once the run has stopped
    assert stopped["status"] == "stopped" and stopped["epochs_done"] < 8

    # At once, as a script would: the departing supervisor is waited for, not refused.
    resumed = cli("resume", str(run_id), "--device", "CPU", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    [run] = runs_json(tmp_path)
    assert run["status"] == "completed" and run["epochs_done"] == 8 and run["test_acc"]
    assert run["device"] == "cpu" and run["spec"]["device"] == "cpu"
    shown = json.loads(invoke("show", str(run_id), "--json", cwd=tmp_path).stdout)
    assert [row["epoch"] for row in shown["epoch_table"]] == list(range(1, 9))
    again = invoke("resume", str(run_id), cwd=tmp_path)
    assert again.returncode == 2 and "completed, so there is nothing to resume" in again.stderr
    assert f"--init run:{run_id}" in again.stderr


def test_ctrl_c_stops_the_run_cleanly_and_keeps_its_checkpoint(tmp_path):
    env = {**os.environ, "RESNET_TUI_DATA": str(tmp_path / "data")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "resnet_tui",
            "run",
            "--arch",
            "resnet8",
            "--width",
            "4",
            "--image-size",
            "16",
            "--epochs",
            "50",
            "--device",
            "cpu",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    for line in process.stdout:
        if json.loads(line)["type"] == "epoch_started":
            break
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert process.returncode == 130
    [run] = runs_json(tmp_path)
    assert run["status"] == "stopped"
    assert (tmp_path / "runs" / "1" / "checkpoints" / "last.pt").exists()


def test_real_mnist_one_epoch_on_a_subset_beats_90_percent(tmp_path, mnist_root):
    result = cli(
        "run",
        "--dataset",
        "mnist",
        "--data-root",
        str(mnist_root),
        "--arch",
        "resnet8",
        "--limit",
        "6000",
        "--width",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    [run] = runs_json(tmp_path)
    assert run["test_report"]["samples"] == 10_000
    assert run["test_acc"] > 0.90


def test_a_run_starts_from_an_earlier_one_and_the_store_keeps_the_lineage(tmp_path):
    assert invoke("run", *TINY, cwd=tmp_path).returncode == 0
    other_arch = invoke("run", *TINY, "--arch", "resnet20", "--init", "run:1", cwd=tmp_path)
    assert other_arch.returncode == 2
    assert "run 1 is a resnet8 and this run a resnet20" in other_arch.stderr
    child = invoke("run", *TINY, "--init", "run:1", "--classes", "0,1,2", cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    assert "weights from run:1:" in child.stdout and "a new head" in child.stdout
    grandchild = invoke(
        "run",
        *TINY,
        *("--init", "run:2:last", "--keep-head", "--classes", "0,1,2", "--freeze", "lp-ft"),
        *("--probe", "sgd"),
        cwd=tmp_path,
    )
    assert grandchild.returncode == 0, grandchild.stderr
    assert "the source head kept" in grandchild.stdout
    runs = {run["id"]: run for run in runs_json(tmp_path)}
    assert [runs[i]["parents"] for i in (1, 2, 3)] == [[], [1], [2]]
    shown = invoke("show", "3", cwd=tmp_path).stdout
    assert "started from run 2" in " ".join(shown.split()) and "run 1" in shown
    assert "a new head" not in shown and "the source head kept" in shown
    assert "policy epoch 1: head train" in shown
    assert "policy epoch 2: stem, stage1, stage2, stage3, head train" in shown
    policy = json.loads(invoke("show", "3", "--json", cwd=tmp_path).stdout)["policy"]
    assert [event["training"] for event in policy] == [["head"], PARTS]


@pytest.mark.skipif(
    subprocess.run(
        [sys.executable, "-c", "import torch; assert not torch.cuda.is_available()"]
    ).returncode
    != 0,
    reason="this machine has a CUDA device",
)
def test_a_device_that_is_not_there_is_exit_2_and_no_run_stays_running(tmp_path):
    result = invoke("run", *TINY[:-2], "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not available" in lines[0]
    [run] = runs_json(tmp_path)
    assert run["status"] == "failed" and run["error"]["kind"] == "device_missing"
