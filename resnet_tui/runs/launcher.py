"""Launching runs: checking what they start from, making them in the store, and starting
their supervisors; resuming, stopping and fusing them.

A run's supervisor and engine run in a session of their own with no terminal, so closing
the app, a Ctrl-C meant for a viewer or a dropped SSH connection never reaches them.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

from engine.contract.image_sizes import choose_image_size, typical_image_size
from engine.contract.spec import FusionSpec, RunSpec, SpecError, normalise_device
from resnet_tui.runs import ownership
from resnet_tui.runs.files import write_atomically
from resnet_tui.runs.model import Run
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.schema import FOLD_SUFFIX
from resnet_tui.runs.sources import resolve_init, resolve_teachers
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.supervisor import start_supervisor


def supervise(
    store: RunStore,
    run: Run,
    resume: bool = False,
    fusion: bool = False,
    check: Callable[[Run], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Take the run's lock, `check` (under the lock) that it may start, start its supervisor
    with the lock, and mark it running. Raises SpecError where another process owns the run
    or `check` refuses it, or the run's folder is not this store's."""
    check_folder_is_ours(store, run)
    lock = _take(store, run)
    try:
        now = store.run(run.id)
        if now is None:
            raise SpecError(f"run {run.id} was deleted meanwhile")
        if check is not None:
            check(now)
        process = start_supervisor(store.path, now, lock, resume, fusion)
        store.mark_launched(run.id, process.pid)
    finally:
        ownership.release(lock)
    return process


def check_folder_is_ours(store: RunStore, run: Run) -> None:
    """SpecError where the run's folder is another store's (this store a copy of the one
    that made it, say): nothing is started or written there."""
    if not store.owns_folder(run.folder):
        raise SpecError(
            f"run {run.id}'s folder {run.folder} belongs to another store (this one is a copy "
            f"of it, or was moved); train on from it with --init run:{run.id}"
        )


# A supervisor that has recorded its run's end holds the lock until its engine has exited
# (torch takes a moment to let go); a resume asked for meanwhile waits this long for it.
FINISHING_S = 30.0


def _take(store: RunStore, run: Run) -> int:
    """The run's lock, waited for while the process that holds it is a supervisor whose run
    has ended; SpecError while the run is live in another process's hands."""
    deadline = time.monotonic() + FINISHING_S
    while True:
        try:
            return ownership.take_run(run.folder)
        except ownership.RunBusy:
            now = store.run(run.id)
            if now is not None and now.live:
                raise SpecError(
                    f"run {run.id} is already running: another process started it a moment "
                    f"ago; follow it with `resnet-tui show {run.id}` or in the app"
                ) from None
            if time.monotonic() > deadline:
                raise SpecError(
                    f"run {run.id} is still finishing (its engine has not exited); try again "
                    "in a moment"
                ) from None


def launch(store: RunStore, spec: RunSpec) -> tuple[int, subprocess.Popen[bytes]]:
    """Create the run in the store, write its spec and start its supervisor, which starts
    the engine; returns the run id and the supervisor's process.

    Raises SpecError where `--init run:ID` or `--teacher` cannot be resolved.
    """
    settle_image_size(store, spec)
    parents = resolve_init(store, spec)
    teachers = resolve_teachers(store, spec)
    run_id = store.create_run(spec, parents=parents, teachers=teachers)
    run = store.run(run_id)
    assert run is not None
    return run_id, _start_new(store, run, {"spec.json": spec.to_json()})


def _start_new(
    store: RunStore, run: Run, files: dict[str, str], fusion: bool = False
) -> subprocess.Popen[bytes]:
    """Write a new run's files and start its supervisor. Where that fails (a full disk, no
    process to spare), the run is recorded `failed` with the reason, never left half-made,
    and SpecError says what happened."""
    try:
        for name, text in files.items():
            write_atomically(run.folder / name, text)
        return supervise(store, run, fusion=fusion)
    except OSError as error:
        store.record_end(
            run.id,
            "failed",
            "internal",
            f"the run could not start: {error}",
            "free disk space or processes, then launch it again",
        )
        raise SpecError(f"run {run.id} could not start: {error}") from None


