"""Freeze policies: which of a model's stages train, and BatchNorm in the frozen ones.

Every policy stands on `model_stages`, the one description of an architecture's parts in
order (stem, stage1..stageN, head), so every policy works for every architecture.
"""

from dataclasses import dataclass
from typing import Any

from torch import nn

from engine.contract.catalog import BATCHNORM_MODES, FREEZE_POLICIES
from engine.models import model_stages


@dataclass(frozen=True)
class FreezePolicy:
    """A parsed --freeze: its name (`last` for `last-K`) and, for `last-K`, K."""

    name: str
    last_stages: int | None = None


def parse_policy(text: str) -> FreezePolicy:
    """`full`, `head`, `last-K` (K >= 1), `gradual` or `lp-ft`, as the spec writes them."""
    if text.startswith("last-"):
        count = text.removeprefix("last-")
        if count.isdigit() and int(count) >= 1:
            return FreezePolicy("last", int(count))
        raise ValueError(
            f"freeze policy {text!r}: K in last-K must be a whole number of stages, 1 or more; "
            "write e.g. last-2"
        )
    if text in FREEZE_POLICIES and text != "last-K":
        return FreezePolicy(text)
    raise ValueError(
        f"unknown freeze policy {text!r}; write full, head, last-K (e.g. last-2), gradual or lp-ft"
    )


def trainable_parts(
    policy: FreezePolicy,
    part_names: list[str],
    epoch: int,
    unfreeze_every: int = 1,
    probe_epochs: int = 1,
) -> list[str]:
    """The parts that train in `epoch` (from 1), in model order.

    - `full`: every part. `head`: the head alone.
    - `last-K`: the last K stages and the head. The stem counts as the lowest stage, so a K
      of the stage count trains every stage but the stem, and a larger K everything.
    - `gradual` (ULMFiT; Lightning's BackboneFinetuning): the head for `unfreeze_every`
      epochs, then one more part from the top down every `unfreeze_every` epochs, the stem
      last.
    - `lp-ft` (Kumar et al. 2022): the head for `probe_epochs` epochs, then everything.
    """
    body = [name for name in part_names if name != "head"]  # stem, stage1..N
    if policy.name == "full":
        return list(part_names)
    if policy.name == "head":
        return ["head"]
    if policy.name == "last":
        thawed = policy.last_stages or 0
    elif policy.name == "gradual":
        thawed = (epoch - 1) // unfreeze_every
    else:  # lp-ft
        thawed = 0 if epoch <= probe_epochs else len(body)
    return body[len(body) - min(thawed, len(body)) :] + ["head"]


def parts_of(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The model's parts by name; the empty ones (a CNN has no stem) left out."""
    return {name: modules for name, modules in model_stages(model).items() if modules}


def apply_freeze(model: nn.Module, trainable: list[str]) -> None:
    """Let the parameters of the `trainable` parts train and freeze every other one.

    A parameter outside every part (none in the built-in architectures; a test checks) trains
    only when every part does, so a frozen backbone never trains by omission.
    """
    parts = parts_of(model)
    model.requires_grad_(all(name in trainable for name in parts))
    for name, modules in parts.items():
        for module in modules:
            module.requires_grad_(name in trainable)


def set_batchnorm_modes(model: nn.Module, trainable: list[str], mode: str) -> None:
    """Set BatchNorm in the frozen parts; call it after `apply_freeze` and every `model.train()`.

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
    for name, modules in parts_of(model).items():
        if name in trainable:
            continue
        for module in modules:
            for layer in module.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.train(mode == "train")
                    layer.requires_grad_(mode == "eval")


def trainable_count(model: nn.Module) -> int:
    """How many of the model's parameters train now."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def policy_summary(model: nn.Module, trainable: list[str]) -> dict[str, Any]:
    """Which parts train and which are frozen, and how many parameters train: a `policy` event."""
    names = list(parts_of(model))
    return {
        "training": [name for name in names if name in trainable],
        "frozen": [name for name in names if name not in trainable],
        "trainable_parameters": trainable_count(model),
    }
