"""Freeze policies in training: the parts that train, BatchNorm in the rest, the rates thawed.

Every policy stands on `model_stages`, the one description of an architecture's parts in
order (stem, stage1..stageN, head), so every policy works for every architecture. The
contract's `FreezePolicy` says what a policy is; a `FreezeSchedule` here applies it to one
model, through hooks the training loop calls without knowing which policy it runs.
"""

from typing import Any

import torch
from torch import nn

from engine.contract.catalog import BATCHNORM_MODES
from engine.contract.freezing import FreezePolicy, parse_freeze, trainable_parts
from engine.contract.spec import RunSpec
from engine.models import DropPath, model_stages

# A stage that `gradual` thaws trains at this share of the backbone's learning rate, as
# Lightning's BackboneFinetuning does, so fresh gradients do not wreck its features.
GRADUAL_THAW_LR_SCALE = 0.1


class FreezeSchedule:
    """A freeze policy applied to one model: the parts that train now, changed as epochs
    start. This one (`full`, `head`, `last-K`) leaves the learning rates as they are."""

    def __init__(
        self, policy: FreezePolicy, part_names: list[str], spec: RunSpec, probed: bool = False
    ) -> None:
        self.policy = policy
        self.part_names = part_names
        self.spec = spec
        # a head fitted by the converged probe before the first epoch needs no probe epochs
        self.probe_epochs = 0 if probed else spec.probe_epochs
        self.trainable = self.trainable_in(1)

    def trainable_in(self, epoch: int) -> list[str]:
        """The parts that train in `epoch` (from 1), in model order."""
        return trainable_parts(
            self.policy, self.part_names, epoch, self.spec.unfreeze_every, self.probe_epochs
        )

    def learning_rate_scales(self, thawed: list[str]) -> dict[str, float]:
        """What each part's learning rate is multiplied by when `thawed` join the parts that
        train after the first epoch; parts left out keep theirs."""
        return {}

    def apply_at(self, model: nn.Module, epoch: int) -> None:
        """Freeze `model` as the policy has it in `epoch`, learning rates untouched: at the
        start of a run, and on resuming after `epoch`."""
        self.trainable = self.trainable_in(epoch)
        apply_freeze(model, self.trainable)

    def at_epoch_start(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        epoch: int,
    ) -> list[str] | None:
        """Thaw what the policy thaws at `epoch`, scale the learning rates it changes and set
        BatchNorm in the frozen parts. Returns the parts that train now: always in the first
        epoch, later only where they changed (None where they did not)."""
        trainable = self.trainable_in(epoch)
        if epoch > 1 and trainable == self.trainable:
            return None
        if epoch > 1:
            thawed = [part for part in trainable if part not in self.trainable]
            scale_learning_rates(optimizer, scheduler, self.learning_rate_scales(thawed))
        self.trainable = trainable
        apply_freeze(model, trainable)
        set_batchnorm_modes(model, trainable, self.spec.bn)
        return trainable

    def after_train_mode(self, model: nn.Module) -> None:
        """Set BatchNorm in the frozen parts again, which `model.train()` has just undone."""
        set_batchnorm_modes(model, self.trainable, self.spec.bn)


class GradualThaw(FreezeSchedule):
    """`gradual`: a stage joins at `GRADUAL_THAW_LR_SCALE` times the backbone's rate."""

    def learning_rate_scales(self, thawed: list[str]) -> dict[str, float]:
        return dict.fromkeys(thawed, GRADUAL_THAW_LR_SCALE)


class ProbeThenFineTune(FreezeSchedule):
    """`lp-ft`: when the probe ends, every part fine-tunes at `--ft-lr-scale` times its rate;
    after a converged probe (fitted before the first epoch), from the first epoch."""

    def learning_rate_scales(self, thawed: list[str]) -> dict[str, float]:
        return dict.fromkeys(self.part_names, self.spec.ft_lr_scale)

    def at_epoch_start(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        epoch: int,
    ) -> list[str] | None:
        trainable = super().at_epoch_start(model, optimizer, scheduler, epoch)
        if epoch == 1 and self.probe_epochs == 0:
            scale_learning_rates(optimizer, scheduler, self.learning_rate_scales([]))
        return trainable


SCHEDULES: dict[str, type[FreezeSchedule]] = {
    "full": FreezeSchedule,
    "head": FreezeSchedule,
    "last": FreezeSchedule,
    "gradual": GradualThaw,
    "lp-ft": ProbeThenFineTune,
}


def freeze_schedule(model: nn.Module, spec: RunSpec, probed: bool = False) -> FreezeSchedule:
    """The spec's freeze policy for `model`; call its `apply_at` to freeze the model.
    `probed`: the head is fitted by the converged probe before the first epoch."""
    policy = parse_freeze(spec.freeze)
    return SCHEDULES[policy.name](policy, list(model_stages(model)), spec, probed)


def scale_learning_rates(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scales: dict[str, float],
) -> None:
    """Multiply each parameter group's rate, and the schedule's base for it, by its part's scale."""
    for index, group in enumerate(optimizer.param_groups):
        factor = scales.get(group["name"], 1.0)
        scheduler.base_lrs[index] *= factor
        group["lr"] *= factor


def apply_freeze(model: nn.Module, trainable: list[str]) -> None:
    """Let the parameters of the `trainable` parts train and freeze every other one.

    A parameter outside every part (none in the built-in architectures; a test checks) trains
    only when every part does, so a frozen backbone never trains by omission.
    """
    parts = model_stages(model)
    model.requires_grad_(all(name in trainable for name in parts))
    for name, modules in parts.items():
        for module in modules:
            module.requires_grad_(name in trainable)


def set_batchnorm_modes(model: nn.Module, trainable: list[str], mode: str) -> None:
    """Set BatchNorm in the frozen parts, and stochastic depth there off (a frozen part is a
    fixed map); call it after `apply_freeze` and every `model.train()`.

    BatchNorm in the parts that train is left as `model.train()` set it. In a frozen part:

    - `frozen` (the default): eval mode, so the running statistics stay as they are and
      normalise with them, and the affine weight and bias stay frozen with the part: the
      layer is a fixed affine map (torchvision's and Detectron2's FrozenBatchNorm2d).
    - `eval`: eval mode as well, but the affine weight and bias train, a cheap adaptation of a
      frozen backbone (Frankle et al. 2021, "Training BatchNorm and Only BatchNorm").
    - `train`: train mode, so the running statistics follow the new data and each batch is
      normalised with its own (AdaBN, Li et al. 2016); the affine stays frozen.
    """
    if mode not in BATCHNORM_MODES:
        raise ValueError(f"unknown BatchNorm mode {mode!r}; write frozen, eval or train")
    for name, modules in model_stages(model).items():
        if name in trainable:
            continue
        for module in modules:
            for layer in module.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.train(mode == "train")
                    layer.requires_grad_(mode == "eval")
                elif isinstance(layer, DropPath):  # a frozen part is a fixed map: no drops
                    layer.train(False)


def trainable_count(model: nn.Module) -> int:
    """How many of the model's parameters train now."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def policy_summary(model: nn.Module, trainable: list[str]) -> dict[str, Any]:
    """Which parts train and which are frozen, and how many parameters train: a `policy` event."""
    names = list(model_stages(model))
    return {
        "training": [name for name in names if name in trainable],
        "frozen": [name for name in names if name not in trainable],
        "trainable_parameters": trainable_count(model),
    }
