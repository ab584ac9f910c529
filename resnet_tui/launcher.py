"""Starting the engine as a detached process, and telling whether a run's process lives.

The engine runs in its own session with no terminal, so closing the app, a Ctrl-C meant for
the viewer or a dropped SSH connection never reaches it; it writes only to files in its run
folder.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine import catalog
from engine.spec import FusionSpec, RunSpec, SpecError, dataset_kind, normalise_device
from engine.stopping import signals_held
from resnet_tui.store import RunStore


def engine_command(run_dir: Path, resume: bool = False, fusion: bool = False) -> list[str]:
    """The engine's command line for the run in `run_dir`: training it, resuming it, or (for
    an ensemble or soup) fusing its members."""
    if fusion:
        command = [sys.executable, "-m", "engine", "fuse", "--fusion", str(run_dir / "fusion.json")]
    else:
        command = [sys.executable, "-m", "engine", "run", "--spec", str(run_dir / "spec.json")]
    command += ["--events", str(run_dir / "events.jsonl"), "--run-dir", str(run_dir)]
    return command + ["--resume"] if resume else command


def start_engine(
    run_dir: Path, resume: bool = False, fusion: bool = False
) -> subprocess.Popen[bytes]:
    """Start the engine on the run folder's spec, in its own session, logging to engine.log."""
    command = engine_command(run_dir, resume, fusion)
    with open(run_dir / "engine.log", "ab") as log, signals_held():
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def resolve_init(store: RunStore, spec: RunSpec) -> list[int]:
    """Point `--init run:ID` at that run's checkpoint; returns the parent runs (the lineage).

    The source's width is taken when the spec gives none, so its weights fit. Raises
    SpecError with one line for a run that is not there, of another architecture, or
    without the checkpoint asked for, and for a weights file that is not there.
    """
    if spec.init.startswith("file:") and not Path(spec.init[5:]).is_file():
        raise SpecError(f"--init {spec.init}: there is no such file")
    if not spec.init.startswith("run:"):
        return []
    source, path = checkpoint_of(store, spec.init, f"--init {spec.init}")
    if source["arch"] != spec.arch:
        raise SpecError(
            f"--init {spec.init}: run {source['id']} is a {source['arch']} and this run a "
            f"{spec.arch}; use --arch {source['arch']}"
        )
    spec.init_checkpoint = str(path)
    if spec.width is None:
        spec.width = RunSpec.from_json(source["spec"]).width
    return [source["id"]]


def checkpoint_of(store: RunStore, source: str, role: str) -> tuple[dict[str, Any], Path]:
    """The run and checkpoint file that `run:ID` or `run:ID:last` stands for.

    Raises SpecError, naming the `role` (`--init run:3`, `--teacher run:3`), for a run that
    is not in the store or has no such checkpoint.
    """
    _, run_id, *which = source.split(":")
    run = store.run(int(run_id))
    if run is None:
        raise SpecError(
            f"{role}: there is no run {run_id} in {store.path}; `resnet-tui runs` lists the runs"
        )
    if run["kind"] == "ensemble":
        members = ",".join(f"run:{m}" for m in json.loads(run["parents"] or "[]"))
        raise SpecError(
            f"{role}: run {run_id} is an ensemble, which has no weights of its own; "
            f"use its members ({members})"
        )
    checkpoint = "last" if which == ["last"] else "best"
    path = Path(run["run_dir"] or "") / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise SpecError(
            f"{role}: run {run_id} has no {checkpoint} checkpoint (it is "
            f"{run['status']} after {run['epochs_done']} epochs)"
        )
    return run, path


def run_classes(run: dict[str, Any]) -> list[str] | None:
    """The classes a run trained on, as its engine reported them (None before it started)."""
    info = json.loads(run["engine_info"] or "{}")
    return info.get("classes")


def resolve_teachers(store: RunStore, spec: RunSpec) -> list[int]:
    """Point `--teacher run:ID,...` at the runs' checkpoints; returns the teachers' ids.

    Raises SpecError where a teacher is not in the store, has no checkpoint, or was not
    trained on the student's classes (where those are known before the data is read).
    """
    if not spec.teacher:
        return []
    student_classes = spec.classes or list(catalog.DATASETS[dataset_kind(spec.dataset)].classes)
    paths, ids = [], []
    for source in spec.teacher:
        teacher, path = checkpoint_of(store, source, f"--teacher {source}")
        known = run_classes(teacher)
        missing = [c for c in student_classes if known is not None and c not in known]
        if missing:
            raise SpecError(
                f"--teacher {source}: run {teacher['id']} was not trained on this run's "
                f"class{'es' if len(missing) > 1 else ''} {', '.join(missing[:5])}; distil from "
                "a teacher trained on the student's classes"
            )
        paths.append(str(path))
        ids.append(teacher["id"])
    spec.teacher_checkpoints = paths
    return ids


