"""Everything known about a run from its events, as one value folded event by event.

`RunState.apply` takes the events of a log in any order and any number of times: each fact
keeps the event with the highest sequence number that set it, so a log applied in one go, in
pieces, with lines repeated or swapped gives the same state. It does no I/O: the supervisor
folds events into it to keep `runs.db` current, and the CLI and the app fold the same
events for their live views.
"""

from dataclasses import dataclass, field
from typing import Any

from engine.contract import events as ev
from resnet_tui.runs.pruning import PRUNED_AT, Pruned

# The events that say where a run is in its life: the newest of them gives its status.
Lifecycle = ev.Started | ev.Finished | ev.Error


@dataclass(frozen=True)
class EarlyStop:
    """How early stopping ended a run: after which epoch (None where the log does not say a
    whole number), why, and the best the metric was, in the engine's words."""

    epoch: int | None
    reason: str
    best: str = ""

    @property
    def line(self) -> str:
        """`stopped early after epoch 12: val_acc did not improve ... (best 91.3% at epoch 7)`."""
        after = f" after epoch {self.epoch}" if self.epoch is not None else ""
        best = f" (best {self.best})" if self.best else ""
        return f"stopped early{after}: {self.reason}{best}"


@dataclass
class RunState:
    """A run as its events tell it. Fields hold what was seen; properties derive the rest.

    `keep_steps` keeps every progress report, for a chart of the step loss; the supervisor,
    which writes each to the store as it comes, keeps none (a long run makes millions).
    """

    keep_steps: bool = True
    last_seq: int = 0
    last_event_at: float | None = None
    first_started_at: float | None = None
    started: ev.Started | None = None
    lifecycle: Lifecycle | None = None
    finished: ev.Finished | None = None
    progress: ev.Progress | None = None
    epochs_ended: dict[int, ev.EpochEnded] = field(default_factory=dict)
    # The sequence number of each resumed start, and the epoch it went on from: what the run
    # wrote before that start, past that epoch, was done again.
    restarts: dict[int, int] = field(default_factory=dict)
    step_losses: dict[int, ev.Progress] = field(default_factory=dict)
    policies: dict[int, ev.Policy] = field(default_factory=dict)
    fusion_steps: dict[int, ev.Fusion] = field(default_factory=dict)
    best_checkpoint: ev.Checkpoint | None = None  # the newest best.pt written
    # The newest line a supervisor wrote on pruning the run, and the newest end it wrote
    # then (`finished` with status pruned): a run resumed after it is pruned no more.
    prune_note: ev.Log | None = None
    pruned_end: ev.Finished | None = None
    # The lines of the log that were no event, by byte offset: why each was skipped.
    skipped: dict[int, str] = field(default_factory=dict)

    def apply(self, event: ev.Event) -> "RunState":
        """Fold one event in (in place); returns the state, for chaining."""
        self.last_seq = max(self.last_seq, event.seq)
        self.last_event_at = max(self.last_event_at or event.t, event.t)
        if isinstance(event, Lifecycle):
            self.lifecycle = _newer(self.lifecycle, event)
        if isinstance(event, ev.Started):
            self.started = _newer(self.started, event)
            if event.resumed_from_epoch:
                self.restarts[event.seq] = event.resumed_from_epoch
            else:
                first = self.first_started_at
                self.first_started_at = event.t if first is None else min(first, event.t)
        elif isinstance(event, ev.Finished):
            self.finished = _newer(self.finished, event)
            if event.status == "pruned":
                self.pruned_end = _newer(self.pruned_end, event)
        elif isinstance(event, ev.Log) and event.message.startswith(PRUNED_AT):
            self.prune_note = _newer(self.prune_note, event)
        elif isinstance(event, ev.Progress):
            self.progress = _newer(self.progress, event)
            if self.keep_steps:
                self.step_losses[event.seq] = event
        elif isinstance(event, ev.EpochEnded):
            self.epochs_ended[event.epoch] = _newer(self.epochs_ended.get(event.epoch), event)
        elif isinstance(event, ev.Policy):
            self.policies[event.seq] = event
        elif isinstance(event, ev.Fusion):
            self.fusion_steps[event.seq] = event
        elif isinstance(event, ev.Checkpoint) and event.best:
            self.best_checkpoint = _newer(self.best_checkpoint, event)
        return self

    def apply_all(self, events: list[ev.Event]) -> "RunState":
        for event in events:
            self.apply(event)
        return self

    def apply_read(self, read: ev.EventsRead) -> "RunState":
        """Fold in what one read of the log found: its events, and the lines it skipped."""
        self.skipped.update(read.rejected)
        return self.apply_all(read.events)

    @property
    def skipped_notes(self) -> list[str]:
        """One line for each line of the log skipped, in order: where it is and why."""
        return [
            f"skipped the line at byte {at} of events.jsonl: {why}"
            for at, why in sorted(self.skipped.items())
        ]

    # What was done again after a resume does not count

    def superseded(self, seq: int, epoch: int | None) -> bool:
        """Whether what event `seq` said of `epoch` was undone by a later resumed start."""
        if epoch is None:
            return False
        return any(seq < start and epoch > since for start, since in self.restarts.items())

    @property
    def epochs(self) -> list[ev.EpochEnded]:
        """The ended epochs that count, in order (one per epoch)."""
        return [
            self.epochs_ended[epoch]
            for epoch in sorted(self.epochs_ended)
            if not self.superseded(self.epochs_ended[epoch].seq, epoch)
        ]

    @property
    def step_loss_points(self) -> list[ev.Progress]:
        """The progress reports that count, in order."""
        return [
            self.step_losses[seq]
            for seq in sorted(self.step_losses)
            if not self.superseded(seq, self.step_losses[seq].epoch)
        ]

    # The run's life

    @property
    def status(self) -> str | None:
        """`running`, `completed`, `stopped`, `pruned` or `failed`; None before the engine
        started."""
        if isinstance(self.lifecycle, ev.Started):
            return "running"
        if isinstance(self.lifecycle, ev.Finished):
            return self.lifecycle.status
        if isinstance(self.lifecycle, ev.Error):
            return "failed"
        return None

    @property
    def ended(self) -> bool:
        return isinstance(self.lifecycle, (ev.Finished, ev.Error))

    @property
    def ended_by_finish(self) -> ev.Finished | None:
        """The `finished` event, where it is the run's newest start or end."""
        return self.lifecycle if isinstance(self.lifecycle, ev.Finished) else None

    @property
    def error(self) -> ev.Error | None:
        return self.lifecycle if isinstance(self.lifecycle, ev.Error) else None

    @property
    def ended_at(self) -> float | None:
        return self.lifecycle.t if self.ended and self.lifecycle else None

    @property
    def epochs_planned(self) -> int | None:
        return self.started.epochs if self.started else None

    @property
    def epochs_done(self) -> int:
        done = [epoch.epoch for epoch in self.epochs]
        resumed = self.started.resumed_from_epoch if self.started else 0
        return max([*done, resumed])

    @property
    def best_val_acc(self) -> float | None:
        """The run's best validation accuracy: as its end reported it, else the best epoch."""
        end = self.ended_by_finish
        if end is not None and end.best_val_acc is not None and end.best_val_acc >= 0:
            return end.best_val_acc
        seen = [epoch.val_acc for epoch in self.epochs]
        if self.started and self.started.best_val_acc is not None:
            seen.append(self.started.best_val_acc)
        return max(seen, default=None)

    @property
    def ema_line(self) -> str | None:
        """`EMA val acc 91.2% (epoch 7) · best from ema, epoch 7`: the best val acc of the
        average of the weights (--ema-decay) and which weights best.pt holds; None without."""
        averaged = [(e.ema_val_acc, e.epoch) for e in self.epochs if e.ema_val_acc is not None]
        if not averaged:
            return None
        acc, epoch = max(averaged, key=lambda pair: pair[0])
        line = f"EMA val acc {100 * acc:.1f}% (epoch {epoch})"
        best = self.best_checkpoint
        if best is not None and best.weights:
            line += f" · best from {best.weights}, epoch {best.epoch}"
        return line

    @property
    def seconds(self) -> float | None:
        """Training time so far (the whole of it once finished)."""
        end = self.ended_by_finish
        if end is not None and end.seconds is not None:
            return end.seconds
        epochs = self.epochs
        return epochs[-1].elapsed if epochs else None

    @property
    def test(self) -> dict[str, Any] | None:
        """The test report of a completed run."""
        end = self.ended_by_finish
        return end.test if end is not None else None

    @property
    def early_stop(self) -> EarlyStop | None:
        """How early stopping ended the run, where it did: its `finished` event says."""
        end = self.ended_by_finish
        told = end.early_stop if end is not None else None
        if not told:
            return None
        epoch = told.get("epoch")
        words = [str(told.get(key) or "") for key in ("reason", "best")]
        return EarlyStop(epoch if type(epoch) is int else None, *words)

    @property
    def pruned(self) -> Pruned | None:
        """Why the sweep's pruning ended the run, where it did: the line its supervisor wrote
        before the run's `finished` event of status pruned (a reason unknown where the line is
        not there)."""
        end = self.ended_by_finish
        if end is None or end.status != "pruned":
            return None
        note = self.prune_note
        told = Pruned.read(note.message) if note is not None and note.seq < end.seq else None
        return told or Pruned(self.epochs_done, "the reason was not kept")

    # Where it is now, and how fast it goes

    @property
    def position(self) -> float:
        """How far through its epochs the run is, in epochs (2.5: half way through the 3rd)."""
        done = float(self.epochs_done)
        progress = self.progress
        if progress is None or self.superseded(progress.seq, progress.epoch):
            return done
        return max(done, progress.epoch - 1 + progress.step / max(progress.steps, 1))

    @property
    def samples_per_s(self) -> float | None:
        return self.progress.samples_per_s if self.progress else None

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace of the epochs so far, while it trains; None otherwise."""
        if self.status != "running" or not self.started or not self.started.epochs:
            return None
        epochs = self.epochs
        if not epochs or self.progress is None:
            return None
        per_epoch = sum(epoch.seconds for epoch in epochs) / len(epochs)
        return max(0.0, (self.started.epochs - self.position) * per_epoch)


def _newer(held: Any, event: Any) -> Any:
    """Of the event held and a new one, the one with the higher sequence number."""
    return event if held is None or event.seq > held.seq else held
