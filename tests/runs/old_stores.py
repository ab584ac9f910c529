"""Stores as older versions of resnet-tui wrote them, for the tests of migrations."""

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# What versions 2 and 3 added, newest first: (indexes, columns).
_ADDED = [
    (("idx_runs_sweep", "idx_runs_queue_position"), ("sweep", "queue_position")),
    ((), ("teachers", "recipe", "last_event_at")),
]


@contextmanager
def _opened(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the store, committed and closed at the end."""
    db = sqlite3.connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()


def back_to_version_five(path: Path) -> None:
    """Take a store of this version back to version 5's tables: its searches go (their
    trials stay, as runs of their sweeps)."""
    with _opened(path) as db:
        db.execute("DROP TABLE search_trials")
        db.execute("DROP TABLE searches")
        db.execute("PRAGMA user_version = 5")


def back_to_version_four(path: Path) -> None:
    """Take a store of this version back to version 4's tables: the store's identity (its
    id, its runs folder) goes; its run folders keep their marks."""
    back_to_version_five(path)
    with _opened(path) as db:
        db.execute("DROP TABLE store_info")
        db.execute("PRAGMA user_version = 4")


def back_to_version_three(path: Path) -> None:
    """Take a store of this version back to version 3's tables, keeping its runs: lineage
    goes back into the `parents` and `teachers` JSON lists of each run, and what version 4
    added (run_sources, setting, fold, revision, deleted_runs, store_revision) goes."""
    back_to_version_four(path)
    with _opened(path) as db:
        sources: dict[tuple[int, str], list[int]] = {}
        rows = db.execute(
            "SELECT run_id, role, source_id FROM run_sources ORDER BY run_id, role, position"
        )
        for run_id, role, source in rows:
            sources.setdefault((run_id, role), []).append(source)
        ids = [row[0] for row in db.execute("SELECT id FROM runs")]
        for column, role in (("parents", "parent"), ("teachers", "teacher")):
            # as versions 1 and 2 made them: parents with no default, teachers with one
            default = " DEFAULT '[]'" if column == "teachers" else ""
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT{default}")
            db.executemany(
                f"UPDATE runs SET {column} = ? WHERE id = ?",
                [(json.dumps(sources.get((run_id, role), [])), run_id) for run_id in ids],
            )
        for table in ("run_sources", "deleted_runs", "store_revision"):
            db.execute(f"DROP TABLE {table}")
        db.execute("DROP INDEX idx_runs_revision")
        for column in ("setting", "fold", "revision"):
            db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 3")


def back_to_version_one(path: Path) -> None:
    """Take a store of this version back to version 1's tables, keeping its runs (and their
    parents; version 1 knew no teachers)."""
    back_to_version_three(path)
    with _opened(path) as db:
        for indexes, columns in _ADDED:
            for index in indexes:
                db.execute(f"DROP INDEX {index}")
            for column in columns:
                db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 1")
