"""The key map: the user's keys.toml, checked against every screen's bindings before use.

Every Binding of the app has an id, `<screen>.<action>` (app.*, table.*, history.*, ...).
A user moves keys in `~/.config/resnet-tui/keys.toml` (or `$XDG_CONFIG_HOME/resnet-tui/`,
or the file `$RESNET_TUI_KEYS` names):

    [keys]
    "history.delete" = "x"
    "table.down" = "j,ctrl+n"

A file that cannot be used (not TOML, an id no binding has, a value that is not a string
of keys, a key given two meanings on one screen, a key typing needs for a binding that works
while typing) changes nothing: the app opens with its default keys and one notification says
what to fix, where (docs/keys.md). `shift+e` is read as `E`, the key a terminal sends.
"""

import difflib
import importlib
import os
import pkgutil
import re
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from textual.app import App
from textual.binding import ActiveBinding, Binding, BindingsMap
from textual.dom import DOMNode
from textual.keys import Keys, _character_to_key, _get_key_aliases, _normalize_key_list
from textual.screen import ModalScreen, Screen
from textual.widgets import Input

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# The keys of every screen (but dialogs), the app's actions.
GLOBAL_KEYS = [
    Binding("q", "quit", "Quit", id="app.quit"),
    Binding("question_mark", "help", "Help", id="app.help"),
    Binding("n", "new_run", "New run", show=False, id="app.new_run"),
    Binding("h", "history", "History", show=False, id="app.history"),
    Binding("w", "show_queue", "Queue", show=False, id="app.queue"),
    Binding("ctrl+s", "screenshot", "Save screenshot", show=False, id="app.screenshot"),
]

# The bindings the footer shows first, so that they survive at 80 columns (`? help` always
# shows); the others follow while there is room.
ESSENTIAL = frozenset(
    {
        "app.quit",
        "app.help",
        "app.new_run",
        "history.open",
        "history.compare",
        "history.filter",
        "run.back",
        "run.stop",
        "run.resume",
        "compare.back",
        "compare.metric",
        "launch.launch",
        "launch.find_lr",
        "launch.back",
        "queue.back",
        "queue.open",
        "queue.move_up",
        "queue.move_down",
        "queue.cancel",
        "sweep.back",
        "sweep.open",
        "sweep.compare",
    }
)

MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
# Key names Textual knows: named keys (escape, f1, pageup, ...) and printable characters by
# name (slash, question_mark, ...).
PRINTABLE_NAMES = frozenset(_character_to_key(c) for c in string.printable.strip() + " ")
KEY_NAMES = frozenset(key.value.rpartition("+")[2] for key in Keys) | PRINTABLE_NAMES
# Keys a text field needs but characters: enter, tab, Input's editing keys, and their aliases
# (ctrl+i is tab). A priority binding (it works even in a text field) cannot take one.
TYPING_KEYS = frozenset(
    alias
    for key in ["enter", "tab", "shift+tab"]
    + [key for binding in Input.BINDINGS for key in _normalize_key_list(binding.key).split(",")]
    for alias in _get_key_aliases(key)
)
KEYS_VARIABLE = "RESNET_TUI_KEYS"
MOST_PROBLEMS_SHOWN = 4
# A key map is a few lines: anything longer is not one (and `/dev/zero` never ends).
LARGEST_KEYS_BYTES = 1 << 20


def keys_file() -> Path:
    """Where the user's key map is: $RESNET_TUI_KEYS, else keys.toml in resnet-tui's
    folder of the user's configuration ($XDG_CONFIG_HOME, else ~/.config)."""
    named = os.environ.get(KEYS_VARIABLE)
    if named:
        return Path(named).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "resnet-tui" / "keys.toml"


