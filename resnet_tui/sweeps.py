"""Sweeps and the queue: every combination of listed options as queued runs, and the worker
that runs the queue across devices, one run (or N) per device at a time."""

import itertools
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from engine.spec import RunSpec, SpecError, normalise_device, spec_options
from resnet_tui.display import duration
from resnet_tui.follower import EventFollower
from resnet_tui.launcher import start_queued
from resnet_tui.store import RunStore

# More runs than this from one sweep is more likely a typo than a plan.
MOST_RUNS_IN_A_SWEEP = 500
POLL_INTERVAL_S = 0.5
FOLD_SUFFIX = re.compile(r" fold \d+/\d+$")


def sweep_specs(options: dict[str, Any]) -> list[RunSpec]:
    """A spec for every combination of the options given as comma-separated lists
    (`lr="0.1,0.01"`), in the order the options vary (the last fastest). Options that are
    lists already (`--classes`, `--teacher`, `--devices`) are taken whole. A run without a
    `--name` is named by what varies in it. Raises SpecError naming a bad combination."""
    list_options = {name for name, kind, _, _ in spec_options() if "list" in str(kind)}
    fixed: dict[str, Any] = {}
    axes: list[tuple[str, list[str]]] = []
    for name, value in options.items():
        if isinstance(value, str) and "," in value and name not in list_options:
            choices = [part.strip() for part in value.split(",") if part.strip()]
            if len(set(choices)) < len(choices):
                raise SpecError(f"--{name.replace('_', '-')} lists a value twice: {value}")
            axes.append((name, choices))
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


def group_name(run: dict[str, Any]) -> str:
    """A run's name without its fold: the setting its folds share."""
    return FOLD_SUFFIX.sub("", run["name"] or "")


def summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting of a sweep (its folds together): how many runs completed, and the mean,
    standard deviation, min and max of best val acc, test acc and seconds over the `n`
    completed runs that have them (the deviation of one run is given as 0)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(group_name(run), []).append(run)
    rows = []
    for name, members in groups.items():
        done = [run for run in members if run["status"] == "completed"]
        row: dict[str, Any] = {"setting": name, "runs": len(members), "completed": len(done)}
        for metric in ("best_val_acc", "test_acc", "seconds"):
            values = [run[metric] for run in done if run[metric] is not None]
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


def best_per_setting(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of each setting of a sweep (its folds together), the run with the best validation
    accuracy, chosen on validation and never on test accuracy; settings with no validated
    run yet are left out."""
    best: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["best_val_acc"] is None:
            continue
        setting = group_name(run)
        if setting not in best or run["best_val_acc"] > best[setting]["best_val_acc"]:
            best[setting] = run
    return list(best.values())


@dataclass
class Slot:
    """A place a run can train: a device, and the run it holds."""

    device: str
    run_id: int | None = None
    process: subprocess.Popen[bytes] | None = None
    follower: EventFollower | None = None


class Worker:
    """Runs the store's queue on `devices`, `per_device` runs at a time on each, until the
    queue is empty (or, with `wait`, for as long as it lives). Queue state is in the store,
    so several workers (on other devices) can share one queue and none takes a run twice."""

    def __init__(
        self,
        store: RunStore,
        devices: list[str],
        per_device: int = 1,
        wait: bool = False,
        report: Callable[[str], None] = print,
        among: list[int] | None = None,
    ) -> None:
        """`among`: run only these queued runs (a `run --folds`), not the whole queue."""
        if per_device < 1:
            raise SpecError("--per-device must be 1 or more")
        names = [normalise_device(name) for name in devices if name.strip()]
        if not names:
            raise SpecError("--devices needs at least one device, e.g. cuda:0,cuda:1 or cpu")
        if len(set(names)) < len(names):
            raise SpecError("--devices names a device twice; use --per-device for more runs")
        self.store = store
        self.slots = [Slot(name) for name in names for _ in range(per_device)]
        self.wait = wait
        self.report = report
        self.stopping = False
        self.among = among
        self.finished: list[int] = []

    def step(self) -> bool:
        """Catch up the running runs, end the finished ones and start queued runs on free
        slots; False once there is nothing left to do."""
        for slot in self.slots:
            if slot.run_id is not None:
                self._follow(slot)
        if not self.stopping:
            for slot in self.slots:
                if slot.run_id is None and not self._start_next(slot):
                    break
        busy = any(slot.run_id is not None for slot in self.slots)
        return busy or (self.wait and not self.stopping)

    def run(self) -> None:
        while self.step():
            time.sleep(POLL_INTERVAL_S)

    def _start_next(self, slot: Slot) -> bool:
        run = self.store.take_next_queued(os.getpid(), self.among)
        if run is None:
            return False
        try:
            slot.process = start_queued(self.store, run, slot.device)
        except (OSError, SpecError) as error:
            self.store.update(run["id"], status="failed", ended_at=time.time())
            self.report(f"run {run['id']} could not start: {error}")
            return True
        slot.run_id, slot.follower = run["id"], EventFollower(self.store, run["id"])
        self.report(f"run {run['id']} ({run['name']}) started on {slot.device}")
        return True

    def _follow(self, slot: Slot) -> None:
        assert slot.follower is not None and slot.process is not None
        slot.follower.poll()
        if slot.process.poll() is None:
            return
        run = slot.follower.finish_if_dead(pid_alive=False)
        self.finished.append(slot.follower.run_id)
        self.report(_outcome(run))
        slot.run_id, slot.process, slot.follower = None, None, None


def _outcome(run: dict[str, Any] | None) -> str:
    if run is None:
        return "a run was deleted while it trained"
    line = f"run {run['id']} ({run['name']}) {run['status']}"
    if run["test_acc"] is not None:
        line += f": test accuracy {100 * run['test_acc']:.1f}%"
    return line
