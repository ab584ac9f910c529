"""The run store: every run and its metrics in one SQLite file (`runs.db`), and every write.

WAL journal and a busy timeout let supervisors and viewers share the file. Everyday reads
and writes are parameterised SQL on the standard library's sqlite3 (sqlite-utils, which
builds the tables in schema.py, loads numpy: a quarter of a second no start should pay).
Rows come out as `Run` values. Every change bumps the store's revision, so a viewer asks
for what changed since it last looked (`changes_since`) instead of reading everything.
"""

import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.runs import identity, metrics, queries
from resnet_tui.runs.identity import StoreError
from resnet_tui.runs.labels import check_label
from resnet_tui.runs.model import LIVE_STATUSES, Run
from resnet_tui.runs.ownership import LOCK_FILE, supervised
from resnet_tui.runs.schema import MIGRATIONS, SCHEMA_VERSION
from resnet_tui.runs.state import RunState

LARGEST_ID = 2**63 - 1  # SQLite's largest integer: an id beyond it names no run
# The columns of `runs` that code may set, and sort by.
RUN_COLUMNS = (
    *("id", "name", "kind", "status", "created_at", "started_at", "ended_at", "arch"),
    *("dataset", "init", "freeze", "device", "spec", "pid", "host", "run_dir"),
    *("events_offset", "last_seq", "epochs", "epochs_done", "best_val_acc", "test_acc"),
    *("test_top5", "seconds", "engine_info", "test_report", "error", "notes", "tags"),
    *("recipe", "last_event_at", "sweep", "queue_position", "setting", "fold"),
)
SORTABLE = RUN_COLUMNS


@dataclass
class StoreChanges:
    """What changed in the store since a revision: runs added or changed, runs deleted."""

    runs: list[Run]
    deleted: list[int]
    revision: int


def default_db_path() -> Path:
    """$RESNET_TUI_DB, else runs.db in the working directory."""
    return Path(os.environ.get("RESNET_TUI_DB") or "runs.db")


