"""The key map, driven by Pilot: ? help, the tables' keys, keys.toml moving keys, a damaged
keys.toml (defaults and one notification), the footer at 80 columns."""

import re
from pathlib import Path

import pytest
from textual.app import App

from engine.contract.spec import RunSpec
from resnet_tui.app import keys
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import EditRunDialog
from resnet_tui.app.keys import MOST_PROBLEMS_SHOWN, all_bindings, read_keymap, use_the_users_keys
from resnet_tui.app.screens.help import HelpScreen
from resnet_tui.app.screens.history import HistoryScreen
from resnet_tui.app.screens.queue import QueueScreen
from resnet_tui.app.screens.sweep import SweepScreen
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.app.widgets.tables import Table
from resnet_tui.runs.queue import RunQueue
from tests.app.pilot import app_store
from tests.conftest import ROOT, record_fault

SIZE = (80, 24)
RUNS = 40


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A store of RUNS queued runs, and no keys.toml but where a test writes one."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("RESNET_TUI_KEYS", raising=False)
    store = app_store(tmp_path, monkeypatch)
    RunQueue(store).enqueue([store.create_run(RunSpec(name=f"run {i}")) for i in range(RUNS)])
    return store


def keys_toml(tmp_path, monkeypatch, text: str | bytes) -> str:
    path = tmp_path / "keys.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    monkeypatch.setenv("RESNET_TUI_KEYS", str(path))
    return str(path)


def help_rows(app: ResnetApp) -> list[tuple[str, ...]]:
    """(key, does, id) of each row of the help in view; a group's heading has only a key."""
    assert isinstance(app.screen, HelpScreen)
    table = app.screen.query_one(Table)
    return [tuple(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]


def keys_of(rows: list[tuple[str, ...]], binding_id: str) -> list[str]:
    return next(row[0] for row in rows if row[2] == binding_id).split(", ")


def footer(app: ResnetApp) -> str:
    return app.screen.query_one(KeyFooter).render().plain


def notices(app: ResnetApp) -> list[str]:
    return [notification.message for notification in app._notifications]


async def test_help_tables_and_footer_of_the_queue_at_80x24(store):
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        assert isinstance(app.screen, QueueScreen)
        table = app.screen.query_one("#queue", Table)
        moves = [
            ("j", 1), ("j", 2), ("k", 1), ("G", RUNS - 1), ("home", 0), ("ctrl+d", None),
            ("ctrl+u", 0), ("end", RUNS - 1), ("ctrl+u", None), ("ctrl+d", RUNS - 1),
        ]  # fmt: skip
        for key, row in moves:
            before = table.cursor_row
            await pilot.press(key)
            if row is None:  # half a page: more than one row, less than all
                assert 1 < abs(table.cursor_row - before) < RUNS - 1, key
            else:
                assert table.cursor_row == row, key

        shown = footer(app)
        for essential in ("Open", "Back", "Move up", "Move down", "Cancel run", "Quit"):
            assert essential in shown, shown
        assert shown.rstrip().endswith("? Help")
        await pilot.click(KeyFooter, offset=(1 + shown.index("? Help"), 0))
        assert isinstance(app.screen, HelpScreen)  # a click presses the key
        await pilot.press("escape")
        await pilot.resize_terminal(40, 24)
        await pilot.pause()
        narrow = footer(app)
        assert narrow.rstrip().endswith("? Help") and "Open" in narrow, narrow
        assert "Cancel run" not in narrow and len(narrow) <= 40, narrow
        await pilot.resize_terminal(*SIZE)

        await pilot.press("question_mark")
        rows = help_rows(app)
        groups = [row[0] for row in rows if row[1:] == ("", "")]
        assert groups == ["this screen", "tables", "everywhere"]
        assert {"shift+↑", "K"} <= set(keys_of(rows, "queue.move_up"))
        assert keys_of(rows, "table.last") == ["end", "G"]
        assert "q" in keys_of(rows, "app.quit") and keys_of(rows, "app.help") == ["?"]
        for binding_id in ("queue.cancel", "queue.open", "table.half_down", "app.queue"):
            assert any(row[2] == binding_id for row in rows), binding_id
        # At 80x24 the list is longer than the screen: it scrolls.
        keys = app.screen.query_one(Table)
        await pilot.press("G")
        assert keys.cursor_row == keys.row_count - 1 and keys.scroll_y > 0
        await pilot.press("escape")
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, QueueScreen)

        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen_stack[-2], HistoryScreen)
        rows = help_rows(app)
        assert any(row[2].startswith("history.") for row in rows), rows
        assert not any(row[2].startswith("queue.") for row in rows)


