"""The run store: every run and its metrics in one SQLite file (`runs.db`).

WAL journal and a busy timeout let an engine's follower and several viewers share the file.
The schema version lives in `PRAGMA user_version`; `_MIGRATIONS` takes an older file forward,
building tables with sqlite-utils. Everyday reads and writes are plain parameterised SQL on
the standard library's sqlite3: sqlite-utils loads numpy, a quarter of a second that every
`resnet-tui` start would otherwise pay. Summary columns on `runs` are kept current as events
arrive, so listing never reads `metrics`.
"""

import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.spec import RunSpec

SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 30
STATUSES = ("queued", "running", "completed", "stopped", "failed", "crashed")
LIVE_STATUSES = ("queued", "running")

RUN_COLUMNS = {
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
    "teachers": str,
    "recipe": str,
    "last_event_at": float,
    "sweep": int,
    "queue_position": float,
}
SORTABLE = tuple(RUN_COLUMNS)


class StoreError(Exception):
    """A store that cannot be used; the message says which file and what to do."""


# Columns that later versions added; the first version's table is the rest.
_ADDED_IN_VERSION_2 = ("teachers", "recipe", "last_event_at")
_ADDED_IN_VERSION_3 = ("sweep", "queue_position")


def _create_schema(connection: sqlite3.Connection) -> None:
    """Version 1: the runs and metrics tables."""
    import sqlite_utils

    db = sqlite_utils.Database(connection)
    db["runs"].create(
        {
            k: v
            for k, v in RUN_COLUMNS.items()
            if k not in _ADDED_IN_VERSION_2 + _ADDED_IN_VERSION_3
        },
        pk="id",
        not_null={"status", "kind"},
        defaults={
            "kind": "train",
            "events_offset": 0,
            "last_seq": 0,
            "epochs_done": 0,
            "parents": "[]",
        },
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


_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _create_schema,
    _add_teachers_recipe_and_last_event,
    _add_sweeps_and_the_queue,
]


