"""A search's Optuna study, rebuilt in memory from its trials in the store whenever one is
needed: the next trial asked of it (a combination the spec's rules refuse told as failed, and
another asked), the best trial so far, each parameter's importance, and the search as a
report. Optuna is loaded here, inside the functions that build a study, never at start-up."""

import warnings
from collections.abc import Callable
from typing import Any

from engine.contract.spec import RunSpec, SpecError
from resnet_tui.runs.search import (
    MOST_REFUSED_IN_A_ROW,
    Search,
    Trial,
    params_text,
    trial_spec,
)


def study_of(search: Search, trials: list[Trial], asked: int = 0) -> Any:
    """The search's Optuna study, rebuilt in memory from its trials, its sampler seeded by
    the search's seed and `asked` (the trials made so far), so the next ask is the same
    whichever process, and however many times, asks it."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = (search.seed + 7919 * asked) % 2**32
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if search.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = search.distributions()
    for trial in trials:
        state = TrialState[trial.state]
        study.add_trial(
            create_trial(
                state=state,
                value=trial.value if state == TrialState.COMPLETE else None,
                params=trial.params or None,
                distributions=distributions if trial.params else None,
                intermediate_values={trial.epoch: trial.value} if trial.epoch is not None else None,
                user_attrs={"run": trial.run.id, "number": trial.number},
            )
        )
    return study


def ask(
    search: Search,
    trials: list[Trial],
    number: int,
    check: Callable[[RunSpec], object] | None = None,
    most_refused: int = MOST_REFUSED_IN_A_ROW,
) -> tuple[dict[str, Any], RunSpec, list[str]]:
    """The parameters and spec of trial `number`, asked of the rebuilt study, and why the
    trials asked before it were refused: a combination the spec's rules (or `check`, which
    raises SpecError) refuse is told to Optuna as failed and another is asked. SpecError
    after `most_refused` refusals in a row: their one reason, where they share it (an
    option fixed for every trial, say), else the last."""
    from optuna.trial import TrialState

    study = study_of(search, trials, number - 1)
    distributions = search.distributions()
    refused: list[str] = []
    reasons: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(most_refused):
            asked = study.ask(distributions)
            params = {dimension.name: asked.params[dimension.name] for dimension in search.space}
            try:
                spec = trial_spec(search, params, number)
                if check is not None:
                    check(spec)
                return params, spec, refused
            except SpecError as error:
                refused.append(f"{params_text(params)}: {error}")
                reasons.add(str(error))
                study.tell(asked, state=TrialState.FAIL)
    if len(reasons) == 1:
        raise SpecError(reasons.pop())
    raise SpecError(
        f"{most_refused} trials in a row were refused, the last {refused[-1]}; "
        "narrow the space or fix the options it is refused for"
    )


def best_trial(trials: list[Trial]) -> Trial | None:
    """The completed trial of the best value, the first of a tie."""
    done = [trial for trial in trials if trial.state == "COMPLETE" and trial.value is not None]
    return max(done, key=lambda trial: (trial.value, -trial.number), default=None)


def importances(search: Search, trials: list[Trial]) -> dict[str, float] | str:
    """Each parameter's importance to the best val acc (Optuna's default evaluator,
    normalised to sum to 1), largest first; or, as a sentence, why there are none yet."""
    completed = sum(trial.state == "COMPLETE" for trial in trials)
    if completed < 2:
        return f"needs 2 completed trials or more ({completed} so far)"
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = optuna.importance.get_param_importances(study_of(search, trials))
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            return f"no importances from these trials ({error})"
    return {name: float(value) for name, value in found.items()}


def best_summary(best: Trial | None) -> dict[str, Any] | None:
    """The best trial for an event or a report."""
    if best is None:
        return None
    return {"trial": best.number, "run": best.run.id, "value": best.value, "params": best.params}


def report(search: Search, trials: list[Trial], made: int) -> dict[str, Any]:
    """The search for `search --show --json`, `summary --json` and the app: what it is, its
    trials (`made` of them, deleted ones included), the best so far, and each parameter's
    importance (or, in `importances_note`, why there are none yet)."""
    found = importances(search, trials)
    return {
        "search": search.sweep,
        "sampler": search.sampler,
        "seed": search.seed,
        "objective": search.objective,
        "space": {dimension.name: dimension.text for dimension in search.space},
        "fixed": search.fixed,
        "trials": search.trials,
        "made": made,
        "best": best_summary(best_trial(trials)),
        "importances": found if isinstance(found, dict) else None,
        "importances_note": found if isinstance(found, str) else None,
        "trial_runs": [
            {
                "trial": trial.number,
                "run": trial.run.id,
                "status": trial.run.status,
                "state": trial.state,
                "params": trial.params,
                "value": trial.value,
            }
            for trial in trials
        ],
    }
