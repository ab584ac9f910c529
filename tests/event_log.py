"""A run's event log as the tests read it: every event, parsed by the contract, as its line."""

from pathlib import Path
from typing import Any

from engine.contract import events as ev


def logged(path: str | Path) -> list[dict[str, Any]]:
    """The events of a log (checked against the contract on the way) as the dicts their
    lines hold, so a test asserts on what was written."""
    return [event.to_dict() for event in ev.read_events(path).events]
