"""The rules that prune a sweep's runs, as pure functions of their validation curves.

A curve is a run's validation accuracy by epoch (`{1: 0.41, 2: 0.55}`), its epochs cut
short by a stop left out. After each epoch of a run of a pruned sweep, its supervisor asks
`verdict` whether the run goes on, given its curve and its sweep's other runs' curves as the
store has them then; a run pruned ends with the `Pruned` line in its events.
"""

import re
import statistics
from dataclasses import dataclass

Curve = dict[int, float]

# Of the other runs of the sweep, how many must have reached an epoch for the median rule
# to judge a run there.
MEDIAN_MIN_OTHERS = 2


@dataclass(frozen=True)
class Pruned:
    """Why a run was pruned: at which epoch, and the rule's words."""

    epoch: int
    reason: str

    @property
    def line(self) -> str:
        """`pruned at epoch 3: best val acc 41.2% is below ...`, as the run's log keeps it."""
        return f"{PRUNED_AT}{self.epoch}: {self.reason}"

    @classmethod
    def read(cls, line: str) -> "Pruned | None":
        """The verdict a log line of `line`'s form holds; None for any other line."""
        found = _LINE.fullmatch(line)
        return cls(int(found.group(1)), found.group(2)) if found else None


PRUNED_AT = "pruned at epoch "
_LINE = re.compile(re.escape(PRUNED_AT) + r"(\d{1,9}): (.*)", re.DOTALL)


@dataclass(frozen=True)
class Rule:
    """A sweep's pruning: `median` or `asha`, the first epoch it may prune after, and
    ASHA's reduction factor (eta)."""

    kind: str
    after: int = 1
    factor: int = 3


def verdict(rule: Rule, epoch: int, own: Curve, others: list[Curve]) -> Pruned | None:
    """Whether the run with curve `own` is pruned after `epoch`, among the sweep's `others`;
    None: it goes on (so too where `own` has no value at `epoch`)."""
    if epoch not in own or epoch < rule.after:
        return None
    if rule.kind == "median":
        return median_verdict(epoch, own, others)
    if rule.kind == "asha":
        return asha_verdict(rule, epoch, own, others)
    return None


def best_up_to(curve: Curve, epoch: int) -> float | None:
    """The best value of `curve` at `epoch` or before; None where it has none yet."""
    return max((value for at, value in curve.items() if at <= epoch), default=None)


def median_verdict(epoch: int, own: Curve, others: list[Curve]) -> Pruned | None:
    """The median rule: pruned where the run's best val acc so far is below the median of
    the others' best up to the same epoch, among those that reached it (at least
    MEDIAN_MIN_OTHERS of them).

    Optuna's MedianPruner compares the run's best so far with the median of the others'
    values at that very epoch, among completed trials only (and waits for 5 of them to
    complete, n_startup_trials). Here the others' best up to the epoch is used, so a noisy
    epoch counts for neither side more than the other, and every run of the sweep that got
    there counts, running, pruned or stopped: its runs train at once, and a sweep would
    otherwise prune nothing until most of it were done.
    """
    best = best_up_to(own, epoch)
    reached = [best_up_to(curve, epoch) for curve in others if epoch in curve]
    values = [value for value in reached if value is not None]
    if best is None or len(values) < MEDIAN_MIN_OTHERS:
        return None
    median = statistics.median(values)
    if best >= median:
        return None
    mine, theirs = _percents(best, median)
    return Pruned(
        epoch,
        f"best val acc {mine} is below the sweep's median {theirs} at epoch {epoch} "
        f"(of {len(values)} other runs)",
    )


def rung_of(epoch: int, first: int, factor: int) -> int | None:
    """Which of ASHA's rungs (0, 1, 2, ... at epochs first, first*factor, ...) `epoch` is;
    None where it is none."""
    rung, at = 0, first
    while at < epoch:
        rung, at = rung + 1, at * factor
    return rung if at == epoch else None


def asha_verdict(rule: Rule, epoch: int, own: Curve, others: list[Curve]) -> Pruned | None:
    """Asynchronous successive halving: at a rung (epochs r, r*eta, r*eta^2, ...) a run goes
    on only if its val acc there is in the top 1/eta of the runs that reached the rung so
    far, itself among them (ties go on); none is cut while fewer than eta runs got there.

    As Optuna's SuccessiveHalvingPruner, on the value at the rung (not the best so far),
    with its `min_early_stopping_rate` 0 and r given (not 'auto'). Optuna, with fewer than
    eta trials at a rung, lets on only the best so far; here all of those go on, so the
    runs that reach a rung first are not cut for being first.
    """
    if rung_of(epoch, rule.after, rule.factor) is None:
        return None
    value = own[epoch]
    competing = [value, *(curve[epoch] for curve in others if epoch in curve)]
    kept = len(competing) // rule.factor
    if kept == 0:
        return None
    line = sorted(competing, reverse=True)[kept - 1]
    if value >= line:
        return None
    mine, theirs = _percents(value, line)
    top = f"top {kept}" if kept > 1 else "best"
    return Pruned(
        epoch,
        f"val acc {mine} is not among the {top} of the {len(competing)} runs at this rung "
        f"(1 in {rule.factor} goes on; {theirs} or better)",
    )


def _percents(mine: float, theirs: float) -> tuple[str, str]:
    """Two accuracies as percentages, with the digits that tell them apart (up to 4)."""
    digits = 1
    while digits < 4 and f"{100 * mine:.{digits}f}" == f"{100 * theirs:.{digits}f}":
        digits += 1
    return f"{100 * mine:.{digits}f}%", f"{100 * theirs:.{digits}f}%"
