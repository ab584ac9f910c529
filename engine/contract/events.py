"""The event log: what the engine tells the world, one JSON object a line in events.jsonl.

The torch-free contract between the two processes: one typed definition per event type, the
`EventWriter` the engine writes them with, and `parse_event` / `read_events`, the only code
that turns a line (`{"seq": n, "t": unix_time, "type": ..., ...fields}`) back into an event
or rejects it with a reason. A reader ignores fields it does not know (a newer engine may
add some), and rejects a line that lacks one it needs or holds a value out of its range."""

import json
import os
import stat
import time
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TextIO

from engine.contract.json_fields import checked_fields, field_names, type_name
from engine.contract.log_lines import read_lines

# The version of the event format, given in every `started` event; a log without one is
# version 1.
EVENTS_VERSION = 1

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

# Kinds of error that are the user's to fix: the CLI answers them with exit code 2.
USER_ERROR_KINDS = ("bad_input", "bad_data", "dataset_missing", "device_missing")

# A live engine writes an event at least this often (a `heartbeat` where nothing else
# happens, as in a long evaluation); a viewer calls a run stalled after STALL_AFTER_S of
# silence from a process that is still there.
HEARTBEAT_S = 30.0
STALL_AFTER_S = 6 * HEARTBEAT_S

# Sequence numbers stay far below SQLite's largest integer (a forged one cannot stop the next).
_LARGEST_SEQ = 2**53
_LATEST_T = 1e11  # an event's time is a unix time a clock can show (up to the year 5138)
# A longer line is damage, not an event (a thousand classes' confusion matrix takes a few MB).
LONGEST_LINE = 32 * 2**20


@dataclass(frozen=True, kw_only=True)
class Event:
    """What every event has: its place in the log (`seq`, from 1) and when it was written."""

    TYPE: ClassVar[str] = ""
    seq: int
    t: float

    @property
    def type(self) -> str:
        return self.TYPE

    def to_dict(self) -> dict[str, Any]:
        """The event as its line holds it."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        return {"seq": self.seq, "t": self.t, "type": self.TYPE, **values}


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    """The engine is ready to train (or to fuse, with `fusion`): where, on what, from what."""

    TYPE: ClassVar[str] = STARTED
    version: int = EVENTS_VERSION
    device: str
    device_name: str
    device_uuid: str | None = None
    torch_version: str
    torchvision_version: str
    threads: int
    pid: int
    parameters: int
    trainable_parameters: int
    sizes: dict[str, int]
    classes: list[str]
    image_size: int
    amp: str
    channels_last: bool
    steps_per_epoch: int
    epochs: int
    init: dict[str, Any] | None = None
    processes: int = 1
    nodes: int = 1
    resumed_from_epoch: int = 0
    best_val_acc: float | None = None
    distillation: dict[str, Any] | None = None
    fusion: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class EpochStarted(Event):
    TYPE: ClassVar[str] = EPOCH_STARTED
    epoch: int
    epochs: int


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    """A few times a second: the step, the running loss and the speed."""

    TYPE: ClassVar[str] = PROGRESS
    epoch: int
    step: int
    steps: int
    global_step: int
    loss: float
    samples_per_s: float
    lr: float
    ce_loss: float | None = None
    kd_loss: float | None = None


@dataclass(frozen=True, kw_only=True)
class EpochEnded(Event):
    """An epoch's training and validation metrics; `partial` where a stop cut it short; with
    an average of the weights (--ema-decay), the average's validation metrics too."""

    TYPE: ClassVar[str] = EPOCH_ENDED
    epoch: int
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: dict[str, float]
    seconds: float
    elapsed: float
    peak_memory_mb: float | None = None
    partial: bool = False
    train_ce_loss: float | None = None
    train_kd_loss: float | None = None
    ema_val_loss: float | None = None
    ema_val_acc: float | None = None


@dataclass(frozen=True, kw_only=True)
class Policy(Event):
    """What the freeze policy just did: which parts train from `epoch`, at what rates."""

    TYPE: ClassVar[str] = POLICY
    epoch: int
    policy: str
    lr: dict[str, float]
    training: list[str]
    frozen: list[str]
    trainable_parameters: int


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Event):
    """A checkpoint written; with an average of the weights, `weights` says which the file's
    model holds: `raw`, or `ema` (best.pt, where the average did better)."""

    TYPE: ClassVar[str] = CHECKPOINT
    path: str
    name: str
    epoch: int
    best: bool
    weights: str | None = None


@dataclass(frozen=True, kw_only=True)
class Log(Event):
    TYPE: ClassVar[str] = LOG
    level: str
    message: str


@dataclass(frozen=True, kw_only=True)
class Fusion(Event):
    """A candidate an ensemble or soup weighed, and whether it was kept (None: no choice)."""

    TYPE: ClassVar[str] = FUSION
    step: int
    steps: int
    candidate: str
    val_acc: float
    kept: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Heartbeat(Event):
    """Nothing else to say for a while: the engine is alive."""

    TYPE: ClassVar[str] = HEARTBEAT


@dataclass(frozen=True, kw_only=True)
class Finished(Event):
    """The run's end: completed or stopped, with the test report of a completed one, and
    `early_stop` ({"epoch", "reason"}) where early stopping ended it."""

    TYPE: ClassVar[str] = FINISHED
    status: str
    best_val_acc: float | None = None
    best_epoch: int | None = None
    test: dict[str, Any] | None = None
    seconds: float | None = None
    fusion: dict[str, Any] | None = None
    early_stop: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Error(Event):
    """The run's end by an error: what kind, what went wrong, what to do."""

    TYPE: ClassVar[str] = ERROR
    kind: str
    message: str
    hint: str = ""

    @property
    def line(self) -> str:
        """One line: what is wrong, then what to do (`message; hint`)."""
        return f"{self.message}; {self.hint}" if self.hint else self.message