def _writable(path: Path) -> bool:
    """Writable for us, and not marked read-only (which root could otherwise ignore)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def default_db_path() -> Path:
    """$RESNET_TUI_DB, else runs.db in the working directory."""
    return Path(os.environ.get("RESNET_TUI_DB") or "runs.db")


class RunStore:
    """The runs of one `runs.db`, with their folders in `runs/` beside it."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        self.runs_dir = self.path.parent / "runs"
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder; --db wants a runs.db file")
        creating = not self.path.exists()
        if creating and not os.access(self.path.parent if str(self.path.parent) else ".", os.W_OK):
            raise StoreError(
                f"cannot create {self.path}: its folder is not writable; choose another --db"
            )
        if not creating and not _writable(self.path):
            raise StoreError(f"{self.path} is read-only; make it writable or choose another --db")
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")  # WAL stays consistent on a crash
        except sqlite3.DatabaseError as error:
            raise StoreError(
                f"{self.path} is not a resnet-tui run store ({error}); choose another --db"
            ) from None
        if creating:
            os.chmod(self.path, 0o600)
        if version > SCHEMA_VERSION:
            connection.close()
            raise StoreError(
                f"{self.path} was written by a newer resnet-tui (schema {version}, this one "
                f"knows {SCHEMA_VERSION}); upgrade resnet-tui to open it"
            )
        connection.row_factory = sqlite3.Row
        self.connection = connection
        if version < SCHEMA_VERSION:
            self._migrate()

    def _migrate(self) -> None:
        """Bring the schema forward under a write lock, so two processes migrate it once."""
        with self.write_transaction() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            for index in range(version, SCHEMA_VERSION):
                _MIGRATIONS[index](connection)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: takes the write lock at once (waiting up to the busy timeout)."""
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.connection.execute(sql, list(args))]

    # Runs

    def create_run(
        self,
        spec: RunSpec,
        status: str = "queued",
        parents: list[int] | None = None,
        teachers: list[int] | None = None,
        kind: str = "train",
        recipe: str | None = None,
    ) -> int:
        """Add a run for `spec` and make its folder; returns the run id.

        `parents` are the runs its weights come from (its lineage: the `--init` run, or the
        members of an ensemble or soup), `teachers` the runs it was distilled from. A fused
        run (`kind` ensemble, soup or wise-ft) keeps how it was made in `recipe`.
        """
        record = {
            "name": spec.display_name,
            "kind": kind,
            "status": status,
            "created_at": time.time(),
            "arch": spec.arch,
            "dataset": spec.dataset,
            "init": spec.init,
            "freeze": spec.freeze,
            "device": spec.placement,
            "spec": spec.to_json(),
            "epochs": spec.epochs,
            "host": socket.gethostname(),
            "parents": json.dumps(parents or []),
            "teachers": json.dumps(teachers or []),
            "recipe": recipe,
        }
        columns = ", ".join(record)
        marks = ", ".join("?" for _ in record)
        with self.write_transaction() as connection:
            cursor = connection.execute(
                f"INSERT INTO runs ({columns}) VALUES ({marks})", list(record.values())
            )
            run_id = cursor.lastrowid
        run_dir = self.runs_dir / str(run_id)
        self.runs_dir.mkdir(mode=0o700, exist_ok=True)
        run_dir.mkdir(mode=0o700, exist_ok=True)
        self.update(run_id, run_dir=str(run_dir.resolve()))
        return run_id

    def update(self, run_id: int, **values: Any) -> None:
        """Set columns of one run (column names come from code, never from users)."""
        unknown = set(values) - set(RUN_COLUMNS)
        if unknown:
            raise ValueError(f"no run columns {sorted(unknown)}")
        assignments = ", ".join(f"{column} = ?" for column in values)
        with self.write_transaction() as connection:
            connection.execute(
                f"UPDATE runs SET {assignments} WHERE id = ?", [*values.values(), run_id]
            )

    def run(self, run_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE id = ?", [run_id])
        return rows[0] if rows else None

    def list_runs(
        self,
        status: str | None = None,
        arch: str | None = None,
        dataset: str | None = None,
        sort: str = "id",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
        text: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs matching the filters, sorted in SQL (only known column names are accepted).

        `text` keeps runs with it in their id, name, status, arch, dataset, init or policy;
        `from:N` keeps the runs made from run N, and `sweep:N` the runs of sweep N.
        """
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by '{sort}'; choose one of {', '.join(SORTABLE)}")
        where, args = self._filters(status, arch, dataset, text)
        sql = "SELECT * FROM runs" + where
        direction = "DESC" if descending else "ASC"
        if sort == "id":  # never NULL; sorted by the primary key alone, SQLite needs no sort
            sql += f" ORDER BY id {direction}"
        else:
            sql += f" ORDER BY {sort} IS NULL, {sort} {direction}, id {direction}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return self.query(sql, args)

    def count_runs(
        self,
        status: str | None = None,
        arch: str | None = None,
        dataset: str | None = None,
        text: str | None = None,
    ) -> int:
        where, args = self._filters(status, arch, dataset, text)
        return self.connection.execute("SELECT count(*) FROM runs" + where, args).fetchone()[0]

    @staticmethod
    def _filters(
        status: str | None, arch: str | None, dataset: str | None, text: str | None
    ) -> tuple[str, list[Any]]:
        where, args = [], []
        for column, value in (("status", status), ("arch", arch), ("dataset", dataset)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        lineage = re.fullmatch(r"from:(\d+)", text.strip()) if text else None
        sweep = re.fullmatch(r"sweep:(\d+)", text.strip()) if text else None
        if sweep:  # the runs of sweep N, found through its index
            where.append("sweep = ?")
            args.append(int(sweep.group(1)))
        elif lineage:  # runs made from run N: N is among their parents or teachers
            where.append(
                "(EXISTS (SELECT 1 FROM json_each(runs.parents) WHERE value = ?)"
                " OR EXISTS (SELECT 1 FROM json_each(runs.teachers) WHERE value = ?))"
            )
            args += [int(lineage.group(1))] * 2
        elif text:
            columns = (
                "CAST(id AS TEXT)",
                "name",
                "status",
                "arch",
                "dataset",
                "init",
                "freeze",
                "kind",
                "tags",
            )
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns) + ")")
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args += [f"%{escaped}%"] * len(columns)
        return (" WHERE " + " AND ".join(where) if where else ""), args

    def lineage(self, run_id: int) -> list[dict[str, Any]]:
        """The runs `run_id` started from, nearest first, following each first parent."""
        chain: list[dict[str, Any]] = []
        run = self.run(run_id)
        while run is not None and json.loads(run["parents"] or "[]"):
            parent = self.run(json.loads(run["parents"])[0])
            if parent is None or any(r["id"] == parent["id"] for r in chain):
                break
            chain.append(parent)
            run = parent
        return chain

    # The queue

    def enqueue(self, run_ids: list[int], sweep: bool = True) -> int | None:
        """Put created runs at the queue's end, in order, as one sweep where `sweep`; returns
        the sweep's number. They wait, status `queued`, until a worker takes them
        (`take_next_queued`)."""
        with self.write_transaction() as connection:
            last, group = connection.execute(
                "SELECT max(queue_position), max(sweep) FROM runs"
            ).fetchone()
            group = (group or 0) + 1 if sweep else None
            for place, run_id in enumerate(run_ids, start=1):
                connection.execute(
                    "UPDATE runs SET queue_position = ?, sweep = ? WHERE id = ?",
                    [(last or 0) + place, group, run_id],
                )
        return group

    def queued_runs(self) -> list[dict[str, Any]]:
        """The queue, first in line first."""
        return self.query(
            "SELECT * FROM runs WHERE status = 'queued' AND queue_position IS NOT NULL "
            "ORDER BY queue_position, id"
        )

    def take_next_queued(self, pid: int, among: list[int] | None = None) -> dict[str, Any] | None:
        """Take the first queued run (of the runs `among`, where given) for worker `pid`
        (status `running`, out of the queue), atomically, so that two workers never take the
        same run; None when none waits."""
        only = f" AND id IN ({', '.join('?' for _ in among)})" if among is not None else ""
        with self.write_transaction() as connection:
            row = connection.execute(
                "SELECT id FROM runs WHERE status = 'queued' AND queue_position IS NOT NULL"
                f"{only} ORDER BY queue_position, id LIMIT 1",
                among or [],
            ).fetchone()
            if row is None:
                return None
            connection.execute(
                "UPDATE runs SET status = 'running', queue_position = NULL, pid = ? WHERE id = ?",
                [pid, row[0]],
            )
        return self.run(row[0])

    def sweep_runs(self, sweep: int) -> list[dict[str, Any]]:
        """The runs of one sweep, in the order they were made."""
        return self.query("SELECT * FROM runs WHERE sweep = ? ORDER BY id", [sweep])

    def move_to_front(self, run_id: int) -> bool:
        """Put a queued run first in line; False where it is not in the queue (any more)."""
        with self.write_transaction() as connection:
            first = connection.execute("SELECT min(queue_position) FROM runs").fetchone()[0]
            moved = connection.execute(
                "UPDATE runs SET queue_position = ? "
                "WHERE id = ? AND status = 'queued' AND queue_position IS NOT NULL",
                [(first or 1) - 1, run_id],
            ).rowcount
        return moved > 0

    def move_in_queue(self, run_id: int, step: int) -> bool:
        """Move a queued run one place toward the front (`step` -1) or the back (+1), swapping
        places with its neighbour in one write, so a worker taking runs meanwhile sees either
        order, never a mix. False where the run is not in the queue (a worker took it, say)
        or is at that end of it already. Places are never shared (`enqueue` and
        `move_to_front` make new ones under the write lock; a swap keeps them), so a swap
        always changes the order."""
        if step not in (-1, 1):
            raise ValueError("a queued run moves one place: step -1 (forward) or 1 (back)")
        with self.write_transaction() as connection:
            row = connection.execute(
                "SELECT queue_position FROM runs "
                "WHERE id = ? AND status = 'queued' AND queue_position IS NOT NULL",
                [run_id],
            ).fetchone()
            if row is None:
                return False
            place = row[0]
            before, order = ("<", "DESC") if step < 0 else (">", "ASC")
            neighbour = connection.execute(
                "SELECT id, queue_position FROM runs "
                f"WHERE status = 'queued' AND queue_position {before} ? "
                f"ORDER BY queue_position {order} LIMIT 1",
                [place],
            ).fetchone()
            if neighbour is None:
                return False
            connection.execute(
                "UPDATE runs SET queue_position = ? WHERE id = ?", [neighbour[1], run_id]
            )
            connection.execute(
                "UPDATE runs SET queue_position = ? WHERE id = ?", [place, neighbour[0]]
            )
        return True

    def cancel_queued(self, run_id: int) -> dict[str, Any] | None:
        """Take a run out of the queue and out of the store, in one write, while no worker
        has taken it: returns the run as it was (its folder is the caller's to remove), or
        None where it is not waiting in the queue (any more)."""
        with self.write_transaction():
            run = self.run(run_id)
            if run is None or not waits_in_queue(run):
                return None
            self.connection.execute("DELETE FROM runs WHERE id = ?", [run_id])
        return run

    def live_runs(self) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in LIVE_STATUSES)
        return self.query(f"SELECT * FROM runs WHERE status IN ({marks})", LIVE_STATUSES)

    def delete_runs(self, run_ids: Iterable[int]) -> None:
        ids = list(run_ids)
        marks = ", ".join("?" for _ in ids)
        with self.write_transaction() as connection:
            connection.execute(f"DELETE FROM metrics WHERE run_id IN ({marks})", ids)
            connection.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids)

    # Metrics

    def epoch_table(self, run_id: int) -> list[dict[str, Any]]:
        """One row per epoch: train/val loss and accuracy, learning rate, seconds."""
        rows = self.query(
            "SELECT epoch, split, name, value FROM metrics "
            "WHERE run_id = ? AND split IN ('train', 'val', 'epoch') ORDER BY epoch",
            [run_id],
        )
        table: dict[int, dict[str, Any]] = {}
        for row in rows:
            entry = table.setdefault(row["epoch"], {"epoch": row["epoch"]})
            key = row["name"] if row["split"] == "epoch" else f"{row['split']}_{row['name']}"
            entry[key] = row["value"]
        return [table[epoch] for epoch in sorted(table)]

    def metric_series(self, run_id: int, split: str, name: str) -> list[tuple[int, float]]:
        rows = self.query(
            "SELECT epoch, step, value FROM metrics WHERE run_id = ? AND split = ? AND name = ? "
            "ORDER BY seq",
            [run_id, split, name],
        )
        return [(row["step"] if split == "step" else row["epoch"], row["value"]) for row in rows]

    # Events

    def apply(self, run_id: int, events: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
        """Apply events read up to byte `offset` of the run's events file, in one transaction.

        Events at or below the run's last applied sequence number are skipped, so applying
        the same events twice (two followers, or a follower restarted) changes nothing.
        Returns the events that were new.
        """
        with self.write_transaction() as connection:
            run = self.run(run_id)
            if run is None:
                return []
            fresh = [e for e in events if e["seq"] > (run["last_seq"] or 0)]
            metrics: list[tuple[Any, ...]] = []
            summary: dict[str, Any] = {}
            for event in fresh:
                resumed_from = event.get("resumed_from_epoch") if event["type"] == ev.STARTED else 0
                if resumed_from:
                    # What the run wrote after its last checkpoint is done again: drop it.
                    metrics = [row for row in metrics if row[2] is None or row[2] <= resumed_from]
                    connection.execute(
                        "DELETE FROM metrics WHERE run_id = ? AND epoch > ?", (run_id, resumed_from)
                    )
                metrics.extend(_metric_rows(run_id, event))
                summary.update(_summary_changes(event, {**run, **summary}))
            connection.executemany(
                "INSERT OR IGNORE INTO metrics (run_id, seq, epoch, step, split, name, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                metrics,
            )
            summary["events_offset"] = offset
            if fresh:
                summary["last_seq"] = fresh[-1]["seq"]
                summary["last_event_at"] = fresh[-1]["t"]
            assignments = ", ".join(f"{column} = ?" for column in summary)
            connection.execute(
                f"UPDATE runs SET {assignments} WHERE id = ?", [*summary.values(), run_id]
            )
        return fresh


def waits_in_queue(run: dict[str, Any]) -> bool:
    """Whether a run waits in the queue: queued, and no worker has taken it."""
    return run["status"] == "queued" and run["queue_position"] is not None


def stalled_for(run: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds a running run has been silent, where that is long enough to call it stalled
    (its engine lives but writes nothing, not even a heartbeat); else None."""
    if run["status"] != "running":
        return None
    since = run.get("last_event_at") or run.get("created_at")
    silent = (now or time.time()) - since if since else 0.0
    return silent if silent >= ev.STALL_AFTER_S else None


def _metric_rows(run_id: int, event: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(run_id, seq, epoch, step, split, name, value) rows of one event."""
    seq, epoch = event["seq"], event.get("epoch")
    if event["type"] == ev.PROGRESS:
        return [(run_id, seq, epoch, event["global_step"], "step", "loss", event["loss"])]
    if event["type"] != ev.EPOCH_ENDED:
        return []
    rows = [
        (run_id, seq, epoch, None, split, name, event[f"{split}_{name}"])
        for split in ("train", "val")
        for name in ("loss", "acc")
    ]
    for name in ("ce_loss", "kd_loss"):  # the parts of a distilled run's loss
        if f"train_{name}" in event:
            rows.append((run_id, seq, epoch, None, "train", name, event[f"train_{name}"]))
    rows.append((run_id, seq, epoch, None, "epoch", "seconds", event["seconds"]))
    for group, lr in event.get("lr", {}).items():
        rows.append((run_id, seq, epoch, None, "epoch", f"lr/{group}", lr))
    return rows


def _summary_changes(event: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The `runs` columns an event changes, given the run's columns so far."""
    kind = event["type"]
    if kind == ev.STARTED:
        info = {k: v for k, v in event.items() if k not in ("seq", "t", "type")}
        changes = {
            "status": "running",
            "engine_info": json.dumps(info),
            "pid": event.get("pid", run.get("pid")),
            "ended_at": None,
            "error": None,
        }
        if event.get("resumed_from_epoch"):
            changes["epochs_done"] = event["resumed_from_epoch"]
            changes["best_val_acc"] = event.get("best_val_acc")
        else:
            changes["started_at"] = event["t"]
        return changes
    if kind == ev.EPOCH_ENDED:
        best = run.get("best_val_acc")
        return {
            "epochs_done": event["epoch"],
            "best_val_acc": event["val_acc"] if best is None else max(best, event["val_acc"]),
            "seconds": event["elapsed"],
        }
    if kind == ev.FINISHED:
        test = event.get("test") or {}
        changes = {
            "status": event["status"],
            "ended_at": event["t"],
            "best_val_acc": event.get("best_val_acc"),
            "test_acc": test.get("top1"),
            "test_top5": test.get("top5"),
            "test_report": json.dumps(test) if test else None,
            "seconds": event.get("seconds"),
        }
        if event.get("fusion"):  # what an ensemble or soup chose: members kept, an alpha
            recipe = json.loads(run.get("recipe") or "{}")
            changes["recipe"] = json.dumps({**recipe, "outcome": event["fusion"]})
        return changes
    if kind == ev.ERROR:
        error = {k: event.get(k) for k in ("kind", "message", "hint")}
        return {"status": "failed", "ended_at": event["t"], "error": json.dumps(error)}
    return {}
