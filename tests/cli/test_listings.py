"""Looking at the store and the catalog: `runs`, `rm`, `archs`, `datasets`, `devices`,
`--help` and the bare command. In the test's process (`invoke`), but for the bare command."""

import json
import subprocess
import time

import typer

import resnet_tui.cli
from engine.contract.spec import RunSpec
from resnet_tui.runs import ownership
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.store import RunStore
from tests.cli.command import cli, invoke, runs_json

COMMANDS = ["run", "runs", "show", "compare", "mistakes", "export-metrics", "predict", "export"]
COMMANDS += ["gradcam", "resume"]
COMMANDS += ["ensemble", "soup"]
COMMANDS += ["rm", "sweep", "search", "lr-find", "worker", "summary", "queue", "stop", "archs"]
COMMANDS += ["datasets"]
COMMANDS += ["devices"]
COMMANDS += ["app"]


def test_help_lists_every_command_in_the_order_a_newcomer_reads_them(tmp_path):
    assert list(typer.main.get_command(resnet_tui.cli.app).commands) == COMMANDS
    shown = invoke("--help", cwd=tmp_path)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[1].strip() == "Usage: resnet-tui [OPTIONS] COMMAND [ARGS]..."
    rows = [line for line in shown.stdout.splitlines() if line.startswith("│ ")]
    assert [row.split()[1] for row in rows if row[2:3].isalpha()] == COMMANDS


def test_catalog_commands_list_what_can_be_chosen(tmp_path):
    archs = json.loads(invoke("archs", "--json", cwd=tmp_path).stdout)
    names = {a["name"] for a in archs}
    assert {"resnet20", "plain110", "resnet50", "resnext50_32x4d", "cnn"} <= names
    listed = json.loads(invoke("datasets", "--json", cwd=tmp_path).stdout)
    datasets = {dataset["name"]: dataset for dataset in listed}
    assert datasets["shapes"]["status"] == "built in"
    assert datasets["mnist"]["status"] == "not downloaded"
    devices = json.loads(invoke("devices", "--json", cwd=tmp_path).stdout)
    assert devices[0]["name"] == "cpu"


def test_the_bare_command_refuses_a_bad_store_in_one_line(tmp_path):
    (tmp_path / "runs.db").write_text("a shopping list, not a database\n" * 40)
    result = cli(cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a resnet-tui run store" in lines[0]


def test_a_live_engine_that_writes_nothing_shows_as_stalled_not_crashed(tmp_path):
    hung = subprocess.Popen(["sleep", "60"])  # an engine that lives but says nothing
    try:
        store = RunStore(tmp_path / "runs.db")
        run_id = store.create_run(RunSpec(), status="running")
        store.update(run_id, pid=hung.pid, last_event_at=time.time() - 1000)
        store.close()
        listed = invoke("runs", cwd=tmp_path)
        assert "stalled 16:4" in listed.stdout
        [run] = runs_json(tmp_path)
        assert run["status"] == "running" and run["stalled_for"] > 999
        stalled_only = invoke("runs", "--status", "stalled", "--json", cwd=tmp_path)
        [stalled] = json.loads(stalled_only.stdout)
        assert stalled["id"] == run_id
    finally:
        hung.kill()
        hung.wait()
    [run] = runs_json(tmp_path)
    assert run["status"] == "crashed" and run["stalled_for"] is None
    assert json.loads(invoke("runs", "--status", "stalled", "--json", cwd=tmp_path).stdout) == []
    nothing = invoke("runs", "--status", "stalled", cwd=tmp_path).stdout
    assert "no stalled runs in runs.db (1 run in all)" in nothing


def test_rm_deletes_queued_and_ended_runs_with_their_folders_and_refuses_live_ones(tmp_path):
    hung = subprocess.Popen(["sleep", "60"])  # a running run's engine
    try:
        store = RunStore(tmp_path / "runs.db")
        ended = store.create_run(RunSpec(name="ended"), status="completed")
        queued = store.create_run(RunSpec(name="queued"))
        RunQueue(store).enqueue([queued])
        running = store.create_run(RunSpec(name="running"), status="running")
        store.update(running, pid=hung.pid, last_event_at=time.time())
        folders = [store.folder_of(run_id) for run_id in (ended, queued)]
        store.close()

        live = invoke("rm", str(ended), str(running), "--yes", cwd=tmp_path)
        assert live.returncode == 2 and live.stdout == ""
        assert (
            live.stderr == f"error: run {running} is still live; stop it first with "
            "`resnet-tui stop`\n"
        )
        asked = invoke("rm", str(ended), cwd=tmp_path)  # stdin is no terminal: no question
        assert asked.returncode == 2 and "add --yes to delete without asking" in asked.stderr
        assert len(runs_json(tmp_path)) == 3 and all(folder.is_dir() for folder in folders)

        removed = invoke("rm", str(ended), str(queued), "--yes", cwd=tmp_path)
        assert (removed.returncode, removed.stdout, removed.stderr) == (0, "deleted 2 runs\n", "")
        assert [run["id"] for run in runs_json(tmp_path)] == [running]
        assert not any(folder.exists() for folder in folders)
        assert json.loads(invoke("queue", "--json", cwd=tmp_path).stdout) == []
    finally:
        hung.kill()
        hung.wait()


def test_rm_leaves_a_run_that_started_between_the_look_and_the_delete(tmp_path):
    """A resume takes the run's lock before it starts the run: `rm` finds the run stopped
    when it looks, and the lock held when it deletes, so the run stays, and `rm` says so."""
    store = RunStore(tmp_path / "runs.db")
    kept, resumed = (store.create_run(RunSpec(), status="stopped") for _ in range(2))
    lock = ownership.take_run(store.folder_of(resumed))
    try:
        result = invoke("rm", str(kept), str(resumed), "--yes", cwd=tmp_path)
    finally:
        ownership.release(lock)
    assert result.returncode == 2 and result.stdout == "deleted 1 run\n"
    assert result.stderr == (
        f"error: run {resumed} started meanwhile (a worker or a resume); stop it with "
        f"`resnet-tui stop {resumed}`, then delete it\n"
    )
    assert [run["id"] for run in runs_json(tmp_path)] == [resumed]
    assert store.folder_of(resumed).is_dir() and not store.folder_of(kept).exists()
