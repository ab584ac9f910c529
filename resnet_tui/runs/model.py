"""A run as the store holds it: typed fields, decoded from a row of `runs.db` in one place."""

import json
import sqlite3
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.contract import events as ev
from engine.contract.spec import FusionSpec, RunSpec

# `pruned`: ended early by its sweep's pruning (resnet_tui/runs/pruning.py), as a sweep
# meant to; like `stopped`, it keeps its curves and checkpoints and can be resumed.
STATUSES = ("queued", "running", "completed", "pruned", "stopped", "failed", "crashed")
LIVE_STATUSES = ("queued", "running")


@dataclass(frozen=True)
class Run:
    """One run: what it is, where it stands, what it gave. Read-only: the store writes."""

    id: int
    name: str
    kind: str
    status: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    arch: str
    dataset: str
    init: str
    freeze: str
    device: str
    spec_json: str
    pid: int | None
    host: str | None
    run_dir: str
    events_offset: int
    last_seq: int
    epochs: int | None
    epochs_done: int
    best_val_acc: float | None
    test_acc: float | None
    test_top5: float | None
    seconds: float | None
    engine_info_json: str | None
    test_report_json: str | None
    error_json: str | None
    notes: str
    tags: str
    recipe_json: str | None
    last_event_at: float | None
    sweep: int | None
    queue_position: float | None
    setting: str | None
    fold: int | None
    revision: int
    parents: tuple[int, ...]
    teachers: tuple[int, ...]

    @classmethod
    def from_row(cls, row: sqlite3.Row, home: Path) -> "Run":
        """The run of one row of `queries.SELECT_RUNS`, in a store whose file lies in the
        folder `home` (a run folder is kept relative to it, so the two move together). Its
        JSON columns are decoded by this class alone, each when first asked for."""
        return cls(
            id=row["id"],
            name=row["name"] or "",
            kind=row["kind"],
            status=row["status"],
            created_at=row["created_at"] or 0.0,
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            arch=row["arch"] or "",
            dataset=row["dataset"] or "",
            init=row["init"] or "",
            freeze=row["freeze"] or "",
            device=row["device"] or "",
            spec_json=row["spec"] or "{}",
            pid=row["pid"],
            host=row["host"],
            run_dir=str(home / row["run_dir"]) if row["run_dir"] else "",
            events_offset=row["events_offset"] or 0,
            last_seq=row["last_seq"] or 0,
            epochs=row["epochs"],
            epochs_done=row["epochs_done"] or 0,
            best_val_acc=row["best_val_acc"],
            test_acc=row["test_acc"],
            test_top5=row["test_top5"],
            seconds=row["seconds"],
            engine_info_json=row["engine_info"],
            test_report_json=row["test_report"],
            error_json=row["error"],
            notes=row["notes"] or "",
            tags=row["tags"] or "",
            recipe_json=row["recipe"],
            last_event_at=row["last_event_at"],
            sweep=row["sweep"],
            queue_position=row["queue_position"],
            setting=row["setting"],
            fold=row["fold"],
            revision=row["revision"] or 0,
            parents=_ids(row["parent_ids"]),
            teachers=_ids(row["teacher_ids"]),
        )

    # JSON columns, decoded when first asked for (a page of the history asks for none)

    @cached_property
    def engine_info(self) -> ev.Started | None:
        """The `started` event of the run's engine (its latest start)."""
        return _started(self.engine_info_json)

    @cached_property
    def test_report(self) -> dict[str, Any] | None:
        return _object(self.test_report_json)

    @cached_property
    def error(self) -> ev.Error | None:
        """What the run ended with, where it failed or crashed."""
        return _error(self.error_json, self.ended_at)

    @cached_property
    def recipe(self) -> dict[str, Any] | None:
        """How a fused run was made (and, once made, what it chose: `outcome`)."""
        return _object(self.recipe_json)

    @cached_property
    def spec(self) -> RunSpec:
        """The run's spec (raises SpecError where the stored one is not valid)."""
        return RunSpec.from_json(self.spec_json)

    @cached_property
    def spec_values(self) -> dict[str, Any]:
        """The stored spec's options as plain values, unchecked (for listings and compare)."""
        values = _object(self.spec_json)
        return values if values is not None else {}

    @property
    def folder(self) -> Path:
        return Path(self.run_dir)

    @property
    def events_path(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def trained(self) -> bool:
        """A run that trains (not an ensemble, soup or WiSE-FT mix of others)."""
        return self.kind == "train"

    @property
    def waits_in_queue(self) -> bool:
        """Queued, and no worker has taken it."""
        return self.status == "queued" and self.queue_position is not None

    @property
    def classes(self) -> list[str] | None:
        """The classes it trained on, as its engine reported them (None before it started)."""
        return self.engine_info.classes if self.engine_info else None

    @property
    def fusion(self) -> FusionSpec:
        """How a fused run was made (its recipe, less what the engine chose)."""
        recipe = {k: v for k, v in (self.recipe or {}).items() if k != "outcome"}
        return FusionSpec.from_json(json.dumps(recipe))

    @property
    def fusion_outcome(self) -> dict[str, Any]:
        """What an ensemble or soup chose as it was made: members kept, an alpha."""
        return (self.recipe or {}).get("outcome") or {}

    def stalled_for(self, now: float | None = None) -> float | None:
        """Seconds a running run has been silent, where that is long enough to call it
        stalled (its engine lives but writes nothing, not even a heartbeat); else None."""
        if self.status != "running":
            return None
        since = self.last_event_at or self.created_at
        silent = (now or time.time()) - since if since else 0.0
        return silent if silent >= ev.STALL_AFTER_S else None

    def to_json(self) -> dict[str, Any]:
        """The run for scripts (`runs --json`): its columns, JSON columns decoded."""
        values = {
            name.removesuffix("_json"): getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("spec_json", "engine_info_json", "error_json", "parents", "teachers")
        }
        values["test_report"] = self.test_report
        values["recipe"] = self.recipe
        values["spec"] = self.spec_values
        values["parents"] = list(self.parents)
        values["teachers"] = list(self.teachers)
        values["engine_info"] = _event_fields(self.engine_info)
        values["error"] = _event_fields(self.error)
        values["stalled_for"] = self.stalled_for()
        return values


def _object(text: str | None) -> dict[str, Any] | None:
    """A JSON object column; None where it is empty or damaged."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _started(text: str | None) -> ev.Started | None:
    """The `started` event kept with the run (older stores kept it without seq and t)."""
    values = _object(text)
    if values is None:
        return None
    try:
        event = ev.event_from_dict({"seq": 1, "t": 0.0, **values, "type": ev.STARTED})
    except ev.BadEvent:
        return None
    return event if isinstance(event, ev.Started) else None


def _error(text: str | None, ended_at: float | None) -> ev.Error | None:
    """The error a run ended with (older stores kept kind, message and hint alone)."""
    values = _object(text)
    if values is None:
        return None
    defaults = {"seq": 1, "t": ended_at or 0.0, "hint": ""}
    try:
        event = ev.event_from_dict({**defaults, **values, "type": ev.ERROR})
    except ev.BadEvent:
        return None
    return event if isinstance(event, ev.Error) else None


def _event_fields(event: ev.Event | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {k: v for k, v in event.to_dict().items() if k not in ("seq", "t", "type")}


def _ids(text: str | None) -> tuple[int, ...]:
    """Run ids as SQL's group_concat gives them: `3,4,5`."""
    if not text:
        return ()
    # a forged row is not a run id: left out, so that the run still lists
    return tuple(int(part) for part in text.split(",") if part.strip().isdigit())
