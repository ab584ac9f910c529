"""The history as a user sees it (issue 24): tags and notes shown (escaped) and filtered by,
marks that show and last, the sort menu, the columns that fit 80x24, the sweep and stop keys;
and the run screen's edit and delete."""

import html
import os
import sqlite3

from textual.widgets import Button
from textual.widgets.data_table import RowKey

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import ConfirmDialog, EditRunDialog
from resnet_tui.app.screens.history import HistoryScreen
from resnet_tui.app.screens.history_table import COLUMNS, RunsTable
from resnet_tui.app.screens.run import RunScreen
from resnet_tui.app.screens.sort_menu import SortMenu
from resnet_tui.app.screens.sweep import SweepScreen
from resnet_tui.runs.store import RunStore
from tests.app.pilot import app_store, wait_for_the_app
from tests.conftest import record_fault
from tests.hostile_text import RAW, SHOWN_LITERALLY

# (row name, hostile tags and notes, how the history shows them)
HOSTILE = [
    ("markup in tags and notes", "[bold]x[/] [link=http://a]y", "[bold]x[/] [link=http://a]y"),
    ("ESC in tags and notes", "esc\x1b[31mred\x07", "esc\\x1b[31mred\\x07"),
    ("RLO in tags and notes", "abc\u202etxt", "abc\\u202etxt"),
    ("newline in notes", "two\nlines", "two\\x0alines"),
]
# The columns an 80-column screen keeps; it leaves out those that do not fit.
KEPT_AT_80 = ["name", "status", "best_val_acc", "test_acc"]


def _run(store: RunStore, name: str, val: float, test: float, tags: str = "") -> int:
    run_id = store.create_run(RunSpec(name=name), status="completed")
    store.update(run_id, best_val_acc=val, test_acc=test)
    store.edit(run_id, name=name, tags=tags, notes=f"notes of {name}")
    return run_id


def _hostile(store: RunStore, text: str) -> int:
    """A run whose tags and notes are `text` (as a forged or old store could hold them)."""
    run_id = store.create_run(RunSpec(name="hostile"), status="completed")
    with sqlite3.connect(store.path) as connection:
        connection.execute("UPDATE runs SET tags = ?, notes = ? WHERE id = ?", [text, text, run_id])
    return run_id


def _ids(table: RunsTable) -> list[int]:
    return [int(row.key.value) for row in table.ordered_rows]


def _focus(history: HistoryScreen, run_id: int) -> None:
    table = history.table
    table.focus()
    table.move_cursor(row=table.get_row_index(str(run_id)))


def _detail(history: HistoryScreen) -> str:
    return str(history.query_one("#detail").render())


def _bold_name(table: RunsTable, run_id: int, name: str) -> bool:
    """Whether the row of `run_id`, as painted (not under the cursor), shows `name` bold."""
    y = table.header_height + table.get_row_index(str(run_id)) - round(table.scroll_y)
    strip = table.render_line(y)
    return any(segment.style and segment.style.bold for segment in strip if name in segment.text)


