"""`resnet-tui export RUN --format ...`: a trained run's network written beside its sidecar,
named after the run by default, and checked; an existing file kept unless --force; a run
without weights, a damaged checkpoint or a place that cannot be written is one line, exit 2."""

import json
import os
from pathlib import Path

import pytest

from resnet_tui.runs.store import RunStore
from resnet_tui.runs.supervisor import ENGINE_MODULE_VARIABLE
from tests.cli.command import BAD_INPUT, TINY, invoke
from tests.cli.stops import ctrl_c_after_the_engine, ctrl_c_at_once, start
from tests.conftest import record_fault


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store with one tiny run trained by the real engine (export needs its weights)."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ENGINE_MODULE_VARIABLE, raising=False)
        made = invoke("run", *TINY, "--name", "tiny", cwd=folder)
    assert made.returncode == 0, made.stderr
    return folder / "runs.db"


@pytest.fixture
def export(store, tmp_path, monkeypatch):
    """`resnet-tui export ARGS --db STORE` in the test's own folder, on the real engine."""
    monkeypatch.delenv(ENGINE_MODULE_VARIABLE, raising=False)
    return lambda *args: invoke("export", *args, "--db", str(store), cwd=tmp_path)


def test_the_default_file_is_named_after_the_run_and_the_check_is_said(export, tmp_path):
    done = export("1", "--format", "onnx")
    assert done.returncode == 0, done.stderr
    model = tmp_path / "run-1-resnet8.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name, model.name + ".json"]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("wrote run-1-resnet8.onnx (ONNX, ") and lines[0].endswith(" kB)")
    assert lines[1] == "sidecar run-1-resnet8.onnx.json"
    assert lines[2].startswith("onnxruntime: max |Δlogit| ")
    assert lines[2].endswith(" on 64 test images, top-1 identical")
    sidecar = json.loads((tmp_path / "run-1-resnet8.onnx.json").read_text(encoding="utf-8"))
    assert sidecar["run"] == 1 and sidecar["arch"] == "resnet8" and len(sidecar["classes"]) == 10
    assert sidecar["checkpoint"]["file"] == "best.pt" and sidecar["check"]["top1_identical"]


def test_json_for_scripts_and_the_last_checkpoint(export, tmp_path):
    done = export("1", "--format", "torchscript", "--checkpoint", "last", "--json")
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["path"] == "run-1-resnet8.pt" and said["format"] == "torchscript"
    assert said["max_abs_diff"] <= 1e-4 and said["top1_identical"]
    assert said["bytes"] == (tmp_path / "run-1-resnet8.pt").stat().st_size
    sidecar = json.loads((tmp_path / "run-1-resnet8.pt.json").read_text(encoding="utf-8"))
    assert sidecar["checkpoint"]["file"] == "last.pt" and sidecar["checkpoint"]["epoch"] == 2


def test_an_existing_file_or_sidecar_is_kept_unless_forced(export, tmp_path):
    model = tmp_path / "run-1-resnet8.safetensors"
    sidecar = tmp_path / "run-1-resnet8.safetensors.json"
    for there in (model, sidecar):
        there.write_text("mine")
        refused = export("1", "--format", "safetensors")
        survived = refused.returncode == 2 and refused.stderr.count("\n") == 1
        survived &= "exists; give another --out, or --force" in refused.stderr
        survived &= there.read_text() == "mine"
        record_fault(BAD_INPUT, survived)
        assert survived, refused.stderr
        there.unlink()
    model.write_text("mine")
    forced = export("1", "--format", "safetensors", "--force")
    assert forced.returncode == 0, forced.stderr
    assert model.read_bytes() != b"mine" and sidecar.is_file()


def test_a_folder_that_is_not_there_is_made_and_names_are_shown_as_written(export, tmp_path):
    done = export("1", "--format", "safetensors", "--out", "new/[bold]deeper[/bold]/m.st")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new" / "[bold]deeper[/bold]" / "m.st").is_file()
    assert "wrote new/[bold]deeper[/bold]/m.st (safetensors, " in done.stdout


# (case, arguments, what the one line says)
MISTAKES = [
    ("no such run", ["9", "--format", "onnx"], "there is no run 9"),
    ("an unknown format", ["1", "--format", "tflite"], "--format tflite is not one of onnx"),
    ("an unknown checkpoint", ["1", "--format", "onnx", "--checkpoint", "mid"], "not best or last"),
    ("out a folder", ["1", "--format", "onnx", "--out", "a folder"], "is a folder"),
    ("out under a file", ["1", "--format", "onnx", "--out", "a file/m.onnx"], "a file is in"),
]


