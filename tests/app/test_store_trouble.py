"""The app while its store is in trouble (a write lock another process holds past the busy
timeout, a full disk): said once, as a notification, and the app goes on when it passes."""

import sqlite3

from engine.contract.spec import RunSpec
from resnet_tui.app import catching_up
from resnet_tui.app.app import ResnetApp
from resnet_tui.runs.store import RunStore
from tests.app.pilot import app_store, wait_for
from tests.conftest import record_fault


async def test_a_store_in_trouble_is_said_once_and_the_app_goes_on(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    app = ResnetApp(store)
    real_catch_up = catching_up.catch_up

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        monkeypatch.setattr(catching_up, "catch_up", locked)  # each look meets the lock
        await wait_for(pilot, lambda: app.store_trouble, timeout=30)
        await pilot.pause(1.5)  # several looks, all failing
        monkeypatch.setattr(catching_up, "catch_up", real_catch_up)
        said = [notice.message for notice in app._notifications]
        told_once = sum("locked by another process" in message for message in said) == 1
        run_id = RunStore(store.path).create_run(RunSpec(name="after"), status="completed")
        await wait_for(pilot, lambda: run_id in app.known, timeout=30)
        survived = told_once and app.is_running and not app.store_trouble
        record_fault("foreign files and shared folders: refused, untouched, one line", survived)
        assert told_once, said
        assert app.is_running and not app.store_trouble
