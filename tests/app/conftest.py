"""Fixtures of the app's tests."""

import pytest

# What `python -m engine devices` says on a machine without GPUs.
CPU_ONLY = [{"name": "cpu", "description": "CPU", "threads": 2}]


@pytest.fixture
def fake_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launch form's list of devices, without asking the engine: the engine loads torch
    to answer, seconds of a CPU for each form opened (the form launched in
    test_fill_the_form_launch_watch_it_finish_and_find_it_in_the_history asks the real one)."""
    monkeypatch.setattr("resnet_tui.app.screens.launch.list_devices", lambda: CPU_ONLY)
