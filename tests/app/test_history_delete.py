"""Deleting runs from the history: an ended run, a queued one, and one that started meanwhile."""

import os

from textual.widgets import DataTable

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import ConfirmDialog
from resnet_tui.runs.launcher import queue
from resnet_tui.runs.queue import RunQueue
from tests.app.pilot import app_store, wait_for_the_app

SIZE = (140, 40)


def ended_run(store, name: str) -> int:
    run_id = store.create_run(RunSpec(name=name), status="running")
    store.record_end(run_id, "failed", "internal", "it failed", "")
    return run_id


async def delete_in_the_history(pilot, run_id: int) -> None:
    app = pilot.app
    await wait_for_the_app(pilot, lambda: str(run_id) in app.history.query_one(DataTable).rows)
    table = app.history.query_one(DataTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(str(run_id)))
    await pilot.press("d")
    await pilot.pause()
    assert isinstance(app.screen, ConfirmDialog)


async def test_the_history_deletes_an_ended_run_and_its_folder(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    run_id = ended_run(store, "old")
    folder = store.run(run_id).folder
    folder.mkdir(parents=True, exist_ok=True)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await delete_in_the_history(pilot, run_id)
        await pilot.press("y")
        await wait_for_the_app(pilot, lambda: store.run(run_id) is None, what="the deletion")
        assert not folder.exists()


async def test_the_history_deletes_a_queued_run_out_of_the_queue(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    (run_id,), _ = queue(store, [RunSpec(name="waiting")])
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await delete_in_the_history(pilot, run_id)
        await pilot.press("y")
        await wait_for_the_app(pilot, lambda: store.run(run_id) is None, what="the deletion")
        assert RunQueue(store).waiting() == []


async def test_a_queued_run_a_worker_takes_while_the_user_is_asked_is_not_deleted(
    tmp_path, monkeypatch
):
    store = app_store(tmp_path, monkeypatch)
    (run_id,), _ = queue(store, [RunSpec(name="waiting")])
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await delete_in_the_history(pilot, run_id)
        assert RunQueue(store).take_next(pid=os.getpid()) is not None  # a worker takes it meanwhile
        await pilot.press("y")
        await pilot.pause()
        assert store.run(run_id) is not None
        assert any("started meanwhile" in n.message for n in pilot.app._notifications)
