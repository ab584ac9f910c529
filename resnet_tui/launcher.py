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
from pathlib import Path

from engine.spec import RunSpec, SpecError
from resnet_tui.store import RunStore


def engine_command(
    spec_path: Path, events_path: Path, run_dir: Path, resume: bool = False
) -> list[str]:
    command = [sys.executable, "-m", "engine", "run", "--spec", str(spec_path)]
    command += ["--events", str(events_path), "--run-dir", str(run_dir)]
    return command + ["--resume"] if resume else command


def start_engine(run_dir: Path, resume: bool = False) -> subprocess.Popen[bytes]:
    """Start the engine on the run folder's spec, in its own session, logging to engine.log."""
    command = engine_command(run_dir / "spec.json", run_dir / "events.jsonl", run_dir, resume)
    with open(run_dir / "engine.log", "ab") as log:
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
    _, run_id, *which = spec.init.split(":")
    source = store.run(int(run_id))
    if source is None:
        raise SpecError(
            f"--init {spec.init}: there is no run {run_id} in {store.path}; "
            "`resnet-tui runs` lists the runs"
        )
    if source["arch"] != spec.arch:
        raise SpecError(
            f"--init {spec.init}: run {run_id} is a {source['arch']} and this run a "
            f"{spec.arch}; use --arch {source['arch']}"
        )
    checkpoint = "last" if which == ["last"] else "best"
    path = Path(source["run_dir"] or "") / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise SpecError(
            f"--init {spec.init}: run {run_id} has no {checkpoint} checkpoint (it is "
            f"{source['status']} after {source['epochs_done']} epochs)"
        )
    spec.init_checkpoint = str(path)
    if spec.width is None:
        spec.width = RunSpec.from_json(source["spec"]).width
    return [int(run_id)]


def launch(store: RunStore, spec: RunSpec) -> tuple[int, subprocess.Popen[bytes]]:
    """Create the run in the store, write its spec and start the engine on it.

    Raises SpecError where `--init run:ID` cannot be resolved (see `resolve_init`).
    """
    parents = resolve_init(store, spec)
    run_id = store.create_run(spec, parents=parents)
    run_dir = Path(store.run(run_id)["run_dir"])
    write_atomically(run_dir / "spec.json", spec.to_json())
    process = start_engine(run_dir)
    store.update(run_id, status="running", pid=process.pid)
    return run_id, process


RESUMABLE_STATUSES = ("stopped", "crashed", "failed")


def resume(store: RunStore, run_id: int) -> subprocess.Popen[bytes]:
    """Continue a stopped, crashed or failed run in place from its last checkpoint.

    Raises SpecError, with what to do instead, where the run cannot be resumed. Call
    `refresh_live_runs` first, so that a run whose engine died is `crashed`, not `running`.
    """
    run = store.run(run_id)
    if run is None:
        raise SpecError(f"no run {run_id} in {store.path}; `resnet-tui runs` lists them")
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
    process = start_engine(run_dir, resume=True)
    store.update(run_id, status="running", pid=process.pid, ended_at=None, error=None)
    return process


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
