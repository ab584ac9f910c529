"""The app's footer: the screen's keys, the essential ones first, `? help` always shown."""

from dataclasses import dataclass

from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget

from resnet_tui.app.keys import ESSENTIAL, screen_keys

HELP_ID = "app.help"
GAP = "  "


@dataclass
class FooterKey:
    """One key as the footer shows it: the shortest of a binding's keys, what it does."""

    key: str
    shown: str
    description: str
    enabled: bool
    essential: bool

    def text(self) -> Content:
        """The key, then what it does; a click presses the key."""
        text = Content.assemble((self.shown, "bold $footer-key-foreground"), f" {self.description}")
        text = text.stylize(f"@click=app.simulate_key({self.key!r})")
        return text if self.enabled else text.stylize("dim")


def footer_keys(screen: Screen) -> tuple[list[FooterKey], FooterKey | None]:
    """The keys the screen shows in its footer, in order, one per description (the
    shortest key of each), and the help key apart."""
    keys: dict[str, FooterKey] = {}
    help_key = None
    for key, active in screen_keys(screen):
        binding, enabled = active.binding, active.enabled
        shown = screen.app.get_key_display(binding)
        one = FooterKey(key, shown, binding.description, enabled, binding.id in ESSENTIAL)
        if binding.id == HELP_ID:
            if help_key is None or len(shown) < len(help_key.shown):
                help_key = one
            continue
        if not binding.show or not binding.description:
            continue
        known = keys.get(binding.description)
        if known is None or len(shown) < len(known.shown):
            keys[binding.description] = one
    return list(keys.values()), help_key


def fitted(keys: list[FooterKey], width: int) -> list[FooterKey]:
    """The keys that fit in `width` columns: the essential ones first, then the others
    while there is room, each in the screen's order."""
    chosen: list[FooterKey] = []
    room = width
    for key in sorted(keys, key=lambda key: not key.essential):
        needed = key.text().cell_length + len(GAP)
        if needed <= room:
            chosen.append(key)
            room -= needed
    return chosen


class KeyFooter(Widget):
    """A one-line footer that keeps the keys that matter when columns are few: the
    bindings listed as essential (keys.ESSENTIAL) come first, the rest follow while there
    is room, and `? help` (as the user has moved it) sits at the right in every width."""

    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        padding: 0 1;
        color: $footer-foreground;
        background: $footer-background;
    }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen: Screen) -> None:
        self.refresh()

    def render(self) -> Content:
        keys, help_key = footer_keys(self.screen)
        helps = help_key.text() if help_key else Content()
        width = self.content_size.width - helps.cell_length - len(GAP)
        line = Content(GAP).join(key.text() for key in fitted(keys, width))
        room = max(0, self.content_size.width - line.cell_length - helps.cell_length)
        return Content.assemble(line, " " * room, helps)
