"""Runs made from runs, from the user's side: teachers, ensembles, soups and WiSE-FT."""

import json
import subprocess

import pytest

from engine.contract.spec import FusionSpec, RunSpec, SpecError
from resnet_tui.runs import launcher, sources
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.store import RunStore
from tests.cli.command import TINY, invoke, runs_json
from tests.runs.made_events import started
from tests.runs.old_stores import back_to_version_one

SHAPES = ["circle", "square", "triangle"]


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.db")


def finished_run(
    store: RunStore,
    status: str = "completed",
    classes: list[str] | None = None,
    kind: str = "train",
    checkpoint: bool = True,
    **options,
) -> int:
    """A run row as a finished engine leaves it (the checkpoint is an empty stand-in)."""
    spec = RunSpec.from_dict({"arch": "resnet8", **options})
    run_id = store.create_run(spec, kind=kind)
    engine_info = json.dumps(started(1, classes=classes or SHAPES).to_dict())
    store.update(run_id, status=status, engine_info=engine_info)
    if checkpoint:
        folder = store.run(run_id).folder / "checkpoints"
        folder.mkdir()
        (folder / "best.pt").touch()
    return run_id


def refusal(store: RunStore, kind: str, run_ids: list[int], **options) -> str:
    fusion = FusionSpec(kind, [{"run": i} for i in run_ids], **options)
    with pytest.raises(SpecError) as error:
        fusion.validate()
        launcher.fuse(store, fusion, run_ids)
    return str(error.value)


def test_runs_of_other_datasets_or_classes_are_refused_for_any_fusion(store):
    shapes = finished_run(store)
    other_data = finished_run(store, dataset="shapes-shift")
    other_classes = finished_run(store, classes=["circle", "square"])
    for kind in ("ensemble", "soup"):
        assert "needs runs of one dataset" in refusal(store, kind, [shapes, other_data])
        assert "trained on different classes" in refusal(store, kind, [shapes, other_classes])


def test_a_soup_refuses_other_architectures_and_other_starting_weights(store):
    first = finished_run(store, init="scratch", seed=0)
    other_arch = finished_run(store, arch="resnet20")
    other_seed = finished_run(store, init="scratch", seed=1)
    message = refusal(store, "soup", [first, other_arch])
    assert "a soup averages runs of one architecture (an ensemble takes any)" in message
    message = refusal(store, "soup", [first, other_seed])
    assert "start from different weights (scratch with seed 0 vs scratch with seed 1)" in message


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s: finished_run(s, status="running"), "is running; fuse completed runs only"),
        (lambda s: finished_run(s, checkpoint=False), "has no best checkpoint left"),
        (lambda s: finished_run(s, kind="ensemble"), "is an ensemble, which has no weights"),
        (lambda s: 99, "there is no run 99"),
    ],
)
def test_a_member_that_cannot_be_fused_is_refused_with_the_reason(store, make, message):
    good = finished_run(store)
    assert message in refusal(store, "ensemble", [good, make(store)])


def test_fusion_options_that_do_not_fit_are_refused(store):
    one, two = finished_run(store), finished_run(store)
    assert "named twice" in refusal(store, "ensemble", [one, one])
    assert "needs two runs or more" in refusal(store, "soup", [one])
    assert "--weights has 3 numbers for 2 runs" in refusal(
        store, "ensemble", [one, two], weights=[1, 1, 1]
    )
    assert "not all 0" in refusal(store, "ensemble", [one, two], weights=[0, 0])
    assert "leave --weights out" in refusal(store, "soup", [one, two], greedy=True, weights=[1, 2])
    assert "give one id" in refusal(store, "wise-ft", [one, two])
    assert "started from scratch" in refusal(store, "wise-ft", [one])


def test_teachers_are_checked_before_the_student_starts(store):
    teacher = finished_run(store, classes=["circle", "square"])
    ensemble = finished_run(store, kind="ensemble")
    cases = {
        f"run:{teacher}": "was not trained on this run's class triangle",
        "run:99": "there is no run 99",
        f"run:{ensemble}": "is an ensemble, which has no weights of its own",
    }
    for source, message in cases.items():
        spec = RunSpec.from_dict({"classes": SHAPES, "teacher": [source]})
        with pytest.raises(SpecError, match=message):
            sources.resolve_teachers(store, spec)
    spec = RunSpec.from_dict({"classes": ["square", "circle"], "teacher": [f"run:{teacher}"]})
    assert sources.resolve_teachers(store, spec) == [teacher]
    assert spec.teacher_checkpoints == [str(store.run(teacher).folder / "checkpoints" / "best.pt")]


