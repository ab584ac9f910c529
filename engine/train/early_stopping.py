"""Early stopping: end a run once its validation metric stops improving for a while.

An epoch improves on the best so far when its metric beats the best by more than
`min_delta` (val_acc higher, val_loss lower); the first epoch always does. The run stops
after `patience` epochs in a row that did not. Its state travels in the checkpoint, so a
resumed run counts on from where it was. With an average of the weights (--ema-decay) the
metric is that of the weights the best checkpoint is taken from (--best-from), and its
reason says so.
"""

from typing import TYPE_CHECKING, Any

from engine.train.ema import BEST_FROM_WORDS

if TYPE_CHECKING:
    from engine.contract.spec import RunSpec

# Whether a higher value of each metric is the better.
HIGHER_IS_BETTER = {"val_acc": True, "val_loss": False}


class EarlyStopping:
    """The rule and its count; `patience` None never stops."""

    def __init__(
        self,
        patience: int | None,
        min_delta: float = 0.0,
        metric: str = "val_acc",
        weights: str = "",
    ):
        """`weights` names the weights the metric is of, where a run has more than one kind
        (`the EMA weights`); "" for a run's only weights."""
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"early stopping watches val_acc or val_loss, not {metric!r}")
        self.patience, self.min_delta, self.metric = patience, min_delta, metric
        self.watched = f"{metric} of {weights}" if weights else metric
        self.best: float | None = None
        self.best_epoch = 0
        self.waited = 0  # epochs in a row without an improvement
        # {"epoch", "reason", "best"} once it stopped the run, for the `finished` event
        self.stopped: dict[str, Any] | None = None

    @classmethod
    def for_spec(cls, spec: "RunSpec") -> "EarlyStopping":
        """The rule as the spec's --early-stop-* options set it, on the weights --best-from
        takes the best from where the run keeps an average of them."""
        weights = BEST_FROM_WORDS[spec.best_from] if spec.ema_decay is not None else ""
        return cls(
            spec.early_stop_patience, spec.early_stop_min_delta, spec.early_stop_metric, weights
        )

    def update(self, epoch: int, val_loss: float, val_acc: float) -> str | None:
        """Count `epoch`'s metrics in; the reason to stop once it should stop, else None."""
        value = val_acc if self.metric == "val_acc" else val_loss
        if self.best is None or self._beats(value, self.best):
            self.best, self.best_epoch, self.waited = value, epoch, 0
        else:
            self.waited += 1
        if self.patience is None or self.waited < self.patience:
            return None
        return self._reason()

    def stop_at(self, epoch: int) -> str:
        """Record the stop after `epoch` (on several ranks, the one they agreed on) and
        return its line for the log: `stopped early after epoch 12: val_acc did not ...`."""
        value = f"{self.best:.1%}" if self.metric == "val_acc" else f"{self.best:.4g}"
        best = f"{value} at epoch {self.best_epoch}"
        self.stopped = {"epoch": epoch, "reason": self._reason(), "best": best}
        return f"stopped early after epoch {epoch}: {self._reason()} (best {best})"

    def _beats(self, value: float, best: float) -> bool:
        """Whether `value` beats `best` by more than min_delta, the gain measured as one
        difference (so 1.0 beats 0.95 by more than 0.05, as its difference in floats is)."""
        gain = value - best if HIGHER_IS_BETTER[self.metric] else best - value
        return gain > self.min_delta

    def _reason(self) -> str:
        """`val_acc did not improve by more than 0.001 for 5 epochs` (`val_acc of the EMA
        weights did not ...` with an average)."""
        by = f" by more than {self.min_delta:g}" if self.min_delta > 0 else ""
        epochs = f"{self.waited} epoch{'' if self.waited == 1 else 's'}"
        return f"{self.watched} did not improve{by} for {epochs}"

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the count."""
        return {"best": self.best, "best_epoch": self.best_epoch, "waited": self.waited}

    def restore(self, state: dict[str, Any] | None) -> None:
        """Go on from a checkpoint's `state()`; None (a checkpoint from before early
        stopping, or of a run without it) starts the count afresh."""
        if state is not None:
            self.best, self.best_epoch = state["best"], state["best_epoch"]
            self.waited = state["waited"]
