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


def load_failure_reason(error: Exception) -> str:
    """Why torch.load could not read a file, in one line: torch's own reason, without its
    advice to load the file with `weights_only=False` or to allowlist what it refused."""
    text = str(error).split("WeightsUnpickler error:", 1)[-1]
    for line in text.splitlines():
        line = line.strip()
        if line and "weights_only" not in line and not line.startswith("Check the documentation"):
            return line.split(". ", 1)[0].split(" Please use ", 1)[0].rstrip(".")
    return f"{type(error).__name__}: not a file torch.save wrote, or a damaged one"
