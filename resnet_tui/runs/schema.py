"""The tables of `runs.db` and the forward migrations that bring an older file up to date.

The schema version lives in `PRAGMA user_version`; `MIGRATIONS[n]` takes a store from
version n to n + 1, inside the caller's write transaction. Tables are built with
sqlite-utils; the everyday queries are plain SQL (see store.py).
"""

import json
import re
import sqlite3
from collections.abc import Callable

from resnet_tui.runs.identity import make_identity

SCHEMA_VERSION = 6

# The columns of `runs` as version 1 made them, with their types.
_FIRST_COLUMNS = {
    "id": int,
    "name": str,
    "kind": str,
    "status": str,
    "created_at": float,
    "started_at": float,
    "ended_at": float,
    "arch": str,
    "dataset": str,
    "init": str,
    "freeze": str,
    "device": str,
    "spec": str,
    "parents": str,
    "pid": int,
    "host": str,
    "run_dir": str,
    "events_offset": int,
    "last_seq": int,
    "epochs": int,
    "epochs_done": int,
    "best_val_acc": float,
    "test_acc": float,
    "test_top5": float,
    "seconds": float,
    "engine_info": str,
    "test_report": str,
    "error": str,
    "notes": str,
    "tags": str,
}
# What a fold of `--folds` adds to its setting's name.
FOLD_SUFFIX = re.compile(r" fold \d+/\d+$")


def _create_schema(connection: sqlite3.Connection) -> None:
    """Version 1: the runs and metrics tables."""
    import sqlite_utils

    db = sqlite_utils.Database(connection)
    db["runs"].create(
        _FIRST_COLUMNS,
        pk="id",
        not_null={"status", "kind"},
        defaults={"kind": "train", "events_offset": 0, "last_seq": 0, "epochs_done": 0},
    )
    db["metrics"].create(
        {
            "run_id": int,
            "seq": int,
            "epoch": int,
            "step": int,
            "split": str,
            "name": str,
            "value": float,
        },
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["metrics"].create_index(["run_id", "seq", "split", "name"], unique=True)
    db["metrics"].create_index(["name", "run_id"])
    for column in ("status", "arch", "dataset", "created_at", "best_val_acc", "test_acc"):
        db["runs"].create_index([column])


def _add_teachers_recipe_and_last_event(connection: sqlite3.Connection) -> None:
    """Version 2: the runs a student was distilled from, how a fused run was made, and
    when a run last wrote an event (a live run silent for long is stalled)."""
    connection.execute("ALTER TABLE runs ADD COLUMN teachers TEXT DEFAULT '[]'")
    connection.execute("ALTER TABLE runs ADD COLUMN recipe TEXT")
    connection.execute("ALTER TABLE runs ADD COLUMN last_event_at FLOAT")


def _add_sweeps_and_the_queue(connection: sqlite3.Connection) -> None:
    """Version 3: the sweep a run belongs to, and a queued run's place in the queue."""
    connection.execute("ALTER TABLE runs ADD COLUMN sweep INTEGER")
    connection.execute("ALTER TABLE runs ADD COLUMN queue_position FLOAT")
    connection.execute("CREATE INDEX idx_runs_sweep ON runs (sweep)")
    connection.execute("CREATE INDEX idx_runs_queue_position ON runs (queue_position)")


def _add_lineage_settings_and_revisions(connection: sqlite3.Connection) -> None:
    """Version 4: lineage as rows of its own (the runs a run's weights came from, and its
    teachers) instead of JSON lists; a sweep run's setting and fold, kept when it is made
    (a rename no longer moves it to another setting); and a revision number on every change,
    with the runs deleted, so a viewer asks the store only for what changed since it last
    looked."""
    connection.execute(
        "CREATE TABLE run_sources (run_id INTEGER NOT NULL REFERENCES runs(id), "
        "source_id INTEGER NOT NULL, role TEXT NOT NULL, position INTEGER NOT NULL, "
        "PRIMARY KEY (run_id, role, position))"
    )
    connection.execute("CREATE INDEX idx_run_sources_source ON run_sources (source_id)")
    for column, role in (("parents", "parent"), ("teachers", "teacher")):
        rows = connection.execute(f"SELECT id, {column} FROM runs").fetchall()
        for run_id, text in rows:
            for position, source in enumerate(_id_list(text)):
                connection.execute(
                    "INSERT OR IGNORE INTO run_sources VALUES (?, ?, ?, ?)",
                    [run_id, source, role, position],
                )
        connection.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    connection.execute("ALTER TABLE runs ADD COLUMN setting TEXT")
    connection.execute("ALTER TABLE runs ADD COLUMN fold INTEGER")
    connection.execute("ALTER TABLE runs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
    connection.execute("CREATE INDEX idx_runs_revision ON runs (revision)")
    rows = connection.execute("SELECT id, name, spec FROM runs WHERE sweep IS NOT NULL")
    for run_id, name, spec in rows.fetchall():
        fold = _spec_fold(spec)
        setting = FOLD_SUFFIX.sub("", name or "") if fold is not None else name
        connection.execute(
            "UPDATE runs SET setting = ?, fold = ? WHERE id = ?", [setting, fold, run_id]
        )
    connection.execute(
        "CREATE TABLE deleted_runs (run_id INTEGER PRIMARY KEY, revision INTEGER NOT NULL)"
    )
    connection.execute("CREATE INDEX idx_deleted_runs_revision ON deleted_runs (revision)")
    connection.execute("CREATE TABLE store_revision (value INTEGER NOT NULL)")
    connection.execute("INSERT INTO store_revision VALUES (0)")


def _add_searches(connection: sqlite3.Connection) -> None:
    """Version 6: searches (`resnet-tui search`), each a sweep whose runs are its trials:
    its space, sampler, seed, trial count and objective, and each trial's run with the
    parameters asked for it (kept when its run is deleted, so a trial's number is never
    given twice)."""
    connection.execute(
        "CREATE TABLE searches (sweep INTEGER PRIMARY KEY, space TEXT NOT NULL, "
        "fixed TEXT NOT NULL, sampler TEXT NOT NULL, seed INTEGER NOT NULL, "
        "trials INTEGER NOT NULL, objective TEXT NOT NULL, created_at FLOAT NOT NULL)"
    )
    connection.execute(
        "CREATE TABLE search_trials (run_id INTEGER PRIMARY KEY, sweep INTEGER NOT NULL, "
        "number INTEGER NOT NULL, params TEXT NOT NULL)"
    )
    connection.execute("CREATE INDEX idx_search_trials_sweep ON search_trials (sweep)")


def _id_list(text: str | None) -> list[int]:
    """Run ids from a JSON list column of versions 1 to 3 (damage reads as none)."""
    try:
        values = json.loads(text or "[]")
    except ValueError:
        return []
    if not isinstance(values, list):
        return []
    return [value for value in values if isinstance(value, int) and not isinstance(value, bool)]


def _spec_fold(text: str | None) -> int | None:
    try:
        spec = json.loads(text or "{}")
    except ValueError:
        return None
    fold = spec.get("fold") if isinstance(spec, dict) else None
    return fold if isinstance(fold, int) and not isinstance(fold, bool) else None


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _create_schema,
    _add_teachers_recipe_and_last_event,
    _add_sweeps_and_the_queue,
    _add_lineage_settings_and_revisions,
    make_identity,  # version 5: the store's id, its runs folder and its run folders marked
    _add_searches,
]