async def test_keys_toml_moves_keys_and_help_and_footer_show_them(store, tmp_path, monkeypatch):
    keys_toml(
        tmp_path,
        monkeypatch,
        '[keys]\n"table.down" = "ctrl+n"\n"app.help" = "f1"\nqueue.to_front = "t"\n',
    )
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        assert notices(app) == []
        await pilot.press("w")
        table = app.screen.query_one("#queue", Table)
        await pilot.press("j")
        assert table.cursor_row == 0  # j no longer moves down
        await pilot.press("ctrl+n", "ctrl+n")
        assert table.cursor_row == 2
        third = int(table.get_row_at(2)[1].plain)
        await pilot.press("f")
        assert RunQueue(store).waiting()[0].id != third  # f no longer takes it to the front
        await pilot.press("t")
        assert RunQueue(store).waiting()[0].id == third
        assert footer(app).rstrip().endswith("f1 Help")

        await pilot.press("question_mark")
        assert isinstance(app.screen, QueueScreen)  # ? no longer opens the help
        await pilot.press("f1")
        rows = help_rows(app)
        assert "^n" in keys_of(rows, "table.down") and "j" not in keys_of(rows, "table.down")
        assert keys_of(rows, "app.help") == ["f1"]
        assert keys_of(rows, "queue.to_front") == ["t"]
        await pilot.press("f1")
        assert isinstance(app.screen, QueueScreen)


# The fault-injection rows of a damaged keys.toml: (fault class, file text, what the one
# notification says). Text None: $RESNET_TUI_KEYS names no file; "/": it names a folder.
NOT_TOML = "keys.toml not TOML or not text: defaults, one notice"
UNKNOWN_ID = "keys.toml binding id unknown: defaults, one notice"
NOT_KEYS = "keys.toml value not a key string: defaults, one notice"
CLASH = "keys.toml key given two meanings: defaults, one notice"
NO_FILE = "keys.toml missing or unreadable: defaults, one notice"
TYPING_KEY = "keys.toml typing key for a key that works in fields: defaults, one notice"
DAMAGED = [
    (NOT_TOML, '[keys\n"app.quit" = "x"\n', ["not valid TOML", "line 1"]),
    (NOT_TOML, b"\xff\xfe[keys]\n", ["not text"]),
    (UNKNOWN_ID, '[keys]\n"history.frobnicate" = "x"\n', ["line 2", "history.frobnicate"]),
    (UNKNOWN_ID, '[keys]\n\nqueue.cancle = "x"\n', ["line 3", "did you mean queue.cancel?"]),
    (UNKNOWN_ID, '"app.quit" = "x"\n', ["line 1", "[keys]"]),
    (NOT_KEYS, '[keys]\n\n"app.quit" = 5\n', ["line 3", "app.quit must be a string", "int"]),
    (NOT_KEYS, '[keys]\n"app.quit" = ["x", "y"]\n', ["line 2", "must be a string"]),
    (NOT_KEYS, '[keys]\n"app.quit" = "ctrl+"\n', ["line 2", "'ctrl+' is not a key name"]),
    (NOT_KEYS, '[keys]\n"app.quit" = "pgup"\n', ["'pgup' is not a key name"]),
    (CLASH, '[keys]\n"app.help" = "j"\n', ["line 2", "app.help = 'j'", "table.down"]),
    (
        CLASH,
        '[keys]\n"queue.to_front" = "x"\n"queue.cancel" = "x"\n',
        ["second meaning on the queue screen", "queue."],
    ),
    (CLASH, '[keys]\n"history.sort" = "shift+s"\n', ["history.sort = 'S'", "history.sweep"]),
    (TYPING_KEY, '[keys]\n"launch.launch" = "x"\n', ["line 2", "launch.launch: 'x'", "ctrl+"]),
    (TYPING_KEY, '[keys]\n"launch.launch" = "ctrl+l,enter"\n', ["'enter'", "f5"]),
    (TYPING_KEY, '[keys]\n"launch.pick_run" = "space"\n', ["launch.pick_run: 'space'"]),
    (TYPING_KEY, '[keys]\n"launch.pick_run" = "tab"\n', ["launch.pick_run: 'tab'"]),
    (TYPING_KEY, '[keys]\n"launch.pick_run" = "ctrl+i"\n', ["'ctrl+i'", "text fields"]),
    (TYPING_KEY, '[keys]\n"launch.launch" = "shift+x"\n', ["launch.launch: 'X'"]),
    (TYPING_KEY, '[keys]\n"launch.launch" = "ctrl+a"\n', ["launch.launch: 'ctrl+a'"]),
    (TYPING_KEY, '[keys]\n"launch.launch" = "slash"\n', ["launch.launch: 'slash'"]),
    (NO_FILE, None, ["no such file", "RESNET_TUI_KEYS"]),
    (NO_FILE, "/", ["not a file"]),
    (NO_FILE, b"#" * (1 << 20) + b"\n", ["over 1 MiB"]),
]


