"""Searches (`resnet-tui search`): a sweep whose runs are its trials, each asked of Optuna over
a declared space.

Nothing of a search lives outside the store: its space, sampler, seed, trial count and
objective are a row of `searches`, each trial a run of its sweep with the parameters asked
for it (`search_trials`), and the study is rebuilt from them whenever one is needed (runs
completed are COMPLETE trials valued by their best val acc, pruned ones PRUNED, failed,
crashed and stopped ones FAIL, queued and running ones RUNNING). So a search survives its
process, the app closing, a reboot, and goes on or grows with `search --resume`.
Optuna is loaded only where a study is built.
"""

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from engine.contract import locate
from engine.contract.spec import RunSpec, SpecError
from resnet_tui.runs.files import write_atomically
from resnet_tui.runs.launcher import settle_image_size
from resnet_tui.runs.model import Run
from resnet_tui.runs.pruning import MEDIAN_MIN_OTHERS
from resnet_tui.runs.search_space import Dimension, shown_value, space_from_text, space_text
from resnet_tui.runs.sources import resolve_init, resolve_teachers
from resnet_tui.runs.store import RunStore, next_revision
from resnet_tui.runs.sweeps import MOST_RUNS_IN_A_SWEEP

SAMPLERS = ("tpe", "random")
MOST_SEED = 2**32 - 1
# What a search maximises: the best validation accuracy of each trial.
OBJECTIVE = "best_val_acc"
# Trials in a row that the spec's rules refuse before a search says its space is at fault.
MOST_REFUSED_IN_A_ROW = 100
# The options that choose the data: a trial's data is looked for where one of them varies.
DATA_OPTIONS = ("dataset", "data_root", "classes", "download")
# Optuna's trial states by a trial run's status (any other status is a failure).
STATES = {
    "completed": "COMPLETE",
    "pruned": "PRUNED",
    "queued": "RUNNING",
    "running": "RUNNING",
}


@dataclass(frozen=True)
class Search:
    """A search as its row keeps it: the sweep it is, its space, the run options fixed for
    every trial, its sampler and seed, and how many trials it makes."""

    sweep: int
    space: tuple[Dimension, ...]
    fixed: dict[str, Any]
    sampler: str
    seed: int
    trials: int
    objective: str = OBJECTIVE

    def distributions(self) -> dict[str, Any]:
        return {dimension.name: dimension.distribution() for dimension in self.space}


@dataclass(frozen=True)
class Trial:
    """One trial: its number in the search, its run, the parameters asked for it, its state
    as Optuna has it and its value (best val acc where COMPLETE; its last val acc, after
    `epoch`, where PRUNED)."""

    number: int
    run: Run
    params: dict[str, Any]
    state: str
    value: float | None = None
    epoch: int | None = None

    @property
    def live(self) -> bool:
        return self.state == "RUNNING"

    @property
    def params_text(self) -> str:
        return params_text(self.params)


def params_text(params: dict[str, Any], between: str = " ") -> str:
    """Parameters for a person: `lr 0.0123 momentum 0.91` (`lr=0.0123 momentum=0.91`)."""
    return " ".join(
        f"{name.replace('_', '-')}{between}{shown_value(v)}" for name, v in params.items()
    )


def check_search(search: Search) -> None:
    """Raise SpecError for a search that could never run as asked: a count of trials out of
    range, an unknown sampler or seed, or folds."""
    if not 1 <= search.trials <= MOST_RUNS_IN_A_SWEEP:
        raise SpecError(f"--trials must be 1 to {MOST_RUNS_IN_A_SWEEP}, not {search.trials}")
    if search.sampler not in SAMPLERS:
        raise SpecError(f"--sampler must be tpe or random, not {search.sampler}")
    if not 0 <= search.seed <= MOST_SEED:
        raise SpecError(f"--sampler-seed must be 0 to {MOST_SEED}, not {search.seed}")
    if search.fixed.get("folds") is not None:
        raise SpecError("a trial is one run, so a search has no --folds; leave it out")


