"""What a run's name, tags and notes may hold: printable text of a sensible length."""

import re

from resnet_tui.display import safe

# The longest text each label may hold; a note is a paragraph, a name or tags one line.
LONGEST = {"name": 200, "tags": 200, "notes": 2000}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class LabelError(ValueError):
    """A name, tag or note the store will not keep; the message says what to do."""


def check_label(text: str, what: str) -> str:
    """`text` if it is fit to be a run's `what` (name, tags or notes), else LabelError."""
    longest = LONGEST.get(what, LONGEST["name"])
    if _SURROGATE.search(text):
        raise LabelError(
            f"the {what} '{safe(text)[:80]}' is not valid UTF-8; type it again, or set the "
            "terminal's encoding to UTF-8"
        )
    found = _CONTROL.search(text)
    if found:
        raise LabelError(
            f"the {what} '{safe(text)[:80]}' holds the control character "
            f"{safe(found.group())}; use printable text only"
        )
    if len(text) > longest:
        raise LabelError(f"the {what} is {len(text)} characters long; keep it to {longest} at most")
    return text
