"""Which SQLite file is a run store, and which run folders belong to which store.

A store is recognised before anything is written to it: a file of another program (tables
of its own, or a `runs` table that is not ours) is refused as it is. Each store has an id
and a folder of run folders named after its file (`runs/` beside `runs.db`, `lab.db-runs/`
beside `lab.db`), so two stores in one folder never share one; every run folder holds the
id of the store that made it (`.store`), and a store deletes or writes only folders that
hold its own id. A store keeps its run folders relative to its file, so a folder moved
whole keeps working, and the name of its file: a copy beside the original (the file of
that name still there, holding the same id) takes a new id, so it never resumes into, or
deletes, the original's folders.
"""

import contextlib
import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

STORE_MARK = ".store"
APP = "resnet-tui"
# The columns the first schema gave `runs`: a `runs` table without them is not ours.
OUR_RUN_COLUMNS = {"id", "name", "status", "spec", "run_dir", "events_offset", "last_seq"}


# How long a command waits for another process's write to the store before giving up.
BUSY_TIMEOUT_S = 30


class StoreError(Exception):
    """A store that cannot be used; the message says which file and what to do."""


def _writable(path: Path) -> bool:
    """Writable for us, and not marked read-only (which root could otherwise ignore)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def check_file(path: Path) -> bool:
    """Refuse a path no store can be kept in; True where the store is to be made."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder; --db wants a runs.db file")
    if not path.exists():
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise StoreError(f"cannot create {path}: there is no folder {folder}; make it first")
        if not os.access(folder, os.W_OK):
            raise StoreError(
                f"cannot create {path}: its folder is not writable; choose another --db"
            )
        return True
    if not path.is_file():
        raise StoreError(f"{path} is not a regular file; --db wants a runs.db file")
    if not _writable(path):
        raise StoreError(f"{path} is read-only; make it writable or choose another --db")
    return False


def describe_database_error(path: Path | None, error: sqlite3.Error) -> str:
    """One line for an error of SQLite on the store at `path` (None: the store in use):
    what it means, what to do."""
    text = str(error)
    store = path or "the run store"
    if "locked" in text or "busy" in text:
        return (
            f"{store} stayed locked by another process for {BUSY_TIMEOUT_S} s; try again when "
            "it is done (a `resnet-tui` or `sqlite3` holding a write open)"
        )
    if "full" in text:
        return f"the disk holding {store} is full; free some space and try again"
    if "malformed" in text or "corrupt" in text:
        return (
            f"{store} is damaged ({text}); restore it from a backup, or recover it with "
            "`sqlite3 runs.db .recover`, or choose another --db"
        )
    if "not a database" in text or "encrypted" in text:
        return f"{store} is not a resnet-tui run store ({text}); choose another --db"
    return f"{store} cannot be used as a run store ({text}); choose another --db"


def open_store_file(path: Path, schema: int) -> tuple[sqlite3.Connection, int]:
    """A connection to the store at `path` in WAL mode, and its schema version; StoreError
    (and the file closed, unchanged) where it is not a store this resnet-tui can open."""
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreError(describe_database_error(path, error)) from None
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > schema:
            raise StoreError(
                f"{path} was written by a newer resnet-tui (schema {version}, this one knows "
                f"{schema}); upgrade resnet-tui to open it"
            )
        check_ours(connection, version, path)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")  # WAL stays consistent on a crash
    except (sqlite3.Error, StoreError) as error:
        connection.close()  # another program's file is not kept open either
        if isinstance(error, StoreError):
            raise
        raise StoreError(describe_database_error(path, error)) from None
    connection.row_factory = sqlite3.Row
    return connection, version


def is_passing_fault(error: sqlite3.Error) -> bool:
    """Whether an error of SQLite is the machine's for now (a lock held, a full disk) rather
    than the file's (damaged, not a store), which the user must see to."""
    return any(word in str(error) for word in ("locked", "busy", "full", "I/O"))


