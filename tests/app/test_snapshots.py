"""Snapshots of the main screens at 80x24 and 160x48 (pytest-textual-snapshot).

Update them after a deliberate change of the look with `pytest --snapshot-update`.
"""

import time

import pytest

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.widgets.charts import MetricChart
from resnet_tui.runs import launcher, sweeps
from resnet_tui.runs.follower import RunFollower
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.store import RunStore
from tests.app.made_predictions import write_predictions
from tests.runs.made_events import started, write_log

SIZES = [(80, 24), (160, 48)]
CREATED = 1_790_000_000.0  # a fixed moment, so the "started" column never changes


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.chdir(tmp_path)
    opened = RunStore("runs.db")  # relative, so the header reads the same on every machine
    runs = [
        ("resnet20", "shapes", "completed", 0.953, 0.948, 8),
        ("plain20", "shapes", "completed", 0.901, 0.897, 8),
        ("resnet56", "cifar10", "failed", None, None, 2),
        ("resnet8", "shapes", "stopped", 0.71, None, 3),
    ]
    for arch, dataset, status, val, test, epochs in runs:
        run_id = opened.create_run(RunSpec(arch=arch, dataset=dataset, epochs=8))
        opened.update(
            run_id,
            status=status,
            best_val_acc=val,
            test_acc=test,
            epochs_done=epochs,
            seconds=61.0 * epochs,
            created_at=CREATED + run_id * 60,
        )
    write_log(opened.run(1).events_path, finished_events(0.31))
    assert ev.read_events(opened.run(1).events_path).rejected == []  # all by the contract
    yield opened
    time.tzset()


def finished_events(accuracy_per_epoch: float) -> list[ev.Event]:
    """The events of a finished three-epoch run, as the engine would have written them."""
    events: list[ev.Event] = [
        started(
            1,
            t=CREATED,
            device="cpu",
            device_name="CPU",
            parameters=269722,
            trainable_parameters=269722,
            sizes={"train": 9000, "val": 1000, "test": 2000},
            classes=["circle", "square", "triangle"],
            steps_per_epoch=10,
            epochs=3,
        ),
    ]
    seq = 1
    for epoch in (1, 2, 3):
        for step in (5, 10):
            seq += 1
            events.append(
                ev.Progress(
                    seq=seq,
                    t=CREATED,
                    epoch=epoch,
                    step=step,
                    steps=10,
                    global_step=(epoch - 1) * 10 + step,
                    loss=2.0 / (epoch + step / 10),
                    samples_per_s=900.0,
                    lr=0.005,
                )
            )
        seq += 1
        events.append(
            ev.EpochEnded(
                seq=seq,
                t=CREATED,
                epoch=epoch,
                epochs=3,
                train_loss=1.5 / epoch,
                train_acc=0.3 * epoch,
                val_loss=1.4 / epoch,
                val_acc=accuracy_per_epoch * epoch,
                lr={},
                seconds=10.0,
                elapsed=10.0 * epoch,
            )
        )
    test = {
        "top1": 3 * accuracy_per_epoch - 0.01,
        "top5": 1.0,
        "top5_k": 3,
        "macro_f1": 3 * accuracy_per_epoch - 0.02,
        "loss": 0.48,
        "samples": 2000,
        "classes": ["circle", "square", "triangle"],
        "confusion": [[640, 20, 7], [15, 630, 22], [9, 18, 639]],
        "per_class_accuracy": {"circle": 0.96, "square": 0.944, "triangle": 0.959},
    }
    events.append(
        ev.Finished(
            seq=seq + 1,
            t=CREATED + 30,
            status="completed",
            best_val_acc=3 * accuracy_per_epoch,
            test=test,
            seconds=30.0,
        )
    )
    return events


def pressing(*keys: str):
    """What to do before the snapshot: press `keys`, then let the app settle."""

    async def run_before(pilot) -> None:
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


def opening_run(run_id: int):
    """What to do before the snapshot: open run `run_id`'s screen, its charts drawn."""

    async def run_before(pilot) -> None:
        pilot.app.open_run(run_id)
        await pilot.pause(0.6)
        await charts_drawn(pilot)

    return run_before


