"""Sweeps and the queue: combinations queued as runs of one sweep, a worker that runs the
queue in order, and a queue that two workers share without taking a run twice."""

import json
import threading

import pytest

from engine.contract import catalog
from engine.contract.spec import RunSpec, SpecError
from resnet_tui.runs.launcher import queue
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.sweeps import MOST_RUNS_IN_A_SWEEP, summary, sweep_specs
from resnet_tui.runs.worker import Worker
from tests.cli.command import BAD_INPUT, TINY, cli, invoke, runs_json
from tests.conftest import record_fault


def test_a_sweep_is_every_combination_named_by_what_varies():
    specs = sweep_specs(
        {"arch": "resnet20,resnet56", "freeze": "head,full", "lr": "0.1,0.01", "epochs": 3}
    )
    assert len(specs) == 8
    assert [(s.arch, s.freeze, s.lr) for s in specs[:3]] == [
        ("resnet20", "head", 0.1),
        ("resnet20", "head", 0.01),
        ("resnet20", "full", 0.1),
    ]
    assert {s.epochs for s in specs} == {3}
    assert specs[0].name == "arch=resnet20 freeze=head lr=0.1"
    named = sweep_specs({"name": "base", "lr": "0.1,0.01"})
    assert [s.name for s in named] == ["base lr=0.1", "base lr=0.01"]


def test_list_options_are_taken_whole_not_swept():
    specs = sweep_specs({"classes": "0,1,2", "lr": "0.1,0.01"})
    assert len(specs) == 2
    assert all(s.classes == ["circle", "square", "triangle"] for s in specs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": "0.1,abc"}, "lr=abc: --lr must be a number"),
        ({"lr": "0.1,0.1"}, "lists a value twice"),
        ({"arch": "resnet20,nope"}, "unknown architecture 'nope'"),
        ({"seed": ",".join(map(str, range(MOST_RUNS_IN_A_SWEEP + 1)))}, "list fewer values"),
    ],
)
def test_a_bad_sweep_is_refused_before_any_run_is_made(options, message):
    with pytest.raises(SpecError, match=message):
        sweep_specs(options)


