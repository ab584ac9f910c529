"""What the hostile-text tests of the CLI and the app share: their fault rows, and what a
terminal would act on if it reached it raw."""

import re

SHOWN_LITERALLY = "hostile text in names, tags and paths: shown literally"
REFUSED = "hostile run names: refused before anything is made (exit 2)"
# C0 controls but the line breaks of the output, DEL, C1 controls, lone surrogates, bidi
# controls.
RAW = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def forged_test_report(text: str) -> dict:
    """A finished run's test report whose first class is named `text`."""
    return {
        "top1": 0.5,
        "top5": 1.0,
        "macro_f1": 0.5,
        "loss": 1.0,
        "classes": [text, "b"],
        "confusion": [[1, 1], [0, 2]],
        "per_class_accuracy": {text: 0.5, "b": 1.0},
    }
