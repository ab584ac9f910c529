"""Who owns a run: the lock its supervisor holds on the run folder, and the processes it names.

A supervisor holds an exclusive lock on `supervisor.lock` in the run folder for as long as it
lives (the kernel lets go when it dies, however it dies). Beside it, `supervisor.json` names
the supervisor and its engine by process id *and* start time, so a signal never reaches a
process that merely reuses a dead one's id. The lock is trusted, the names only while it is
held (or, for the engine, while a process of that id and start time is there).
"""

import contextlib
import fcntl
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from resnet_tui.runs.files import write_atomically

LOCK_FILE = "supervisor.lock"
OWNER_FILE = "supervisor.json"
# A look at the lock holds it for a moment; whoever wants it waits this long before deciding
# that another process owns the run.
LOCK_PATIENCE_S = 1.0


class RunBusy(Exception):
    """Another process owns the run (a supervisor, or a launcher handing it over)."""


@dataclass(frozen=True)
class ProcessName:
    """A process as it cannot be mistaken: its id and when it started (clock ticks since
    boot, from /proc; 0 where the system does not say, and the id alone must do)."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> "ProcessName":
        return cls(pid, start_time(pid) or 0)

    def alive(self) -> bool:
        """Whether this very process is still there (not a zombie, not a newcomer)."""
        if not process_alive(self.pid):
            return False
        now = start_time(self.pid)
        return now is None or self.started in (0, now)

    def signal(self, signum: int) -> bool:
        """Send `signum` to this process, if it is still this process; False otherwise."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True


def start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot; None where it is unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


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
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


@dataclass(frozen=True)
class Owners:
    """What `supervisor.json` says: the supervisor, and its engine once started."""

    supervisor: ProcessName
    engine: ProcessName | None = None

    def write(self, run_dir: Path) -> None:
        write_atomically(run_dir / OWNER_FILE, json.dumps(asdict(self)))

    @classmethod
    def read(cls, run_dir: Path) -> "Owners | None":
        """The owner file's names; None where it is missing or not what a supervisor writes
        (whole numbers, and nothing else, for each id and start time)."""
        try:
            values = json.loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))
            supervisor = _name(values["supervisor"])
            engine = _name(values["engine"]) if values.get("engine") else None
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        return cls(supervisor, engine) if supervisor else None


def _name(values: object) -> ProcessName | None:
    """A process name from the owner file, where its fields are whole numbers."""
    if not isinstance(values, dict) or set(values) != {"pid", "started"}:
        return None
    pid, started = values["pid"], values["started"]
    if any(type(number) is not int or number < 0 for number in (pid, started)):
        return None
    return ProcessName(pid, started) if 0 < pid < 2**31 else None


def take_run(run_dir: Path, patience: float = LOCK_PATIENCE_S) -> int:
    """Take the run's lock: returns the locked file's descriptor (hand it to the supervisor).
    Raises RunBusy where another process holds it for longer than `patience` seconds."""
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise RunBusy(str(run_dir)) from None
            time.sleep(0.02)


def supervised(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (its supervisor, as a rule)."""
    if not (run_dir / LOCK_FILE).exists():
        return False
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing lets go of a lock taken here
    return False


def engine_alive(run_dir: Path) -> bool | None:
    """Whether the engine a supervisor started for the run is still there; None where no
    supervisor ever named one (a run of an older resnet-tui, or one not started yet)."""
    owners = Owners.read(run_dir)
    if owners is None or owners.engine is None:
        return None
    return owners.engine.alive()


def signal_run(run_dir: Path, signum: int = signal.SIGINT) -> bool:
    """Ask the process that runs the run to stop: its supervisor while it lives (it passes
    the signal on to its engine), else an engine that outlived its supervisor. A process is
    signalled only as the one the owner file names, and only while it is that process. A
    supervisor being handed the run (by a launcher or a worker) gets a moment to say who it
    is; False where nothing of the run is there after that."""
    deadline = time.monotonic() + LOCK_PATIENCE_S
    while True:
        owners = Owners.read(run_dir)
        if owners is not None:
            if supervised(run_dir) and owners.supervisor.signal(signum):
                return True
            if not supervised(run_dir) and owners.engine and owners.engine.signal(signum):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
