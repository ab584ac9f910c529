"""`resnet-tui export-metrics --csv`: every metric row of the store, and nothing else, in a
tidy CSV that round-trips; `--tensorboard`: the same rows as TensorBoard scalars, read back
from the event files, and the spec as hparams; mistakes in one line, exit 2, nothing
overwritten."""

import csv
import math
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.runs.store import RunStore
from tests.cli.command import BAD_INPUT, invoke
from tests.conftest import ROOT, record_fault


@pytest.fixture
def two_runs(tmp_path, fake_engine):
    for name in ("one", "two"):
        made = invoke("run", "--name", name, "--epochs", "2", "--lr", "0.05", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    return tmp_path


def test_the_csv_round_trips_the_stores_metrics(two_runs):
    done = invoke("export-metrics", "1", "2", "--csv", "out", cwd=two_runs)
    assert done.returncode == 0, done.stderr
    with open(two_runs / "out" / "metrics.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["run", "epoch", "step", "split", "metric", "value"]
    store = RunStore(two_runs / "runs.db")
    stored = store.connection.execute(
        "SELECT run_id, epoch, step, split, name, value FROM metrics ORDER BY run_id, seq"
    ).fetchall()
    read = [
        (
            int(row["run"]),
            int(row["epoch"]),
            int(row["step"]) if row["step"] else None,
            row["split"],
            row["metric"],
            float(row["value"]),
        )
        for row in rows
    ]
    assert sorted(read, key=repr) == sorted(map(tuple, stored), key=repr)
    assert {row["split"] for row in rows} >= {"step", "train", "val"}
    assert all(math.isfinite(float(row["value"])) for row in rows)
    assert f"wrote {len(rows):,} rows of 2 runs" in done.stdout + done.stderr


# (case, arguments, what the one line says)
MISTAKES = [
    ("no such run", ["9", "--csv", "out"], "no run 9"),
    ("a file for the folder", ["1", "--csv", "runs.db"], "is a file, not a folder"),
    ("a csv already there", ["1", "--csv", "again"], "exists; give another folder, or --force"),
]


def test_mistakes_are_one_line_and_nothing_is_overwritten(two_runs):
    (two_runs / "again").mkdir()
    (two_runs / "again" / "metrics.csv").write_text("mine\n")
    for case, args, said in MISTAKES:
        done = invoke("export-metrics", *args, cwd=two_runs)
        survived = done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr
        survived &= (two_runs / "again" / "metrics.csv").read_text() == "mine\n"
        record_fault("bad input: one line on stderr, exit code 2", survived)
        assert survived, (case, done.stderr)
    forced = invoke("export-metrics", "1", "--csv", "again", "--force", cwd=two_runs)
    assert forced.returncode == 0
    assert (two_runs / "again" / "metrics.csv").read_text().startswith("run,epoch,step")


# --tensorboard: the engine writes the event files (tensorboardX imports torch, which the
# CLI never does); read back here by hand, record by record, as TensorBoard reads them.


def _records(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file: length (uint64), its masked CRC, data, data's CRC."""
    data = path.read_bytes()
    at = 0
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        at += 12
        yield data[at : at + length]
        at += length + 4
    assert at == len(data), f"{path} ends inside a record"


def _events(folder: Path) -> list:
    from tensorboardX.proto.event_pb2 import Event

    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    return [Event.FromString(record) for file in files for record in _records(file)]


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Each tag's (step, value) pairs, as written."""
    found: dict[str, list[tuple[int, float]]] = {}
    for event in _events(folder):
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def _hparams(folder: Path) -> dict[str, object]:
    """The hparams of the run's HParams session (its session start info)."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    for event in _events(folder):
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                found = data.session_start_info.hparams
                return {name: getattr(v, v.WhichOneof("kind")) for name, v in found.items()}
    raise AssertionError(f"no hparams session in {folder}")


# The tags the store's metric rows become: (split, metric) -> tag.
TAGS = {
    ("step", "loss"): "loss/train_step",
    ("train", "loss"): "loss/train",
    ("val", "loss"): "loss/val",
    ("train", "acc"): "accuracy/train",
    ("val", "acc"): "accuracy/val",
    ("epoch", "seconds"): "time/epoch_seconds",
}


def _tag(split: str, metric: str) -> str:
    return metric if metric.startswith("lr/") else TAGS[(split, metric)]


def test_tensorboard_logs_hold_every_metric_of_the_store_and_the_spec(two_runs):
    done = invoke("export-metrics", "1", "2", "--tensorboard", "board", cwd=two_runs)
    assert done.returncode == 0, done.stderr
    store = RunStore(two_runs / "runs.db")
    total = 0
    for run_id, name in ((1, "one"), (2, "two")):
        stored = store.connection.execute(
            "SELECT epoch, step, split, name, value FROM metrics WHERE run_id = ? ORDER BY seq",
            [run_id],
        ).fetchall()
        expected: dict[str, list[tuple[int, float]]] = {}
        for epoch, step, split, metric, value in stored:
            at = step if split == "step" else epoch
            expected.setdefault(_tag(split, metric), []).append((at, value))
        run = store.run(run_id)
        written = _scalars(two_runs / "board" / f"run-{run_id}-{name}")
        metrics = {"hparams/test_acc": run.test_acc, "hparams/best_val_acc": run.best_val_acc}
        assert {tag: written.pop(tag) for tag in metrics} == {
            tag: [(0, pytest.approx(value, rel=1e-6))] for tag, value in metrics.items()
        }
        assert written.keys() == expected.keys()
        assert {*TAGS.values(), "lr/head", "lr/stem"} <= written.keys()
        for tag, pairs in expected.items():
            assert [step for step, _ in written[tag]] == [step for step, _ in pairs], tag
            assert [value for _, value in written[tag]] == pytest.approx(
                [value for _, value in pairs], rel=1e-6, abs=1e-30
            ), tag
        assert len(expected["loss/train_step"]) > 2 and len(expected["accuracy/val"]) == 2
        total += len(stored)
        spec = _hparams(two_runs / "board" / f"run-{run_id}-{name}")
        assert spec["arch"] == run.spec_values["arch"]
        assert spec["lr"] == pytest.approx(run.spec_values["lr"])
        assert spec["status"] == "completed"
    said = " ".join((done.stdout + done.stderr).split())
    assert f"wrote {total:,} scalars of 2 runs to board" in said
    assert "open with: tensorboard --logdir board" in said


def test_tensorboard_folders_kept_unless_forced_and_names_made_safe(two_runs):
    store = RunStore(two_runs / "runs.db")
    hostile = store.create_run(RunSpec(epochs=1))
    with store.connection:  # a name the store no longer takes (a line break), as if older
        name = "../x\n[red]evil[/red]/.."
        store.connection.execute("UPDATE runs SET name = ? WHERE id = ?", [name, hostile])
    first = invoke("export-metrics", "1", str(hostile), "--tensorboard", "b", cwd=two_runs)
    assert first.returncode == 0, first.stderr
    made = sorted(path.name for path in (two_runs / "b").iterdir())
    assert made == ["run-1-one", f"run-{hostile}-x-red-evil-red"], made
    assert not (two_runs / "x").exists()
    queued = _scalars(two_runs / "b" / made[1])
    assert queued == {}, "a run with no metrics yet has none"
    assert _hparams(two_runs / "b" / made[1])["status"] == "queued"
    files = sorted((two_runs / "b" / "run-1-one").iterdir())

    (two_runs / "b" / "run-2").write_text("mine")  # the user's own, at run 2's place
    again = invoke("export-metrics", "1", "2", "--tensorboard", "b", cwd=two_runs)
    assert again.returncode == 2, again.stderr  # nothing written: as for a CSV already there
    assert sorted((two_runs / "b" / "run-1-one").iterdir()) == files
    assert (two_runs / "b" / "run-2").read_text() == "mine"
    assert not (two_runs / "b" / "run-2-two").exists()
    said = " ".join((again.stdout + again.stderr).split())
    assert "wrote" not in said and "kept run-1-one, run-2 in b" in said and "--force" in said

    forced = invoke("export-metrics", "1", "--tensorboard", "b", "--force", cwd=two_runs)
    assert forced.returncode == 0, forced.stderr
    renewed = sorted((two_runs / "b" / "run-1-one").iterdir())
    assert len(renewed) == 1 and renewed != files
    assert "loss/train_step" in _scalars(two_runs / "b" / "run-1-one")
    assert not [path for path in (two_runs / "b").iterdir() if path.name.startswith(".")]


def test_csv_and_tensorboard_together_and_their_mistakes(two_runs):
    both = invoke("export-metrics", "2", "--csv", "c", "--tensorboard", "t", cwd=two_runs)
    assert both.returncode == 0, both.stderr
    assert (two_runs / "c" / "metrics.csv").is_file()
    assert (two_runs / "t" / "run-2-two").is_dir()
    for args, said in (
        (["1"], "give --csv DIR, --tensorboard DIR or both"),
        (["1", "--tensorboard", "runs.db"], "runs.db is a file, not a folder; give a folder"),
        (["1", "--csv", "c", "--tensorboard", "t2"], "exists; give another folder, or --force"),
        (["1", "--tensorboard", "runs.db/t"], "cannot write runs.db/t (Not a directory)"),
    ):
        done = invoke("export-metrics", *args, cwd=two_runs)
        one_line = done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
        assert one_line and said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (two_runs / "t2").exists(), "nothing written where the CSV was refused"


def test_the_engine_refuses_a_file_for_the_folder_in_one_line(tmp_path):
    (tmp_path / "runs.json").write_text('{"runs": []}')
    (tmp_path / "taken").write_text("mine")
    for out, said in ((tmp_path / "taken", "is a file, not a folder"),):
        done = subprocess.run(
            [sys.executable, "-m", "engine", "tensorboard", "--input", str(tmp_path / "runs.json")]
            + ["--out", str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
    (tmp_path / "runs.json").write_text("[1, 2")
    done = subprocess.run(
        [sys.executable, "-m", "engine", "tensorboard", "--input", str(tmp_path / "runs.json")]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2 and "is not a list of runs" in done.stderr, done.stderr
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize(
    "name, folder",
    [
        ("resnet18 lr=0.1", "run-7-resnet18-lr-0.1"),
        ("../../etc", "run-7-etc"),
        ("[bold red]x[/]\n\t..", "run-7-bold-red-x"),
        ("..", "run-7"),
        ("", "run-7"),
        ("été/旅", "run-7-été-旅"),
        ("a" * 500, "run-7-" + "a" * 60),
    ],
)
def test_a_runs_folder_name_is_safe_whatever_its_name(name, folder):
    from engine.use.tensorboard import folder_name

    assert folder_name(7, name) == folder


def test_tensorboard_writing_nothing_is_exit_2_and_writing_some_names_the_kept(two_runs):
    first = invoke("export-metrics", "1", "--tensorboard", "b", cwd=two_runs)
    assert first.returncode == 0, first.stderr
    some = invoke("export-metrics", "1", "2", "--tensorboard", "b", cwd=two_runs)
    assert some.returncode == 0, some.stderr
    said = " ".join(some.stdout.split())
    assert "wrote " in said and "of 1 run to b" in said and "kept run-1-one in b" in said
    none = invoke("export-metrics", "1", "2", "--tensorboard", "b", cwd=two_runs)
    assert none.returncode == 2 and not none.stdout, none.stdout
    assert none.stderr.count("\n") == 1 and "kept run-1-one, run-2-two in b" in none.stderr
    assert "--force replaces them" in none.stderr


def test_folders_that_start_with_a_dash_and_the_stores_files(two_runs):
    done = invoke("export-metrics", "1", "--tensorboard=-tb", "--csv=-c", cwd=two_runs)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (two_runs / "-tb").iterdir()] == ["run-1-one"]
    assert (two_runs / "-c" / "metrics.csv").is_file()
    for option, folder in (("--csv", "runs"), ("--tensorboard", "runs/1"), ("--csv", "runs/x")):
        done = invoke("export-metrics", "1", option, folder, "--force", cwd=two_runs)
        survived = done.returncode == 2 and done.stderr.count("\n") == 1
        survived &= f"{option} " in done.stderr and "in the runs' folder" in done.stderr
        record_fault(BAD_INPUT, survived)
        assert survived, (option, folder, done.stderr)
    assert not (two_runs / "runs" / "metrics.csv").exists()
    assert (
        not (two_runs / "runs" / "x").exists()
        and not (two_runs / "runs" / "1" / "run-1-one").exists()
    )
