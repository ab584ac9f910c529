"""The event log: what the engine tells the world, one JSON object a line in events.jsonl.

Torch-free: the engine writes it with `EventWriter`, the user's side reads it with
`read_events`. Every line is `{"seq": n, "t": unix_time, "type": ..., ...payload}`.
"""

import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

STARTED = "started"
EPOCH_STARTED = "epoch_started"
PROGRESS = "progress"
EPOCH_ENDED = "epoch_ended"
POLICY = "policy"
CHECKPOINT = "checkpoint"
LOG = "log"
FUSION = "fusion"
HEARTBEAT = "heartbeat"
FINISHED = "finished"
ERROR = "error"

EVENT_TYPES = (
    STARTED,
    EPOCH_STARTED,
    PROGRESS,
    EPOCH_ENDED,
    POLICY,
    CHECKPOINT,
    LOG,
    FUSION,
    HEARTBEAT,
    FINISHED,
    ERROR,
)
TERMINAL_TYPES = (FINISHED, ERROR)

# Kinds of error that are the user's to fix (bad options, unreadable data, a missing dataset
# or device): the CLI answers them with exit code 2, as for any other bad input.
USER_ERROR_KINDS = ("bad_input", "bad_data", "dataset_missing", "device_missing")

# A live engine writes an event at least this often (a `heartbeat` where nothing else
# happens, as in a long evaluation); a viewer calls a run stalled after STALL_AFTER_S of
# silence from a process that is still there.
HEARTBEAT_S = 30.0
STALL_AFTER_S = 6 * HEARTBEAT_S


class EventWriter:
    """Appends events to a file, flushed per event; `sync` makes them durable (per epoch)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.seq = _last_seq(self.path)
        self._file: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held open)
        self.last_emit = time.monotonic()

    def heartbeat(self, interval: float | None = None) -> None:
        """Write a `heartbeat` if nothing was written for `interval` seconds (HEARTBEAT_S):
        called from loops that write nothing else for a while, so the engine is seen alive."""
        if time.monotonic() - self.last_emit >= (HEARTBEAT_S if interval is None else interval):
            self.emit(HEARTBEAT)

    def emit(self, event_type: str, **payload: Any) -> dict[str, Any]:
        self.last_emit = time.monotonic()
        self.seq += 1
        event = {"seq": self.seq, "t": round(time.time(), 3), "type": event_type, **payload}
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()
        return event

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


def _last_seq(path: Path) -> int:
    """The highest sequence number already in `path`, so a resumed run continues it."""
    if not path.exists():
        return 0
    events, _ = read_events(path, 0)
    return events[-1]["seq"] if events else 0


def read_events(path: str | Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Read the complete events after byte `offset`; return them and the offset to read next.

    A last line without its newline is being written (or was torn by a crash): it is left for
    the next read. A complete line that is not valid JSON is skipped.
    """
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "seq" in event and "type" in event:
            events.append(event)
    return events, offset + end