async def test_the_history_at_80x24_then_wide(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    low = _run(store, "low", 0.4, 0.5, tags="lab, baseline")
    high = _run(store, "high", 0.8, 0.9, tags="lab")
    mid = _run(store, "mid", 0.6, 0.7)
    hostile = {row: _hostile(store, text) for row, text, _ in HOSTILE}
    swept = _run(store, "swept", 0.5, 0.6)
    store.update(swept, sweep=1)
    live = store.create_run(RunSpec(name="live"), status="running")
    store.update(live, pid=os.getpid())
    app = ResnetApp(store)
    async with app.run_test(size=(80, 24)) as pilot:
        history = app.history
        table = history.table
        await pilot.pause()
        # 80x24: name, status, val and test accuracy all visible, nothing to scroll to.
        keys = [str(key.value) for key in table.columns]
        assert all(key in keys for key in KEPT_AT_80), keys
        assert "created_at" not in keys and len(keys) < len(COLUMNS), keys
        assert table.virtual_size.width <= table.scrollable_content_region.width
        screen = html.unescape(app.export_screenshot()).replace("\xa0", " ")
        assert "val acc" in screen and "test acc" in screen

        # Narrower than any column but the name (a split pane): the name alone, cut short.
        for width in (12, 3):
            await pilot.resize_terminal(width, 24)
            await pilot.pause()
            assert [str(key.value) for key in table.columns] == ["name"], width
            assert history.selected_run_id() is not None

        # Wider: the columns come back as the screen grows, tags among them.
        await pilot.resize_terminal(180, 40)
        await pilot.pause()
        keys = [str(key.value) for key in table.columns]
        assert keys == [key for key, _ in COLUMNS]
        assert str(table.get_cell(str(low), "tags")) == "lab, baseline"

        # Tags and notes, hostile ones too, shown literally in the tags column and the line
        # under the table.
        checks = []
        for row, _, expected in HOSTILE:
            _focus(history, hostile[row])
            await pilot.pause()
            in_table = str(table.get_cell(str(hostile[row]), "tags")) == expected
            in_line = f"tags {expected} · notes {expected}" in _detail(history)
            raw = bool(RAW.search(html.unescape(app.export_screenshot())))
            checks.append((row, in_table and in_line and not raw))
        for _, ok in checks:
            record_fault(SHOWN_LITERALLY, ok)
        assert [row for row, ok in checks if not ok] == []
        _focus(history, mid)
        await pilot.pause()
        assert "mid · notes notes of mid" in _detail(history)

        # The filter's tag: term, typed in the app.
        await pilot.press("slash", *"tag:lab")
        await pilot.pause()
        assert sorted(_ids(table)) == [low, high]
        await pilot.press("enter", "escape")  # back to the table, the filter cleared
        assert table.row_count == store.count_runs()

        # Marks: a dot in the mark column and the row in bold; they last through a reload,
        # a sort, a filter and a change to the run, and go with a run deleted elsewhere.
        for run_id in (low, mid):
            _focus(history, run_id)
            await pilot.press("space")
        _focus(history, high)
        await pilot.pause()
        assert history.marked == [low, mid]
        assert str(table.rows[RowKey(str(low))].label) == "●"
        assert str(table.rows[RowKey(str(high))].label) == " "
        assert _bold_name(table, low, "low") and not _bold_name(table, swept, "swept")
        history.reload()
        store.update(low, test_acc=0.55)  # a change to a marked run, read live
        await wait_for_the_app(pilot, lambda: str(table.get_cell(str(low), "test_acc")) == "55.0%")
        await pilot.press("slash", *"mid")
        await pilot.pause()
        assert _ids(table) == [mid] and str(table.rows[RowKey(str(mid))].label) == "●"
        await pilot.press("escape")

        # The sort menu: the current column highlighted, Escape keeps the order, Enter picks.
        await pilot.press("s")
        menu = app.screen
        assert isinstance(menu, SortMenu)
        assert menu.query_one("OptionList").highlighted == 0
        await pilot.press("down", "escape")
        assert app.screen is history and history.sort == "id"
        await pilot.press("s", *["down"] * 6, "enter")  # id name sweep status arch val test
        await pilot.pause()
        assert app.screen is history and history.sort == "test_acc"
        assert _ids(table)[:3] == [high, mid, swept]
        assert str(table.rows[RowKey(str(mid))].label) == "●" and _bold_name(table, low, "low")

        RunStore(store.path).delete_runs([mid])
        await wait_for_the_app(pilot, lambda: str(mid) not in table.rows, what="the deletion")
        assert history.marked == [low]
        assert "marked 1 " in str(history.query_one("#summary").render())

        # S opens the run's sweep; x asks before it stops a live run, and says when a run
        # is not running.
        _focus(history, swept)
        await pilot.press("S")
        await pilot.pause()
        assert isinstance(app.screen, SweepScreen) and app.screen.sweep == 1
        await pilot.press("escape")
        _focus(history, live)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert store.run(live).status == "running"
        _focus(history, high)
        await pilot.press("x")
        await pilot.pause()
        assert app.screen is history
        assert any("is not running (it is completed)" in n.message for n in app._notifications)


async def test_the_run_screen_edits_and_deletes_its_run(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    other = _run(store, "other", 0.5, 0.5)
    run_id = _run(store, "before", 0.5, 0.5)
    app = ResnetApp(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.run_id == run_id
        await pilot.press("e")
        dialog = app.screen
        assert isinstance(dialog, EditRunDialog)
        dialog.query_one("#name").value = "after"
        dialog.query_one("#save", Button).press()
        await wait_for_the_app(
            pilot,
            lambda: f"run {run_id}: after" in str(screen.query_one("#settings").render()),
            what="the new name in the title",
        )
        assert store.run(run_id).name == "after"

        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_for_the_app(pilot, lambda: isinstance(app.screen, HistoryScreen))
        assert store.run(run_id) is None
        assert _ids(app.history.table) == [other]


async def test_the_last_row_key_reaches_the_oldest_run_past_the_pages_loaded(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    with sqlite3.connect(store.path) as connection:  # 450 runs: more than two pages of 200
        connection.executemany(
            "INSERT INTO runs (name, status, kind) VALUES (?, 'completed', 'train')",
            [(f"run {index}",) for index in range(450)],
        )
    app = ResnetApp(store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.history.table
        await pilot.pause()
        assert table.row_count == 200
        await pilot.press("G")
        assert table.row_count == 450
        assert app.history.selected_run_id() == 1  # newest first: the oldest is last
        await pilot.press("home", "end")
        assert app.history.selected_run_id() == 1


async def test_a_filter_of_an_unknown_key_says_which_keys_there_are(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    _run(store, "done", 0.5, 0.6)
    app = ResnetApp(store)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.press("slash", *"stauts:completed", "space", *"[b]x:y")
        await pilot.pause()
        summary = str(app.history.query_one("#summary").render())
        assert "no run matches the filter (stauts:, [b]x:? the keys are status:" in summary