class RunStore:
    """The runs of one `runs.db`, with their folders in `runs/` beside it."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        creating = identity.check_file(self.path)
        real = self.path.resolve()  # a link to a store is that store, beside its run folders
        connection, version = identity.open_store_file(self.path, SCHEMA_VERSION)
        self.connection = connection
        try:
            if version < SCHEMA_VERSION:
                self._migrate()
            self.identity = identity.read_identity(connection)
            if identity.named_anew(self.identity, real):  # copied, or renamed
                with self.write_transaction() as writing:
                    self.identity = identity.after_a_new_name(writing, real)
        except sqlite3.DatabaseError as error:
            connection.close()
            raise StoreError(identity.describe_database_error(self.path, error)) from None
        if creating:
            os.chmod(self.path, 0o600)
        identity.tighten_permissions(self.path)
        self.home = real.parent
        self.runs_dir = self.home / self.identity.runs_folder

    def _migrate(self) -> None:
        """Bring the schema forward under a write lock, so two processes migrate it once."""
        with self.write_transaction() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            for index in range(version, SCHEMA_VERSION):
                MIGRATIONS[index](connection)
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

    def runs_where(self, condition: str = "", args: Iterable[Any] = ()) -> list[Run]:
        """The runs matching an SQL condition (with its ORDER BY and LIMIT), as `Run`s."""
        rows = self.connection.execute(f"{queries.SELECT_RUNS} {condition}", list(args))
        return [Run.from_row(row, self.home) for row in rows]

    # Writing runs

    def create_run(
        self,
        spec: RunSpec,
        status: str = "queued",
        parents: list[int] | None = None,
        teachers: list[int] | None = None,
        kind: str = "train",
        recipe: str | None = None,
        setting: str | None = None,
    ) -> int:
        """Add a run for `spec` and make its folder; returns the run id.

        `parents` are the runs its weights come from (its lineage: the `--init` run, or the
        members of an ensemble or soup), `teachers` the runs it was distilled from. A fused
        run (`kind` ensemble, soup or wise-ft) keeps how it was made in `recipe`. A run of
        a sweep is made with its `setting` (what its folds share); its fold is the spec's.
        """
        record = {
            "name": check_label(spec.display_name, "name"),
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
            "recipe": recipe,
            "setting": setting,
            "fold": spec.fold,
        }
        with self.write_transaction() as connection:
            record["revision"] = next_revision(connection)
            # Ids are never given twice, not even the id of a deleted run: a departing
            # supervisor, an open screen or a folder left behind may still name it.
            record["id"] = connection.execute(
                "SELECT max(coalesce((SELECT max(id) FROM runs), 0), "
                "coalesce((SELECT max(run_id) FROM deleted_runs), 0)) + 1"
            ).fetchone()[0]
            columns = ", ".join(record)
            marks = ", ".join("?" for _ in record)
            cursor = connection.execute(
                f"INSERT INTO runs ({columns}) VALUES ({marks})", list(record.values())
            )
            run_id = cursor.lastrowid
            assert run_id is not None
            for role, sources in (("parent", parents or []), ("teacher", teachers or [])):
                connection.executemany(
                    "INSERT INTO run_sources VALUES (?, ?, ?, ?)",
                    [(run_id, source, role, position) for position, source in enumerate(sources)],
                )
            # In the write that adds the run (a folder that cannot be made leaves no row), kept
            # relative to the store, so the two move together.
            run_dir = identity.make_run_folder(self.runs_dir, run_id, self.identity.store_id)
            (run_dir / LOCK_FILE).touch(mode=0o600)  # the run's lock, for whoever runs it
            relative = str(run_dir.relative_to(self.home))
            connection.execute("UPDATE runs SET run_dir = ? WHERE id = ?", [relative, run_id])
        return run_id

    def update(self, run_id: int, **values: Any) -> None:
        """Set columns of one run (column names come from code, never from users)."""
        unknown = set(values) - set(RUN_COLUMNS)
        if unknown:
            raise ValueError(f"no run columns {sorted(unknown)}")
        assignments = "".join(f"{column} = ?, " for column in values)
        with self.write_transaction() as connection:
            connection.execute(
                f"UPDATE runs SET {assignments}revision = ? WHERE id = ?",
                [*values.values(), next_revision(connection), run_id],
            )

    def edit(self, run_id: int, name: str, tags: str, notes: str) -> None:
        """A user's rename, tags and notes for a run (LabelError where one is unfit)."""
        labels = {
            what: check_label(text, what)
            for what, text in (("name", name), ("tags", tags), ("notes", notes))
        }
        self.update(run_id, **labels)

    def delete_runs(self, run_ids: Iterable[int], queued: Iterable[int] = ()) -> list[Run]:
        """Take runs out of the store, with their metrics, lineage rows and folders; returns
        the runs deleted. Decided inside the write, so nothing starts between the look and the
        delete: a running run (one resumed meanwhile, say) stays, and so does a run of `queued`
        (seen waiting in the queue) that a worker took. See `removal.delete_runs`."""
        ids, waiting = list(run_ids), set(queued)
        with self.write_transaction() as connection:
            found = self.runs_where(queries.id_in(ids), ids)
            gone = [run for run in found if _may_go(run, run.id in waiting)]
            if gone:  # rows first, inside the write; folders after it
                gone_ids, revision = [run.id for run in gone], next_revision(connection)
                marks = ", ".join("?" for _ in gone)
                connection.execute(f"DELETE FROM metrics WHERE run_id IN ({marks})", gone_ids)
                connection.execute(f"DELETE FROM run_sources WHERE run_id IN ({marks})", gone_ids)
                connection.execute(f"DELETE FROM runs WHERE id IN ({marks})", gone_ids)
                connection.executemany(
                    "INSERT OR REPLACE INTO deleted_runs VALUES (?, ?)",
                    [(run_id, revision) for run_id in gone_ids],
                )
        for run in gone:
            self.remove_folder(run.folder)
        return gone

    def folder_of(self, run_id: int) -> Path:
        """Where a new run of this store keeps its files: `runs/<id>/` beside `runs.db`
        (`<name>-runs/<id>/` beside any other name; see identity.py)."""
        return self.runs_dir / str(run_id)

    def owns_folder(self, folder: Path) -> bool:
        """Whether a run folder is this store's: it holds this store's id (a folder of
        another store, or of the store this one was copied from, is not)."""
        return identity.folder_owner(folder) == self.identity.store_id

    def remove_folder(self, folder: Path) -> None:
        """Remove a run's folder, if it is this store's and a run folder (named by its id);
        a folder named by a damaged or forged row, or another store's, is never touched."""
        if folder.name.isdigit() and not folder.is_symlink() and self.owns_folder(folder):
            shutil.rmtree(folder, ignore_errors=True)

    def record(self, run_id: int, state: RunState, fresh: list[Any], offset: int) -> None:
        """Keep a run's row as its events tell it: the metric rows of the `fresh` events (read
        up to byte `offset` of its events file) and the summary columns of `state`, all the
        events so far, in one transaction.

        Idempotent on (run, seq): events applied twice add nothing, and a follower that is
        behind another never takes the summary back. The status changes only with a batch
        that holds a start or an end, so a run marked crashed stays so until it starts again.
        """
        with self.write_transaction() as connection:
            run = self.run(run_id)
            if run is None:
                return
            metrics.write_rows(connection, run_id, state, fresh)
            changes: dict[str, Any] = {"events_offset": max(offset, run.events_offset)}
            if state.last_seq >= run.last_seq:
                changes.update(metrics.summary_columns(state, run.recipe))
            if any(metrics.is_lifecycle(event) for event in fresh):
                changes.update(metrics.lifecycle_columns(state))
            assignments = "".join(f"{column} = ?, " for column in changes)
            connection.execute(
                f"UPDATE runs SET {assignments}revision = ? WHERE id = ?",
                [*changes.values(), next_revision(connection), run_id],
            )

    def mark_launched(self, run_id: int, pid: int) -> None:
        """A run whose supervisor (`pid`) just started: running from now on."""
        self.update(
            run_id,
            status="running",
            pid=pid,
            host=socket.gethostname(),
            ended_at=None,
            error=None,
            last_event_at=time.time(),
        )

    def record_end(self, run_id: int, status: str, kind: str, message: str, hint: str) -> ev.Error:
        """A run's end that its events do not tell: the engine died (`crashed`) or never
        started (`failed`), kept as an error of `kind`, as an engine's own would be; returns
        it."""
        error = ev.Error(seq=1, t=time.time(), kind=kind, message=message, hint=hint)
        self.update(run_id, status=status, ended_at=error.t, error=json.dumps(error.to_dict()))
        return error

    # Reading runs

    def run(self, run_id: int) -> Run | None:
        if not 0 < run_id <= LARGEST_ID:
            return None
        runs = self.runs_where("WHERE id = ?", [run_id])
        return runs[0] if runs else None

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
    ) -> list[Run]:
        """Runs matching the filters, sorted in SQL (only known column names are accepted).

        `text` keeps runs with it in their id, name, status, arch, dataset, init or policy;
        `from:N` keeps the runs made from run N, and `sweep:N` the runs of sweep N.
        """
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by '{sort}'; choose one of {', '.join(SORTABLE)}")
        where, args = queries.filters(status, arch, dataset, text)
        direction = "DESC" if descending else "ASC"
        if sort == "id":  # never NULL; sorted by the primary key alone, SQLite needs no sort
            order = f" ORDER BY id {direction}"
        else:
            order = f" ORDER BY {sort} IS NULL, {sort} {direction}, id {direction}"
        if limit is not None:
            order += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return self.runs_where(where + order, args)

    def count_runs(
        self,
        status: str | None = None,
        arch: str | None = None,
        dataset: str | None = None,
        text: str | None = None,
    ) -> int:
        where, args = queries.filters(status, arch, dataset, text)
        return self.connection.execute("SELECT count(*) FROM runs" + where, args).fetchone()[0]

    def lineage(self, run_id: int) -> list[Run]:
        """The runs `run_id` started from, nearest first, following each first parent."""
        chain: list[Run] = []
        run = self.run(run_id)
        while run is not None and run.parents:
            parent = self.run(run.parents[0])
            if parent is None or any(r.id == parent.id for r in chain):
                break
            chain.append(parent)
            run = parent
        return chain

    def live_runs(self) -> list[Run]:
        marks = ", ".join("?" for _ in LIVE_STATUSES)
        return self.runs_where(f"WHERE status IN ({marks}) ORDER BY id", LIVE_STATUSES)

    def sweep_runs(self, sweep: int) -> list[Run]:
        """The runs of one sweep, in the order they were made."""
        if not 0 < sweep <= LARGEST_ID:
            return []
        return self.runs_where("WHERE sweep = ? ORDER BY id", [sweep])

    def revision(self) -> int:
        return self.connection.execute("SELECT value FROM store_revision").fetchone()[0]

    def changes_since(self, revision: int) -> StoreChanges:
        """The runs made or changed, and the ids of runs deleted, after `revision`: one
        consistent look (a read transaction), through the revision indexes."""
        self.connection.execute("BEGIN")
        try:
            now = self.revision()
            if now == revision:
                return StoreChanges([], [], now)
            runs = self.runs_where("WHERE revision > ? ORDER BY id", [revision])
            deleted = self.connection.execute(
                "SELECT run_id FROM deleted_runs WHERE revision > ?", [revision]
            )
            return StoreChanges(runs, [row[0] for row in deleted], now)
        finally:
            self.connection.execute("COMMIT")

    def epoch_table(self, run_id: int) -> list[dict[str, Any]]:
        """One row per epoch: train/val loss and accuracy, learning rate, seconds."""
        return metrics.epoch_table(self.connection, run_id)

    def metric_series(self, run_id: int, split: str, name: str) -> list[tuple[int, float]]:
        return metrics.series(self.connection, run_id, split, name)


def next_revision(connection: sqlite3.Connection) -> int:
    """A new revision number for a change (inside its write transaction)."""
    row = connection.execute("UPDATE store_revision SET value = value + 1 RETURNING value")
    return row.fetchone()[0]


def _may_go(run: Run, seen_queued: bool) -> bool:
    """Seen queued: only while it waits still; else only while not running (by its status,
    or a process holding its lock)."""
    if seen_queued:
        return run.waits_in_queue
    return run.status != "running" and not supervised(run.folder)
