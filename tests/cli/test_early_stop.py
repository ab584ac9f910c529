"""Early stopping from the command line: `run` says why it stopped early and exits 0, and
`show` says it again; the real engine trains a tiny run."""

import json
import re

import pytest

from tests.cli.command import TINY, invoke

# It trains: it starts first on the xdist workers.
pytestmark = pytest.mark.slow

STOPPED_EARLY = re.compile(
    r"stopped early after epoch ([23]): val_acc did not improve by more than 0\.5 for 1 epoch "
    r"\(best \d+\.\d% at epoch [12]\)"
)


def test_a_run_that_stops_early_says_why_completes_and_show_says_it_again(tmp_path):
    at = TINY.index("--epochs")
    options = [*TINY[:at], "--epochs", "20", *TINY[at + 2 :]]
    # No accuracy beats another by more than 0.5 twice: it stops after epoch 2 or 3.
    ran = invoke(
        "run", *options, "--early-stop-patience", "1", "--early-stop-min-delta", "0.5", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    said = STOPPED_EARLY.search(" ".join(ran.stdout.split()))  # as read, not as wrapped
    assert said, ran.stdout
    assert "completed run 1" in ran.stdout
    shown = invoke("show", "1", cwd=tmp_path)
    assert shown.returncode == 0 and said.group(0) in " ".join(shown.stdout.split())
    as_json = json.loads(invoke("show", "1", "--json", cwd=tmp_path).stdout)
    assert as_json["status"] == "completed" and as_json["epochs_done"] == int(said.group(1))
    assert as_json["early_stop"]["epoch"] == int(said.group(1))
    assert as_json["spec"]["early_stop_patience"] == 1


def test_a_run_without_early_stopping_shows_no_such_line(tmp_path):
    ran = invoke("run", *TINY, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "stopped early" not in ran.stdout
    assert json.loads(invoke("show", "1", "--json", cwd=tmp_path).stdout)["early_stop"] is None
    # the fields the tool keeps for itself (the data rules a run was made under) are not
    # settings of the user's: `show` lists them only where they differ from today's
    shown = invoke("show", "1", cwd=tmp_path).stdout
    assert "val-from-train" not in shown and "decode-small-folders" not in shown
    assert "batch-size" in shown
