"""The command palette's commands: Textual's own, and every key binding of the screen."""

from collections.abc import Iterable
from functools import partial

from textual.app import App, SystemCommand
from textual.screen import Screen

from resnet_tui.app.keys import screen_keys


def palette_commands(
    app: App, screen: Screen, textuals: Iterable[SystemCommand]
) -> Iterable[SystemCommand]:
    """Textual's commands, then each key binding of the screen in view with a description
    (once), so whatever a key does can be found by name, with its key as the user's
    keys.toml has it (the screen's own too where a table's key hides it: enter opens)."""
    textuals = list(textuals)
    yield from textuals
    seen = {command.title for command in textuals}
    for _, active in screen_keys(screen):
        binding = active.binding
        if not binding.description or binding.description in seen:
            continue
        seen.add(binding.description)
        yield SystemCommand(
            binding.description,
            f"key: {app.get_key_display(binding)}",
            partial(app.run_action, binding.action, active.node),
        )
