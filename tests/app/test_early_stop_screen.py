"""The run screen of a run that early stopping ended: `completed early in ...` with the epoch
and the reason, and the engine's line in the log.

The run is faked without an engine: its event log is written here, as an engine would.
"""

from textual.widgets import RichLog, Static

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from tests.app.pilot import app_store, wait_for
from tests.runs.made_events import epoch_ended, finished, started, write_log

REASON = "val_acc did not improve by more than 0.5 for 1 epoch"
LINE = f"stopped early after epoch 2: {REASON} (best 50.0% at epoch 1)"


async def test_the_run_screen_says_completed_early_when_and_why(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    run_id = store.create_run(RunSpec(epochs=30, name="early"))
    early = {"epoch": 2, "reason": REASON, "best": "50.0% at epoch 1"}
    write_log(
        store.run(run_id).events_path,
        [
            started(1, epochs=30),
            epoch_ended(2, 1, 0.5, epochs=30),
            epoch_ended(3, 2, 0.45, epochs=30),
            ev.Log(seq=4, t=150.0, level="info", message=LINE),
            finished(5, early_stop=early, seconds=197.0),
        ],
    )
    store.update(run_id, status="completed", epochs_done=2, seconds=197.0)
    async with ResnetApp(store).run_test(size=(160, 48)) as pilot:
        pilot.app.open_run(run_id)
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == run_id)
        screen = pilot.app.screen
        words = f"completed early in 3:17 (epoch 2 of 30: {REASON})"
        await wait_for(
            pilot,
            lambda: (
                [str(line.render()) for line in screen.query("#speed").results(Static)] == [words]
            ),
            timeout=20,
            what=words,
        )
        logged = [strip.text for log in screen.query(RichLog) for strip in log.lines]
        assert LINE in " ".join(" ".join(logged).split()), logged  # as the lines wrapped it
