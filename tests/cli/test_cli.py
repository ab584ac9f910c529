"""`resnet-tui` as a user runs it: real subprocesses, a real runs.db, a real engine."""

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from PIL import Image

from tests.cli.command import cli, runs_json
from tests.conftest import record_fault

BAD_INPUT = "bad input: one line on stderr, exit code 2"

PARTS = ["stem", "stage1", "stage2", "stage3", "head"]
TINY = [
    "--arch",
    "resnet8",
    "--width",
    "4",
    "--limit",
    "256",
    "--image-size",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--device",
    "cpu",
]


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

    shown = cli("show", "1", cwd=tmp_path)
    assert shown.returncode == 0 and "Epochs" in shown.stdout and "macro-F1" in shown.stdout
    listed = cli("runs", cwd=tmp_path)
    assert "tiny" in listed.stdout and "completed" in listed.stdout
    removed = cli("rm", "1", "--yes", cwd=tmp_path)
    assert removed.returncode == 0
    assert runs_json(tmp_path) == [] and not folder.exists()


def test_json_mode_prints_events_and_a_config_file_sets_options(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'arch = "resnet8"\nwidth = 4\nlimit = 128\nimage-size = 16\nepochs = 3\n'
        'batch_size = 64\ndevice = "cpu"\n'
    )
    result = cli("run", "--config", str(config), "--epochs", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["type"] == "started" and events[-1]["type"] == "finished"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    [run] = runs_json(tmp_path)
    assert run["epochs"] == 1  # the flag overrides the file
    assert run["spec"]["limit"] == 128


def test_detach_returns_at_once_and_the_run_finishes_on_its_own(tmp_path):
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


def test_a_stopped_run_resumes_in_place_and_completes(tmp_path):
    # Epochs of a second or so: the stop lands well before the last one.
    args = [*TINY, "--epochs", "8", "--limit", "1024", "--detach"]
    run_id = int(cli("run", *args, cwd=tmp_path).stdout)
    assert "nothing to resume" in cli("resume", str(run_id), cwd=tmp_path).stderr
    deadline = time.time() + 120
    while not (tmp_path / "runs" / str(run_id) / "checkpoints" / "last.pt").exists():
        assert time.time() < deadline, "no checkpoint"
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
    shown = json.loads(cli("show", str(run_id), "--json", cwd=tmp_path).stdout)
    assert [row["epoch"] for row in shown["epoch_table"]] == list(range(1, 9))
    again = cli("resume", str(run_id), cwd=tmp_path)
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


BAD_INPUTS = [
    (["--arch", "resnet21"], "did you mean"),
    (["--dataset", "mnistt"], "did you mean mnist"),
    (["--optimizer", "sgdd"], "did you mean sgd"),
    (["--schedule", "cosin"], "did you mean cosine"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--lr", "-0.1"], "--lr must be a positive number"),
    (["--epochs", "0"], "--epochs must be a positive number"),
    (["--batch-size", "-4"], "--batch-size must be a positive number"),
    (["--epochs", "abc"], "--epochs"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--dataset", "mnist"], "add --download"),
    (["--classes", "0,99"], "no class '99'"),
    (["--classes", "circle"], "at least two classes"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--no-such-flag"], "No such option"),
    (["--config", "missing.toml"], "does not exist"),
    (["--init", "run:7"], "there is no run 7"),
    (["--init", "run:x"], "write run:ID"),
    (["--init", "imagenet"], "resnet8 has no ImageNet weights"),
    (["--init", "file:missing.pt"], "there is no such file"),
    (["--init", "weights.bin"], "unknown --init"),
    (["--freeze", "last-0"], "write last-K"),
    (["--freeze", "heads"], "did you mean head"),
    (["--freeze", "lp-ft", "--epochs", "2", "--probe-epochs", "2"], "no epoch to fine-tune"),
    (["--head", "conv"], "unknown head"),
    (["--bn", "sync"], "BatchNorm mode"),
    (["--layer-decay", "1.5"], "--layer-decay must be above 0"),
    (["--l2sp", "0.1"], "scratch does not have"),
    (["--teacher", "run:9"], "--teacher run:9: there is no run 9"),
    (["--teacher", "file:t.pt"], "a teacher is a run in the store"),
    (["--teacher", "run:1", "--kd-alpha", "2"], "--kd-alpha must be between 0 and 1"),
    (["--teacher", "run:1", "--kd-temperature", "0"], "--kd-temperature must be a positive"),
    (["--lwf", "0.5"], "give the source with --init run:ID"),
    (["--lr", "nan"], "--lr must be a finite number"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gets_one_line_and_exit_code_2(tmp_path, args, message):
    result = cli("run", *args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started
    record_fault(BAD_INPUT, True)


def test_a_run_starts_from_an_earlier_one_and_the_store_keeps_the_lineage(tmp_path):
    assert cli("run", *TINY, cwd=tmp_path).returncode == 0
    other_arch = cli("run", *TINY, "--arch", "resnet20", "--init", "run:1", cwd=tmp_path)
    assert other_arch.returncode == 2
    assert "run 1 is a resnet8 and this run a resnet20" in other_arch.stderr
    child = cli("run", *TINY, "--init", "run:1", "--classes", "0,1,2", cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    assert "weights from run:1:" in child.stdout and "a new head" in child.stdout
    grandchild = cli(
        "run",
        *TINY,
        *("--init", "run:2:last", "--keep-head", "--classes", "0,1,2", "--freeze", "lp-ft"),
        cwd=tmp_path,
    )
    assert grandchild.returncode == 0, grandchild.stderr
    assert "the source head kept" in grandchild.stdout
    runs = {run["id"]: run for run in runs_json(tmp_path)}
    assert [runs[i]["parents"] for i in (1, 2, 3)] == [[], [1], [2]]
    shown = cli("show", "3", cwd=tmp_path).stdout
    assert "started from run 2" in " ".join(shown.split()) and "run 1" in shown
    assert "a new head" not in shown and "the source head kept" in shown
    assert "policy epoch 1: head train" in shown
    assert "policy epoch 2: stem, stage1, stage2, stage3, head train" in shown
    policy = json.loads(cli("show", "3", "--json", cwd=tmp_path).stdout)["policy"]
    assert [event["training"] for event in policy] == [["head"], PARTS]


def test_bad_files_get_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "empty").mkdir()
    single = tmp_path / "single" / "cats"
    single.mkdir(parents=True)
    (single / "a.png").write_bytes(b"")
    (tmp_path / "broken.toml").write_text("epochs = = 3\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "notes.db").write_text("not sqlite at all\n" * 50)
    readonly = tmp_path / "ro.db"
    assert cli("runs", "--db", str(readonly), cwd=tmp_path).returncode == 0
    readonly.chmod(0o400)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    with open(evil, "wb") as file:
        pickle.dump({"model": RunsCode(f"touch {marker}")}, file, protocol=2)
    folder = tmp_path / "pictures"
    for split in ("train", "val"):
        for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            (folder / split / name).mkdir(parents=True)
            for index in range(4):
                image = Image.new("RGB", (16, 16), colour)
                image.save(folder / split / name / f"{index}.png")
    (folder / "train" / "red" / "broken.png").write_bytes(b"not a png")
    cases = [
        (["run", "--dataset", f"imagefolder:{tmp_path / 'empty'}"], "no images found"),
        (["run", "--dataset", f"imagefolder:{tmp_path / 'nowhere'}"], "does not exist"),
        (["run", "--dataset", f"imagefolder:{tmp_path / 'single'}"], "only one class"),
        (["run", "--config", str(tmp_path / "broken.toml")], "not valid TOML"),
        (["run", "--config", str(tmp_path / "list.json")], "table of option names"),
        (["run", "--db", str(tmp_path / "notes.db")], "not a resnet-tui run store"),
        (["run", "--db", str(readonly)], "read-only"),
        (["runs", "--sort", "accuracy"], "unknown sort column"),
        (["run", "--init", "run:abc"], "--init run:abc: write run:ID or run:ID:last"),
        (["run", "--config", "[red]:x:.toml"], "config file [red]:x:.toml does not exist"),
        (["--db", str(tmp_path / "notes.db")], "not a resnet-tui run store"),
        (["show", "42"], "no run 42"),
        (["resume", "42"], "no run 42"),
        (["resume", "42", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", *TINY, "--init", f"file:{garbage}"], "cannot be read as weights"),
        (["run", *TINY, "--init", f"file:{evil}"], "cannot be read as weights"),
        (["run", *TINY, "--dataset", f"imagefolder:{folder}", "--workers", "0"], "broken.png"),
        (["ensemble", "42", "43"], "there is no run 42"),
        (["soup", "42"], "a soup needs two runs or more"),
        (["ensemble", "42"], "an ensemble needs two runs or more"),
        (["soup", "42", "--with-init", "x"], "--with-init must be a number from 0 to 1"),
    ]
    for args, message in cases:
        result = cli(*args, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
        record_fault(BAD_INPUT, True)
    assert (tmp_path / "notes.db").read_text().startswith("not sqlite")
    assert not marker.exists()  # the pickle's code never ran


class RunsCode:
    """Pickles as a call of os.system: loading it unsafely would run the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


@pytest.mark.skipif(
    subprocess.run(
        [sys.executable, "-c", "import torch; assert not torch.cuda.is_available()"]
    ).returncode
    != 0,
    reason="this machine has a CUDA device",
)
def test_a_device_that_is_not_there_is_exit_2_and_no_run_stays_running(tmp_path):
    result = cli("run", *TINY[:-2], "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not available" in lines[0]
    [run] = runs_json(tmp_path)
    assert run["status"] == "failed" and run["error"]["kind"] == "device_missing"


def test_catalog_commands_list_what_can_be_chosen(tmp_path):
    archs = json.loads(cli("archs", "--json", cwd=tmp_path).stdout)
    names = {a["name"] for a in archs}
    assert {"resnet20", "plain110", "resnet50", "resnext50_32x4d", "cnn"} <= names
    datasets = {d["name"]: d for d in json.loads(cli("datasets", "--json", cwd=tmp_path).stdout)}
    assert datasets["shapes"]["status"] == "built in"
    assert datasets["mnist"]["status"] == "not downloaded"
    devices = json.loads(cli("devices", "--json", cwd=tmp_path).stdout)
    assert devices[0]["name"] == "cpu"
    assert cli("--help", cwd=tmp_path).returncode == 0


def test_the_bare_command_refuses_a_bad_store_in_one_line(tmp_path):
    (tmp_path / "runs.db").write_text("a shopping list, not a database\n" * 40)
    result = cli(cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a resnet-tui run store" in lines[0]


def test_a_live_engine_that_writes_nothing_shows_as_stalled_not_crashed(tmp_path):
    from engine.contract.spec import RunSpec
    from resnet_tui.runs.store import RunStore

    hung = subprocess.Popen(["sleep", "60"])  # an engine that lives but says nothing
    try:
        store = RunStore(tmp_path / "runs.db")
        run_id = store.create_run(RunSpec(), status="running")
        store.update(run_id, pid=hung.pid, last_event_at=time.time() - 1000)
        store.close()
        listed = cli("runs", cwd=tmp_path)
        assert "stalled 16:4" in listed.stdout
        [run] = runs_json(tmp_path)
        assert run["status"] == "running" and run["stalled_for"] > 999
        [stalled] = json.loads(cli("runs", "--status", "stalled", "--json", cwd=tmp_path).stdout)
        assert stalled["id"] == run_id
    finally:
        hung.kill()
        hung.wait()
    [run] = runs_json(tmp_path)
    assert run["status"] == "crashed" and run["stalled_for"] is None
    assert json.loads(cli("runs", "--status", "stalled", "--json", cwd=tmp_path).stdout) == []
    nothing = cli("runs", "--status", "stalled", cwd=tmp_path).stdout
    assert "no stalled runs in runs.db (1 run in all)" in nothing
