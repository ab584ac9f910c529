"""A sweep's pruning as run options: the rule that ends its unpromising runs early (the
median rule, or asynchronous successive halving), kept in each run's spec for its supervisor.

The engine trains as it would without them; the run's supervisor (resnet_tui/runs/
supervisor.py) applies the rule after each epoch and stops a run it prunes.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.contract.model_and_data import MOST_EPOCHS
from engine.contract.options import Choice, option, whole_numbers

if TYPE_CHECKING:
    from engine.contract.spec import RunSpec

PRUNING = "Pruning (sweeps)"

PRUNE_RULES = ("median", "asha")
# ASHA's reduction factor (eta) where none is given: the top third of each rung goes on.
DEFAULT_PRUNE_FACTOR = 3
MOST_PRUNE_FACTOR = 100


@dataclass
class Pruning:
    """The options that prune a sweep's runs, as declared; part of RunOptions."""

    prune: str | None = option(
        PRUNING,
        str,
        None,
        "Sweeps only: end a run early (status pruned) when it falls behind the sweep's other "
        "runs. median: its best val acc is below the median of theirs at the same epoch "
        "(once 2 others got there); asha: asynchronous successive halving, at epochs r, r*3, "
        "r*9, ... only the top third of the runs that reached that epoch go on (once 3 did).",
        Choice(PRUNE_RULES, "prune rule"),
    )
    prune_after: int | None = option(
        PRUNING,
        int,
        None,
        "Pruning: no run is pruned before this epoch; for asha its first rung, r (default 1).",
        whole_numbers(1, MOST_EPOCHS),
    )
    prune_factor: int | None = option(
        PRUNING,
        int,
        None,
        "asha: the reduction factor eta: rungs at epochs r, r*eta, r*eta^2, ..., and the top "
        f"1/eta of each goes on (default {DEFAULT_PRUNE_FACTOR}).",
        whole_numbers(2, MOST_PRUNE_FACTOR),
    )

    @property
    def first_prune_epoch(self) -> int:
        """The first epoch after which a run may be pruned (--prune-after, default 1)."""
        return self.prune_after if self.prune_after is not None else 1

    @property
    def reduction_factor(self) -> int:
        """ASHA's eta (--prune-factor, default 3)."""
        return self.prune_factor if self.prune_factor is not None else DEFAULT_PRUNE_FACTOR


def pruning_options_fit(spec: "RunSpec") -> None:
    """The rule between the pruning options and the epochs: raises ValueError with the line
    the user sees."""
    if spec.prune is None:
        given = [
            flag
            for flag, value in (
                ("--prune-after", spec.prune_after),
                ("--prune-factor", spec.prune_factor),
            )
            if value is not None
        ]
        if given:
            raise ValueError(f"{given[0]} is for a pruned sweep; add --prune median or asha")
        return
    if spec.prune == "median" and spec.prune_factor is not None:
        raise ValueError("--prune-factor is asha's; the median rule has none (leave it out)")
    if spec.first_prune_epoch >= spec.epochs:
        raise ValueError(
            f"--prune-after {spec.first_prune_epoch} leaves no epoch to prune after: a run is "
            f"pruned after an epoch before its last (--epochs {spec.epochs}); give a smaller one"
        )
