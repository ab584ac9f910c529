"""A search on the sweep screen: its trials as a sweep's runs, the best so far and each
parameter's importance (worked out in a thread), at 80x24."""

from dataclasses import replace

import pytest

from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.sweep import SweepScreen
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.search import Search, queue_trial, trials_of
from resnet_tui.runs.search_space import read_space
from resnet_tui.runs.search_study import ask
from resnet_tui.runs.store import RunStore
from tests.app.pilot import app_store, wait_for, wait_for_the_app

SIZE = (80, 24)


@pytest.fixture
def store(tmp_path, monkeypatch):
    return app_store(tmp_path, monkeypatch)


def _search(store: RunStore, trials: int) -> Search:
    fixed, space = read_space({"lr": "log:1e-4..1e-1", "freeze": "head,full", "width": "4"})
    search = Search(0, tuple(space), fixed, "random", 4, 10)
    for number in range(1, trials + 1):
        params, spec, _ = ask(search, trials_of(store, search) if search.sweep else [], number)
        search = replace(search, sweep=queue_trial(store, search, number, params, spec)[1])
    return search


def _complete(store: RunStore, run_id: int, value: float) -> None:
    RunQueue(store).take_next(1, [run_id])
    store.update(run_id, status="completed", best_val_acc=value)


def _search_text(app: ResnetApp) -> str:
    return str(app.screen.query_one("#sweep-search").render())


async def test_a_search_shows_its_best_trial_and_the_importances_as_trials_end(store):
    search = _search(store, 3)
    _complete(store, 1, 0.42)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        app.open_sweep(search.sweep)
        await pilot.pause()
        assert isinstance(app.screen, SweepScreen) and app.screen.sub_title == "search 1"
        assert not app.screen.query_one("#sweep-settings").display
        title = str(app.screen.query_one("#sweep-title").render())
        assert "search 1 · 3/10 trials (random): 2 queued, 1 completed" in title
        await wait_for(pilot, lambda: "so far" in _search_text(app), timeout=30)
        assert "best: trial 1 (run 1) lr " in _search_text(app)
        assert "→ val acc 42.0%" in _search_text(app)
        assert "importance: needs 2 completed trials or more (1 so far)" in _search_text(app)
        assert app.screen.query_one("#sweep-runs").row_count == 3

        _complete(store, 2, 0.7)
        _complete(store, 3, 0.5)
        await wait_for_the_app(pilot, lambda: "importance: needs" not in _search_text(app))
        text = _search_text(app)
        assert "best: trial 2 (run 2)" in text and "→ val acc 70.0%" in text
        assert "freeze 0." in text
        await pilot.press("enter")
        assert app.screen.run_id == 1


async def test_a_sweep_is_still_shown_as_one(store):
    from engine.contract.spec import RunSpec

    RunQueue(store).enqueue([store.create_run(RunSpec(), setting="a") for _ in range(2)])
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        app.open_sweep(1)
        await pilot.pause()
        assert app.screen.sub_title == "sweep 1"
        assert app.screen.query_one("#sweep-settings").display
        assert not app.screen.query_one("#sweep-search").display