def check_ours(connection: sqlite3.Connection, version: int, path: Path) -> None:
    """Refuse a database that is not a run store, before anything is written to it.

    Version 0 with no tables is a new file, ours to make; version 0 with tables, or a
    version that lacks our `runs` table, is another program's.
    """
    tables = {
        row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if version == 0 and not tables:
        return
    if version == 0:
        shown = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
        raise StoreError(
            f"{path} is a SQLite database of another program (tables {shown}); resnet-tui "
            "leaves it as it is: choose another --db"
        )
    columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    if not columns >= OUR_RUN_COLUMNS:
        raise StoreError(
            f"{path} is a SQLite database but not a resnet-tui run store (its `runs` table is "
            "not ours); resnet-tui leaves it as it is: choose another --db"
        )
    if "store_info" in tables:
        made_by = connection.execute("SELECT app FROM store_info").fetchone()
        if made_by is None or made_by[0] != APP:
            raise StoreError(
                f"{path} is a SQLite database but not a resnet-tui run store; resnet-tui leaves "
                "it as it is: choose another --db"
            )


def runs_folder_name(path: Path) -> str:
    """The folder of a store's run folders, beside its file: `runs` for `runs.db` (as it
    always was), `<file name>-runs` for any other (`lab.db-runs`), one per file name."""
    return "runs" if path.name == "runs.db" else f"{path.name}-runs"


@dataclass(frozen=True)
class StoreIdentity:
    """A store's id, the folder its runs live in, and the name its file had when it was last
    opened (a file of another name beside it holding the same id is the original)."""

    store_id: str
    runs_folder: str
    file_name: str


def make_identity(connection: sqlite3.Connection) -> None:
    """Give a store (new, or one of schema 4 being brought forward) its identity row; keep
    its run folders relative to its file, so the two move together; mark the folders it made
    with its id where no other store has marked them. A store of schema 4 not named
    `runs.db` keeps its earlier runs in `runs/` and makes new ones in its own folder."""
    path = Path(connection.execute("PRAGMA database_list").fetchone()[2]).resolve()
    home = path.parent.resolve()
    made = StoreIdentity(uuid.uuid4().hex, runs_folder_name(path), path.name)
    connection.execute(
        "CREATE TABLE store_info (app TEXT NOT NULL, store_id TEXT NOT NULL, "
        "runs_folder TEXT NOT NULL, file_name TEXT NOT NULL)"
    )
    connection.execute(
        "INSERT INTO store_info VALUES (?, ?, ?, ?)",
        [APP, made.store_id, made.runs_folder, made.file_name],
    )
    rows = connection.execute("SELECT id, run_dir FROM runs WHERE run_dir IS NOT NULL")
    for run_id, run_dir in rows.fetchall():
        folder = Path(run_dir)
        if folder.is_relative_to(home):
            connection.execute(
                "UPDATE runs SET run_dir = ? WHERE id = ?",
                [str(folder.relative_to(home)), run_id],
            )
        if folder.is_dir() and not (folder / STORE_MARK).exists():
            with contextlib.suppress(OSError):  # a folder it cannot write stays unowned
                mark_folder(folder, made.store_id)


def read_identity(connection: sqlite3.Connection) -> StoreIdentity:
    """The identity the store keeps."""
    row = connection.execute("SELECT store_id, runs_folder, file_name FROM store_info")
    return StoreIdentity(*row.fetchone())


def named_anew(kept: StoreIdentity, path: Path) -> bool:
    """Whether the store's file (`path`, its links resolved) has another name than it had:
    not where the old name is a hard link to the same file."""
    if path.name == kept.file_name:
        return False
    try:
        return not os.path.samefile(path, path.parent / kept.file_name)
    except OSError:  # the old name is gone (renamed), or cannot be looked at
        return True


def after_a_new_name(connection: sqlite3.Connection, path: Path) -> StoreIdentity:
    """A store opened under another name than it had: a copy, where the file of its old name
    beside it holds its id (the copy takes a new id and a runs folder of its own, so the
    original's run folders stay the original's), else renamed or moved (it keeps its id)."""
    kept = read_identity(connection)
    if _same_store(path.parent / kept.file_name, kept.store_id):
        renewed = StoreIdentity(uuid.uuid4().hex, runs_folder_name(path), path.name)
    else:
        renewed = StoreIdentity(kept.store_id, kept.runs_folder, path.name)
    connection.execute(
        "UPDATE store_info SET store_id = ?, runs_folder = ?, file_name = ?",
        [renewed.store_id, renewed.runs_folder, renewed.file_name],
    )
    return renewed


def _same_store(path: Path, store_id: str) -> bool:
    """Whether the file at `path` is a store holding `store_id` (read-only; a file that
    cannot be read is taken to be the original, so a copy never claims its folders)."""
    if not path.is_file():
        return False
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            row = db.execute("SELECT store_id FROM store_info").fetchone()
    except sqlite3.Error:
        return True
    return row is not None and row[0] == store_id


def mark_folder(folder: Path, store_id: str) -> None:
    """Write the id of the store a run folder belongs to into it."""
    descriptor = os.open(folder / STORE_MARK, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(store_id)


def make_run_folder(runs_dir: Path, run_id: int, store_id: str) -> Path:
    """A new run's folder in `runs_dir`, marked as the store's; a folder already there is
    taken only if it is the store's own (left by a run whose row went)."""
    folder = runs_dir / str(run_id)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise StoreError(
            f"{runs_dir} is a file where this store keeps its run folders; move it away or "
            "choose another --db"
        )
    try:
        runs_dir.mkdir(mode=0o700, exist_ok=True)
        folder.mkdir(mode=0o700)
    except FileExistsError:
        if not folder.is_dir() or folder_owner(folder) != store_id:
            raise StoreError(
                f"{folder} is already there and is not this store's; move it away or choose "
                "another --db"
            ) from None
    except OSError as error:
        raise StoreError(
            f"cannot make the run folder {folder} ({error.strerror or error}); {runs_dir} must "
            "be a folder you can write"
        ) from None
    mark_folder(folder, store_id)
    return folder


def folder_owner(folder: Path) -> str | None:
    """The id of the store a run folder belongs to (None: no mark, or none readable)."""
    try:
        with open(folder / STORE_MARK, encoding="utf-8") as file:
            return file.read(64).strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def tighten_permissions(path: Path) -> None:
    """Make a store file of ours, and its WAL companions, readable by its owner only."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            status = name.stat()
            if status.st_uid == os.geteuid() and status.st_mode & 0o077:
                os.chmod(name, 0o600)
        except OSError:
            continue
