"""Stores as older versions of resnet-tui wrote them, for the tests of migrations."""

import sqlite3
from pathlib import Path

# What each version after the first added, newest first: (indexes, columns).
_ADDED = [
    (("idx_runs_sweep", "idx_runs_queue_position"), ("sweep", "queue_position")),
    ((), ("teachers", "recipe", "last_event_at")),
]


def back_to_version_one(path: Path) -> None:
    """Take a store of this version back to version 1's tables, keeping its runs."""
    with sqlite3.connect(path) as db:
        for indexes, columns in _ADDED:
            for index in indexes:
                db.execute(f"DROP INDEX {index}")
            for column in columns:
                db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 1")
