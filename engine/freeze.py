"""Freeze policies: which of a model's parts train in each epoch, and BatchNorm in frozen ones.

Every policy stands on `model_stages`, the one description of an architecture's parts in
order (stem, stage1..stageN, head), so every policy works for every architecture.
"""

from dataclasses import dataclass
from typing import Any

from torch import nn

from engine.models import model_stages


@dataclass(frozen=True)
class FreezePolicy:
    """A parsed --freeze: its name and, for `last-K`, K."""

    name: str
    last_stages: int | None = None


def parse_policy(text: str) -> FreezePolicy:
    """`full`, `head`, `last-K`, `gradual` or `lp-ft`, as the spec writes them."""
    if text.startswith("last-") and text[5:].isdigit() and int(text[5:]) >= 1:
        return FreezePolicy("last", int(text[5:]))
    if text in ("full", "head", "gradual", "lp-ft"):
        return FreezePolicy(text)
    raise ValueError(f"unknown freeze policy {text!r}; use full, head, last-K, gradual or lp-ft")


def trainable_parts(
    policy: FreezePolicy,
    part_names: list[str],
    epoch: int,
    unfreeze_every: int = 1,
    probe_epochs: int = 1,
) -> list[str]:
    """The parts that train in `epoch` (from 1), in model order.

    `last-K` trains the last K stages and the head; a K past the stages takes the stem too.
    `gradual` trains the head for `unfreeze_every` epochs, then thaws one more part from the
    top down every `unfreeze_every` epochs, the stem last. `lp-ft` trains the head for
    `probe_epochs` epochs, then everything.
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
    """Let the parameters of the `trainable` parts train and freeze every other one."""
    for name, modules in parts_of(model).items():
        for module in modules:
            for parameter in module.parameters():
                parameter.requires_grad_(name in trainable)


def set_batchnorm_modes(model: nn.Module, trainable: list[str], mode: str) -> None:
    """Set BatchNorm in the frozen parts, after every `model.train()`.

    - `frozen` (the default): eval mode, so the running statistics stay those of the source
      and normalise with them; the affine weight and bias stay frozen with the part.
    - `eval`: eval mode as well, but the affine weight and bias train (a cheap adaptation of
      a frozen backbone).
    - `train`: train mode, so the statistics follow the new data; the affine stays frozen.
    """
    for name, modules in parts_of(model).items():
        if name in trainable:
            continue
        for module in modules:
            for layer in module.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.train(mode == "train")
                    for parameter in layer.parameters():
                        parameter.requires_grad_(mode == "eval")


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def policy_summary(model: nn.Module, trainable: list[str]) -> dict[str, Any]:
    """Which parts train and which are frozen, and how many parameters train."""
    names = list(parts_of(model))
    return {
        "training": [name for name in names if name in trainable],
        "frozen": [name for name in names if name not in trainable],
        "trainable_parameters": trainable_count(model),
    }
