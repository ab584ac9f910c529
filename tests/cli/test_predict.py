"""`resnet-tui predict`: a table, JSON or CSV of a trained run's classes for image files,
from the real engine; every mistake one line and exit code 2."""

import csv
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from engine.contract.spec import RunSpec
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.supervisor import ENGINE_MODULE_VARIABLE
from tests.cli.command import BAD_INPUT, invoke
from tests.cli.stops import start
from tests.conftest import record_fault

IMAGES = 12


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with a trained run (1), an ensemble of it (2), a run that never saved a
    checkpoint (3) and one whose checkpoint is not ours (4); a folder `images` of test images
    in class folders, with a bad file; a folder whose name is markup."""
    from engine.data.datasets import load_dataset
    from engine.train.run import run

    home = tmp_path_factory.mktemp("predict")
    runs = RunStore(home / "runs.db")
    spec = RunSpec.from_dict(
        {"arch": "resnet8", "width": 4, "limit": 256, "image_size": 16, "epochs": 1}
        | {"device": "cpu", "dataset": "shapes", "seed": 0}
    )
    trained = runs.create_run(spec, status="completed")
    folder = runs.run(trained).folder
    assert run(spec, folder / "events.jsonl", folder) == 0
    runs.create_run(spec, status="completed", kind="ensemble", parents=[trained, trained])
    runs.create_run(spec, status="failed")
    forged = runs.run(runs.create_run(spec, status="completed")).folder / "checkpoints"
    forged.mkdir()
    (forged / "best.pt").write_text("not a checkpoint")
    bundle = load_dataset(spec)
    for index in range(IMAGES):
        label = bundle.classes[int(bundle.test.labels[index])]
        path = home / "images" / label / f"{index:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(bundle.test.images[index].permute(1, 2, 0).numpy()).save(path)
    (home / "images" / "broken.png").write_text("not a picture")
    strange = home / "odd" / "[bold]red\nline"
    strange.mkdir(parents=True)
    (strange / "[x].png").write_bytes((home / "images" / label / f"{index:02d}.png").read_bytes())
    (home / "empty").mkdir()
    return home


@pytest.fixture(autouse=True)
def real_engine(monkeypatch):
    """The fake engine does not predict: the commands here start the real one."""
    monkeypatch.delenv(ENGINE_MODULE_VARIABLE, raising=False)


def test_the_table_shows_each_image_its_classes_and_the_accuracy(store):
    done = invoke("predict", "1", "images", cwd=store)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if ".png " in line]
    assert len(rows) == IMAGES
    assert all(("✓" in row) != ("✗" in row) for row in rows)
    assert "image" in done.stdout and "label" in done.stdout
    assert f"{IMAGES} images in " in done.stdout and "accuracy" in done.stdout
    assert "1 bad image, not classified:" in done.stdout
    assert "images/broken.png: not an image file" in done.stdout


def test_json_is_one_document_of_every_prediction(store):
    done = invoke("predict", "1", "images", "--json", "--top-k", "4", cwd=store)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    predictions, summary = document["predictions"], document["summary"]
    assert len(predictions) == IMAGES and summary["predicted"] == IMAGES
    assert all(len(p["top"]) == 4 for p in predictions)
    assert all(p["label"] == Path(p["path"]).parent.name for p in predictions)
    right = sum(p["top"][0]["class"] == p["label"] for p in predictions)
    assert summary["accuracy"] == pytest.approx(right / IMAGES)
    assert summary["labelled"] == IMAGES and summary["device"] == "cpu"
    assert [b["path"] for b in document["bad"]] == ["images/broken.png"]
    first = predictions[0]["top"]
    assert sorted(first, key=lambda t: -t["probability"]) == first
    assert 0 < sum(t["probability"] for t in first) <= 1 + 1e-6


def test_csv_has_a_row_per_image_and_rank(store):
    done = invoke("predict", "1", "images", "--csv", "out.csv", "--top-k", "2", cwd=store)
    assert done.returncode == 0, done.stderr
    with open(store / "out.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["path", "rank", "class", "probability", "label"]
    assert len(rows) == 2 * IMAGES
    assert [row["rank"] for row in rows[:2]] == ["1", "2"]
    assert all(row["label"] == Path(row["path"]).parent.name for row in rows)
    assert f"wrote {2 * IMAGES} rows to out.csv" in done.stdout
    again = invoke("predict", "1", "images", "--csv", "out.csv", cwd=store)
    assert again.returncode == 2 and "exists" in again.stderr
    forced = invoke("predict", "1", "images", "--csv", "out.csv", "--force", cwd=store)
    assert forced.returncode == 0, forced.stderr


def test_names_with_markup_and_line_breaks_are_shown_as_written(store):
    done = invoke("predict", "1", "odd", cwd=store)
    assert done.returncode == 0, done.stderr
    assert "odd/[bold]red\\x0aline/[x].png" in done.stdout


def test_the_last_checkpoint_and_a_glob(store):
    done = invoke("predict", "1", "images/*/0*.png", "--checkpoint", "last", "--json", cwd=store)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["predictions"]) == min(IMAGES, 10)


# (case, arguments, what the one line says)
MISTAKES = [
    ("no such run", ["9", "images"], "there is no run 9"),
    ("an ensemble", ["2", "images"], "is an ensemble, which has no weights of its own"),
    ("no checkpoint", ["3", "images"], "run 3 has no best checkpoint"),
    ("no images", ["1", "empty"], "no image files in empty"),
    ("a path not there", ["1", "nowhere/x"], "nowhere/x is not there"),
    ("a pattern matching nothing", ["1", "no/[red]*"], "no files match no/[red]*"),
    ("no paths", ["1"], "give the image files or folders to classify after run 1"),
    ("not a run id", ["images"], "'images' is not a run id"),
    ("top-k 0", ["1", "images", "--top-k", "0"], "--top-k 0 is less than 1"),
    ("json and csv", ["1", "images", "--json", "--csv", "x.csv"], "--json or --csv FILE"),
    ("csv folder missing", ["1", "images", "--csv", "no/x.csv"], "the folder of no/x.csv"),
    ("checkpoint other", ["1", "images", "--checkpoint", "first"], "neither best nor last"),
    ("model missing sidecar", ["images", "--model", "model.onnx"], "has no sidecar"),
    ("run and model", ["1", "images", "--model", "model.onnx"], "give a run (1) or --model"),
    ("model not there", ["images", "--model", "gone.onnx"], "gone.onnx is not there"),
    ("a device not there", ["1", "images", "--device", "nonsense"], "--device nonsense"),
    ("a checkpoint not ours", ["4", "images"], "cannot be read as weights"),
]


def test_mistakes_are_one_line_and_exit_2(store):
    (store / "model.onnx").write_bytes(b"not onnx either")
    for case, args, said in MISTAKES:
        done = invoke("predict", *args, cwd=store)
        lines = done.stderr.strip().splitlines()
        survived = done.returncode == 2 and len(lines) == 1 and said in lines[0]
        survived &= "Traceback" not in done.stderr and not done.stdout
        record_fault(BAD_INPUT, survived)
        assert survived, (case, done.returncode, done.stderr)


def test_ctrl_c_stops_the_engine_and_exits_130(store):
    """Ctrl-C at a terminal reaches the command and its engine (one process group): the
    engine stops, the command exits with code 130 and no traceback."""
    process = start("predict", "1", "images", "--batch-size", "1", cwd=store)
    deadline = time.monotonic() + 60
    while not _engines_under(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _engines_under(store), "the engine never started"
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "stopped" in err
    deadline = time.monotonic() + 10
    while _engines_under(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _engines_under(store)


def _engines_under(folder: Path) -> list[int]:
    """The ids of the `engine predict` processes reading checkpoints under `folder`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if "engine predict" in command and str(folder) in command:
            found.append(int(proc.name))
    return found