def test_a_version_one_store_gains_the_new_columns_and_keeps_its_runs(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    RunStore(path).close()
    back_to_version_one(path)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO runs (name, status, kind) VALUES ('old', 'completed', 'train')")
    store = RunStore(path)
    [run] = store.list_runs()
    assert run.name == "old" and run.teachers == () and run.recipe is None
    assert run.last_event_at is None and run.sweep is None
    assert run.queue_position is None and RunQueue(store).waiting() == []


@pytest.mark.slow
def test_distil_ensemble_and_soup_from_the_command_line(tmp_path):
    # The real engine: what the runs are made from (teachers, the old task, the members of
    # an ensemble or soup) reaches it through the spec and fusion files, and what it makes
    # of them comes back through its events.
    def run(*args: str) -> subprocess.CompletedProcess:
        """A command as a user types it (in this process; each run's engine is a process of
        its own): the runs it trains are followed to their end."""
        result = invoke(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def look(*args: str) -> subprocess.CompletedProcess:
        """A command that only reads the store, run in this process."""
        result = invoke(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    run("run", *TINY, "--name", "start")
    run("run", *TINY, "--init", "run:1", "--name", "tuned a")
    run("run", *TINY, "--init", "run:1", "--seed", "1", "--name", "tuned b")
    ensemble = run("ensemble", "2", "3", "--device", "cpu")
    assert "ensemble of runs 2, 3" in ensemble.stdout and "completed run 4" in ensemble.stdout
    soup = run("soup", "2", "3", "--greedy", "--device", "cpu")
    assert "+ run" in soup.stdout and "completed run 5" in soup.stdout
    run("run", *TINY, "--init", "run:5", "--name", "from the soup")
    student = run(
        "run", *TINY, "--arch", "cnn", "--teacher", "run:5", "--kd-alpha", "0.5", "--name", "kd"
    )
    assert "distilling from run:5 (alpha 0.5, temperature 4)" in student.stdout
    assert "(ce " in student.stdout and " kd " in student.stdout

    lwf = run("run", *TINY, "--dataset", "shapes-shift", "--init", "run:1", "--lwf", "0.5")
    assert "learning without forgetting: the old task (shapes: circle," in lwf.stdout
    assert "old task top-1 (shapes)" in lwf.stdout

    runs = {r["id"]: r for r in runs_json(tmp_path)}
    assert runs[8]["test_report"]["old_task"]["dataset"] == "shapes"
    assert runs[4]["kind"] == "ensemble" and runs[4]["parents"] == [2, 3]
    assert runs[4]["recipe"]["outcome"]["members"] == [2, 3]
    assert runs[5]["kind"] == "soup" and runs[5]["recipe"]["greedy"] is True
    assert set(runs[5]["recipe"]["outcome"]["kept"]) <= {2, 3}
    assert runs[6]["parents"] == [5] and runs[6]["status"] == "completed"
    assert runs[7]["teachers"] == [5] and runs[7]["status"] == "completed"
    assert [r["id"] for r in json.loads(look("runs", "--json").stdout)] == [8, 7, 6, 5, 4, 3, 2, 1]

    shown = look("show", "5").stdout
    assert "greedy soup of runs 2, 3: `resnet-tui soup 2 3 --greedy`" in shown
    assert "members: run 2 (tuned a), run 3 (tuned b)" in shown
    assert "Test metrics" in shown
    shown = json.loads(look("show", "7", "--json").stdout)
    assert all("train_kd_loss" in row for row in shown["epoch_table"])
    assert "distilled from run 5" in look("show", "7").stdout

    refused = invoke("soup", "1", "2", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "start from different weights" in refused.stderr
    refused = invoke("resume", "4", cwd=tmp_path)
    assert refused.returncode == 2 and "make it again with `resnet-tui ensemble 2 3`" in (
        refused.stderr
    )
