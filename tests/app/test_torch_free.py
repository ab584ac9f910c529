"""The tests of the app, of the run layer and of the two processes together load no torch, as
the code they test never does: they start in a fraction of the time, and an engine's import
cannot hide in them. The runs they start train in processes of their own (mostly the fake
engine's)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Collects every test of tests/app, tests/runs and tests/integration, runs one of them through
# the fixtures every test gets, and prints the torch modules loaded by then.
SCRIPT = """
import sys
import pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--basetemp", sys.argv[1],
                    "-k", "test_a_run_of_an_older_resnet_tui_is_caught_up_and_ended_by_a_viewer",
                    "tests/app", "tests/runs", "tests/integration"])
print(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "torchvision")))
sys.exit(code)
"""


def test_the_app_runs_and_integration_tests_load_no_torch(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "inner")],
        cwd=ROOT,
        env={name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout, result.stdout[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-3000:]