def queue(store: RunStore, specs: list[RunSpec]) -> tuple[list[int], int | None]:
    """Create a run for each spec, checked as `launch` checks it, and queue them in order as
    one sweep, each run with its setting; returns their ids and the sweep's number. Nothing
    starts: a worker does. Raises SpecError, naming the spec, before any run is made."""
    resolved = []
    typical_of = cache(typical_image_size)  # the folder of a sweep's runs looked at once
    for spec in specs:
        settle_image_size(store, spec, typical_of)
        try:
            resolved.append((spec, resolve_init(store, spec), resolve_teachers(store, spec)))
        except SpecError as error:
            raise SpecError(f"{spec.display_name}: {error}") from None
    run_ids = []
    sweep = len(resolved) > 1
    for spec, parents, teachers in resolved:
        setting = setting_of(spec) if sweep else None
        run_id = store.create_run(spec, parents=parents, teachers=teachers, setting=setting)
        write_atomically(store.folder_of(run_id) / "spec.json", spec.to_json())
        run_ids.append(run_id)
    return run_ids, RunQueue(store).enqueue(run_ids, sweep=sweep)


def settle_image_size(
    store: RunStore, spec: RunSpec, typical_of: Callable[[Path], int | None] = typical_image_size
) -> str | None:
    """Choose an image-folder run's image size where it gives none and write it into `spec`
    (`choose_image_size`), the runs it starts from or learns from looked up in `store`."""
    named = ([spec.init] if spec.init.startswith("run:") else []) + (spec.teacher or [])
    runs = [store.run(int(source.split(":")[1])) for source in named]
    sources = [(run.id, run.spec_values) for run in runs if run is not None]
    return choose_image_size(spec, sources, typical_of)


def setting_of(spec: RunSpec) -> str:
    """The setting a run of a sweep stands for, kept with it when it is made: its name, less
    the fold (the folds of one setting share it); a later rename does not change it."""
    name = spec.display_name
    return FOLD_SUFFIX.sub("", name) if spec.fold is not None else name


def start_queued(store: RunStore, run: Run, device: str) -> subprocess.Popen[bytes]:
    """Start a run a worker took from the queue, on `device` (the worker's to give)."""
    check_folder_is_ours(store, run)
    spec = run.spec.on_one_device(device)
    write_atomically(run.folder / "spec.json", spec.to_json())
    store.update(run.id, spec=spec.to_json(), device=device)
    return supervise(store, run)


RESUMABLE_STATUSES = ("stopped", "pruned", "crashed", "failed")


def resume(store: RunStore, run_id: int, device: str | None = None) -> subprocess.Popen[bytes]:
    """Continue a stopped, crashed or failed run in place from its last checkpoint, on
    `device` where one is given (after a GPU failed, say; a run on several devices then goes
    on in one process there), else where it ran.

    Raises SpecError, with what to do instead, where the run cannot be resumed: checked
    again under the run's lock, so of several resumes at once one starts and the others
    are refused. Call `follower.catch_up` first, so that a run whose engine died is
    `crashed`, not `running`.
    """
    device = normalise_device(device) if device is not None else None
    run = store.run(run_id)
    if run is None:
        raise SpecError(f"no run {run_id} in {store.path}; `resnet-tui runs` lists them")
    check_resumable(run)

    def still_resumable(now: Run) -> None:
        check_resumable(now)
        if device is not None:
            spec = now.spec.on_one_device(device)
            write_atomically(now.folder / "spec.json", spec.to_json())
            store.update(run_id, spec=spec.to_json(), device=spec.placement)

    return supervise(store, run, resume=True, check=still_resumable)