def launch(store: RunStore, spec: RunSpec) -> tuple[int, subprocess.Popen[bytes]]:
    """Create the run in the store, write its spec and start the engine on it.

    Raises SpecError where `--init run:ID` or `--teacher` cannot be resolved.
    """
    parents = resolve_init(store, spec)
    teachers = resolve_teachers(store, spec)
    run_id = store.create_run(spec, parents=parents, teachers=teachers)
    run_dir = Path(store.run(run_id)["run_dir"])
    write_atomically(run_dir / "spec.json", spec.to_json())
    process = start_engine(run_dir)
    store.update(run_id, status="running", pid=process.pid)
    return run_id, process


def queue(store: RunStore, specs: list[RunSpec]) -> tuple[list[int], int | None]:
    """Create a run for each spec, checked as `launch` checks it, and queue them in order as
    one sweep; returns their ids and the sweep's number. Nothing starts: a worker
    (`start_queued`) does. Raises SpecError, naming the spec, before any run is made."""
    resolved = []
    for spec in specs:
        try:
            resolved.append((spec, resolve_init(store, spec), resolve_teachers(store, spec)))
        except SpecError as error:
            raise SpecError(f"{spec.display_name}: {error}") from None
    run_ids = []
    for spec, parents, teachers in resolved:
        run_id = store.create_run(spec, parents=parents, teachers=teachers)
        write_atomically(Path(store.run(run_id)["run_dir"]) / "spec.json", spec.to_json())
        run_ids.append(run_id)
    return run_ids, store.enqueue(run_ids, sweep=len(run_ids) > 1)


def start_queued(store: RunStore, run: dict[str, Any], device: str) -> subprocess.Popen[bytes]:
    """Start a run a worker took from the queue, on `device` (the worker's to give)."""
    spec = RunSpec.from_json(run["spec"]).on_one_device(device)
    run_dir = Path(run["run_dir"])
    write_atomically(run_dir / "spec.json", spec.to_json())
    process = start_engine(run_dir)
    store.update(run["id"], status="running", pid=process.pid, spec=spec.to_json(), device=device)
    return process


RESUMABLE_STATUSES = ("stopped", "crashed", "failed")


def resume(store: RunStore, run_id: int, device: str | None = None) -> subprocess.Popen[bytes]:
    """Continue a stopped, crashed or failed run in place from its last checkpoint, on
    `device` where one is given (after a GPU failed, say; a run on several devices then goes
    on in one process there), else where it ran.

    Raises SpecError, with what to do instead, where the run cannot be resumed. Call
    `refresh_live_runs` first, so that a run whose engine died is `crashed`, not `running`.
    """
    device = normalise_device(device) if device is not None else None
    run = store.run(run_id)
    if run is None:
        raise SpecError(f"no run {run_id} in {store.path}; `resnet-tui runs` lists them")
    if run["kind"] != "train":
        raise SpecError(
            f"run {run_id} is {_a(run['kind'])}, which is not trained and so not resumed; "
            f"make it again with `resnet-tui {_remake(run)}`"
        )
    if run["status"] not in RESUMABLE_STATUSES:
        advice = {
            "completed": f"to train on, start a new run from it: --init run:{run_id}",
            "running": "it is still running; follow it in the app",
            "queued": "it has not started yet",
        }.get(run["status"], "")
        raise SpecError(f"run {run_id} is {run['status']}, so there is nothing to resume; {advice}")
    run_dir = Path(run["run_dir"])
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        raise SpecError(
            f"run {run_id} has no checkpoint to resume from (it ended before its first epoch); "
            "launch it again instead (`a` in the app)"
        )
    if device is not None:
        spec = RunSpec.from_json(run["spec"]).on_one_device(device)
        write_atomically(run_dir / "spec.json", spec.to_json())
        store.update(run_id, spec=spec.to_json(), device=spec.placement)
    process = start_engine(run_dir, resume=True)
    store.update(
        run_id,
        status="running",
        pid=process.pid,
        ended_at=None,
        error=None,
        last_event_at=time.time(),
    )
    return process


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


def fusion_of(run: dict[str, Any]) -> FusionSpec:
    """The fusion a fused run was made by (its recipe, less what the engine chose)."""
    recipe = json.loads(run["recipe"] or "{}")
    return FusionSpec.from_json(json.dumps({k: v for k, v in recipe.items() if k != "outcome"}))


