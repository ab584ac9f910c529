"""What all the tests share: the real data beside the checkout, the fake engine, a tiny spec,
the order the tests run in on xdist's workers, and the fault-injection table."""

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from resnet_tui.runs.supervisor import ENGINE_MODULE_VARIABLE
from tests.fake_engine import EPOCH_S, EPOCH_S_VARIABLE

# The engines the tests start (and torch in the test process) keep idle OpenMP threads asleep
# rather than spinning: two xdist workers each training on all the cores otherwise burn a
# third more CPU time and take longer. Only how threads wait changes, never what they compute.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Whatever the tests keep beside the datasets (folders decoded once) goes to a folder of this
# session's, never the user's ~/.cache; tests that need their own data root give one.
os.environ.setdefault("RESNET_TUI_DATA", tempfile.mkdtemp(prefix="resnet-tui-test-data-"))

# Property tests: no per-example deadline, so a busy machine (CI, 2 cores) never fails one
# for being slow rather than wrong.
settings.register_profile("resnet-tui", deadline=None)
settings.load_profile("resnet-tui")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
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
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs started in the test (by its process or the commands it runs) train on the
    torch-free stand-in, tests/fake_engine.py, which replays a recorded run, an epoch every
    half second unless the test sets RESNET_TUI_FAKE_EPOCH_S (or waits for a stop after the
    epoch RESNET_TUI_FAKE_WAIT_AFTER_EPOCH names)."""
    monkeypatch.setenv(ENGINE_MODULE_VARIABLE, "tests.fake_engine")
    monkeypatch.setenv(EPOCH_S_VARIABLE, str(EPOCH_S))
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


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


@pytest.fixture(autouse=True)
def no_engine_outlives_its_test(tmp_path: Path):
    """Kill any engine (the real one or the fake) a test left behind under its tmp_path (a
    failed test, say)."""
    yield
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ("engine run" in command or "engine fuse" in command) and str(tmp_path) in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow tests first, so that the xdist workers finish together rather than one
    waiting for another's last long test. Keep the tests of a module that share a
    module-wide fixture (a run trained once for them all) on one worker (`--dist
    loadgroup`), so it is made once; the others go to whichever worker is free."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        shared = fixtures is not None and any(
            definitions[-1].scope in ("module", "class")
            for definitions in fixtures.name2fixturedefs.values()
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand the fault tally to the controller that prints it."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["faults"] = FAULTS


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """On the xdist controller, add a finished worker's fault tally to the table."""
    for fault, counts in getattr(node, "workeroutput", {}).get("faults", {}).items():
        tally = FAULTS.setdefault(fault, [0, 0, 0])
        for index, count in enumerate(counts):
            tally[index] += count


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """End the run with the fault-injection table, where those tests ran."""
    if not FAULTS:
        return
    terminalreporter.section("fault injection")
    wide = max(len(fault) for fault in FAULTS)
    terminalreporter.write_line(f"{'fault':<{wide}} {'trials':>6} {'survived':>8} {'rows lost':>9}")
    for fault, (trials, survived, lost) in FAULTS.items():
        terminalreporter.write_line(f"{fault:<{wide}} {trials:>6} {survived:>8} {lost:>9}")
