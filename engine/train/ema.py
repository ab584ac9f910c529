"""An exponential moving average (EMA) of a run's weights: updated after each optimiser step,
evaluated on val each epoch beside the raw weights, and which of the two the best checkpoint
takes (--best-from).

The average covers the whole state dict. BatchNorm's running statistics are averaged with the
weights, as timm's ModelEmaV3 does by default: statistics copied from the raw weights describe
the activations of other weights than the averaged ones. Integer buffers (BatchNorm's batch
count) are copied. Frozen parts are averaged like the rest, so they stay equal to the raw
weights. The decay warms up as TensorFlow's ExponentialMovingAverage with a step count does
(and timm's first ModelEma): update n (from 0) uses min(decay, (1 + n) / (10 + n)), so that in
a run of a few hundred steps the average follows the training instead of holding on to the
initial weights (0.999 ** 300 of them would still be 74% of it).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call

from engine.contract.spec import RunSpec
from engine.train.devices import autocast
from engine.train.evaluation import loss_and_accuracy, predict

if TYPE_CHECKING:
    from engine.train.loop import Trainer

# How each --best-from choice reads in the log.
BEST_FROM_WORDS = {
    "raw": "the raw weights",
    "ema": "the EMA weights",
    "either": "the better of the raw and EMA weights",
}


class WeightAverage:
    """The average of one model's weights, in float32 on the model's device.

    It holds the model's own tensors (views that the optimiser and `load_state_dict` change in
    place), so `update` reads them without walking the model; on several ranks, those of the
    plain model each rank holds (the same on every rank).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.source = model.state_dict()
        self.weights = {name: _copy(tensor) for name, tensor in self.source.items()}
        self._averaged = [name for name, t in self.source.items() if t.is_floating_point()]
        self._copied = [name for name in self.source if name not in self._averaged]

    def decay_at(self, update: int) -> float:
        """The decay of update `update` (from 0), warmed up."""
        return min(self.decay, (1 + update) / (10 + update))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average toward the model's weights as they are now."""
        step = 1 - self.decay_at(self.updates)
        torch._foreach_lerp_(
            [self.weights[name] for name in self._averaged],
            [self.source[name].float() for name in self._averaged],
            step,
        )
        if self._copied:
            torch._foreach_copy_(
                [self.weights[name] for name in self._copied],
                [self.source[name] for name in self._copied],
            )
        self.updates += 1

    def state(self) -> dict[str, Any]:
        """What last.pt keeps of the average, for a resumed run to go on with it exactly."""
        return {"weights": self.weights, "updates": self.updates}

    @torch.no_grad()
    def restore(self, state: dict[str, Any] | None) -> None:
        """Go on from a checkpoint's `state()`; None (a checkpoint without an average) starts
        it again from the model's weights as loaded. Raises KeyError or RuntimeError where the
        state is not this model's."""
        if state is None:
            for name, tensor in self.source.items():
                self.weights[name].copy_(tensor)
            self.updates = 0
            return
        if set(state["weights"]) != set(self.weights):
            raise RuntimeError("the average of the weights in it is not of this model")
        for name, tensor in self.weights.items():
            tensor.copy_(state["weights"][name])
        self.updates = int(state["updates"])


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    """The average's own copy of a tensor of the model: float32 where it is averaged."""
    copy = tensor.detach().clone()
    return copy.float() if tensor.is_floating_point() else copy


def average_of(spec: RunSpec, model: nn.Module) -> WeightAverage | None:
    """The average the spec asks for (--ema-decay), starting from the model's weights; None
    without one."""
    return WeightAverage(model, spec.ema_decay) if spec.ema_decay is not None else None


def average_note(spec: RunSpec) -> str | None:
    """The log's line on the average, where the run keeps one: the rule and the choice of the
    best checkpoint, and what early stopping watches."""
    if spec.ema_decay is None:
        return None
    best = BEST_FROM_WORDS[spec.best_from]
    note = (
        f"an average of the weights (EMA, decay {spec.ema_decay:g}, warmed up as "
        f"min(decay, (1 + n) / (10 + n)) at update n) is evaluated on val each epoch; "
        f"best.pt takes {best}{' on val acc' if spec.best_from == 'either' else ''}"
    )
    if spec.early_stop_patience is not None:
        note += f"; early stopping watches the {spec.early_stop_metric} of {best}"
    return note


@dataclass(frozen=True)
class EpochScores:
    """An epoch's validation metrics: the raw weights', the average's where the run keeps
    one, and which of the two (`raw` or `ema`) compete for the best checkpoint this epoch."""

    val_loss: float
    val_acc: float
    ema_val_loss: float | None = None
    ema_val_acc: float | None = None
    weights: str = "raw"

    @property
    def loss(self) -> float:
        """The val loss of the weights that compete: what early stopping may watch."""
        return self._competing(self.val_loss, self.ema_val_loss)

    @property
    def acc(self) -> float:
        """The val acc of the weights that compete: what the best is chosen on."""
        return self._competing(self.val_acc, self.ema_val_acc)

    def _competing(self, raw: float, ema: float | None) -> float:
        return ema if self.weights == "ema" and ema is not None else raw

    def fields(self) -> dict[str, float]:
        """The `epoch_ended` event's validation fields."""
        fields = {"val_loss": self.val_loss, "val_acc": self.val_acc}
        if self.ema_val_loss is not None and self.ema_val_acc is not None:
            fields |= {"ema_val_loss": self.ema_val_loss, "ema_val_acc": self.ema_val_acc}
        return fields


def competing_weights(best_from: str, val_acc: float, ema_val_acc: float) -> str:
    """Which weights compete for the best checkpoint: those --best-from names, or with
    `either` the ones with the higher val acc (the raw weights where they are level)."""
    if best_from == "either":
        return "ema" if ema_val_acc > val_acc else "raw"
    return best_from


def epoch_scores(trainer: "Trainer", val_loss: float, val_acc: float) -> EpochScores:
    """The epoch's scores from the raw weights' val metrics: with an average, it is evaluated
    on val too (on several ranks, each its share, as the raw weights are)."""
    average = trainer.ema
    if average is None:
        return EpochScores(val_loss, val_acc)
    model = trainer.model

    def forward(images: torch.Tensor) -> torch.Tensor:
        with autocast(trainer.device, trainer.amp):
            images = images.contiguous(memory_format=trainer.memory_format)
            return functional_call(model, average.weights, (images,))

    model.eval()
    batches = trainer.val_batches
    ema_loss, ema_acc = loss_and_accuracy(
        *predict(forward, batches, trainer.ranks, trainer.writer.heartbeat)
    )
    weights = competing_weights(trainer.spec.best_from, val_acc, ema_acc)
    return EpochScores(val_loss, val_acc, ema_loss, ema_acc, weights)


def restore_average(trainer: "Trainer", state: dict[str, Any]) -> None:
    """Resuming: the average as last.pt kept it, and which weights best.pt holds."""
    if trainer.ema is not None:
        trainer.ema.restore(state.get("ema"))
    trainer.best_weights = state.get("best_weights", "raw")
