"""Whose files are whose: databases that are not run stores are refused untouched, each store
keeps its run folders to itself (two stores in one folder, a copy of a store), and the
store's files are its owner's alone."""

import hashlib
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.contract.spec import RunSpec, SpecError
from resnet_tui.runs import identity, launcher
from resnet_tui.runs.identity import STORE_MARK
from resnet_tui.runs.store import RunStore, StoreError
from tests.cli.command import TINY, invoke, runs_json
from tests.conftest import record_fault

FOREIGN = "foreign files and shared folders: refused, untouched, one line"
SPEC = RunSpec.from_dict({"arch": "resnet8", "width": 4, "image_size": 16, "device": "cpu"})


def _sqlite(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


def _damaged_store(path: Path) -> None:
    """A store of ours with a page of its tables overwritten."""
    store = RunStore(path)
    for _ in range(30):
        store.create_run(SPEC)
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray(path.read_bytes())
    data[4096 : 4096 * 2] = b"\xa5" * 4096
    path.write_bytes(bytes(data))


# Each: how the file is made, and what the one line says.
NOT_STORES: list[tuple[str, Callable[[Path], None], str]] = [
    ("text", lambda p: p.write_text("notes\n" * 100), "not a resnet-tui run store"),
    ("another program's tables", lambda p: _sqlite(p, "CREATE TABLE notes (x)"), "of another"),
    (
        "a runs table of another program",
        lambda p: _sqlite(p, "CREATE TABLE runs (a, b)"),
        "of another program",
    ),
    (
        "a runs table, a version number",
        lambda p: _sqlite(p, "CREATE TABLE runs (a, b)", "PRAGMA user_version = 3"),
        "its `runs` table is not ours",
    ),
    (
        "an identity of another program",
        lambda p: _sqlite(
            p,
            "CREATE TABLE runs (id, name, status, spec, run_dir, events_offset, last_seq)",
            "CREATE TABLE store_info (app, store_id, runs_folder, device, inode)",
            "INSERT INTO store_info VALUES ('other', 'x', 'runs', 0, 0)",
            "PRAGMA user_version = 5",
        ),
        "not a resnet-tui run store",
    ),
    ("random bytes", lambda p: p.write_bytes(bytes(range(256)) * 64), "not a resnet-tui"),
    ("a damaged page", _damaged_store, "is damaged"),
]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "make, message", [c[1:] for c in NOT_STORES], ids=[c[0] for c in NOT_STORES]
)
def test_a_database_that_is_no_run_store_is_refused_and_left_as_it_was(tmp_path, make, message):
    path = tmp_path / "their.db"
    make(path)
    before, files = _digest(path), sorted(tmp_path.iterdir())
    results = [
        invoke(*command, "--db", str(path), cwd=tmp_path)
        for command in (["runs"], ["run", *TINY], ["rm", "1", "--yes"])
    ]
    for result in results:
        lines = result.stderr.strip().splitlines()
        survived = result.returncode == 2 and len(lines) == 1 and message in lines[0]
        record_fault(FOREIGN, survived and "Traceback" not in result.stderr)
        assert survived, result.stderr
    assert _digest(path) == before
    if make is not _damaged_store:  # a store of ours, damaged, may gain its WAL companions
        assert sorted(tmp_path.iterdir()) == files


@pytest.mark.parametrize(
    "path, message",
    [("/dev/null", "not a regular file"), (".", "is a folder"), ("/proc/version", "read-only")],
)
def test_a_path_that_is_no_file_of_ours_is_refused(tmp_path, path, message):
    result = invoke("runs", "--db", path, cwd=tmp_path)
    record_fault(FOREIGN, result.returncode == 2 and message in result.stderr)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr


