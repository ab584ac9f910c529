"""Sweeps: every combination of listed options as runs of one sweep, the folds of a
cross-validation, a sweep's results per setting (its folds together), and the curves its
pruning judges a run by."""

import itertools
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.contract import events as ev
from engine.contract.spec import RunSpec, SpecError, spec_fields
from resnet_tui.display import duration
from resnet_tui.runs.model import Run
from resnet_tui.runs.pruning import MEDIAN_MIN_OTHERS, Curve, Pruned, Rule, verdict
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore

# More runs than this from one sweep is more likely a typo than a plan.
MOST_RUNS_IN_A_SWEEP = 500
# How much of the end of a stopped run's events file is read for the epoch its stop cut
# short: the stop is among the file's last few events.
TAIL_BYTES = 64 * 1024


def sweep_specs(options: dict[str, Any]) -> list[RunSpec]:
    """A spec for every combination of the options given as comma-separated lists
    (`lr="0.1,0.01"`), in the order the options vary (the last fastest). Options that are
    lists already (`--classes`, `--teacher`, `--devices`) are taken whole, and the pruning
    options are one for the sweep. A run without a `--name` is named by what varies in it.
    Raises SpecError naming a bad combination."""
    list_options = {field.name for field in spec_fields() if field.kind is list}
    fixed: dict[str, Any] = {}
    axes: list[tuple[str, list[str]]] = []
    for name, value in options.items():
        listed = isinstance(value, str) and "," in value
        if listed and name in PRUNING_OPTIONS:
            flag = "--" + name.replace("_", "-")
            raise SpecError(f"{flag} is one for the whole sweep; give one value, not a list")
        if listed and name not in list_options:
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
    _check_pruning(specs)
    return specs


# The options of a sweep's pruning: the same for all its runs.
PRUNING_OPTIONS = ("prune", "prune_after", "prune_factor")


def _check_pruning(specs: list[RunSpec]) -> None:
    """Raise SpecError for a pruned sweep that could never prune, or would cut folds short."""
    rule = specs[0].prune
    if rule is None:
        return
    if specs[0].folds is not None:
        raise SpecError(
            "--prune would cut a setting's --folds short, and their mean with them; "
            "sweep without --folds to prune"
        )
    fewest = MEDIAN_MIN_OTHERS + 1 if rule == "median" else specs[0].reduction_factor
    if len(specs) < fewest:
        raise SpecError(
            f"--prune {rule} needs a sweep of {fewest} runs or more (it judges a run against "
            f"the others at the same epoch), not {len(specs)}; list more values, e.g. "
            "--lr 0.1,0.01,0.001"
        )


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
    """Per setting of a sweep (its folds together): how many runs completed and how many
    were pruned, and the mean, standard deviation, min and max of best val acc, test acc
    and seconds over the `n` completed runs that have them (the deviation of one run is
    given as 0)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_name(run), []).append(run)
    rows = []
    for name, members in groups.items():
        done = [run for run in members if run.status == "completed"]
        row: dict[str, Any] = {"setting": name, "runs": len(members), "completed": len(done)}
        row["pruned"] = sum(run.status == "pruned" for run in members)
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


class SweepPruning:
    """The pruning of one run of a sweep: after each of its epochs, its validation curve and
    those of its sweep's other runs, as the store has them, go to the sweep's rule."""

    def __init__(self, store: RunStore, run_id: int, sweep: int, rule: Rule) -> None:
        self.store, self.run_id, self.sweep, self.rule = store, run_id, sweep, rule
        # Of each stopped or pruned run looked at: its last event then, and the epochs its
        # stop cut short (read once, while the run stays as it is).
        self.cut_short: dict[int, tuple[int, frozenset[int]]] = {}

    @classmethod
    def of(cls, store: RunStore, run: Run, state: RunState) -> "SweepPruning | None":
        """The pruning of `run` (its state as its events told before this start): None for a
        run of no pruned sweep, and for a pruned run resumed, which a user chose to go on."""
        if run.sweep is None or not run.trained:
            return None
        try:
            spec = run.spec
        except SpecError:
            return None
        if spec.prune is None or state.pruned_end is not None:
            return None
        rule = Rule(spec.prune, spec.first_prune_epoch, spec.reduction_factor)
        return cls(store, run.id, run.sweep, rule)

    def judge(self, epoch: int) -> Pruned | None:
        """The rule's verdict on the run after `epoch`; None where it goes on."""
        curves = self.curves()
        own = curves.pop(self.run_id, {})
        return verdict(self.rule, epoch, own, list(curves.values()))

    def curves(self) -> dict[int, Curve]:
        """The val acc by epoch of each trained run of the sweep, as the store has it now: a
        value that is no accuracy (0 to 1) left out (the store may be damaged), and an epoch a
        stop cut short too (it trained for part of the epoch)."""
        runs = {run.id: run for run in self.store.sweep_runs(self.sweep) if run.trained}
        rows = self.store.connection.execute(
            "SELECT metrics.run_id, metrics.epoch, metrics.value FROM metrics "
            "JOIN runs ON runs.id = metrics.run_id WHERE runs.sweep = ? "
            "AND metrics.split = 'val' AND metrics.name = 'acc' ORDER BY metrics.seq",
            [self.sweep],
        )
        curves: dict[int, Curve] = {}
        for run_id, epoch, value in rows:
            if run_id in runs and type(epoch) is int and _an_accuracy(value):
                curves.setdefault(run_id, {})[epoch] = float(value)
        for run_id, curve in curves.items():
            if runs[run_id].status in ("stopped", "pruned"):
                for epoch in self._cut_short(runs[run_id]):
                    curve.pop(epoch, None)
        return curves

    def _cut_short(self, run: Run) -> frozenset[int]:
        held = self.cut_short.get(run.id)
        if held is None or held[0] != run.last_seq:
            held = self.cut_short[run.id] = (run.last_seq, cut_short_epochs(run.events_path))
        return held[1]


def cut_short_epochs(path: Path) -> frozenset[int]:
    """The epochs a stop cut short, as the end of a run's events file tells: those whose
    newest `epoch_ended` there is partial."""
    try:
        size = path.stat().st_size
    except OSError:
        return frozenset()
    newest: dict[int, ev.EpochEnded] = {}
    for event in ev.read_events(path, max(0, size - TAIL_BYTES), final=True).events:
        if isinstance(event, ev.EpochEnded):
            held = newest.get(event.epoch)
            newest[event.epoch] = event if held is None or event.seq > held.seq else held
    return frozenset(epoch for epoch, event in newest.items() if event.partial)


def _an_accuracy(value: Any) -> bool:
    """A metric that is an accuracy: a number from 0 to 1 (not text, nor a forged 5.0, a
    huge integer or a NaN, which would move a median or a rung's line)."""
    return type(value) in (int, float) and 0 <= value <= 1
