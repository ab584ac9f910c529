"""Hostile text in the app: the history, run and compare screens and the notifications show
names, tags, paths and class names literally; the edit dialog refuses what a store should not
keep, with a notification, and stays open."""

import html
import json
import sqlite3

from textual.widgets import Button, DataTable, Static

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import EditRunDialog
from tests.app.pilot import app_store
from tests.conftest import record_fault
from tests.hostile_text import RAW, SHOWN_LITERALLY, forged_test_report
from tests.hostile_text import REFUSED as REFUSED_ROW

SIZE = (160, 40)

# (row name, the hostile text, what the screens show for it)
HOSTILE = [
    ("markup", "[bold]x[/] [link=http://a]y", "[bold]x[/] [link=http://a]y"),
    ("ESC colour", "esc\x1b[31mred\x07", "esc\\x1b[31mred\\x07"),
    ("OSC title", "\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("CR and backspace", "a\rb\x08c", "a\\x0db\\x08c"),
    ("C1 CSI and DEL", "c1\x9b31m\x7f", "c1\\x9b31m\\x7f"),
    ("RLO bidi override", "abc\u202etxt", "abc\\u202etxt"),
    ("emoji", "run 🙂 ünï", "run 🙂 ünï"),
]


def _forged(store, text: str) -> int:
    """A completed run whose name, tags, notes, dataset and class names are `text` (as a
    forged or old store could hold them)."""
    hostile = store.create_run(RunSpec(name="plain"), status="completed")
    report = forged_test_report(text)
    with sqlite3.connect(store.path) as connection:
        connection.execute(
            "UPDATE runs SET name = ?, tags = ?, notes = ?, dataset = ?, test_report = ? "
            "WHERE id = ?",
            [text, text, text, f"imagefolder:/data/{text}", json.dumps(report), hostile],
        )
    return hostile


def _screen_text(app) -> str:
    """What the screen shows, as text (the screenshot's, entities decoded)."""
    return html.unescape(app.export_screenshot())


async def test_the_screens_show_hostile_text_literally(tmp_path, monkeypatch):
    # One app over a store of every hostile run (one app per string costs more than all
    # the looking): each row of HOSTILE checked on every screen, each check a fault trial.
    store = app_store(tmp_path, monkeypatch)
    plain = store.create_run(RunSpec(name="other"), status="completed")
    runs = {row: _forged(store, text) for row, text, _ in HOSTILE}
    app = ResnetApp(store)
    checks: list[tuple[str, bool]] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        history = app.screen.query_one(DataTable)
        raw = bool(RAW.search(_screen_text(app)))
        for row, _, expected in HOSTILE:
            checks.append((f"{row}: history", str(history.get_row(str(runs[row]))[1]) == expected))
            checks.append((f"{row}: history raw", not raw))

        for row, _, expected in HOSTILE:
            app.open_run(runs[row])
            await pilot.pause(0.2)
            settings = str(app.screen.query_one("#settings", Static).render())
            checks.append((f"{row}: run screen", expected in settings))
            checks.append((f"{row}: run screen raw", not RAW.search(_screen_text(app))))
            app.pop_screen()

        app.compare_runs([*runs.values(), plain])
        await pilot.pause(0.5)
        table = app.screen.query_one(DataTable)
        labels = [str(column.label) for column in table.columns.values()]
        raw = bool(RAW.search(_screen_text(app)))
        for row, _, expected in HOSTILE:
            checks.append((f"{row}: compare", any(expected in label for label in labels)))
            checks.append((f"{row}: compare raw", not raw))
        app.pop_screen()

        for row, text, _ in HOSTILE:
            app.tell(f"run {runs[row]} started: {text}")
        await pilot.pause()
        said = [notice.message for notice in app._notifications]
        for row, _, expected in HOSTILE:
            checks.append((f"{row}: notification", f"run {runs[row]} started: {expected}" in said))
        checks.append(("notification raw", not any(RAW.search(message) for message in said)))
    for _, ok in checks:
        record_fault(SHOWN_LITERALLY, ok)
    assert [check for check, ok in checks if not ok] == []


# (row name, the field, the text typed, a fragment of the notification)
REFUSED = [
    ("ESC in the name", "#name", "a\x1b[2Jb", "control character \\x1b"),
    ("BEL in the tags", "#tags", "x\x07", "control character \\x07"),
    ("RLO in the notes", "#notes", "a\u202eb", "control character \\u202e"),
    ("name too long", "#name", "n" * 201, "keep it to 200"),
]


async def test_the_edit_dialog_refuses_what_a_store_should_not_keep(tmp_path, monkeypatch):
    store = app_store(tmp_path, monkeypatch)
    run_id = store.create_run(RunSpec(name="kept"), status="completed")
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("e")
        dialog = app.screen
        assert isinstance(dialog, EditRunDialog)
        for row, field, typed, message in REFUSED:
            app.clear_notifications()
            dialog.query_one(field).value = typed
            dialog.query_one("#save", Button).press()  # a toast may lie over it after the first
            await pilot.pause()
            said = [notice.message for notice in app._notifications]
            ok = (
                app.screen is dialog
                and any(message in notice for notice in said)
                and store.run(run_id).name == "kept"
            )
            record_fault(REFUSED_ROW, ok)
            assert app.screen is dialog, row
            assert any(message in notice for notice in said), (row, said)
            assert store.run(run_id).name == "kept", row
            dialog.query_one(field).value = "fine"