def _remake(run: dict[str, Any]) -> str:
    return fusion_command(fusion_of(run))


def _starting_weights(run: dict[str, Any]) -> str:
    """Where a run's weights started, in words that tell two starts apart."""
    spec = json.loads(run["spec"])
    if spec["init"] == "scratch":
        return f"scratch with seed {spec['seed']}"
    return spec["init"]


def fusion_members(store: RunStore, kind: str, run_ids: list[int]) -> list[dict[str, Any]]:
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
        if run["kind"] == "ensemble":
            members = " ".join(str(m) for m in json.loads(run["parents"] or "[]"))
            raise SpecError(
                f"run {run_id} is an ensemble, which has no weights of its own; "
                f"name its members ({members}) instead"
            )
        if run["status"] != "completed":
            raise SpecError(f"run {run_id} is {run['status']}; fuse completed runs only")
        if not (Path(run["run_dir"] or "") / "checkpoints" / "best.pt").is_file():
            raise SpecError(f"run {run_id} has no best checkpoint left in {run['run_dir']}")
        runs.append(run)
    first = runs[0]
    what = _a(kind)
    for run in runs[1:]:
        if run["dataset"] != first["dataset"]:
            raise SpecError(
                f"run {run['id']} is on {run['dataset']} and run {first['id']} on "
                f"{first['dataset']}; {what} needs runs of one dataset"
            )
        if run_classes(run) != run_classes(first):
            raise SpecError(
                f"runs {first['id']} and {run['id']} were trained on different classes; "
                f"{what} needs runs of the same classes, in the same order"
            )
        if kind == "ensemble":
            continue
        if run["arch"] != first["arch"]:
            raise SpecError(
                f"run {run['id']} is a {run['arch']} and run {first['id']} a {first['arch']}; "
                "a soup averages runs of one architecture (an ensemble takes any)"
            )
        if _starting_weights(run) != _starting_weights(first):
            raise SpecError(
                f"runs {first['id']} and {run['id']} start from different weights "
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
    """Check the members, create the fused run in the store and start the engine on it.

    `fusion` names the kind and options; its members are filled in here from `run_ids`.
    Raises SpecError with one line where the runs cannot be fused.
    """
    runs = fusion_members(store, fusion.kind, run_ids)
    if fusion.kind == "wise-ft":
        spec = RunSpec.from_json(runs[0]["spec"])
        if spec.init == "scratch":
            raise SpecError(
                f"run {runs[0]['id']} started from scratch, so there are no starting weights "
                "to mix with; --with-init takes a run fine-tuned from imagenet, run:ID or file:"
            )
        start = spec.init_checkpoint or (spec.init[5:] if spec.init.startswith("file:") else "")
        kept = list((Path(runs[0]["run_dir"]) / "sources").glob("init.*"))
        if start and not kept and not Path(start).is_file():
            raise SpecError(
                f"run {runs[0]['id']} started from {start}, which is no longer there; "
                "--with-init needs the starting weights"
            )
    fusion.members = [
        {
            "run": run["id"],
            "name": run["name"],
            "checkpoint": str(Path(run["run_dir"]) / "checkpoints" / "best.pt"),
        }
        for run in runs
    ]
    fusion.validate()
    spec = RunSpec.from_json(runs[0]["spec"])
    spec.device = fusion.device
    label = {"ensemble": "ensemble", "soup": "soup", "wise-ft": "WiSE-FT"}[fusion.kind]
    if fusion.kind == "soup" and fusion.greedy:
        label = "greedy soup"
    runs_named = "run " if len(run_ids) == 1 else "runs "
    spec.name = name or f"{label} of {runs_named}{', '.join(str(i) for i in run_ids)}"
    run_id = store.create_run(spec, parents=run_ids, kind=fusion.kind, recipe=fusion.to_json())
    run_dir = Path(store.run(run_id)["run_dir"])
    write_atomically(run_dir / "spec.json", spec.to_json())
    write_atomically(run_dir / "fusion.json", fusion.to_json())
    process = start_engine(run_dir, fusion=True)
    store.update(run_id, status="running", pid=process.pid)
    return run_id, process


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


def process_alive(pid: int | None) -> bool:
    """Whether process `pid` runs (a zombie, finished but not yet reaped, does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state not in ("Z", "X")
    return True


def request_stop(pid: int | None) -> bool:
    """Ask a run's engine to stop after its current step; False if it was not running."""
    if not process_alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    return True
