"""Searches without training: the space's grammar, the study rebuilt from the store as the
trials were recorded, a sampler that asks the same again, refused combinations asked again,
and the store changing under a search (trials deleted, forged metrics, a lock held)."""

import json
import sqlite3
import threading
import time
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.contract.spec import RunSpec, SpecError
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.search import Search, load_search, queue_trial, trials_made, trials_of
from resnet_tui.runs.search_space import CHOICE, LOG, UNIFORM, Dimension, read_dimension, read_space
from resnet_tui.runs.search_study import ask, best_trial, importances, study_of
from resnet_tui.runs.store import RunStore
from tests.runs.old_stores import back_to_version_five

TINY = {"arch": "resnet8", "width": "4", "limit": "64", "image_size": "16", "device": "cpu"}


# The space


@pytest.mark.parametrize(
    ("options", "dimensions"),
    [
        ({"lr": "log:1e-4..1e-1"}, [Dimension("lr", LOG, 1e-4, 1e-1)]),
        ({"momentum": "0.8..0.99"}, [Dimension("momentum", UNIFORM, 0.8, 0.99)]),
        ({"epochs": "2..8"}, [Dimension("epochs", UNIFORM, 2, 8, whole=True)]),
        ({"batch_size": "log:16..256"}, [Dimension("batch_size", LOG, 16, 256, whole=True)]),
        (
            {"arch": "ResNet20,resnet32", "freeze": "head,full"},
            [
                Dimension("arch", CHOICE, choices=("resnet20", "resnet32")),
                Dimension("freeze", CHOICE, choices=("head", "full")),
            ],
        ),
        ({"lr": "0.1,0.01"}, [Dimension("lr", CHOICE, choices=(0.1, 0.01))]),
    ],
)
def test_ranges_and_choices_are_read_as_dimensions_and_the_rest_is_fixed(options, dimensions):
    fixed, space = read_space({**options, "width": "4", "data_root": "../data,x", "name": "a..b"})
    assert space == dimensions
    assert fixed == {"width": "4", "data_root": "../data,x", "name": "a..b"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": "log:0..1"}, "--lr log:0..1: a log range needs positive bounds"),
        ({"momentum": "0.99..0.8"}, "its low end must be below its high end"),
        ({"lr": "0.1..0.1"}, "its low end must be below its high end"),
        ({"arch": "1..3"}, "--arch takes text, so it has no range"),
        ({"lr": "0..1"}, "--lr 0..1: --lr must be a positive number up to 100"),
        ({"lr": "log:1e-3..1000"}, "--lr must be a positive number up to 100"),
        ({"momentum": "0.5..1"}, "--momentum must be at least 0 and below 1"),
        ({"epochs": "2.5..8"}, "a range's ends must be whole numbers"),
        ({"lr": "nan..1"}, "must be finite numbers"),
        ({"lr": "1e-4.."}, "must be finite numbers"),
        ({"lr": "log:1e-4"}, "write a range as LOW..HIGH"),
        ({"arch": "resnet20,ResNet20"}, "--arch lists resnet20 twice"),
        ({"arch": "resnet20,nope"}, "unknown architecture 'nope'"),
        ({"lr": "0.1,,0.2"}, "empty value between commas"),
        ({"device": "cpu,cuda"}, "--device is one for the whole search"),
        ({"prune": "median,asha"}, "--prune is one for the whole search"),
        ({"lr": "0.1"}, "nothing to search"),
    ],
)
def test_each_mistake_in_a_space_is_one_line(options, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")) as refused:
        read_space(options)
    assert "\n" not in str(refused.value)


_FLOATS = st.floats(1e-6, 10.0, allow_nan=False, allow_infinity=False)


@st.composite
def _dimensions(draw) -> Dimension:
    kind = draw(st.sampled_from(["float", "int", "choice"]))
    if kind == "choice":
        policies = st.sampled_from(["head", "full", "last-2", "lp-ft"])
        choices = draw(st.lists(policies, min_size=2, max_size=4, unique=True))
        return Dimension("freeze", CHOICE, choices=tuple(choices))
    if kind == "int":
        ends = st.lists(st.integers(1, 100_000), min_size=2, max_size=2, unique=True)
        low, high = sorted(draw(ends))
        return Dimension("epochs", draw(st.sampled_from([LOG, UNIFORM])), low, high, whole=True)
    low, high = sorted(draw(st.lists(_FLOATS, min_size=2, max_size=2, unique=True)))
    return Dimension("lr", draw(st.sampled_from([LOG, UNIFORM])), low, high)


@given(_dimensions())
def test_a_dimension_reads_back_from_its_text_as_it_was(dimension):
    assert read_dimension(dimension.name, dimension.text) == dimension


# The study, from the store


def _search(seed: int = 7, trials: int = 20, sampler: str = "tpe", **options: str) -> Search:
    options = options or {"lr": "log:1e-4..1e-1", "momentum": "0.8..0.99", "freeze": "head,full"}
    fixed, space = read_space({**TINY, **options})
    return Search(0, tuple(space), fixed, sampler, seed, trials)


def _make_trials(store: RunStore, search: Search, count: int) -> Search:
    """Ask for and queue `count` trials, one after another, as a driver does."""
    for number in range(1, count + 1):
        trials = trials_of(store, search) if search.sweep else []
        params, spec, _ = ask(search, trials, number)
        made = queue_trial(store, search, number, params, spec)
        assert made is not None
        search = replace(search, sweep=made[1])
    return search


def _end(store: RunStore, run_id: int, status: str, value: object = None) -> None:
    RunQueue(store).take_next(1, [run_id])
    store.update(run_id, status=status, best_val_acc=value)


def test_the_study_rebuilt_from_the_store_has_the_trials_as_recorded(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    search = _make_trials(store, _search(), 5)
    assert load_search(store, search.sweep) == search
    _end(store, 1, "completed", 0.61)
    _end(store, 2, "pruned", 0.4)
    store.connection.execute(
        "INSERT INTO metrics (run_id, seq, epoch, step, split, name, value) "
        "VALUES (2, 5, 1, 0, 'val', 'acc', 0.35), (2, 9, 2, 0, 'val', 'acc', 0.4)"
    )
    _end(store, 3, "failed")
    _end(store, 4, "running")

    trials = trials_of(store, search)
    study = study_of(search, trials)
    kept = {
        row[0]: json.loads(row[1])
        for row in store.connection.execute("SELECT run_id, params FROM search_trials")
    }
    assert [t.params for t in study.trials] == [kept[run] for run in (1, 2, 3, 4, 5)]
    assert [t.state.name for t in study.trials] == [
        *("COMPLETE", "PRUNED", "FAIL", "RUNNING", "RUNNING"),
    ]
    assert [t.value for t in study.trials] == [0.61, None, None, None, None]
    assert study.trials[1].intermediate_values == {2: 0.4}
    assert [t.user_attrs["run"] for t in study.trials] == [1, 2, 3, 4, 5]
    assert best_trial(trials).run.id == 1
    assert study.best_trial.params == kept[1]
    # the runs are a sweep's, in the queue, named by their trials
    assert [run.id for run in store.sweep_runs(search.sweep)] == [1, 2, 3, 4, 5]
    assert store.run(5).waits_in_queue and store.run(5).name.startswith("trial 5: lr=")


def test_a_sampler_of_a_fixed_seed_asks_the_same_again_and_another_seed_not(tmp_path):
    def asked(folder: str, seed: int) -> list[dict]:
        (tmp_path / folder).mkdir()
        store = RunStore(tmp_path / folder / "runs.db")
        search = _make_trials(store, _search(seed), 1)
        for number in range(2, 15):  # past TPE's ten random start-up trials
            trial = trials_of(store, search)[-1]
            score = trial.params["lr"] * 10 + (trial.params["freeze"] == "full") * 0.1
            _end(store, trial.run.id, "completed", score)
            params, spec, _ = ask(search, trials_of(store, search), number)
            queue_trial(store, search, number, params, spec)
        return [trial.params for trial in trials_of(store, search)]

    first = asked("a", 11)
    assert asked("b", 11) == first
    assert asked("c", 12) != first
    assert len({json.dumps(params) for params in first}) == len(first)


def test_the_next_trial_is_the_same_whichever_process_asks_it(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    search = _make_trials(store, _search(3, sampler="random"), 2)
    trials = trials_of(store, search)
    assert ask(search, trials, 3)[0] == ask(search, trials, 3)[0]


def test_a_combination_the_rules_refuse_is_asked_again_and_never_queued(tmp_path):
    # A trial of 2 epochs or fewer leaves no epoch to prune after (--prune-after 2).
    search = _search(1, epochs="1..6", prune="median", prune_after="2")
    store = RunStore(tmp_path / "runs.db")
    refusals = []
    for number in range(1, 9):
        params, spec, refused = ask(
            search, trials_of(store, search) if search.sweep else [], number
        )
        refusals += refused
        run_id, sweep = queue_trial(store, search, number, params, spec)
        search = replace(search, sweep=sweep)
        assert spec.epochs > 2 and spec.prune == "median"
    assert refusals and all("leaves no epoch to prune after" in line for line in refusals)
    assert all(run.spec.epochs > 2 for run in store.sweep_runs(search.sweep))


def test_a_space_every_trial_of_which_is_refused_says_why_in_one_line():
    search = _search(val_fraction="0", lr="log:1e-3..1e-1")
    with pytest.raises(SpecError, match="^--val-fraction 0 leaves no validation set"):
        ask(search, [], 1, most_refused=5)


def test_a_search_never_makes_more_trials_than_it_has(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    search = _make_trials(store, _search(trials=2), 2)
    params, spec, _ = ask(search, trials_of(store, search), 3)
    assert queue_trial(store, search, 3, params, spec) is None
    again = ask(search, trials_of(store, search), 2)  # another process made trial 2 first
    assert queue_trial(store, search, 2, again[0], again[1]) is None
    assert [run.id for run in store.list_runs()] == [2, 1] and trials_made(store, 1) == 2


def test_a_search_takes_a_sweep_number_no_sweep_has_and_sweeps_after_it_another(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    before = store.create_run(_spec())
    RunQueue(store).enqueue([before, store.create_run(_spec())])  # sweep 1
    search = _make_trials(store, _search(), 1)
    assert search.sweep == 2
    later = RunQueue(store).enqueue([store.create_run(_spec()), store.create_run(_spec())])
    assert later == 3
    store.delete_runs([run.id for run in store.sweep_runs(search.sweep)])
    store.delete_runs([run.id for run in store.sweep_runs(later)])
    # every trial of the search deleted (and the sweep after it): 2 is still the search's
    assert RunQueue(store).enqueue([store.create_run(_spec())]) == 3


def _spec() -> RunSpec:
    return RunSpec.from_dict(TINY)


# The store changing under a search


def test_trials_deleted_forged_or_damaged_leave_a_study_that_builds(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    search = _make_trials(store, _search(), 4)
    _end(store, 1, "completed", 0.7)
    _end(store, 2, "completed", 0.5)
    store.connection.execute("UPDATE runs SET best_val_acc = 'abc' WHERE id = 2")
    store.connection.execute("UPDATE search_trials SET params = '{\"lr\": 9}' WHERE run_id = 3")
    live_damaged = trials_of(store, search)[2]
    assert (live_damaged.state, live_damaged.params) == ("RUNNING", {})  # live whatever it holds
    study_of(search, trials_of(store, search))
    _end(store, 3, "completed", 0.9)
    store.delete_runs([4], queued=[4])

    trials = trials_of(store, search)
    assert [(t.number, t.state, t.value) for t in trials] == [
        *((1, "COMPLETE", 0.7), (2, "FAIL", None), (3, "FAIL", None)),
    ]
    assert trials_made(store, search.sweep) == 4  # a deleted trial's number is never given again
    study = study_of(search, trials)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "FAIL"]
    assert "1 so far" in importances(search, trials)
    params, spec, _ = ask(search, trials, 5)
    assert queue_trial(store, search, 5, params, spec) is not None


def test_a_damaged_search_record_is_one_line(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    search = _make_trials(store, _search(), 1)
    store.connection.execute('UPDATE searches SET space = \'{"lr": "0..x"}\'')
    with pytest.raises(SpecError, match=f"search {search.sweep}'s record in the store is damaged"):
        load_search(store, search.sweep)


def test_a_trial_is_queued_while_another_process_holds_the_store_briefly(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    search = _make_trials(store, _search(), 1)
    other = sqlite3.connect(tmp_path / "runs.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    releases = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    releases.start()
    params, spec, _ = ask(search, trials_of(store, search), 2)
    started = time.monotonic()
    assert queue_trial(store, search, 2, params, spec) is not None
    assert time.monotonic() - started >= 0.5
    releases.join()
    other.close()


def test_importances_once_two_trials_completed(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    search = _make_trials(store, _search(), 4)
    for run_id, value in ((1, 0.3), (2, 0.8), (3, 0.5)):
        _end(store, run_id, "completed", value)
    found = importances(search, trials_of(store, search))
    assert set(found) == {"lr", "momentum", "freeze"}
    assert sum(found.values()) == pytest.approx(1.0)


def test_a_version_five_store_gains_searches_and_keeps_its_sweeps(tmp_path):
    path = tmp_path / "runs.db"
    store = RunStore(path)
    RunQueue(store).enqueue([store.create_run(_spec()), store.create_run(_spec())])
    store.close()
    back_to_version_five(path)
    store = RunStore(path)
    assert [run.sweep for run in store.sweep_runs(1)] == [1, 1]
    assert load_search(store, 1) is None
    assert _make_trials(store, _search(), 1).sweep == 2


# The driver, with no worker of its own (as `--queue-only`)


def _driver(store: RunStore, search: Search, parallel: int):
    from resnet_tui.runs.search_driver import SearchDriver

    told: list[dict] = []
    return SearchDriver(store, search, parallel, None, told.append), told


def test_the_driver_keeps_parallel_trials_queued_and_asks_as_each_ends(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    driver, told = _driver(store, _search(trials=4), 2)
    assert driver.step()
    assert [e["event"] for e in told] == ["queued", "queued"] and driver.search.sweep == 1
    assert [run.id for run in RunQueue(store).waiting()] == [1, 2]
    _end(store, 1, "completed", 0.5)
    driver.read_at = 0.0  # as if READ_EVERY_S had passed
    assert driver.step()
    assert [(e["event"], e["trial"]) for e in told[2:]] == [("ended", 1), ("queued", 3)]
    assert told[2]["best"]["trial"] == 1 and told[2]["value"] == 0.5

    store.delete_runs([2], queued=[2])  # deleted while queued: told, never made again
    store.connection.execute("UPDATE search_trials SET params = 'x' WHERE run_id = 3")
    driver.read_at = 0.0
    assert driver.step()
    assert [(e["event"], e["trial"]) for e in told[4:]] == [("deleted", 2), ("queued", 4)]
    _end(store, 3, "completed", 0.9)  # its parameters damaged: a failed trial
    _end(store, 4, "completed", "forged")
    driver.read_at = 0.0
    assert not driver.step()  # 4 trials made, none live: done
    assert [(e["event"], e["trial"], e["value"]) for e in told[6:]] == [
        *(("ended", 3, None), ("ended", 4, None)),
    ]
    assert trials_made(store, 1) == 4 and told[-1]["best"]["trial"] == 1
    assert [t.state for t in trials_of(store, driver.search)] == ["COMPLETE", "FAIL", "FAIL"]


def test_a_driver_that_stops_asking_queues_no_more_and_a_resumed_one_goes_on(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    driver, told = _driver(store, _search(trials=3), 1)
    driver.step()
    driver.stop_asking()
    _end(store, 1, "completed", 0.5)
    assert not driver.step()  # no worker of its own: nothing to wait for
    assert trials_made(store, 1) == 1
    resumed, told_again = _driver(store, load_search(store, 1), 1)
    assert resumed.step() and [e["event"] for e in told_again] == ["queued"]  # trial 1 not retold
    assert told_again[0]["trial"] == 2
