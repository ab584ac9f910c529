"""A worker refuses, at its start and before it takes a run, a device the engine cannot see:
one line, exit code 2, the queue as it was."""

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.runs import worker as worker_module
from resnet_tui.runs.launcher import DevicesUnavailable, queue
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.worker import missing_device
from tests.cli.command import invoke, runs_json
from tests.conftest import record_fault

MISSING_DEVICE = "a device not there (worker, resume): refused first, nothing changed"
CPU_ONLY = [{"name": "cpu", "description": "CPU", "threads": 2}]
TWO_GPUS = [*CPU_ONLY, {"name": "cuda:0"}, {"name": "cuda:1"}]


def _queued(tmp_path, tiny_spec_options, count: int = 2) -> list[int]:
    store = RunStore(tmp_path / "runs.db")
    run_ids, _ = queue(store, [RunSpec.from_dict(tiny_spec_options) for _ in range(count)])
    return run_ids


@pytest.mark.parametrize("devices", ["cuda:99", "cuda:0", "cuda", "mps", "cpu,cuda:1"])
def test_a_device_not_there_is_refused_before_any_queued_run_is_taken(
    tmp_path, monkeypatch, fake_engine, tiny_spec_options, devices
):
    monkeypatch.setattr(worker_module, "list_devices", lambda: CPU_ONLY)
    run_ids = _queued(tmp_path, tiny_spec_options)
    result = invoke("worker", "--devices", devices, cwd=tmp_path)
    runs = runs_json(tmp_path)
    lines = result.stderr.strip().splitlines()
    still_queued = [run["id"] for run in runs if run["status"] == "queued"]
    survived = result.returncode == 2 and len(lines) == 1 and sorted(still_queued) == run_ids
    record_fault(MISSING_DEVICE, survived and "Traceback" not in result.stderr)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and "is not there; the engine sees cpu" in lines[0]
    assert "`resnet-tui devices` lists them" in lines[0]
    assert "queued run" not in result.stdout  # it never started
    assert sorted(still_queued) == sorted(run_ids)


def test_the_engine_itself_says_which_devices_it_sees(tmp_path, fake_engine):
    result = invoke("worker", "--devices", "cuda:99", cwd=tmp_path)  # torch, in a subprocess
    assert result.returncode == 2, result.stdout + result.stderr
    assert "device cuda:99 is not there; the engine sees cpu" in result.stderr
    assert runs_json(tmp_path) == []


def test_a_worker_on_the_cpu_never_asks_the_engine(tmp_path, monkeypatch, fake_engine):
    def unasked() -> list[dict[str, object]]:
        raise AssertionError("the CPU is always there")

    monkeypatch.setattr(worker_module, "list_devices", unasked)
    result = invoke("worker", "--devices", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 queued runs; running on cpu" in result.stdout


def test_an_engine_that_cannot_list_its_devices_is_one_line(tmp_path, monkeypatch, fake_engine):
    def broken() -> list[dict[str, object]]:
        raise DevicesUnavailable("ImportError: no torch")

    monkeypatch.setattr(worker_module, "list_devices", broken)
    result = invoke("worker", "--devices", "cuda:0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: the engine could not list its devices: ImportError: no torch"
    )


@pytest.mark.parametrize(
    ("devices", "missing"),
    [
        (["cpu"], None),
        (["auto"], None),
        (["cuda"], None),
        (["cuda:0", "cuda:1"], None),
        (["cuda:1", "cuda:2"], "device cuda:2 is not there; the engine sees cpu, cuda:0, cuda:1"),
        (["mps"], "device mps is not there"),
    ],
)
def test_missing_device_names_the_first_device_not_there(monkeypatch, devices, missing):
    monkeypatch.setattr(worker_module, "list_devices", lambda: TWO_GPUS)
    found = missing_device(devices)
    assert found == missing or (missing is not None and found.startswith(missing))


def test_a_resume_on_a_device_not_there_leaves_the_run_as_it_was(
    tmp_path, monkeypatch, tiny_spec_options
):
    monkeypatch.setattr(worker_module, "list_devices", lambda: CPU_ONLY)
    store = RunStore(tmp_path / "runs.db")
    spec = RunSpec.from_dict(tiny_spec_options)
    run_id = store.create_run(spec, status="stopped")
    folder = store.run(run_id).folder
    (folder / "spec.json").write_text(spec.to_json())
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.pt").write_bytes(b"kept")
    result = invoke("resume", str(run_id), "--device", "cuda:1", cwd=tmp_path)
    [run] = runs_json(tmp_path)
    kept = run["status"] == "stopped" and run["device"] == "cpu" and run["spec"]["device"] == "cpu"
    record_fault(MISSING_DEVICE, result.returncode == 2 and kept)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "device cuda:1 is not there" in result.stderr and "the run stays as it was" in (
        result.stderr
    )
    assert kept and RunSpec.from_json((folder / "spec.json").read_text()).device == "cpu"


def test_an_interrupt_while_a_run_starts_waits_until_the_worker_holds_it(
    tmp_path, tiny_spec_options, monkeypatch
):
    """Ctrl-C or SIGTERM the moment a run is taken: raised once its slot holds the run (and
    its supervisor), never between, where the worker would lose track of it."""
    run_ids = _queued(tmp_path, tiny_spec_options)
    store = RunStore(tmp_path / "runs.db")
    worker = worker_module.Worker(store, ["cpu"])
    started = []

    def start_queued(store, run, device):
        worker.interrupt()  # the signal comes while the supervisor is being spawned
        started.append(run.id)
        return object()

    monkeypatch.setattr(worker_module, "start_queued", start_queued)
    with pytest.raises(KeyboardInterrupt):
        worker.step()
    assert started == [run_ids[0]] and worker.slots[0].run_id == run_ids[0]
    assert worker.slots[0].supervisor is not None and not worker.starting
    with pytest.raises(KeyboardInterrupt):  # an interrupt with no start under way: at once
        worker.interrupt()
