"""Errors the engine reports as `error` events, each with a kind and a hint for the user."""


class RunError(Exception):
    """A failure the user can act on: `kind` sorts it, `hint` says what to try."""

    def __init__(self, kind: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint


class UnreadableImage(Exception):
    """An image file that cannot be decoded; raised in data-loading workers."""
