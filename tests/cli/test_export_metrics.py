"""`resnet-tui export-metrics --csv`: every metric row of the store, and nothing else, in a
tidy CSV that round-trips; mistakes in one line, exit 2, nothing overwritten."""

import csv
import math

import pytest

from resnet_tui.runs.store import RunStore
from tests.cli.command import invoke
from tests.conftest import record_fault


@pytest.fixture
def two_runs(tmp_path, fake_engine):
    for name in ("one", "two"):
        made = invoke("run", "--name", name, "--epochs", "2", cwd=tmp_path)
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