def test_mistakes_are_one_line_and_write_nothing(export, store, tmp_path):
    (tmp_path / "a folder").mkdir()
    (tmp_path / "a file").write_text("mine")
    run = RunStore(store).run(1)
    assert run is not None
    checkpoint = run.folder / "checkpoints" / "best.pt"
    kept = checkpoint.read_bytes()
    onto = ["1", "--format", "onnx", "--out", str(checkpoint), "--force"]
    for case, args, says in [*MISTAKES, ("onto its checkpoint", onto, "is the run's best")]:
        done = export(*args)
        survived = done.returncode == 2 and done.stderr.count("\n") == 1 and says in done.stderr
        record_fault(BAD_INPUT, survived)
        assert survived, (case, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "a folder"]
    assert list((tmp_path / "a folder").iterdir()) == []
    assert checkpoint.read_bytes() == kept


def test_a_folder_that_cannot_be_written_in_is_one_line(export, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        # root writes in any folder; sysfs takes no new file from anyone
        folder = Path("/sys") if os.access(locked, os.W_OK) else locked
        done = export("1", "--format", "torchscript", "--out", str(folder / "m.pt"))
    finally:
        locked.chmod(0o755)
    survived = done.returncode == 2 and done.stderr.count("\n") == 1
    survived &= f"{folder}" in done.stderr and "Traceback" not in done.stderr
    record_fault(BAD_INPUT, survived)
    assert survived, done.stderr
    assert not (folder / "m.pt").exists() and list(locked.iterdir()) == []


@pytest.fixture
def fake_runs(tmp_path, fake_engine, monkeypatch) -> Path:
    """Runs 1 and 2 replayed by the fake engine (their checkpoints stand-ins, not torch's),
    and run 3 their ensemble; export itself then runs on the real engine."""
    for name in ("one", "two"):
        assert invoke("run", "--name", name, "--epochs", "1", cwd=tmp_path).returncode == 0
    assert invoke("ensemble", "1", "2", cwd=tmp_path).returncode == 0
    monkeypatch.delenv(ENGINE_MODULE_VARIABLE)
    return tmp_path


def test_runs_without_usable_weights_are_one_line(fake_runs):
    run = RunStore(fake_runs / "runs.db").run(2)
    assert run is not None
    (run.folder / "checkpoints" / "best.pt").unlink()
    cases = [
        ("an ensemble", "3", "run 3 is an ensemble, which has no weights of its own"),
        ("no checkpoint", "2", "run 2 has no best checkpoint"),
        ("a damaged checkpoint", "1", "best.pt cannot be read as weights"),
    ]
    for case, run_id, says in cases:
        done = invoke("export", run_id, "--format", "onnx", cwd=fake_runs)
        survived = done.returncode == 2 and done.stderr.count("\n") == 1 and says in done.stderr
        survived &= "Traceback" not in done.stderr
        record_fault(BAD_INPUT, survived)
        assert survived, (case, done.stderr)
    assert not list(fake_runs.glob("run-*"))


def test_the_stores_own_files_are_refused_even_with_force(export, store):
    run = RunStore(store).run(1)
    assert run is not None
    events = run.folder / "events.jsonl"
    kept = events.read_bytes()
    places = [events, store, Path(f"{store}-wal"), run.folder / "m.pt", store.parent / "runs"]
    for out in places:
        done = export("1", "--format", "torchscript", "--out", str(out), "--force")
        survived = done.returncode == 2 and done.stderr.count("\n") == 1
        survived &= f"--out {out} is" in done.stderr and "give another --out" in done.stderr
        record_fault(BAD_INPUT, survived)
        assert survived, (out, done.stderr)
    assert events.read_bytes() == kept and store.read_bytes().startswith(b"SQLite format 3")
    assert RunStore(store).run(1) is not None
    assert not (run.folder / "m.pt").exists() and not Path(f"{store}-wal.json").exists()


def test_a_file_name_that_starts_with_a_dash_is_a_file_name(export, tmp_path):
    done = export("1", "--format", "safetensors", "--out=-m.st")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["-m.st", "-m.st.json"]


def test_a_stop_says_nothing_was_written_and_takes_back_the_folders_made(store, tmp_path):
    command = start(
        "export",
        "1",
        "--format",
        "onnx",
        "--out",
        "deep/er/m.onnx",
        "--db",
        str(store),
        cwd=tmp_path,
    )
    _, complained = ctrl_c_at_once(command)
    assert command.returncode == 130, complained
    assert complained == "error: export stopped; nothing was written\n"
    assert list(tmp_path.iterdir()) == []


def test_a_stop_after_the_files_were_written_says_so(store, tmp_path):
    (tmp_path / "m.st").write_text("mine")
    command = start(
        "export",
        "1",
        "--format",
        "safetensors",
        "--out",
        "m.st",
        "--force",
        "--db",
        str(store),
        cwd=tmp_path,
    )
    _, complained = ctrl_c_after_the_engine(command)
    assert command.returncode == 130, complained
    assert complained == "error: export stopped after it had written m.st and m.st.json\n"
    assert (tmp_path / "m.st").read_bytes() != b"mine" and (tmp_path / "m.st.json").is_file()
