"""The help screen (`?`): every key of the screen below it, with what it does and its id."""

from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static

from resnet_tui.app.keys import keymapped, screen_keys
from resnet_tui.app.widgets.tables import Table

GROUPS = ("this screen", "tables", "everywhere")


# Textual's keys of every screen (tab, shift+tab, copy): they work everywhere.
EVERY_SCREENS = {binding.action for binding in Screen.BINDINGS if isinstance(binding, Binding)}


@dataclass
class KeyLine:
    """One line of the help: what one action does and the keys that do it, as the user
    has them (an id'd binding and Textual's own for the same action share a line)."""

    group: str
    action: str
    keys: list[str] = field(default_factory=list)
    description: str = ""
    binding_id: str | None = None
    enabled: bool = True

    def add(self, key: str, binding: Binding, enabled: bool) -> None:
        if key not in self.keys:
            self.keys.append(key)
        if binding.id and not self.binding_id:
            self.binding_id, self.description = binding.id, binding.description
        self.description = self.description or binding.description or binding.action
        self.enabled = self.enabled and enabled


def group_of(active: ActiveBinding, screen: Screen) -> str:
    """Where a binding works: the screen's own keys, every table's, or everywhere."""
    binding = active.binding
    if (binding.id or "").startswith("app.") or active.node is screen.app:
        return "everywhere"
    if (binding.id or "").startswith("table.") or isinstance(active.node, DataTable):
        return "tables"
    if active.node is screen and binding.action in EVERY_SCREENS:
        return "everywhere"
    return "this screen"


def key_lines(screen: Screen) -> list[KeyLine]:
    """The keys active on `screen` now (its focused widget's, its own, the app's), after
    the user's keys.toml, grouped; a table's keys even when another widget has the focus.
    Within a group, the app's own keys (with ids) come before Textual's."""
    active = screen_keys(screen)
    if not any(isinstance(found.node, DataTable) for _, found in active):
        for table in screen.query(Table).results():
            for key, binding in keymapped(table):
                active.append((key, ActiveBinding(table, binding, True, binding.tooltip)))
            break
    lines: dict[tuple[str, str], KeyLine] = {}
    for key, found in active:
        binding = found.binding
        if binding.system:
            continue
        group = group_of(found, screen)
        line = lines.setdefault((group, binding.action), KeyLine(group, binding.action))
        shown = screen.app.get_key_display(binding.with_key(key, key_display=None))
        line.add(shown, binding, found.enabled)
    return sorted(
        lines.values(), key=lambda line: (GROUPS.index(line.group), line.binding_id is None)
    )


class HelpScreen(ModalScreen[None]):
    """The keys of the screen below, as a table to move through: this screen's, then
    every table's, then the app's; escape or ? (wherever the user moved it) closes it."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Close help", id="help.close"),
        # The same id as the app's help key, so that keys.toml moves both.
        Binding("question_mark", "app.pop_screen", "Close help", show=False, id="app.help"),
    ]
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > Vertical {
        width: 100%;
        max-width: 100;
        height: 100%;
        border: round $accent;
        border-title-align: center;
        background: $surface;
    }
    HelpScreen #help-about {
        color: $text-muted;
        padding: 0 1;
    }
    HelpScreen #help-keys {
        height: 1fr;
    }
    """

    def __init__(self, below: Screen) -> None:
        super().__init__()
        self.below = below

    def compose(self) -> ComposeResult:
        with Vertical() as frame:
            frame.border_title = f"Keys of the {screen_title(self.below)}"
            yield Static(
                "escape or ? closes · move keys in keys.toml by their ids (docs/keys.md)",
                id="help-about",
            )
            yield Table(id="help-keys", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(Table)
        table.add_columns("key", "does", "id")
        group = None
        for line in key_lines(self.below):
            if line.group != group:
                group = line.group
                table.add_row(Text(group, style="bold"), "", "")
            style = "" if line.enabled else "dim"
            table.add_row(
                Text(", ".join(line.keys), style=f"bold {style}"),
                Text(line.description, style=style),
                Text(line.binding_id or "(Textual)", style="dim"),
            )
        table.focus()


def screen_title(screen: Screen) -> str:
    """`history screen`, `run screen`: what the user calls the screen."""
    name = type(screen).__name__.removesuffix("Screen")
    return f"{name.lower()} screen" if name else "screen"
