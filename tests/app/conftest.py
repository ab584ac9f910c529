"""Fixtures of the app's tests."""

from pathlib import Path

import pytest

# What `python -m engine devices` says on a machine without GPUs, and on one with two.
CPU_ONLY = [{"name": "cpu", "description": "CPU", "threads": 2}]
TWO_GPUS = CPU_ONLY + [
    {"name": f"cuda:{i}", "description": "NVIDIA H100", "free_mb": 80_000, "total_mb": 81_559}
    for i in (0, 1)
]


@pytest.fixture(autouse=True)
def no_keys_file_of_the_user(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """The app's keys as shipped: a developer's own ~/.config/resnet-tui/keys.toml (or
    $RESNET_TUI_KEYS) must not change what the tests press."""
    config = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.delenv("RESNET_TUI_KEYS", raising=False)
    return config


@pytest.fixture
def fake_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launch form's list of devices, without asking the engine: the engine loads torch
    to answer, seconds of a CPU for each form opened (the form launched in
    test_fill_the_form_launch_watch_it_finish_and_find_it_in_the_history asks the real one)."""
    monkeypatch.setattr("resnet_tui.app.screens.launch.list_devices", lambda: CPU_ONLY)
