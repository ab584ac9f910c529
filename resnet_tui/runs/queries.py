"""The SQL that finds runs: the columns every read takes, and the filters of a listing."""

import re
import shlex
from typing import Any

# Every read of runs: their columns and their lineage (the primary key of run_sources keeps
# each list in the order it was given).
SELECT_RUNS = (
    "SELECT runs.*, "
    "(SELECT group_concat(source_id) FROM run_sources "
    " WHERE run_id = runs.id AND role = 'parent') AS parent_ids, "
    "(SELECT group_concat(source_id) FROM run_sources "
    " WHERE run_id = runs.id AND role = 'teacher') AS teacher_ids "
    "FROM runs"
)


def filters(
    status: str | None, arch: str | None, dataset: str | None, text: str | None
) -> tuple[str, list[Any]]:
    """The WHERE clause of a listing, and its arguments (never user text in the SQL).

    `text` is terms, all of which a run must match (quotes keep words together): `from:N`
    (made from run N), `sweep:N`, `status:`, `arch:`, `dataset:`, `name:` or `tag:` with a
    value, `acc>90` or `val>=85` (test or best val accuracy, in percent; < <= > >=), and
    any other word, looked for in the id, name, status, arch, dataset, init, freeze
    policy, kind and tags.
    """
    where, args = [], []
    for column, value in (("status", status), ("arch", arch), ("dataset", dataset)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    for term in _terms(text or ""):
        condition, values = _term_condition(term)
        where.append(condition)
        args += values
    return (" WHERE " + " AND ".join(where) if where else ""), args


# A pasted page is no filter: SQLite refuses an expression over 1,000 deep and a LIKE
# pattern over 50,000 bytes, so only the first terms, cut short, are looked for.
MOST_TERMS = 32
MOST_TERM_CHARS = 500


def _terms(text: str) -> list[str]:
    """The words of a filter, a quoted phrase as one (an unclosed quote: plain words): the
    first MOST_TERMS of them, each cut to MOST_TERM_CHARS."""
    try:
        terms = [term for term in shlex.split(text) if term]
    except ValueError:
        terms = text.split()
    return [term[:MOST_TERM_CHARS] for term in terms[:MOST_TERMS]]


_COMPARED = {"acc": "test_acc", "val": "best_val_acc"}
_KEYED = {"status": "status", "arch": "arch", "dataset": "dataset", "name": "name", "tag": "tags"}
_COMPARISON = re.compile(r"(acc|val)(<=|>=|<|>)(\d+(?:\.\d+)?)")


FILTER_KEYS = ("status:", "arch:", "dataset:", "name:", "tag:", "sweep:", "from:")


def unknown_keys(text: str) -> list[str]:
    """The `key:` words of a filter that are no key it knows (`stauts:`), looked for as plain
    words: a reason a filter may match nothing."""
    keys = [term.partition(":")[0] for term in _terms(text) if ":" in term.strip(":")]
    return [f"{key}:" for key in keys if f"{key}:" not in FILTER_KEYS]


def _term_condition(term: str) -> tuple[str, list[Any]]:
    """One term's condition, with its arguments."""
    if number := re.fullmatch(r"(from|sweep):(\d{1,18})", term):
        value = int(number.group(2))
        if number.group(1) == "sweep":  # the runs of sweep N, found through its index
            return "sweep = ?", [value]
        # runs made from run N: N is among their parents or teachers
        return "id IN (SELECT run_id FROM run_sources WHERE source_id = ?)", [value]
    if compared := _COMPARISON.fullmatch(term):
        name, operator, percent = compared.groups()
        return f"{_COMPARED[name]} {operator} ?", [float(percent) / 100]
    key, _, value = term.partition(":")
    if key in _KEYED and value:
        return f"{_KEYED[key]} LIKE ? ESCAPE '\\'", [f"%{_escaped(value)}%"]
    searched = " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for column in _SEARCHED)
    return f"({searched})", [f"%{_escaped(term)}%"] * len(_SEARCHED)


def _escaped(text: str) -> str:
    """`text` for LIKE, its wildcards taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The columns a filter's text is looked for in.
_SEARCHED = (
    *("CAST(id AS TEXT)", "name", "status", "arch", "dataset", "init", "freeze", "kind"),
    "tags",
)


def id_in(ids: list[int]) -> str:
    return f"WHERE id IN ({', '.join('?' for _ in ids)})"
