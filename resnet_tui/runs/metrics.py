"""A run's rows from its events: the metrics table, and the summary columns of `runs`.

The summary columns (status, epochs done, best val acc, test results, ...) are written as
events arrive, from the run's `RunState`, so listing runs never reads `metrics`.
"""

import json
import math
import sqlite3
from collections.abc import Iterator
from typing import Any

from engine.contract import events as ev
from resnet_tui.runs.state import Lifecycle, RunState

# (run_id, seq, epoch, step, split, name, value)
MetricRow = tuple[int, int, int | None, int | None, str, str, float]


def metric_rows(run_id: int, event: ev.Event) -> list[MetricRow]:
    """The metric rows of one event: a step's loss, an epoch's metrics."""
    seq = event.seq
    if isinstance(event, ev.Progress):
        return [(run_id, seq, event.epoch, event.global_step, "step", "loss", event.loss)]
    if not isinstance(event, ev.EpochEnded):
        return []
    epoch = event.epoch
    rows: list[MetricRow] = [
        (run_id, seq, epoch, None, "train", "loss", event.train_loss),
        (run_id, seq, epoch, None, "train", "acc", event.train_acc),
        (run_id, seq, epoch, None, "val", "loss", event.val_loss),
        (run_id, seq, epoch, None, "val", "acc", event.val_acc),
    ]
    for name, value in (("ce_loss", event.train_ce_loss), ("kd_loss", event.train_kd_loss)):
        if value is not None:  # the parts of a distilled run's loss
            rows.append((run_id, seq, epoch, None, "train", name, value))
    for name, value in (("ema_loss", event.ema_val_loss), ("ema_acc", event.ema_val_acc)):
        if value is not None:  # the average of the weights, scored beside them
            rows.append((run_id, seq, epoch, None, "val", name, value))
    rows.append((run_id, seq, epoch, None, "epoch", "seconds", event.seconds))
    for group, lr in event.lr.items():
        rows.append((run_id, seq, epoch, None, "epoch", f"lr/{group}", lr))
    return rows


def write_rows(
    connection: sqlite3.Connection, run_id: int, state: RunState, fresh: list[ev.Event]
) -> None:
    """Insert the metric rows of `fresh` events (once per (run, seq)), and drop what a
    resumed start in them undid: the rows of epochs the run went back over."""
    for event in fresh:
        if isinstance(event, ev.Started) and event.resumed_from_epoch:
            connection.execute(
                "DELETE FROM metrics WHERE run_id = ? AND epoch > ? AND seq < ?",
                [run_id, event.resumed_from_epoch, event.seq],
            )
    rows = [
        row
        for event in fresh
        for row in metric_rows(run_id, event)
        if not state.superseded(event.seq, row[2])
    ]
    connection.executemany(
        "INSERT OR IGNORE INTO metrics (run_id, seq, epoch, step, split, name, value) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


# The columns of a tidy export: one value a row, as pandas, R and spreadsheets take them.
EXPORT_COLUMNS = ("run", "epoch", "step", "split", "metric", "value")


def export_rows(connection: sqlite3.Connection, run_ids: list[int]) -> Iterator[tuple[Any, ...]]:
    """The metric rows of `run_ids` in EXPORT_COLUMNS' order, by run, then as they came;
    `step` (the global step) only where the row is a step's."""
    for run_id in run_ids:
        yield from connection.execute(
            "SELECT run_id, epoch, step, split, name, value FROM metrics WHERE run_id = ? "
            "ORDER BY seq, split, name",
            [run_id],
        )


def is_lifecycle(event: ev.Event) -> bool:
    """A start or an end: the events that change a run's status."""
    return isinstance(event, Lifecycle)


def summary_columns(state: RunState, recipe: dict[str, Any] | None) -> dict[str, Any]:
    """The `runs` columns that sum up the events so far (`recipe`: the stored one, which an
    ensemble's or soup's end completes with what it chose)."""
    test = state.test
    columns: dict[str, Any] = {
        "epochs_done": state.epochs_done,
        "best_val_acc": state.best_val_acc,
        "seconds": state.seconds,
        "test_acc": _number(test.get("top1")) if test else None,
        "test_top5": _number(test.get("top5")) if test else None,
        "test_report": json.dumps(test) if test else None,
        "last_seq": state.last_seq,
        "last_event_at": state.last_event_at,
    }
    if state.first_started_at is not None:
        columns["started_at"] = state.first_started_at
    if state.started is not None:
        columns["engine_info"] = json.dumps(state.started.to_dict())
        if state.started.epochs:  # the engine's plan: one epoch for a head the probe fits
            columns["epochs"] = state.started.epochs
    if state.finished is not None and state.finished.fusion:
        columns["recipe"] = json.dumps({**(recipe or {}), "outcome": state.finished.fusion})
    return columns


def _number(value: Any) -> float | None:
    """A test report's number (the report is free-form JSON): None where it is none."""
    if type(value) not in (int, float) or abs(value) > 1e300:
        return None
    return float(value) if math.isfinite(value) else None


def lifecycle_columns(state: RunState) -> dict[str, Any]:
    """Status, end time and error, as the newest start or end says."""
    error = state.error
    return {
        "status": state.status,
        "ended_at": state.ended_at,
        "error": json.dumps(error.to_dict()) if error else None,
    }


def epoch_table(connection: sqlite3.Connection, run_id: int) -> list[dict[str, Any]]:
    """One row per epoch: train/val loss and accuracy, learning rate, seconds."""
    rows = connection.execute(
        "SELECT epoch, split, name, value FROM metrics "
        "WHERE run_id = ? AND split IN ('train', 'val', 'epoch') ORDER BY epoch",
        [run_id],
    )
    table: dict[int, dict[str, Any]] = {}
    for epoch, split, name, value in rows:
        entry = table.setdefault(epoch, {"epoch": epoch})
        entry[name if split == "epoch" else f"{split}_{name}"] = value
    return [table[epoch] for epoch in sorted(table)]


def series(
    connection: sqlite3.Connection, run_id: int, split: str, name: str
) -> list[tuple[int, float]]:
    """One metric of a run in order: (epoch, value), or (step, value) for step losses."""
    rows = connection.execute(
        "SELECT epoch, step, value FROM metrics WHERE run_id = ? AND split = ? AND name = ? "
        "ORDER BY seq",
        [run_id, split, name],
    )
    return [(step if split == "step" else epoch, value) for epoch, step, value in rows]