def check_resumable(run: Run) -> None:
    """Raise SpecError, saying what to do instead, where `run` cannot be resumed."""
    if not run.trained:
        raise SpecError(
            f"run {run.id} is {_a(run.kind)}, which is not trained and so not resumed; "
            f"make it again with `resnet-tui {fusion_command(run.fusion)}`"
        )
    if run.status not in RESUMABLE_STATUSES:
        advice = {
            "completed": f"to train on, start a new run from it: --init run:{run.id}",
            "running": f"follow it with `resnet-tui show {run.id}` or in the app",
            "queued": "it has not started yet",
        }.get(run.status, "")
        raise SpecError(f"run {run.id} is {run.status}, so there is nothing to resume; {advice}")
    if not (run.folder / "checkpoints" / "last.pt").is_file():
        raise SpecError(
            f"run {run.id} has no checkpoint to resume from (it ended before its first epoch); "
            "launch it again instead (`a` in the app)"
        )
    try:
        RunSpec.from_json((run.folder / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, SpecError) as error:  # ValueError: not UTF-8
        raise SpecError(
            f"run {run.id} cannot be resumed: its spec.json is damaged ({one_line(error)}); "
            f"start a new run from it with --init run:{run.id}, or remove it (resnet-tui rm "
            f"{run.id})"
        ) from None


def one_line(error: Exception) -> str:
    """An error's text as one line, for a message that must be one."""
    return " ".join(str(error).split()) or type(error).__name__


def stop(run: Run) -> bool:
    """Ask a running run to stop after its current step (its supervisor passes it on);
    False where nothing of it is running."""
    if run.status != "running":
        return False
    if not (run.folder / ownership.LOCK_FILE).exists():  # a run of an older resnet-tui
        return _stop_by_pid(run.pid)
    return ownership.signal_run(run.folder)


def _stop_by_pid(pid: int | None) -> bool:
    if not ownership.process_alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGINT)  # type: ignore[arg-type]
    except ProcessLookupError:
        return False
    return True


def _a(kind: str) -> str:
    return {"ensemble": "an ensemble", "soup": "a soup", "wise-ft": "a WiSE-FT mix"}[kind]


def fusion_command(fusion: FusionSpec) -> str:
    """The `resnet-tui` command that makes `fusion`, for messages and listings."""
    ids = " ".join(str(member["run"]) for member in fusion.members)
    if fusion.kind == "ensemble":
        weights = ",".join(f"{w:g}" for w in fusion.weights) if fusion.weights else ""
        return f"ensemble {ids}" + (f" --weights {weights}" if weights else "")
    if fusion.kind == "wise-ft":
        return f"soup {ids} --with-init {'auto' if fusion.alpha is None else f'{fusion.alpha:g}'}"
    return f"soup {ids}" + (" --greedy" if fusion.greedy else "")


def _starting_weights(run: Run) -> str:
    """Where a run's weights started, in words that tell two starts apart."""
    spec = run.spec_values
    if spec.get("init") == "scratch":
        return f"scratch with seed {spec.get('seed')}"
    return str(spec.get("init"))