async def charts_drawn(pilot) -> None:
    """Wait until the charts in view show their newest pictures (drawn in a thread)."""
    for _ in range(200):
        charts = pilot.app.screen.query(MetricChart)
        if all(not chart.drawing and not chart.dirty for chart in charts):
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError("the charts were not drawn within 10 s")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_history(snap_compare, store, size):
    assert snap_compare(ResnetApp(store), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_launch_form(snap_compare, store, size, fake_devices):
    async def open_form(pilot):
        await pilot.press("n")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(ResnetApp(store), terminal_size=size, run_before=open_form)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_view(snap_compare, store, size):
    assert snap_compare(ResnetApp(store), terminal_size=size, run_before=opening_run(1))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_history_empty(snap_compare, tmp_path, monkeypatch, size):
    monkeypatch.chdir(tmp_path)
    assert snap_compare(ResnetApp(RunStore("runs.db")), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare, store, size):
    assert snap_compare(ResnetApp(store), terminal_size=size, run_before=pressing("question_mark"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_failed(snap_compare, store, size):
    """A run that failed in its third epoch: its curves so far, and a final state, still."""
    events = [event for event in finished_events(0.2) if not isinstance(event, ev.Finished)]
    events = [event for event in events if getattr(event, "epoch", 1) < 3]
    events.append(
        ev.Error(
            seq=events[-1].seq + 1,
            t=CREATED + 25,
            kind="out_of_memory",
            message="the GPU ran out of memory in epoch 3",
            hint="give a smaller --batch-size",
        )
    )
    write_log(store.run(3).events_path, events)

    assert snap_compare(ResnetApp(store), terminal_size=size, run_before=opening_run(3))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare(snap_compare, store, size):
    write_log(store.run(2).events_path, finished_events(0.28))
    for run_id, accuracy in ((1, 0.31), (2, 0.28)):  # run 1's file was written by the fixture
        assert RunFollower(store, store.run(run_id)).poll() == finished_events(accuracy)

    async def compare(pilot):
        await pilot.press("down", "down", "space", "down", "space", "c")
        await pilot.pause()
        await charts_drawn(pilot)

    assert snap_compare(ResnetApp(store), terminal_size=size, run_before=compare)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue(snap_compare, store, size):
    swept = [store.create_run(RunSpec(name=f"lr={lr}", lr=lr)) for lr in (0.1, 0.01, 0.001)]
    queue = RunQueue(store)
    queue.enqueue(swept)
    queue.enqueue([store.create_run(RunSpec(arch="resnet20", dataset="mnist"))], sweep=False)

    assert snap_compare(ResnetApp(store), terminal_size=size, run_before=pressing("w"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sweep(snap_compare, store, size):
    results = [(0.912, 0.905, "completed"), (0.934, 0.921, "completed"), (None, None, "failed")]
    results += [(0.871, 0.866, "completed"), (None, None, "queued"), (None, None, "queued")]
    # the folds of two settings, made and queued as a sweep makes them: "lr=0.1 fold 1/3", ...
    specs = [
        spec
        for lr in (0.1, 0.01)
        for spec in sweeps.fold_specs(RunSpec(name=f"lr={lr}", epochs=8, folds=3))
    ]
    ids, sweep = launcher.queue(store, specs)
    assert sweep == 1 and store.run(ids[1]).name == "lr=0.1 fold 2/3"
    for run_id, (val, test, status) in zip(ids, results, strict=True):
        done = status != "queued"
        store.update(
            run_id,
            status=status,
            best_val_acc=val,
            test_acc=test,
            epochs_done=8 if val else 0,
            seconds=300.0 + run_id if val else None,
            queue_position=None if done else store.run(run_id).queue_position,
        )

    async def open_sweep(pilot):
        pilot.app.open_sweep(1)
        await pilot.pause()

    assert snap_compare(ResnetApp(store), terminal_size=size, run_before=open_sweep)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mistakes(snap_compare, store, size, monkeypatch):
    monkeypatch.setenv("RESNET_TUI_IMAGES", "halfblocks")
    write_predictions(store.run(1).folder)

    async def open_mistakes(pilot):
        await pilot.press("G", "m")  # run 1, the last row
        await pilot.pause(0.5)

    assert snap_compare(ResnetApp(store), terminal_size=size, run_before=open_mistakes)
