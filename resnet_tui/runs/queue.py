"""The queue of runs waiting for a worker: places in line, taken by one worker each.

A queued run waits with status `queued` and a place (`queue_position`); a worker takes the
first in one write, so two workers never take one run. Moving is a single write that refuses
a run a worker took meanwhile; cancelling is deleting a run seen queued (`removal.py`).
"""

from resnet_tui.runs.model import Run
from resnet_tui.runs.store import RunStore, next_revision


class RunQueue:
    """The queue of one store."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def enqueue(self, run_ids: list[int], sweep: bool = True) -> int | None:
        """Put created runs at the queue's end, in order, as one sweep where `sweep`; returns
        the sweep's number. They wait until a worker takes them (`take_next`)."""
        with self.store.write_transaction() as connection:
            last, group = connection.execute(
                "SELECT max(queue_position), max(sweep) FROM runs"
            ).fetchone()
            # a search keeps its number though every trial of it be deleted
            searched = connection.execute("SELECT max(sweep) FROM searches").fetchone()[0]
            group = max(group or 0, searched or 0)
            group = group + 1 if sweep else None
            revision = next_revision(connection)
            for place, run_id in enumerate(run_ids, start=1):
                connection.execute(
                    "UPDATE runs SET queue_position = ?, sweep = ?, revision = ? WHERE id = ?",
                    [(last or 0) + place, group, revision, run_id],
                )
        return group

    def waiting(self) -> list[Run]:
        """The queue, first in line first."""
        return self.store.runs_where(
            "WHERE status = 'queued' AND queue_position IS NOT NULL ORDER BY queue_position, id"
        )

    def take_next(self, pid: int, among: list[int] | None = None) -> Run | None:
        """Take the first queued run (of the runs `among`, where given) for worker `pid`
        (status `running`, out of the queue), atomically; None when none waits."""
        only = f" AND id IN ({', '.join('?' for _ in among)})" if among is not None else ""
        with self.store.write_transaction() as connection:
            row = connection.execute(
                "SELECT id FROM runs WHERE status = 'queued' AND queue_position IS NOT NULL"
                f"{only} ORDER BY queue_position, id LIMIT 1",
                among or [],
            ).fetchone()
            if row is None:
                return None
            connection.execute(
                "UPDATE runs SET status = 'running', queue_position = NULL, pid = ?, "
                "revision = ? WHERE id = ?",
                [pid, next_revision(connection), row[0]],
            )
        return self.store.run(row[0])

    def move_to_front(self, run_id: int) -> bool:
        """Put a queued run first in line; False where it is not in the queue (any more)."""
        with self.store.write_transaction() as connection:
            first = connection.execute("SELECT min(queue_position) FROM runs").fetchone()[0]
            moved = connection.execute(
                "UPDATE runs SET queue_position = ?, revision = ? "
                "WHERE id = ? AND status = 'queued' AND queue_position IS NOT NULL",
                [(first or 1) - 1, next_revision(connection), run_id],
            ).rowcount
        return moved > 0

    def move(self, run_id: int, step: int) -> bool:
        """Move a queued run one place toward the front (`step` -1) or the back (+1), swapping
        places with its neighbour in one write, so a worker taking runs meanwhile sees either
        order, never a mix. False where the run is not in the queue (a worker took it, say)
        or is at that end of it already. Places are never shared (`enqueue` and
        `move_to_front` make new ones under the write lock; a swap keeps them), so a swap
        always changes the order."""
        if step not in (-1, 1):
            raise ValueError("a queued run moves one place: step -1 (forward) or 1 (back)")
        with self.store.write_transaction() as connection:
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
            revision = next_revision(connection)
            for run, new_place in ((run_id, neighbour[1]), (neighbour[0], place)):
                connection.execute(
                    "UPDATE runs SET queue_position = ?, revision = ? WHERE id = ?",
                    [new_place, revision, run],
                )
        return True