def test_sweep_then_worker_runs_the_queue_in_order_from_the_command_line(tmp_path, fake_engine):
    queued = invoke("sweep", *TINY, "--epochs", "1", "--seed", "1,2,3", "--json", cwd=tmp_path)
    assert queued.returncode == 0, queued.stderr
    made = json.loads(queued.stdout)
    assert made == {"sweep": 1, "runs": [1, 2, 3]}
    runs = runs_json(tmp_path)
    assert {run["status"] for run in runs} == {"queued"}
    assert {run["sweep"] for run in runs} == {1}

    removed = invoke("rm", "3", "--yes", cwd=tmp_path)  # a waiting run leaves the queue
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "runs" / "3").exists()

    moved = invoke("queue", "--first", "2", "--json", cwd=tmp_path)
    assert [run["id"] for run in json.loads(moved.stdout)] == [2, 1]

    worker = cli("worker", "--devices", "cpu", cwd=tmp_path)  # a worker is a process of its own
    assert worker.returncode == 0, worker.stderr
    started = [line.split()[1] for line in worker.stdout.splitlines() if "started on cpu" in line]
    assert started == ["2", "1"]
    runs = {run["id"]: run for run in runs_json(tmp_path)}
    assert {run["status"] for run in runs.values()} == {"completed"}
    assert [runs[i]["spec"]["seed"] for i in (1, 2)] == [1, 2]
    assert all(run["device"] == "cpu" and run["queue_position"] is None for run in runs.values())
    assert invoke("queue", cwd=tmp_path).stdout.strip() == "the queue is empty"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--devices", "cpu,cpu"], "names a device twice"),
        (["worker", "--devices", "cpu", "--per-device", "0"], "--per-device must be 1 or more"),
        (["worker", "--devices", "gpu0"], "unknown device 'gpu0'"),
        (["queue", "--first", "7"], "no run 7"),
        (["sweep", "--lr", "0.1,fast"], "--lr must be a number"),
        (["run", "--folds", "1"], "--folds must be from 2 to 20"),
        (["run", "--folds", "2", "--nproc", "2", "--device", "cpu"], "one process a fold"),
        (["sweep", "--nproc", "2", "--device", "cpu", "--lr", "0.1,0.2"], "one device a worker"),
        (["summary", "4"], "no sweep 4"),
    ],
)
def test_bad_queue_commands_get_one_line_and_exit_code_2(tmp_path, args, message):
    result = invoke(*args, cwd=tmp_path)
    survived = result.returncode == 2 and message in result.stderr
    record_fault(BAD_INPUT, survived and "Traceback" not in result.stderr)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_two_workers_never_take_the_same_run(tmp_path, tiny_spec_options):
    store = RunStore(tmp_path / "runs.db")
    ids = [store.create_run(RunSpec.from_dict(tiny_spec_options)) for _ in range(40)]
    RunQueue(store).enqueue(ids)
    taken: list[list[int]] = [[], []]

    def take_all(mine: list[int], pid: int) -> None:
        own = RunQueue(RunStore(tmp_path / "runs.db"))  # a worker's own connection
        while (run := own.take_next(pid)) is not None:
            mine.append(run.id)

    workers = [threading.Thread(target=take_all, args=(taken[i], 1000 + i)) for i in (0, 1)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert sorted(taken[0] + taken[1]) == ids
    assert RunQueue(store).waiting() == []


def test_a_worker_leaves_runs_queued_when_told_to_stop(tmp_path, tiny_spec_options):
    store = RunStore(tmp_path / "runs.db")
    ids = [store.create_run(RunSpec.from_dict(tiny_spec_options)) for _ in range(2)]
    RunQueue(store).enqueue(ids)
    worker = Worker(store, ["cpu"], report=lambda line: None)
    worker.stopping = True
    assert worker.step() is False
    assert [run.id for run in RunQueue(store).waiting()] == ids


def test_folds_validate_on_disjoint_parts_that_cover_the_training_data():
    from engine.data.datasets import load_dataset

    def images(split) -> set[bytes]:
        return {image.numpy().tobytes() for image in split.images}

    bundles = [
        load_dataset(RunSpec.from_dict({"folds": 3, "fold": fold, "image_size": 16}))
        for fold in range(3)
    ]
    held_out = [images(bundle.val) for bundle in bundles]
    for first, second in [(0, 1), (0, 2), (1, 2)]:
        assert not held_out[first] & held_out[second]
    everything = held_out[0] | held_out[1] | held_out[2]
    assert images(bundles[0].train) | held_out[0] == everything
    size = catalog.DATASETS["shapes"].train_size
    assert len(everything) == len(bundles[0].train) + len(bundles[0].val) == size


def test_a_sweep_with_folds_is_summarised_per_setting(tmp_path):
    specs = sweep_specs({"lr": "0.1,0.01", "folds": 2})
    assert [s.name for s in specs] == [
        "lr=0.1 fold 1/2",
        "lr=0.1 fold 2/2",
        "lr=0.01 fold 1/2",
        "lr=0.01 fold 2/2",
    ]
    assert [s.fold for s in specs] == [0, 1, 0, 1]
    store = RunStore(tmp_path / "runs.db")
    ids, sweep = queue(store, specs)  # as `resnet-tui sweep` makes them, each with its setting
    assert sweep is not None
    for run_id, acc in zip(ids, (0.5, 0.7, 0.2, 0.4), strict=True):
        store.update(run_id, status="completed", best_val_acc=acc, test_acc=acc, seconds=10)
    rows = summary(store.sweep_runs(sweep))
    assert [row["setting"] for row in rows] == ["lr=0.1", "lr=0.01"]
    assert rows[0]["test_acc"]["mean"] == pytest.approx(0.6)
    assert rows[0]["test_acc"]["std"] == pytest.approx(0.1414, abs=1e-3)
    assert rows[1]["completed"] == 2


def test_run_with_folds_trains_each_fold_and_reports_mean_and_spread(tmp_path, fake_engine):
    result = cli("run", *TINY, "--epochs", "1", "--folds", "2", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    [setting] = report["settings"]
    assert setting["completed"] == 2 and setting["setting"] == "resnet8 on shapes"
    low, high = setting["test_acc"]["min"], setting["test_acc"]["max"]
    assert low <= setting["test_acc"]["mean"] <= high
    runs = sorted(runs_json(tmp_path), key=lambda run: run["id"])
    names = [run["name"] for run in runs]
    assert names == ["resnet8 on shapes fold 1/2", "resnet8 on shapes fold 2/2"]
    assert [run["spec"]["fold"] for run in runs] == [0, 1]
    assert {run["sweep"] for run in runs} == {report["sweep"]}
    table = invoke("summary", str(report["sweep"]), cwd=tmp_path)
    assert "2/2" in table.stdout and "±" in table.stdout
