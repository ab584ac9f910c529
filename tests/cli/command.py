"""Running `resnet-tui` for the tests of the command: as a user would, in a subprocess
(`cli`), or in the test's own process (`invoke`) where two processes are not the point."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from typer.testing import CliRunner

BAD_INPUT = "bad input: one line on stderr, exit code 2"

# A run that trains in a second or two on a CPU.
TINY = [
    "--arch",
    "resnet8",
    "--width",
    "4",
    "--limit",
    "256",
    "--image-size",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--device",
    "cpu",
]


def _environment(cwd: Path) -> dict[str, str | None]:
    """What both ways run with: data under the test's folder, a wide terminal, the default
    store (./runs.db), whatever the test process was given."""
    return {"RESNET_TUI_DATA": str(cwd / "data"), "COLUMNS": "120", "RESNET_TUI_DB": None}


def cli(*args: str, cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **_environment(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "resnet_tui", *args],
        cwd=cwd,
        env={name: value for name, value in env.items() if value is not None},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


@contextmanager
def _as_if_started(args: tuple[str, ...], cwd: Path) -> Iterator[None]:
    """For a while, this process as if the installed script had started it: `resnet-tui ARGS`
    its command line (not `python -m pytest`, which Click would name in usage lines) and
    `cwd` its working folder."""
    argv, main, folder = sys.argv, sys.modules["__main__"], Path.cwd()
    sys.argv = ["resnet-tui", *args]
    sys.modules["__main__"] = ModuleType("__main__")
    os.chdir(cwd)
    try:
        yield
    finally:
        sys.argv, sys.modules["__main__"] = argv, main
        os.chdir(folder)


def invoke(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`resnet-tui ARGS` in this process, answered as `cli` answers: the same entry point
    (`resnet_tui.main`, which runs the Typer app `resnet_tui.cli.app` and turns its errors
    into one line and an exit code), with Typer's CliRunner holding the environment, stdout
    and stderr, and a stdin that is no terminal."""
    from resnet_tui.main import main

    code: int | str | None = 0
    with (
        CliRunner().isolation(env=_environment(cwd)) as (stdout, stderr, _),
        _as_if_started(args, cwd),
    ):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        said, complained = stdout.getvalue().decode(), stderr.getvalue().decode()
    return subprocess.CompletedProcess(["resnet-tui", *args], code, said, complained)


def runs_json(cwd: Path) -> list[dict]:
    result = invoke("runs", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