def test_stores_in_one_folder_keep_their_runs_apart(tmp_path, fake_engine):
    names = ("a.db", "b.db", "runs.db", "a.sqlite", "a")
    for name in names:
        result = invoke("run", *TINY, "--db", name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    folders = [tmp_path / folder / "1" for folder in ("a.db-runs", "b.db-runs", "runs")]
    folders += [tmp_path / "a.sqlite-runs" / "1", tmp_path / "a-runs" / "1"]
    assert all((folder / "events.jsonl").exists() for folder in folders)
    assert invoke("rm", "1", "--yes", "--db", "a.db", cwd=tmp_path).returncode == 0
    kept = not folders[0].exists() and all(folder.exists() for folder in folders[1:])
    record_fault(FOREIGN, kept)
    assert kept


@pytest.mark.parametrize("how", ["the folder moved whole", "the file restored from a copy"])
def test_a_store_moved_or_restored_keeps_its_runs(tmp_path, how):
    home = tmp_path / "lab"
    home.mkdir()
    store = RunStore(home / "runs.db")
    run_id = store.create_run(SPEC, status="stopped")
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    if how == "the folder moved whole":
        home = home.rename(tmp_path / "moved")
    else:
        (home / "backup.db").write_bytes((home / "runs.db").read_bytes())
        (home / "backup.db").replace(home / "runs.db")  # a new file, of the old name
    store = RunStore(home / "runs.db")
    run = store.run(run_id)
    owned = run.folder == home / "runs" / str(run_id) and store.owns_folder(run.folder)
    store.delete_runs([run_id])
    record_fault(FOREIGN, owned and not run.folder.exists())
    assert owned and not run.folder.exists()


def test_a_copy_of_a_store_never_deletes_or_reuses_the_originals_folders(tmp_path):
    original = RunStore(tmp_path / "runs.db")
    run_id = original.create_run(SPEC)
    folder = original.run(run_id).folder
    original.close()
    (tmp_path / "copy.db").write_bytes((tmp_path / "runs.db").read_bytes())
    copy = RunStore(tmp_path / "copy.db")
    assert copy.identity.store_id != RunStore(tmp_path / "runs.db").identity.store_id
    assert not copy.owns_folder(folder)
    with pytest.raises(SpecError, match="belongs to another store"):
        launcher.start_queued(copy, copy.run(run_id), "cpu")
    assert not (folder / "spec.json").exists()  # nothing written into the original's folder
    copy.delete_runs([run_id])
    assert folder.is_dir()  # the original's run keeps its files
    made = copy.run(copy.create_run(SPEC)).folder
    assert made.parent == tmp_path / "copy.db-runs" and copy.owns_folder(made)
    record_fault(FOREIGN, folder.is_dir())


@pytest.mark.parametrize(
    "block",
    ["a file named like the runs folder", "a folder of another store where the run goes"],
)
def test_a_run_folder_that_cannot_be_made_leaves_no_row(tmp_path, block):
    if block.startswith("a file"):
        (tmp_path / "runs").write_text("mine")
        message = "is a file where this store keeps its run folders"
    else:
        (tmp_path / "runs" / "1").mkdir(parents=True)
        (tmp_path / "runs" / "1" / STORE_MARK).write_text("someone else")
        message = "is already there and is not this store's"
    result = invoke("run", *TINY, cwd=tmp_path)
    survived = result.returncode == 2 and message in result.stderr and runs_json(tmp_path) == []
    record_fault(FOREIGN, survived)
    assert survived, result.stderr
    assert invoke("rm", "1", "--yes", cwd=tmp_path).returncode == 2  # no orphan row to trip on


def test_a_store_opened_is_its_owners_alone(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path).close()
    path.chmod(0o644)
    store = RunStore(path)
    folder = store.run(store.create_run(SPEC)).folder
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / STORE_MARK).stat().st_mode) == 0o600


def test_a_store_locked_by_another_process_says_so_in_one_line(tmp_path, monkeypatch):
    RunStore(tmp_path / "runs.db").close()
    holder = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than we wait
    monkeypatch.setattr(identity, "BUSY_TIMEOUT_S", 0.2)
    try:
        result = invoke("run", *TINY, cwd=tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    survived = result.returncode == 1 and "locked by another process" in result.stderr
    record_fault(FOREIGN, survived and result.stderr.count("\n") == 1)
    assert survived, result.stderr


def test_a_store_error_met_by_a_command_is_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    RunStore(tmp_path / "runs.db").close()
    monkeypatch.setattr(RunStore, "create_run", full)
    result = invoke("run", *TINY, cwd=tmp_path)
    assert result.returncode == 1 and "disk holding the run store is full" in result.stderr
    assert result.stderr.count("\n") == 1
    with pytest.raises(StoreError, match="read-only"):
        (tmp_path / "runs.db").chmod(0o400)
        RunStore(tmp_path / "runs.db")


@pytest.mark.parametrize("link", ["a symbolic link", "a hard link"])
def test_a_store_opened_through_a_link_is_the_same_store(tmp_path, link):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run(SPEC)
    store.close()
    alias = tmp_path / "alias.db"
    if link == "a symbolic link":
        alias.symlink_to(tmp_path / "runs.db")
    else:
        alias.hardlink_to(tmp_path / "runs.db")
    through = RunStore(alias)
    same = through.identity == RunStore(tmp_path / "runs.db").identity
    through.delete_runs([run_id])
    gone = not (tmp_path / "runs" / str(run_id)).exists()
    record_fault(FOREIGN, same and gone)
    assert same and gone
