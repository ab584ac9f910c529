"""The SQL that finds runs: the columns every read takes, and the filters of a listing."""

import re
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
    """The WHERE clause of a listing, and its arguments (never user text in the SQL)."""
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
        where.append("id IN (SELECT run_id FROM run_sources WHERE source_id = ?)")
        args.append(int(lineage.group(1)))
    elif text:
        where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in _SEARCHED) + ")")
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args += [f"%{escaped}%"] * len(_SEARCHED)
    return (" WHERE " + " AND ".join(where) if where else ""), args


# The columns a filter's text is looked for in.
_SEARCHED = (
    *("CAST(id AS TEXT)", "name", "status", "arch", "dataset", "init", "freeze", "kind"),
    "tags",
)


def id_in(ids: list[int]) -> str:
    return f"WHERE id IN ({', '.join('?' for _ in ids)})"
