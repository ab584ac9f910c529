"""Sweeps: every combination of listed options as runs of one sweep, the folds of a
cross-validation, and a sweep's results per setting (its folds together)."""

import itertools
import statistics
from dataclasses import asdict
from typing import Any

from engine.contract.spec import RunSpec, SpecError, spec_fields
from resnet_tui.display import duration
from resnet_tui.runs.model import Run

# More runs than this from one sweep is more likely a typo than a plan.
MOST_RUNS_IN_A_SWEEP = 500


def sweep_specs(options: dict[str, Any]) -> list[RunSpec]:
    """A spec for every combination of the options given as comma-separated lists
    (`lr="0.1,0.01"`), in the order the options vary (the last fastest). Options that are
    lists already (`--classes`, `--teacher`, `--devices`) are taken whole. A run without a
    `--name` is named by what varies in it. Raises SpecError naming a bad combination."""
    list_options = {field.name for field in spec_fields() if field.kind is list}
    fixed: dict[str, Any] = {}
    axes: list[tuple[str, list[str]]] = []
    for name, value in options.items():
        if isinstance(value, str) and "," in value and name not in list_options:
            axes.append((name, listed_values(name, value)))
        else:
            fixed[name] = value
    count = 1
    for _, choices in axes:
        count *= len(choices)
    if count > MOST_RUNS_IN_A_SWEEP:
        raise SpecError(
            f"that sweep makes {count:,} runs, more than {MOST_RUNS_IN_A_SWEEP}; list fewer values"
        )
    specs = []
    for combination in itertools.product(*(choices for _, choices in axes)):
        varied = dict(zip((name for name, _ in axes), combination, strict=True))
        values = {**fixed, **varied}
        label = " ".join(f"{name.replace('_', '-')}={value}" for name, value in varied.items())
        if varied and not fixed.get("name"):
            values["name"] = label
        elif varied:
            values["name"] = f"{fixed['name']} {label}"
        try:
            specs += fold_specs(RunSpec.from_dict(values))
        except SpecError as error:
            raise SpecError(f"{label or 'the run'}: {error}") from None
    return specs


def listed_values(name: str, value: str) -> list[str]:
    """The values of a sweep's list (`0.1, 0.01`), each once; raises SpecError for a list
    with an empty value (`1,,2`, `0.1,`) or none at all (`,`)."""
    flag = "--" + name.replace("_", "-")
    shown = value if value.isprintable() else repr(value)
    choices = [part.strip() for part in value.split(",")]
    if not any(choices):
        raise SpecError(f"{flag} {shown} names no value; list values with commas, e.g. 1,2")
    if not all(choices):
        raise SpecError(
            f"{flag} {shown} has an empty value between commas; write each value, e.g. 1,2"
        )
    if len(set(choices)) < len(choices):
        raise SpecError(f"{flag} lists a value twice: {shown}")
    return choices


def fold_specs(spec: RunSpec) -> list[RunSpec]:
    """The K runs of a spec with `--folds K`, one a fold, named `... fold k/K`; else the spec.
    Raises SpecError for folds on several devices: a queued run trains as one process."""
    if spec.folds is None or spec.fold is not None:
        return [spec]
    if spec.world > 1:
        raise SpecError(
            "--folds trains one process a fold; leave out --devices, --nproc and --nnodes"
        )
    named = spec.display_name
    return [
        RunSpec.from_dict(
            {**asdict(spec), "fold": fold, "name": f"{named} fold {fold + 1}/{spec.folds}"}
        )
        for fold in range(spec.folds)
    ]


def group_name(run: Run) -> str:
    """The setting of a run of a sweep, as it was made (a rename does not change it)."""
    return run.setting if run.setting is not None else run.name


def summary(runs: list[Run]) -> list[dict[str, Any]]:
    """Per setting of a sweep (its folds together): how many runs completed, and the mean,
    standard deviation, min and max of best val acc, test acc and seconds over the `n`
    completed runs that have them (the deviation of one run is given as 0)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_name(run), []).append(run)
    rows = []
    for name, members in groups.items():
        done = [run for run in members if run.status == "completed"]
        row: dict[str, Any] = {"setting": name, "runs": len(members), "completed": len(done)}
        for metric in ("best_val_acc", "test_acc", "seconds"):
            values = [getattr(run, metric) for run in done if getattr(run, metric) is not None]
            row[metric] = (
                {
                    "n": len(values),
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "min": min(values),
                    "max": max(values),
                }
                if values
                else None
            )
        rows.append(row)
    return rows


def spread(values: dict[str, float] | None, as_time: bool = False) -> str:
    """A metric of `summary` as its mean and standard deviation, `91.2% ± 1.3` (or
    `1:05 ± 0:04` for times); the mean alone for one run, `-` for none yet."""
    if values is None:
        return "-"
    if as_time:
        mean, std = duration(values["mean"]), duration(values["std"])
    else:
        mean, std = f"{100 * values['mean']:.1f}%", f"{100 * values['std']:.1f}"
    return mean if values["n"] < 2 else f"{mean} ± {std}"


def best_per_setting(runs: list[Run]) -> list[Run]:
    """Of each setting of a sweep (its folds together), the run with the best validation
    accuracy, chosen on validation and never on test accuracy; settings with no validated
    run yet are left out."""
    best: dict[str, Run] = {}
    for run in runs:
        if run.best_val_acc is None:
            continue
        setting = group_name(run)
        held = best.get(setting)
        if held is None or run.best_val_acc > (held.best_val_acc or 0.0):
            best[setting] = run
    return list(best.values())
