"""Driving the app in the tests: a store of its own in a scratch folder, and waiting for it."""

import time
from pathlib import Path

import pytest

from resnet_tui.runs.launcher import stop
from resnet_tui.runs.store import RunStore


def app_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunStore:
    """A store in `tmp_path`, the working folder (screenshots land there), with the data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNET_TUI_DATA", str(tmp_path / "data"))
    return RunStore(tmp_path / "runs.db")


def stop_what_is_left(tmp_path: Path) -> None:
    """Stop the runs a test left training (the app closed its own store on the way out)."""
    left = RunStore(tmp_path / "runs.db")
    for run in left.live_runs():
        stop(run)
    left.close()


async def wait_for(pilot, condition, timeout: float = 120, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.2)


async def wait_for_the_app(pilot, condition, timeout: float = 30, what: str = "the app") -> None:
    """Wait until the app shows what the store has: it looks at the store twice a second;
    look now rather than wait for the timer."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pilot.app.look_at_the_store()
        await pilot.pause(0.2)


async def wait_for_status(
    pilot, store: RunStore, run_id: int, status: str, timeout: float = 120
) -> None:
    """Wait for a run to reach `status`; fail at once, saying how, where it ends otherwise."""
    deadline = time.monotonic() + timeout
    while (run := store.run(run_id)).status != status:
        assert run.live, f"run {run_id} ended {run.status}, not {status}: {run.error}"
        assert time.monotonic() < deadline, f"run {run_id} is still {run.status}"
        await pilot.pause(0.2)
