"""Running `resnet-tui` as a user would, in a subprocess, for the tests of the command."""

import json
import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "RESNET_TUI_DATA": str(cwd / "data"), "COLUMNS": "120"}
    env.pop("RESNET_TUI_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "resnet_tui", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def runs_json(cwd: Path) -> list[dict]:
    result = cli("runs", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
