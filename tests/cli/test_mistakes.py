"""`resnet-tui mistakes RUN`: a run trained by the real engine shows its worst test images,
its confusions and its per-class scores; a run without test predictions, or with a forged
file, is one line and exit code 2."""

import json
from pathlib import Path

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.runs.store import RunStore
from tests.cli.command import BAD_INPUT, TINY, invoke
from tests.conftest import record_fault
from tests.hostile_text import RAW, SHOWN_LITERALLY


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A store with run 1, trained by the real engine."""
    folder = tmp_path_factory.mktemp("store")
    made = invoke("run", *TINY, cwd=folder)
    assert made.returncode == 0, made.stderr
    return folder


def test_a_trained_runs_mistakes_agree_with_its_test_report(trained):
    shown = invoke("mistakes", "1", "--json", "--top", "5", cwd=trained)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    report = json.loads(invoke("show", "1", "--json", cwd=trained).stdout)["test_report"]
    assert summary["samples"] == report["samples"]
    assert summary["confusion"] == report["confusion"]
    assert summary["correct"] / summary["samples"] == pytest.approx(report["top1"])
    assert len(summary["top_losses"]) == 5
    losses = [sample["loss"] for sample in summary["top_losses"]]
    assert losses == sorted(losses, reverse=True)
    assert all(Path(sample["image"]).is_file() for sample in summary["top_losses"])
    assert [c["name"] for c in summary["per_class"]] == report["classes"]
    assert sum(c["support"] for c in summary["per_class"]) == summary["samples"]
    counts = [pair["count"] for pair in summary["confused_pairs"]]
    assert counts == sorted(counts, reverse=True) and len(counts) <= 5


def test_the_tables_name_the_classes_and_each_top_losss_thumbnail(trained):
    shown = invoke("mistakes", "1", "--top", "3", cwd=trained)
    assert shown.returncode == 0, shown.stderr
    for title in ("Top 3 losses", "Most confused", "Per class", "precision", "recall", "F1"):
        assert title in shown.stdout
    thumbnails = [
        line for line in shown.stdout.splitlines() if "thumbnail runs/1/mistakes/" in line
    ]
    assert len(thumbnails) == 3
    assert all((trained / line.split("thumbnail ")[1]).is_file() for line in thumbnails)


def test_hostile_class_names_are_shown_literally(trained, tmp_path):
    kept = json.loads((trained / "runs" / "1" / "test-predictions.json").read_text())
    hostile = "[bold red]x[/]\n\x1b[2J\u202e"
    kept["classes"] = [hostile] + kept["classes"][1:]
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run(RunSpec(), status="completed")
    folder = Path(store.run(run_id).run_dir)
    store.close()
    (folder / "test-predictions.json").write_text(json.dumps(kept))
    shown = invoke("mistakes", str(run_id), "--top", "50", cwd=tmp_path)
    ok = shown.returncode == 0 and "[bold red]x[/]" in shown.stdout and not RAW.search(shown.stdout)
    record_fault(SHOWN_LITERALLY, ok)
    assert ok, shown.stdout


def make_runs(folder: Path) -> dict[str, int]:
    """Runs of each kind that has no test predictions, by what they are."""
    store = RunStore(folder / "runs.db")
    statuses = ("queued", "stopped", "failed", "crashed")
    made = {status: store.create_run(RunSpec(), status=status) for status in statuses}
    made["old"] = store.create_run(RunSpec(), status="completed")
    store.update(made["old"], test_report=json.dumps({"top1": 0.5}))
    made["gone"] = store.create_run(RunSpec(), status="completed")
    store.update(made["gone"], test_report=json.dumps({"predictions": "test-predictions.json"}))
    made["ensemble"] = store.create_run(RunSpec(), status="completed", kind="ensemble")
    made["forged"] = store.create_run(RunSpec(), status="completed")
    forged = {"format": "resnet-tui-test-predictions/1", "classes": ["a"], "labels": [0]}
    forged |= {"predicted": [0], "probability": [1], "true_probability": [1], "loss": [0]}
    forged["images"] = {"0": "../../../etc/passwd"}
    (Path(store.run(made["forged"]).run_dir) / "test-predictions.json").write_text(
        json.dumps(forged)
    )
    store.close()
    return made


# (the run, or the arguments, and a fragment of the one line)
WITHOUT = [
    ("queued", "has no test predictions: it is queued; they are written when it completes"),
    ("stopped", "it ended before testing; finish it (resnet-tui resume"),
    ("failed", "has no test predictions: it ended before testing"),
    ("crashed", "has no test predictions: it ended before testing"),
    ("old", "it was trained before test predictions were kept; train it again"),
    ("gone", "the file is gone from"),
    ("ensemble", "this ensemble was made before test predictions were kept; make it again"),
    ("forged", "test predictions cannot be used: "),
]


def test_a_run_without_test_predictions_is_one_line_saying_why(tmp_path):
    made = make_runs(tmp_path)
    cases = [([str(made[name])], said) for name, said in WITHOUT]
    cases += [(["99"], "no run 99"), (["1", "--top", "0"], "--top must be a positive number")]
    cases += [(["1", "--top", "x"], "Invalid value for '--top'")]
    for args, said in cases:
        done = invoke("mistakes", *args, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        ok = done.returncode == 2 and len(lines) == 1 and said in lines[0] and not done.stdout
        record_fault(BAD_INPUT, ok)
        assert ok, (args, done.stderr)
    forged = invoke("mistakes", str(made["forged"]), cwd=tmp_path).stderr
    assert "../../../etc/passwd" in forged and "not a path inside the run's folder" in forged


@pytest.mark.parametrize("name", ["mistakes", "export-metrics", "export", "gradcam", "predict"])
def test_help_flows_to_the_terminals_width(name, tmp_path):
    """The docstring's paragraphs are wrapped to the terminal (120 columns here), in the
    command's --help and in `resnet-tui --help`'s list, not broken where the source is."""
    from resnet_tui.cli import COMMANDS

    command = dict(COMMANDS)[name]
    paragraphs = (command.__doc__ or "").split("\n\n")
    assert all("\n" not in paragraph for paragraph in paragraphs), command.__doc__
    done = invoke(name, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = done.stdout.split("Usage:", 1)[1].split("╭", 1)[0]
    described = "\n".join(line.strip() for line in said.splitlines()[1:]).strip()
    for paragraph in described.split("\n\n"):
        *broken, _last = paragraph.splitlines()
        assert all(len(line) > 100 for line in broken), paragraph
