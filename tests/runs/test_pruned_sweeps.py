"""Pruned sweeps end to end on the torch-free stand-in engine: each run's supervisor judges it
after each epoch against its sweep's other runs in the store, stops a run behind, which ends
`pruned` with why in its events; a worker counts it done, and `resume` trains it on. And the
store changing under a judgement (runs deleted or renamed, forged metrics) never stops a
supervisor."""

import json
import re

import pytest

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.app.screens.run_text import pruned_words
from resnet_tui.runs.follower import RunFollower
from resnet_tui.runs.launcher import queue
from resnet_tui.runs.pruning import Pruned
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.supervisor import Supervisor, follow
from resnet_tui.runs.sweeps import SweepPruning, cut_short_epochs
from tests.cli.command import TINY, cli, invoke, runs_json
from tests.runs.made_events import epoch_ended, finished, started, write_log

# The stand-in's val acc rises with the seed (0.01 a seed), so a sweep over seeds listed
# best first has its last runs behind the first ones, at every epoch.
SEEDS_BEST_FIRST = "3,2,1,0"


def _sweep(tmp_path, *options: str) -> dict:
    made = invoke("sweep", *TINY, "--epochs", "3", *options, "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)


def _by_id(tmp_path) -> dict[int, dict]:
    return {run["id"]: run for run in runs_json(tmp_path)}


def test_a_median_sweep_prunes_the_run_behind_and_its_worker_counts_it_done(tmp_path, fake_engine):
    made = _sweep(tmp_path, "--seed", "2,1,0", "--prune", "median")
    assert made["runs"] == [1, 2, 3]
    worker = cli("worker", "--devices", "cpu", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    assert "run 3 (seed=0) pruned at epoch 1: best val acc" in worker.stdout
    runs = _by_id(tmp_path)
    assert [runs[i]["status"] for i in (1, 2, 3)] == ["completed", "completed", "pruned"]
    assert runs[3]["spec"]["prune"] == "median" and runs[3]["test_acc"] is None

    shown = json.loads(invoke("show", "3", "--json", cwd=tmp_path).stdout)
    assert shown["pruned"]["epoch"] == 1
    assert "below the sweep's median" in shown["pruned"]["reason"]
    assert [row["epoch"] for row in shown["epoch_table"]] == [1, 2]  # the cut-short epoch kept
    text = invoke("show", "3", cwd=tmp_path).stdout
    assert "pruned at epoch 1: best val acc" in text and re.search(r"prune +median", text)
    listed = invoke("runs", "--status", "pruned", "--json", cwd=tmp_path)
    assert [run["id"] for run in json.loads(listed.stdout)] == [3]
    summary = json.loads(invoke("summary", "1", "--json", cwd=tmp_path).stdout)
    assert [(row["completed"], row["pruned"]) for row in summary["settings"]] == [
        *((1, 0), (1, 0)),
        (0, 1),
    ]
    assert "pruned" in invoke("summary", "1", cwd=tmp_path).stdout

    events = (tmp_path / "runs" / "3" / "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["status"] == "pruned"
    assert json.loads(events[-3])["status"] == "stopped"  # the engine's own end, kept
    assert cut_short_epochs(tmp_path / "runs" / "3" / "events.jsonl") == {2}

    resumed = cli("resume", "3", "--json", cwd=tmp_path)  # the user's choice: it trains on
    assert resumed.returncode == 0, resumed.stderr
    assert _by_id(tmp_path)[3]["status"] == "completed"
    log = (tmp_path / "runs" / "3" / "supervisor.log").read_text()
    assert "trains on unpruned" in log and "Traceback" not in log


def test_an_asha_sweep_lets_the_first_runs_at_a_rung_on_and_cuts_the_rest(tmp_path, fake_engine):
    _sweep(tmp_path, "--seed", SEEDS_BEST_FIRST, "--prune", "asha", "--epochs", "2")
    worker = cli("worker", "--devices", "cpu", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    runs = _by_id(tmp_path)
    assert [runs[i]["status"] for i in (1, 2, 3, 4)] == [
        *("completed", "completed"),
        *("pruned", "pruned"),
    ]
    assert "of the 3 runs at this rung (1 in 3 goes on" in worker.stdout
    assert "of the 4 runs at this rung" in worker.stdout


def test_a_sweep_worker_goes_on_after_a_run_is_pruned(tmp_path, fake_engine):
    """`worker --sweep N` stops taking runs once one was stopped by hand: a pruned one is
    no such stop."""
    made = _sweep(tmp_path, "--seed", SEEDS_BEST_FIRST, "--prune", "median", "--epochs", "2")
    worker = cli("worker", "--devices", "cpu", "--sweep", str(made["sweep"]), cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    statuses = [run["status"] for run in sorted(runs_json(tmp_path), key=lambda r: r["id"])]
    assert statuses == ["completed", "completed", "pruned", "pruned"]


def _store_of_a_sweep(tmp_path, seeds: int = 3, **options) -> tuple[RunStore, list[int]]:
    store = RunStore(tmp_path / "runs.db")
    base = {"epochs": 3, "prune": "median", "device": "cpu", **options}
    ids, sweep = queue(store, [RunSpec.from_dict({**base, "seed": s}) for s in range(seeds)])
    assert sweep == 1
    return store, ids


def _metric(store: RunStore, run_id: int, epoch, value) -> None:
    """A val acc row of the run, after its others (a forged one, where the test says)."""
    with store.write_transaction() as connection:
        connection.execute(
            "INSERT INTO metrics (run_id, seq, epoch, step, split, name, value) VALUES (?, "
            "(SELECT coalesce(max(seq), 0) + 1 FROM metrics WHERE run_id = ?), ?, NULL, 'val', "
            "'acc', ?)",
            [run_id, run_id, epoch, value],
        )


def test_the_store_changing_under_a_judgement_never_breaks_it(tmp_path):
    store, (own, first, second) = _store_of_a_sweep(tmp_path)
    pruning = SweepPruning.of(store, store.run(own), RunState())
    assert pruning is not None
    _metric(store, own, 1, 0.2)
    _metric(store, first, 1, "forty per cent")  # forged: text, then nothing, then no epoch
    _metric(store, first, 2, None)
    _metric(store, second, "one", 0.9)
    _metric(store, second, 1, float("inf"))
    assert pruning.judge(1) is None  # no other run has a number at epoch 1
    _metric(store, first, 1, 0.5)
    _metric(store, second, 1, 0.7)
    said = pruning.judge(1)
    assert said is not None and "median 60.0%" in said.reason
    store.edit(own, "renamed [b]run[/b]", "", "")  # a rename changes nothing
    store.edit(first, "", "tag", "")
    assert pruning.judge(1) == said
    assert store.delete_runs([second], queued=[second])  # gone meanwhile: too few to judge
    assert pruning.judge(1) is None


def test_a_damaged_spec_or_a_run_of_no_sweep_means_no_judgement(tmp_path):
    store, (own, first, _) = _store_of_a_sweep(tmp_path)
    store.update(first, spec="{not json")  # a sibling's spec does not matter
    assert SweepPruning.of(store, store.run(own), RunState()) is not None
    store.update(own, spec="{not json")  # the run's own: no rule known, no pruning
    assert SweepPruning.of(store, store.run(own), RunState()) is None
    alone = store.create_run(RunSpec.from_dict({"prune": "median", "epochs": 3}))
    assert SweepPruning.of(store, store.run(alone), RunState()) is None


def test_a_stopped_runs_cut_short_epoch_counts_for_no_rule(tmp_path):
    store, (own, first, second) = _store_of_a_sweep(tmp_path)
    for run_id, value in ((own, 0.2), (first, 0.6), (second, 0.7)):
        _metric(store, run_id, 1, value)
    _metric(store, first, 2, 0.9)
    _metric(store, second, 2, 0.9)
    _metric(store, own, 2, 0.3)
    pruning = SweepPruning.of(store, store.run(own), RunState())
    assert pruning.judge(2) is not None
    folder = store.run(second).folder
    write_log(folder / "events.jsonl", [started(1), epoch_ended(2, 2, 0.9, partial=True)])
    store.update(second, status="stopped", last_seq=2)
    assert pruning.judge(2) is None  # one other run reached epoch 2 whole
    store.update(second, status="stopped", last_seq=3)
    (folder / "events.jsonl").unlink()  # its file gone: its epochs count as the store has them
    assert pruning.judge(2) is not None


def test_a_run_pruned_says_why_until_it_is_resumed_and_folds_in_any_order():
    line = "pruned at epoch 1: best val acc 20.0% is below the sweep's median 60.0% at epoch 1"
    log = [
        started(1),
        epoch_ended(2, 1, 0.2),
        finished(3, "stopped", test=None),
        finished(5, "pruned", test=None),
    ]
    note = ev.Log(seq=4, t=200.0, level="info", message=line)
    forward = RunState().apply_all([*log[:3], note, log[3]])
    backward = RunState().apply_all([log[3], note, *reversed(log[:3])])
    for state in (forward, backward):
        assert state.status == "pruned" and state.pruned == Pruned.read(line)
        assert state.pruned_end is not None
    again = forward.apply(started(6, resumed_from_epoch=1))
    assert again.status == "running" and again.pruned is None and again.pruned_end is not None
    unexplained = RunState().apply_all([started(1), finished(2, "pruned", test=None)])
    assert unexplained.pruned == Pruned(0, "the reason was not kept")


def test_the_run_screen_says_why_a_run_was_pruned_a_forged_reason_as_text():
    note = ev.Log(seq=4, t=200.0, level="info", message="pruned at epoch 1: [b]behind[/b]")
    state = RunState().apply_all(
        [started(1, epochs=10), epoch_ended(2, 1, 0.2), finished(3, "stopped", test=None)]
    )
    assert pruned_words(state.apply_all([note, finished(5, "pruned", test=None)])) == (
        "pruned at epoch 1 of 10: \\[b]behind\\[/b]"
    )


@pytest.mark.parametrize("engine_end", ["stopped", "completed"])
def test_only_an_engine_that_stopped_as_asked_ends_pruned(tmp_path, engine_end):
    """The engine may complete (or fail) before the stop reaches it: its end then stands."""
    store, (own, _, _) = _store_of_a_sweep(tmp_path)
    run = store.run(own)
    write_log(run.events_path, [started(1), epoch_ended(2, 1, 0.2), finished(3, engine_end)])
    supervisor = Supervisor(resume=False, fusion=False)
    supervisor.run, supervisor.pruned = run, Pruned(1, "behind the others")
    follower = RunFollower(store, run)
    supervisor.end_pruned(follower)
    follow(follower, final=True)
    after = store.run(own)
    expected = "pruned" if engine_end == "stopped" else engine_end
    assert after.status == expected and after.best_val_acc == 0.5
    state = RunState().apply_read(ev.read_events(run.events_path))
    assert state.pruned == (supervisor.pruned if engine_end == "stopped" else None)


@pytest.mark.parametrize(
    ("forged", "status"),
    [
        ("INSERT INTO run_sources VALUES (2, 'x', 'parent', 0)", "pruned"),
        ("UPDATE metrics SET value = 'high' WHERE run_id = 1", "completed"),
    ],
)
def test_a_forged_store_leaves_the_supervisor_standing(tmp_path, fake_engine, forged, status):
    """A sibling's lineage forged into what is no id (left out: the run is judged as
    before), or its metrics forged into text (left out: too few others to judge by, so the
    run trains on); either way no traceback."""
    _sweep(tmp_path, "--seed", "2,1,0", "--prune", "median", "--epochs", "2")
    first = cli("worker", "--devices", "cpu", "--sweep", "1", cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr
    store = RunStore(tmp_path / "runs.db")
    assert store.run(3).status == "pruned"
    # the same sweep's last run once more, the store now forged
    store.delete_runs([3])
    again = {**store.run(2).spec_values, "seed": 0, "name": "again"}
    with store.write_transaction() as connection:
        connection.execute(forged)
    ids, _ = queue(store, [RunSpec.from_dict(again)])
    store.update(ids[0], sweep=1)
    worker = cli("worker", "--devices", "cpu", cwd=tmp_path, timeout=120)
    assert worker.returncode == 0, worker.stderr
    assert store.run(ids[0]).status == status
    log = (store.run(ids[0]).folder / "supervisor.log").read_text()
    assert "Traceback" not in log


# Three real tiny runs on digits: two that learn in their first epoch, one that cannot.
REAL = ["--dataset", "mnist", "--arch", "resnet8", "--width", "4", "--image-size", "16"]
REAL += ["--limit", "512", "--val-fraction", "0.01", "--batch-size", "32", "--epochs", "2"]
REAL += ["--device", "cpu", "--lr", "0.02,0.01,1e-7"]


@pytest.mark.slow
def test_a_real_tiny_sweep_prunes_the_run_that_cannot_learn(tmp_path, mnist_root):
    """The engine itself, under its supervisors and a worker: after epoch 1 the runs at lr
    0.02 and 0.01 are well above chance, the one at 1e-7 at chance, below their median, so
    it is pruned there (its cut-short second epoch kept), and the worker exits 0."""
    assert mnist_root == tmp_path / "data"  # where the commands look for datasets
    made = invoke("sweep", *REAL, "--prune", "median", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    worker = cli("worker", "--devices", "cpu", cwd=tmp_path, timeout=900)
    assert worker.returncode == 0, worker.stderr
    runs = _by_id(tmp_path)
    assert [runs[i]["status"] for i in (1, 2, 3)] == ["completed", "completed", "pruned"], [
        runs[i]["error"] for i in (1, 2, 3)
    ]
    assert min(runs[1]["best_val_acc"], runs[2]["best_val_acc"]) > 0.2
    shown = json.loads(invoke("show", "3", "--json", cwd=tmp_path).stdout)
    assert shown["pruned"]["epoch"] == 1 and "below the sweep's median" in shown["pruned"]["reason"]
    assert shown["epoch_table"][0]["val_acc"] < 0.2 and runs[3]["test_acc"] is None
    assert (tmp_path / "runs" / "3" / "checkpoints" / "last.pt").is_file()