def check_pruning(search: Search, spec: RunSpec) -> None:
    """Raise SpecError for a pruned search of too few trials ever to prune (`spec`: one of
    its trials)."""
    if spec.prune is None:
        return
    fewest = MEDIAN_MIN_OTHERS + 1 if spec.prune == "median" else spec.reduction_factor
    if search.trials < fewest:
        raise SpecError(
            f"--prune {spec.prune} judges a trial against the others at the same epoch, so "
            f"it needs {fewest} trials or more, not {search.trials}; give --trials {fewest}"
        )


def trial_spec(search: Search, params: dict[str, Any], number: int) -> RunSpec:
    """The spec of trial `number`: the fixed options and the parameters asked for it,
    named by them, checked as `run` checks a spec (and its data looked for where the data
    varies). Raises SpecError where the spec's rules refuse it."""
    named = search.fixed.get("name")
    name = f"{named + ' ' if named else ''}trial {number}: {params_text(params, '=')}"[:200]
    spec = RunSpec.from_dict({**search.fixed, **params, "name": name})
    if spec.val_fraction == 0:
        raise SpecError("--val-fraction 0 leaves no validation set to judge a trial by")
    if spec.world > 1:
        raise SpecError(
            "a trial trains on the one device a worker gives it; leave out --devices, "
            "--nproc and --nnodes"
        )
    if any(option in params for option in DATA_OPTIONS):
        locate.check_dataset(spec)
    return spec


# The store


def load_search(store: RunStore, sweep: int) -> Search | None:
    """The search sweep `sweep` is, or None where it is none (or its row is damaged: then
    SpecError says so)."""
    row = store.connection.execute("SELECT * FROM searches WHERE sweep = ?", [sweep]).fetchone()
    if row is None:
        return None
    try:
        space = space_from_text(json.loads(row["space"]))
        fixed = json.loads(row["fixed"])
        search = Search(
            sweep, tuple(space), fixed, row["sampler"], row["seed"], row["trials"], row["objective"]
        )
        if not isinstance(fixed, dict) or type(search.seed) is not int:
            raise ValueError
        check_search(search)
    except (ValueError, TypeError, SpecError, RecursionError) as error:
        raise SpecError(f"search {sweep}'s record in the store is damaged ({error})") from None
    return search


def trials_made(store: RunStore, sweep: int) -> int:
    """How many trials the search has made, those whose runs were deleted since included."""
    found = store.connection.execute("SELECT count(*) FROM search_trials WHERE sweep = ?", [sweep])
    return found.fetchone()[0]


def trials_of(store: RunStore, search: Search) -> list[Trial]:
    """The search's trials whose runs are in the store, by number, each with its state and
    value as its run tells; a trial whose kept parameters are damaged is a failure once its
    run has ended."""
    kept = {
        row[0]: (row[1], row[2])
        for row in store.connection.execute(
            "SELECT run_id, number, params FROM search_trials WHERE sweep = ?", [search.sweep]
        )
    }
    runs = store.runs_where(
        "WHERE id IN (SELECT run_id FROM search_trials WHERE sweep = ?) ORDER BY id",
        [search.sweep],
    )
    last_val = _last_val_acc(store, [run.id for run in runs if run.status == "pruned"])
    trials = []
    for run in runs:
        number, text = kept[run.id]
        params = _params(text, search)
        state = STATES.get(run.status, "FAIL")
        if params is None and state != "RUNNING":  # live, it is live whatever its params
            state = "FAIL"
        value, epoch = None, None
        if state == "COMPLETE":
            value = run.best_val_acc if finite(run.best_val_acc) else None
            state = "COMPLETE" if value is not None else "FAIL"
        elif state == "PRUNED" and run.id in last_val:
            epoch, value = last_val[run.id]
        trials.append(Trial(number, run, params or {}, state, value, epoch))
    return sorted(trials, key=lambda trial: trial.number)


