"""Fixtures shared by the engine and UI tests: the real data beside the checkout, a tiny spec."""

import contextlib
import os
import shutil
import signal
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: no per-example deadline, so a busy machine (CI, 2 cores) never fails one
# for being slow rather than wrong.
settings.register_profile("resnet-tui", deadline=None)
settings.load_profile("resnet-tui")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# The fault-injection tests' tally, fault -> [trials, survived, rows lost]; the suite prints
# it as its last table.
FAULTS: dict[str, list[int]] = {}


def record_fault(fault: str, survived: bool, rows_lost: int = 0) -> None:
    """Count one trial of `fault` for the table the suite ends with."""
    tally = FAULTS.setdefault(fault, [0, 0, 0])
    tally[0] += 1
    tally[1] += int(survived)
    tally[2] += rows_lost


def _shared(relative: str) -> Path:
    """A folder of ../shared/data: in CI its absence fails the test, elsewhere it skips."""
    path = SHARED_DATA / relative
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing; CI needs ../shared/data beside the checkout")
        pytest.skip(f"{path} is not here")
    return path


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """A data root holding a copy of the real MNIST files (read-only originals stay put)."""
    source = _shared("MNIST/raw")
    target = tmp_path / "data" / "MNIST" / "raw"
    shutil.copytree(source, target)
    return tmp_path / "data"


@pytest.fixture(scope="session")
def shared_mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `mnist_root`, one copy for the whole session, for module-wide fixtures."""
    source = _shared("MNIST/raw")
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(source, root / "MNIST" / "raw")
    return root


@pytest.fixture
def hymenoptera() -> Path:
    """The ants/bees ImageFolder (read it; never write into it)."""
    return _shared("hymenoptera_data")


@pytest.fixture
def tiny_spec_options() -> dict[str, object]:
    """Options for a run that trains in a second or two on a CPU."""
    return {
        "arch": "resnet8",
        "width": 4,
        "dataset": "shapes",
        "limit": 256,
        "image_size": 16,
        "epochs": 2,
        "batch_size": 64,
        "device": "cpu",
        "seed": 0,
    }


_drawn: dict[tuple, object] = {}


@pytest.fixture(autouse=True)
def draw_shapes_once(monkeypatch):
    """Make each shapes split's random draws once per session for the runs trained in the
    test process (the noise of 10,000 images takes a quarter of a second); each run gets
    its own copy."""
    import torch

    from engine.data import datasets as data

    original = data.draw_shapes

    def cached(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in _drawn:
            _drawn[key] = original(*args, **kwargs)
        return _drawn[key].subset(torch.arange(len(_drawn[key])))

    monkeypatch.setattr(data, "draw_shapes", cached)


@pytest.fixture(autouse=True)
def no_engine_outlives_its_test(tmp_path: Path):
    """Kill any engine a test left behind under its tmp_path (a failed test, say)."""
    yield
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if ("engine run" in command or "engine fuse" in command) and str(tmp_path) in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """End the run with the fault-injection table, where those tests ran."""
    if not FAULTS:
        return
    terminalreporter.section("fault injection")
    wide = max(len(fault) for fault in FAULTS)
    terminalreporter.write_line(f"{'fault':<{wide}} {'trials':>6} {'survived':>8} {'rows lost':>9}")
    for fault, (trials, survived, lost) in FAULTS.items():
        terminalreporter.write_line(f"{fault:<{wide}} {trials:>6} {survived:>8} {lost:>9}")