# (case, arguments, what the one line says)
MORE_MISTAKES = [
    ("a digit not ASCII", ["²", "images"], "'²' is not a run id"),
    ("a run id past SQLite's", ["99999999999999999999999", "images"], "no run 9999"),
    ("a batch too large", ["1", "images", "--batch-size", "9" * 23], "give 1 to 65,536"),
    ("too many workers", ["1", "images", "--workers", "257"], "give 0 to 256"),
    ("top-k too large", ["1", "images", "--top-k", "1001"], "give 1 to 1,000"),
    ("a model named -m", ["--model", "-m.onnx", "images"], "-m.onnx"),
    ("the store as CSV", ["1", "images", "--csv", "runs.db", "--force"], "store's own file"),
    ("CSV in a run folder", ["1", "images", "--csv", "runs/1/p.csv"], "in the runs' folder"),
]


def test_more_mistakes_are_one_line_and_exit_2(store):
    (store / "-m.onnx").write_bytes(b"not onnx")
    for case, args, said in MORE_MISTAKES:
        done = invoke("predict", *args, cwd=store)
        lines = done.stderr.strip().splitlines()
        survived = done.returncode == 2 and len(lines) == 1 and said in lines[0]
        survived &= "Traceback" not in done.stderr and "expected one argument" not in done.stderr
        record_fault(BAD_INPUT, survived)
        assert survived, (case, done.returncode, done.stderr)
    assert RunStore(store / "runs.db").run(1) is not None
    assert not (store / "runs" / "1" / "p.csv").exists()


def test_files_in_the_folders_that_are_not_images_are_said_skipped(store):
    mixed = store / "mixed"
    mixed.mkdir()
    shutil.copy(next((store / "images").glob("*/*.png")), mixed / "a.png")
    for name in ("notes.txt", "table.csv"):
        (mixed / name).write_text("not a picture")
    done = invoke("predict", "1", "mixed", cwd=store)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "2 files in the folders were not images and were skipped (e.g. " in said
    assert "mixed/notes.txt" in said and "mixed/table.csv" in said
    document = json.loads(invoke("predict", "1", "mixed", "--json", cwd=store).stdout)
    assert document["summary"]["skipped"] == 2
    assert sorted(document["summary"]["skipped_examples"]) == ["mixed/notes.txt", "mixed/table.csv"]