def _params(text: str, search: Search) -> dict[str, Any] | None:
    """A trial's kept parameters, where each is one of its dimension's values."""
    try:
        params = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(params, dict) or set(params) != {d.name for d in search.space}:
        return None
    for dimension in search.space:
        value = params[dimension.name]
        if dimension.choices:
            fits = value in dimension.choices and type(value) in (str, int, float)
        else:
            kind = (int,) if dimension.whole else (int, float)
            fits = type(value) in kind and dimension.low <= value <= dimension.high
        if not fits:
            return None
    return {dimension.name: params[dimension.name] for dimension in search.space}


def _last_val_acc(store: RunStore, run_ids: list[int]) -> dict[int, tuple[int, float]]:
    """Of each run, its last val acc that is a finite number, and the epoch of it."""
    if not run_ids:
        return {}
    marks = ", ".join("?" for _ in run_ids)
    rows = store.connection.execute(
        f"SELECT run_id, epoch, value FROM metrics WHERE run_id IN ({marks}) "
        "AND split = 'val' AND name = 'acc' ORDER BY seq",
        run_ids,
    )
    return {
        run: (epoch, value) for run, epoch, value in rows if finite(value) and type(epoch) is int
    }


def finite(value: Any) -> bool:
    """A value that is a finite number (not text, nor a forged huge integer)."""
    return type(value) in (int, float) and abs(value) <= 1e300 and math.isfinite(value)


def queue_trial(
    store: RunStore, search: Search, number: int, params: dict[str, Any], spec: RunSpec
) -> tuple[int, int] | None:
    """Make trial `number`'s run and queue it in the search's sweep, recording the search
    first where it is new (`sweep` 0: its sweep's number is chosen in the same write, so no
    other sweep takes it); returns the run's id and the sweep. None, and no run, where the
    search has all its trials already or another process made trial `number` meanwhile."""
    settle_image_size(store, spec)
    parents, teachers = resolve_init(store, spec), resolve_teachers(store, spec)
    run_id = store.create_run(spec, parents=parents, teachers=teachers, setting=spec.display_name)
    write_atomically(store.folder_of(run_id) / "spec.json", spec.to_json())
    with store.write_transaction() as connection:
        sweep = search.sweep or _new_search(connection, search)
        made, last, planned = connection.execute(
            "SELECT count(*), coalesce(max(number), 0), "
            "(SELECT trials FROM searches WHERE sweep = ?) FROM search_trials WHERE sweep = ?",
            [sweep, sweep],
        ).fetchone()
        taken = last + 1 != number or made >= planned
        if not taken:
            connection.execute(
                "INSERT INTO search_trials VALUES (?, ?, ?, ?)",
                [run_id, sweep, number, json.dumps(params)],
            )
            place = connection.execute("SELECT max(queue_position) FROM runs").fetchone()[0]
            connection.execute(
                "UPDATE runs SET sweep = ?, queue_position = ?, revision = ? WHERE id = ?",
                [sweep, (place or 0) + 1, next_revision(connection), run_id],
            )
    if taken:
        store.delete_runs([run_id])
        return None
    return run_id, sweep


def _new_search(connection: Any, search: Search) -> int:
    """Record a new search under a sweep number no sweep (nor search) has."""
    sweep = connection.execute(
        "SELECT max(coalesce((SELECT max(sweep) FROM runs), 0), "
        "coalesce((SELECT max(sweep) FROM searches), 0)) + 1"
    ).fetchone()[0]
    connection.execute(
        "INSERT INTO searches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            sweep,
            json.dumps(space_text(list(search.space))),
            json.dumps(search.fixed),
            search.sampler,
            search.seed,
            search.trials,
            search.objective,
            time.time(),
        ],
    )
    return sweep


def extend(store: RunStore, sweep: int, trials: int) -> None:
    """Make the search's trial count `trials` (its made trials are checked by the caller)."""
    with store.write_transaction() as connection:
        connection.execute("UPDATE searches SET trials = ? WHERE sweep = ?", [trials, sweep])