@dataclass
class KeyMap:
    """What a keys.toml asks for: keys by binding id, and why it cannot be used, if so."""

    path: Path
    keys: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    more: int = 0  # the problems past the ones the notification shows: only counted

    def room(self) -> bool:
        """Whether the notification shows another problem (else it is only counted)."""
        return len(self.problems) < MOST_PROBLEMS_SHOWN

    def tell(self, problem: str) -> None:
        """Keep a problem to show, or count it when enough are kept."""
        if self.room():
            self.problems.append(problem)
        else:
            self.more += 1

    def notice(self) -> str:
        """The one notification of a file the app cannot use: where, what, what to do."""
        lines = [f"{self.path} is not used; the app has its default keys:"]
        lines += [f"- {problem}" for problem in self.problems]
        if self.more:
            lines.append(f"- and {self.more} more")
        lines.append("Fix the file (docs/keys.md; ? lists each key's id) and restart the app.")
        return "\n".join(lines)


def read_keymap(path: Path) -> KeyMap:
    """The keys a keys.toml moves, each id checked against the bindings the app has and
    each key against the others of its screens; any problem leaves `keys` empty."""
    keymap = KeyMap(path)
    try:
        if not path.is_file():
            missing = f"there is no such file (named by ${KEYS_VARIABLE})"
            keymap.tell("it is not a file (a folder or a device)" if path.exists() else missing)
            return keymap
        with path.open("rb") as file:
            data = file.read(LARGEST_KEYS_BYTES + 1)
        if len(data) > LARGEST_KEYS_BYTES:
            keymap.tell("it is over 1 MiB: not a key map")
            return keymap
        text = data.decode("utf-8")
        document = tomllib.loads(text)
    except OSError as error:
        keymap.tell(f"it cannot be read: {error.strerror or error}")
        return keymap
    except UnicodeDecodeError:
        keymap.tell("it is not text (UTF-8)")
        return keymap
    except tomllib.TOMLDecodeError as error:
        keymap.tell(f"it is not valid TOML: {error}")
        return keymap
    lines = line_index(text)
    for name in document:
        if name != "keys":
            keymap.tell(
                f"{where(lines, name)}unknown table or setting {name!r}: "
                'bindings go in a [keys] table, as "history.delete" = "x"'
            )
    table = document.get("keys", {})
    if not isinstance(table, dict):
        keymap.tell(f"{where(lines, 'keys')}keys must be a table: [keys]")
        table = {}
    wanted = dict(flattened(table))
    bindings = all_bindings()
    by_id = {binding.id: binding for space in bindings.values() for binding in space if binding.id}
    for binding_id, keys in wanted.items():
        problem = key_problem(binding_id, keys, by_id, hint=keymap.room())
        if problem:
            keymap.tell(f"{where(lines, binding_id)}{problem}")
    if not keymap.problems:
        normalized = {
            binding_id: _normalize_key_list(as_sent(keys)) for binding_id, keys in wanted.items()
        }
        for binding_id, clash in clashes(normalized, bindings):
            keymap.tell(f"{where(lines, binding_id)}{clash}")
        if not keymap.problems:
            keymap.keys = normalized
    return keymap