EVENT_TYPES: dict[str, type[Event]] = {
    kind.TYPE: kind
    for kind in (
        Started,
        EpochStarted,
        Progress,
        EpochEnded,
        Policy,
        Checkpoint,
        Log,
        Fusion,
        Heartbeat,
        Finished,
        Error,
    )
}


class BadEvent(ValueError):
    """A line that is not an event of the contract; the message says why."""


def event_from_dict(values: Any) -> Event:
    """The typed event a decoded line stands for; raises BadEvent saying what is wrong."""
    if not isinstance(values, dict):
        raise BadEvent(f"a line holds a JSON {type_name(values)}, not an object")
    name = values.get("type")
    kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if kind is None:
        raise BadEvent(f"unknown event type {str(values.get('type'))[:40]!r}")
    what = f"{'an' if kind.TYPE[0] in 'aeiou' else 'a'} {kind.TYPE} event"
    try:
        given = checked_fields(kind, values, what)
    except ValueError as error:
        raise BadEvent(str(error)) from None
    if not 1 <= given["seq"] <= _LARGEST_SEQ:
        raise BadEvent(f"{what} numbered {given['seq']}; events count from 1 to {_LARGEST_SEQ}")
    if not 0 <= given["t"] <= _LATEST_T:
        raise BadEvent(f"{what} at time {given['t']:.6g}, not a unix time")
    if "epochs" in given and "epoch" in given and not 1 <= given["epoch"] <= given["epochs"]:
        raise BadEvent(f"{what} of epoch {given['epoch']} of {given['epochs']}")
    return kind(**given)


def parse_event(line: str | bytes) -> Event:
    """The typed event one line of the log holds; raises BadEvent with the reason."""
    try:
        values = json.loads(line)
    except ValueError:  # invalid UTF-8 included
        raise BadEvent("a line that is not JSON (in UTF-8)") from None
    except RecursionError:
        raise BadEvent("a line nested too deep to be an event") from None
    return event_from_dict(values)


@dataclass
class EventsRead:
    """One read of the log: the events, where to read next, the lines rejected (byte, why)."""

    events: list[Event]
    offset: int
    rejected: list[tuple[int, str]]


def read_events(
    path: str | Path, offset: int = 0, end: int | None = None, final: bool = False
) -> EventsRead:
    """Read the complete lines after byte `offset` (up to byte `end`) as events.

    A last line without its newline is being written (left for the next read) unless the read
    is `final` (its writer gone). A line that is no event of the contract is skipped, listed
    in `rejected`, as is a log that cannot be read or is no file (never read: /dev/zero).
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return EventsRead([], offset, [])
    except OSError as error:
        return EventsRead([], offset, [(offset, f"the log cannot be read: {error.strerror}")])
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return EventsRead([], offset, [(offset, "the log is not a file")])
    read = EventsRead([], offset, [])
    with os.fdopen(descriptor, "rb") as file:
        read.offset = read_lines(file, offset, end, final, LONGEST_LINE, partial(_take, read))
    return read


def _take(read: EventsRead, line: bytes, start: int, length: int) -> None:
    """Add the event of the line at byte `start` to `read`, or why it is none to `rejected`."""
    if length > LONGEST_LINE:
        read.rejected.append((start, f"a line of {length} bytes, longer than any event"))
    elif line.strip():
        try:
            read.events.append(parse_event(line))
        except BadEvent as error:
            read.rejected.append((start, str(error)))


class EventWriter:
    """Appends events to a file, flushed per event; `sync` makes them durable (per epoch)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.seq = _last_seq(self.path)
        self._file: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held open)
        if self._file.tell() and not _ends_a_line(self.path):
            # A line torn by a crash stays one of its own, not the start of the next event.
            self._file.write("\n")
        self.last_emit = time.monotonic()

    def heartbeat(self, interval: float | None = None) -> None:
        """Write a `heartbeat` if nothing was written for `interval` seconds (HEARTBEAT_S):
        called from loops that write nothing else for a while, so the engine is seen alive."""
        if time.monotonic() - self.last_emit >= (HEARTBEAT_S if interval is None else interval):
            self.emit(HEARTBEAT)

    def emit(self, event_type: str, **payload: Any) -> Event:
        """Write one event of the contract; a payload that is not one is a bug, raised here
        (TypeError or BadEvent) rather than written for readers to reject."""
        self.last_emit = time.monotonic()
        kind = EVENT_TYPES[event_type]
        unknown = set(payload) - field_names(kind)
        if unknown:
            raise TypeError(f"a {event_type} event has no fields {sorted(unknown)}")
        values = {"seq": self.seq + 1, "t": round(time.time(), 3), "type": event_type, **payload}
        line = json.dumps(values, separators=(",", ":"))
        event = parse_event(line)  # checked as a reader will read it
        self._file.write(line + "\n")
        self._file.flush()
        self.seq += 1
        return event

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


def _ends_a_line(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def _last_seq(path: Path) -> int:
    """The highest sequence number already in `path`, so a resumed run continues it."""
    if not path.exists():
        return 0
    return max((event.seq for event in read_events(path).events), default=0)