async def test_a_damaged_keys_toml_leaves_the_default_keys_and_says_so_once(
    store, tmp_path, monkeypatch
):
    """The app starts with the first damaged file; the others are read as at start-up
    by the same app: each gives one notification naming the file, and no key moves."""
    path = keys_toml(tmp_path, monkeypatch, DAMAGED[0][1])
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        failed = []
        for number, (fault, text, expected) in enumerate(DAMAGED):
            if number:
                path = str(tmp_path / f"keys-{number}.toml")
                if text == "/":
                    Path(path).mkdir()
                elif text is not None:
                    keys_toml(tmp_path, monkeypatch, text)
                    path = str(tmp_path / "keys.toml")
                monkeypatch.setenv("RESNET_TUI_KEYS", path)
                app.clear_notifications()
                use_the_users_keys(app)
                await pilot.pause()
            said = notices(app)
            ok = (
                len(said) == 1
                and path in said[0]
                and all(fragment in said[0] for fragment in expected)
                and app._keymap == {}
            )
            record_fault(fault, ok)
            if not ok:
                failed.append((number, said))
        assert failed == []
        # The defaults work: ? opens the help, j moves down.
        await pilot.press("w", "j")
        assert app.screen.query_one("#queue", Table).cursor_row == 1
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)


async def test_shift_and_a_letter_is_the_capital_the_terminal_sends(store, tmp_path, monkeypatch):
    keys_toml(tmp_path, monkeypatch, '[keys]\n"history.edit" = "shift+e"\n')
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        assert notices(app) == []
        await pilot.press("e")
        assert isinstance(app.screen, HistoryScreen)  # e no longer edits
        await pilot.press("question_mark")
        assert keys_of(help_rows(app), "history.edit") == ["E"]
        await pilot.press("escape", "E")
        assert isinstance(app.screen, EditRunDialog)


def test_keys_that_work_in_text_fields_take_ctrl_and_function_keys(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text('[keys]\n"launch.launch" = "ctrl+l, f5"\n"launch.pick_run" = "ctrl+t"\n')
    keymap = read_keymap(path)
    assert keymap.problems == []
    assert keymap.keys == {"launch.launch": "ctrl+l,f5", "launch.pick_run": "ctrl+t"}


def test_thousands_of_unknown_ids_are_told_without_a_look_up_each(tmp_path, monkeypatch):
    """A long keys.toml is read at once: its lines are indexed in one pass, and only the
    problems shown get the nearest id (8,000 look-ups froze the start for 26 s)."""
    ids = 8000
    path = tmp_path / "keys.toml"
    path.write_text("[keys]\n" + "".join(f'"nothing.id{n}" = "x"\n' for n in range(ids)))
    calls = {"get_close_matches": 0, "line_index": 0}

    def counted(module, name):
        real = getattr(module, name)

        def count(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, count)

    counted(keys.difflib, "get_close_matches")
    counted(keys, "line_index")
    keymap = read_keymap(path)
    assert calls == {"get_close_matches": MOST_PROBLEMS_SHOWN, "line_index": 1}
    assert len(keymap.problems) == MOST_PROBLEMS_SHOWN and keymap.keys == {}
    assert keymap.problems[0].startswith("line 2: no binding has the id 'nothing.id0'")
    assert keymap.problems[-1].startswith(f"line {MOST_PROBLEMS_SHOWN + 1}: ")
    assert f"- and {ids - MOST_PROBLEMS_SHOWN} more" in keymap.notice()


class ScrollingTable(App[None]):
    """A table without a cursor (the sweep's settings): its keys scroll it instead."""

    def compose(self):
        table = Table(cursor_type="none")
        table.add_column("n")
        table.add_rows([[str(n)] for n in range(RUNS)])
        yield table


async def test_the_table_keys_scroll_a_table_without_a_cursor():
    app = ScrollingTable()
    async with app.run_test(size=(20, 10)) as pilot:
        table = app.query_one(Table)
        table.focus()
        await pilot.press("G")
        assert table.scroll_y == table.max_scroll_y > 0
        await pilot.press("ctrl+u")
        assert 0 < table.scroll_y < table.max_scroll_y
        await pilot.press("home")
        assert table.scroll_y == 0
        await pilot.press("ctrl+d")
        assert table.scroll_y > 0


def test_every_key_has_an_id_by_the_convention_and_docs_keys_md_lists_it():
    ids = {binding.id for space in all_bindings().values() for binding in space if binding.id}
    documented = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", (ROOT / "docs" / "keys.md").read_text()))
    assert ids - documented == set()
    for owner, prefixes in (
        (ResnetApp, ("app.",)),
        (Table, ("table.",)),
        (QueueScreen, ("queue.",)),
        (SweepScreen, ("sweep.",)),
        (HelpScreen, ("help.", "app.help")),
    ):
        for binding in owner.BINDINGS:
            assert binding.id and binding.id.startswith(prefixes), (owner, binding)