def flattened(table: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(id, value) of a [keys] table: `history.delete = "x"` unquoted is a table in TOML."""
    for name, value in table.items():
        if isinstance(value, dict):
            yield from flattened(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


SETTING = re.compile(r"""\s*["']?([^"'=\[]+?)["']?\s*=""")
TABLE = re.compile(r"\s*(\[)\s*([^\]]+?)\s*(\])")
SHIFT_LETTER = re.compile(r"shift\+[a-zA-Z]$")


def line_index(text: str) -> dict[str, int]:
    """The line where the file first sets each name (`"history.delete" =`, `delete =`) or
    opens each table (`[keys]`, as "[keys]"): one pass, however many ids the file has."""
    index: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        found = SETTING.match(line) or TABLE.match(line)
        if found:
            index.setdefault("".join(found.groups()), number)
    return index


def where(lines: dict[str, int], binding_id: str) -> str:
    """`line N: ` of the line setting `binding_id` (or its last part, in a table of its
    screen's), if it can be found."""
    last = binding_id.rpartition(".")[2]
    number = lines.get(binding_id) or lines.get(f"[{binding_id}]") or lines.get(last)
    return f"line {number}: " if number else ""


def key_problem(
    binding_id: str, keys: object, bindings: dict[str, Binding], hint: bool = True
) -> str | None:
    """What is wrong with one `id = keys` of the file, if anything; an unknown id is told
    with the nearest id the app has (the `hint`: a look-up, only for problems shown)."""
    if binding_id not in bindings:
        close = difflib.get_close_matches(binding_id, sorted(bindings), n=1) if hint else []
        hint = f"did you mean {close[0]}?" if close else "? in the app lists each key's id"
        return f"no binding has the id {binding_id!r} ({hint})"
    if not isinstance(keys, str):
        return (
            f'{binding_id} must be a string of keys, as "x" or "x,ctrl+x", '
            f"not {type(keys).__name__} {keys!r}"
        )
    for key in (key.strip() for key in keys.split(",")):
        if not is_a_key(key):
            return (
                f"{binding_id}: {key!r} is not a key name "
                "(keys are written as x, X, ?, ctrl+x, shift+up, f1, escape, pageup)"
            )
    typed = [key for key in as_sent(keys).split(",") if typing_needs(key)]
    if bindings[binding_id].priority and typed:
        return (
            f"{binding_id}: {typed[0]!r} is a key text fields need (to type, edit, move on) "
            f"and {binding_id} works even in a text field; give it a ctrl+ key they do not "
            "use (as ctrl+l) or a function key (as f5)"
        )
    return None


def as_sent(keys: str) -> str:
    """A string of keys as the terminal sends them: `shift+e` is `E` (a terminal sends the
    capital, never shift+e), spaces around the commas gone."""
    written = [key.strip() for key in keys.split(",")]
    return ",".join(key[-1].upper() if SHIFT_LETTER.match(key) else key for key in written)


def typing_needs(key: str) -> bool:
    """Whether a text field needs `key` (as sent): a character (space too), enter, tab,
    or one of the keys that edit and move in an Input."""
    modifiers, _, name = key.rpartition("+")
    typed = modifiers in ("", "shift") and (len(name) == 1 or name in PRINTABLE_NAMES)
    return typed or key in TYPING_KEYS


def is_a_key(key: str) -> bool:
    """Whether Textual knows `key`, as `ctrl+x`, `?`, `f1`, `shift+up` or `slash`."""
    *modifiers, name = key.split("+")
    return bool(name) and (len(name) == 1 or name in KEY_NAMES) and set(modifiers) <= MODIFIERS


def clashes(keymap: dict[str, str], spaces: dict[str, list[Binding]]) -> Iterator[tuple[str, str]]:
    """(id, why) for each key the keymap gives a second meaning on a screen: only the
    clashes it makes (a screen's own defaults, as a table's ↓ beside the screen's, are as
    the app means them)."""
    told: set[tuple[str, str]] = set()
    for screen, bindings in spaces.items():
        before = meanings_by_key(bindings, {})
        for key, meanings in meanings_by_key(bindings, keymap).items():
            new = meanings - before.get(key, set())
            if len(meanings) < 2 or not new:
                continue
            mover = min(new & set(keymap) or new)
            if (mover, key) in told:
                continue
            told.add((mover, key))
            others = " and ".join(sorted(meanings - {mover}))
            yield (
                mover,
                f"{mover} = {key!r} gives {key} a second meaning on the {screen} "
                f"(it is {others} there); choose another key",
            )


def meanings_by_key(bindings: list[Binding], keymap: dict[str, str]) -> dict[str, set[str]]:
    """What each key does on a screen with the keymap: the ids of its bindings; for a key
    of Textual's own, the id of the app's binding of the same action (↓ and j both move
    down), else its name."""
    ids_of_actions = {binding.action: binding.id for binding in bindings if binding.id}
    meanings: dict[str, set[str]] = {}
    for binding in bindings:
        meaning = (
            binding.id
            or ids_of_actions.get(binding.action)
            or f"Textual's {binding.description or binding.action!r}"
        )
        for key in keymap.get(binding.id or "", binding.key).split(","):
            meanings.setdefault(key, set()).add(meaning)
    return meanings


def all_bindings() -> dict[str, list[Binding]]:
    """The bindings of each screen of the app that can be active at once, by screen name:
    the screen's, those of the app's widgets its module uses (tables, charts) and, but for
    dialogs, the app's. Every module of the app is imported to find them."""
    import resnet_tui.app as package
    from resnet_tui.app.app import ResnetApp

    for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        importlib.import_module(module.name)
    app_bindings = bindings_of(ResnetApp) + [
        Binding(App.COMMAND_PALETTE_BINDING, "command_palette", "palette")
    ]
    spaces: dict[str, list[Binding]] = {}
    # The screens before the dialogs and the help: a clash is told where first found.
    for screen in sorted(subclasses(Screen), key=lambda screen: issubclass(screen, ModalScreen)):
        if not screen.__module__.startswith(package.__name__) or screen.__subclasses__():
            continue  # Textual's screens, and bases of the app's (they have no keys alone)
        module = vars(sys.modules[screen.__module__])
        widgets = [
            value
            for value in module.values()
            if isinstance(value, type)
            and issubclass(value, DOMNode)
            and not issubclass(value, Screen)
            and value.__module__.startswith(package.__name__)
        ]
        space = bindings_of(screen) + [b for widget in widgets for b in bindings_of(widget)]
        if not issubclass(screen, ModalScreen):
            space += app_bindings
        spaces[screen_name(screen)] = space
    return spaces


def screen_name(screen: type[Screen]) -> str:
    """A screen class's name in words: HistoryScreen is the history screen."""
    words = [word.lower() for word in re.findall(r"[A-Z][a-z]*", screen.__name__)]
    if words[-1] not in ("screen", "dialog"):
        words.append("screen")
    return " ".join(words)


def subclasses(cls: type) -> Iterator[type]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from subclasses(subclass)


def bindings_of(node: type[DOMNode]) -> list[Binding]:
    """A widget class's bindings, one per key, as Textual merges them over its bases."""
    merged: BindingsMap = node._merge_bindings()
    return [binding for _, binding in merged]


def keymapped(node: DOMNode) -> BindingsMap:
    """A widget's or screen's own bindings with the keys the user moved (Textual applies
    the keymap to the chain of the focused widget only: help and footer show others)."""
    bindings = node._bindings.copy()
    bindings.apply_keymap(node.app._keymap)
    return bindings


def screen_keys(screen: Screen) -> list[tuple[str, ActiveBinding]]:
    """The keys active on a screen now (the focused widget's first, then the screen's and
    the app's), each followed by the screen's own binding of the key where a focused
    widget's hides it: a table's enter selects its row, which the screen (Open) opens."""
    own = dict(keymapped(screen))
    keys = []
    for key, active in screen.active_bindings.items():
        keys.append((key, active))
        if key in own and active.node not in (screen, screen.app):
            keys.append((key, ActiveBinding(screen, own[key], True, own[key].tooltip)))
    return keys


def use_the_users_keys(app: App) -> None:
    """Move the app's keys as the user's keys.toml says, if there is one; say why not if it
    cannot be used (the app keeps its default keys)."""
    path = keys_file()
    if not path.exists() and KEYS_VARIABLE not in os.environ:
        return
    keymap = read_keymap(path)
    if keymap.problems:
        app.notify(keymap.notice(), title="keys.toml", severity="error", timeout=30, markup=False)
        return
    app.set_keymap(keymap.keys)