def fusion_members(store: RunStore, kind: str, run_ids: list[int]) -> list[Run]:
    """The runs to fuse, checked: finished, with weights, of one dataset and classes, and for
    a soup of one network fine-tuned from one start. Raises SpecError saying why not."""
    repeated = [run_id for index, run_id in enumerate(run_ids) if run_id in run_ids[:index]]
    if repeated:
        raise SpecError(f"run {repeated[0]} is named twice; list each run once")
    runs = []
    for run_id in run_ids:
        run = store.run(run_id)
        if run is None:
            raise SpecError(
                f"there is no run {run_id} in {store.path}; `resnet-tui runs` lists them"
            )
        if run.kind == "ensemble":
            members = " ".join(str(m) for m in run.parents)
            raise SpecError(
                f"run {run_id} is an ensemble, which has no weights of its own; "
                f"name its members ({members}) instead"
            )
        if run.status != "completed":
            raise SpecError(f"run {run_id} is {run.status}; fuse completed runs only")
        if not (run.folder / "checkpoints" / "best.pt").is_file():
            raise SpecError(f"run {run_id} has no best checkpoint left in {run.run_dir}")
        runs.append(run)
    first = runs[0]
    what = _a(kind)
    for run in runs[1:]:
        if run.dataset != first.dataset:
            raise SpecError(
                f"run {run.id} is on {run.dataset} and run {first.id} on "
                f"{first.dataset}; {what} needs runs of one dataset"
            )
        if run.classes != first.classes:
            raise SpecError(
                f"runs {first.id} and {run.id} were trained on different classes; "
                f"{what} needs runs of the same classes, in the same order"
            )
        if kind == "ensemble":
            continue
        if run.arch != first.arch:
            raise SpecError(
                f"run {run.id} is a {run.arch} and run {first.id} a {first.arch}; "
                "a soup averages runs of one architecture (an ensemble takes any)"
            )
        if _starting_weights(run) != _starting_weights(first):
            raise SpecError(
                f"runs {first.id} and {run.id} start from different weights "
                f"({_starting_weights(first)} vs {_starting_weights(run)}); a soup averages "
                "runs fine-tuned from the same starting weights (an ensemble takes any)"
            )
    return runs


def fuse(
    store: RunStore,
    fusion: FusionSpec,
    run_ids: list[int],
    name: str | None = None,
) -> tuple[int, subprocess.Popen[bytes]]:
    """Check the members, create the fused run in the store and start it.

    `fusion` names the kind and options; its members are filled in here from `run_ids`.
    Raises SpecError with one line where the runs cannot be fused.
    """
    runs = fusion_members(store, fusion.kind, run_ids)
    if fusion.kind == "wise-ft":
        spec = runs[0].spec
        if spec.init == "scratch":
            raise SpecError(
                f"run {runs[0].id} started from scratch, so there are no starting weights "
                "to mix with; --with-init takes a run fine-tuned from imagenet, run:ID or file:"
            )
        start = spec.init_checkpoint or (spec.init[5:] if spec.init.startswith("file:") else "")
        kept = list((runs[0].folder / "sources").glob("init.*"))
        if start and not kept and not Path(start).is_file():
            raise SpecError(
                f"run {runs[0].id} started from {start}, which is no longer there; "
                "--with-init needs the starting weights"
            )
    fusion.members = [
        {
            "run": run.id,
            "name": run.name,
            "checkpoint": str(run.folder / "checkpoints" / "best.pt"),
        }
        for run in runs
    ]
    fusion.validate()
    spec = runs[0].spec
    spec.device = fusion.device
    label = {"ensemble": "ensemble", "soup": "soup", "wise-ft": "WiSE-FT"}[fusion.kind]
    if fusion.kind == "soup" and fusion.greedy:
        label = "greedy soup"
    runs_named = "run " if len(run_ids) == 1 else "runs "
    spec.name = name or f"{label} of {runs_named}{', '.join(str(i) for i in run_ids)}"
    run_id = store.create_run(spec, parents=run_ids, kind=fusion.kind, recipe=fusion.to_json())
    run = store.run(run_id)
    assert run is not None
    files = {"spec.json": spec.to_json(), "fusion.json": fusion.to_json()}
    return run_id, _start_new(store, run, files, fusion=True)


class DevicesUnavailable(Exception):
    """The engine could not list the devices (torch failed to load, say)."""


def list_devices() -> list[dict[str, object]]:
    """The devices torch can see, asked of the engine in a subprocess (torch stays out of us)."""
    result = subprocess.run(
        [sys.executable, "-m", "engine", "devices"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise DevicesUnavailable((result.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(result.stdout)
