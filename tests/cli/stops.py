"""Stopping a `resnet-tui` command that runs an engine job, as Ctrl-C at a terminal would:
early (the engine just started), or late (the engine done, its files written, before the
command has read its last words)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WAIT_S = 300.0


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """`resnet-tui ARGS` in a process group of its own (as a terminal's foreground job)."""
    env = {**os.environ, "COLUMNS": "120", "RESNET_TUI_DATA": str(cwd / "data")}
    env.pop("RESNET_TUI_DB", None)
    return subprocess.Popen(
        [sys.executable, "-m", "resnet_tui", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def engine_of(command: subprocess.Popen[str]) -> int:
    """The id of the engine the command started, once it has started one."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == command.pid:
                return int(proc.name)
        assert command.poll() is None, command.communicate()
        time.sleep(0.01)
    raise AssertionError("the command started no engine")


def ctrl_c_at_once(command: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C to the command and its engine as soon as the engine has started; what the
    command said on stdout and stderr."""
    engine_of(command)
    os.killpg(command.pid, signal.SIGINT)
    return command.communicate(timeout=WAIT_S)


def ctrl_c_after_the_engine(command: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C to the command after its engine has done all it does and ended, before the
    command reads that it has (the command held still meanwhile); what it said."""
    engine = engine_of(command)
    os.kill(command.pid, signal.SIGSTOP)
    deadline = time.monotonic() + WAIT_S
    while _running(engine) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(command.pid, signal.SIGINT)  # waits until the command goes on
    os.kill(command.pid, signal.SIGCONT)
    return command.communicate(timeout=WAIT_S)


def _running(pid: int) -> bool:
    """Whether a process is there and not yet ended (an ended child of a held command stays
    as a zombie until the command reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
