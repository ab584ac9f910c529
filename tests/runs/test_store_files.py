"""The run store's files: migrations from every older schema, and files that are no store of
ours (not SQLite, a newer schema, read-only), refused and left alone."""

import sqlite3

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.runs.schema import MIGRATIONS, SCHEMA_VERSION
from resnet_tui.runs.store import RunStore, StoreError
from tests.runs.old_stores import (
    back_to_version_five,
    back_to_version_four,
    back_to_version_one,
    back_to_version_three,
)

# Migrations


def _schema(connection: sqlite3.Connection) -> tuple[list[tuple[str, str]], list[str]]:
    """A store's tables with their columns, and its indexes (SQLite's own left out)."""
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    columns = sorted(
        (table, column[1])
        for table in tables
        for column in connection.execute(f"PRAGMA table_info({table})")
    )
    indexes = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' "
            "AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name"
        )
    ]
    return columns, indexes


@pytest.mark.parametrize(
    "version, back",
    [
        (1, back_to_version_one),
        (3, back_to_version_three),
        (4, back_to_version_four),
        (5, back_to_version_five),
    ],
)
def test_the_old_stores_of_the_tests_have_the_tables_of_their_version(tmp_path, version, back):
    made = sqlite3.connect(tmp_path / "made.db", isolation_level=None)
    for migrate in MIGRATIONS[:version]:
        migrate(made)
    path = tmp_path / "runs.db"
    RunStore(path).close()
    back(path)
    taken_back = sqlite3.connect(path)
    assert taken_back.execute("PRAGMA user_version").fetchone()[0] == version
    assert _schema(taken_back) == _schema(made)
    taken_back.close()
    made.close()


def _old_run(db: sqlite3.Connection, name: str, **columns: object) -> None:
    values = {"name": name, "status": "completed", "kind": "train", "spec": "{}", **columns}
    marks = ", ".join("?" for _ in values)
    db.execute(f"INSERT INTO runs ({', '.join(values)}) VALUES ({marks})", list(values.values()))


def test_a_version_three_store_keeps_its_lineage_and_gains_settings_and_folds(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path).close()
    back_to_version_three(path)
    with sqlite3.connect(path) as db:
        _old_run(db, "root", parents="[]", teachers="[]")  # 1
        _old_run(db, "child", parents="[1]", teachers="[]")  # 2
        _old_run(db, "student", parents="[2]", teachers="[1]")  # 3
        _old_run(db, "soup", kind="soup", parents="[3, 2]", teachers="[]")  # 4
        _old_run(db, "x fold 2/3", spec='{"folds": 3, "fold": 1}', sweep=1, parents="[]")  # 5
        _old_run(db, "lr=0.1", spec='{"lr": 0.1}', sweep=2, parents="[]")  # 6: no folds
    db.close()

    store = RunStore(path)
    assert store.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [r.id for r in store.lineage(3)] == [2, 1]
    assert [r.id for r in store.lineage(4)] == [3, 2, 1]
    assert store.run(4).parents == (3, 2) and store.run(3).teachers == (1,)
    assert [r.id for r in store.list_runs(text="from:1")] == [3, 2]
    assert [r.id for r in store.list_runs(text="from:2")] == [4, 3]
    assert [r.id for r in store.list_runs(text="from:3")] == [4]
    fold = store.run(5)
    assert (fold.name, fold.setting, fold.fold, fold.sweep) == ("x fold 2/3", "x", 1, 1)
    unfolded = store.run(6)
    assert (unfolded.setting, unfolded.fold) == ("lr=0.1", None)
    assert (store.run(1).setting, store.run(1).fold) == (None, None)  # not of a sweep
    migrated = store.revision()
    assert store.changes_since(migrated).runs == []
    made = store.create_run(RunSpec(), parents=[4])  # and the store goes on as a new one
    assert [r.id for r in store.lineage(made)] == [4, 3, 2, 1]
    assert [r.id for r in store.changes_since(migrated).runs] == [made]
    store.close()


@pytest.mark.parametrize("damaged", ["not json", '{"not": "a list"}', None])
def test_a_version_three_row_with_damaged_lineage_still_migrates(tmp_path, damaged):
    path = tmp_path / "runs.db"
    RunStore(path).close()
    back_to_version_three(path)
    with sqlite3.connect(path) as db:
        _old_run(db, "root", parents="[]", teachers="[]")
        _old_run(db, "damaged", parents=damaged, teachers=damaged)
        _old_run(db, "child", parents="[1]", teachers="[]")
    db.close()
    store = RunStore(path)
    assert store.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [r.name for r in store.list_runs()] == ["child", "damaged", "root"]
    assert (store.run(2).parents, store.run(2).teachers) == ((), ())
    assert [r.id for r in store.lineage(3)] == [1]
    store.close()


def test_lineage_made_by_this_version_survives_a_trip_back_to_version_one(tmp_path):
    path = tmp_path / "runs.db"
    store = RunStore(path)
    root = store.create_run(RunSpec())
    child = store.create_run(RunSpec(), parents=[root])
    soup = store.create_run(RunSpec(), parents=[child, root], kind="soup")
    store.close()
    back_to_version_one(path)
    store = RunStore(path)
    assert [r.id for r in store.lineage(soup)] == [child, root]
    assert store.run(soup).parents == (child, root)
    assert [r.id for r in store.list_runs(text=f"from:{root}")] == [soup, child]
    store.close()


# Files that are no store of ours


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a resnet-tui run store"):
        RunStore(path)
    assert path.read_bytes() == before


def test_a_store_from_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(StoreError, match="newer resnet-tui"):
        RunStore(path)


def test_a_read_only_store_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path).close()
    path.chmod(0o400)
    with pytest.raises(StoreError, match="read-only"):
        RunStore(path)
