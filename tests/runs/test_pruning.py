"""The pruning rules (resnet_tui/runs/pruning.py) against brute-force statements of them: the
median rule and asynchronous successive halving, on any curves, as Optuna states them."""

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from resnet_tui.runs.pruning import (
    MEDIAN_MIN_OTHERS,
    Pruned,
    Rule,
    best_up_to,
    rung_of,
    verdict,
)

EPOCHS = 6
# Accuracies as a store keeps them: a few values, so that ties come up often.
accuracies = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.51, 0.75, 0.9, 1.0])
curves = st.dictionaries(st.integers(1, EPOCHS), accuracies, max_size=EPOCHS)
sweeps = st.lists(curves, max_size=7)


def brute_best(curve: dict[int, float], epoch: int) -> float | None:
    """The best value at `epoch` or before, looked for epoch by epoch."""
    best = None
    for at in range(1, epoch + 1):
        if at in curve and (best is None or curve[at] > best):
            best = curve[at]
    return best


def brute_median(values: list[float]) -> Fraction:
    """The median, exactly: the value with as many values above as below it, or the mean
    of the two in the middle, found by counting (no sort)."""
    exact = [Fraction(value) for value in values]
    n = len(exact)

    def kth(k: int) -> Fraction:  # the k-th smallest, counted from 1
        return next(v for v in exact if sum(w < v for w in exact) < k <= sum(w <= v for w in exact))

    return kth((n + 1) // 2) if n % 2 else (kth(n // 2) + kth(n // 2 + 1)) / 2


def brute_median_prunes(epoch: int, after: int, own: dict, others: list[dict]) -> bool:
    """Optuna's median rule as the issue states it, on the others' best up to the epoch."""
    if epoch < after or epoch not in own:
        return False
    there = [brute_best(curve, epoch) for curve in others if epoch in curve]
    if len(there) < MEDIAN_MIN_OTHERS:
        return False
    return Fraction(brute_best(own, epoch)) < brute_median(there)


def brute_rungs(first: int, factor: int) -> list[int]:
    return [first * factor**k for k in range(12)]


def brute_asha_prunes(epoch: int, rule: Rule, own: dict, others: list[dict]) -> bool:
    """ASHA: at a rung, pruned where at least len // eta of the runs there (itself among
    them) did strictly better, once eta runs are there."""
    if epoch < rule.after or epoch not in own or epoch not in brute_rungs(rule.after, rule.factor):
        return False
    there = [own[epoch]] + [curve[epoch] for curve in others if epoch in curve]
    if len(there) < rule.factor:
        return False
    better = sum(value > own[epoch] for value in there)
    return better >= len(there) // rule.factor


@settings(max_examples=400)
@given(st.integers(1, EPOCHS), st.integers(1, EPOCHS), curves, sweeps)
def test_the_median_rule_prunes_as_its_brute_force_statement_does(epoch, after, own, others):
    said = verdict(Rule("median", after), epoch, own, others)
    assert (said is not None) == brute_median_prunes(epoch, after, own, others)
    if said is not None:
        assert said.epoch == epoch and said.line.startswith(f"pruned at epoch {epoch}: ")
        assert "below the sweep's median" in said.reason


@settings(max_examples=400)
@given(st.integers(1, EPOCHS), st.integers(1, 3), st.integers(2, 4), curves, sweeps)
def test_asha_prunes_as_its_brute_force_statement_does(epoch, after, factor, own, others):
    rule = Rule("asha", after, factor)
    said = verdict(rule, epoch, own, others)
    assert (said is not None) == brute_asha_prunes(epoch, rule, own, others)
    if said is not None:
        assert f"1 in {factor} goes on" in said.reason


@given(st.integers(1, EPOCHS), curves, sweeps, st.sampled_from(["median", "asha"]))
def test_the_best_run_at_an_epoch_is_never_pruned(epoch, own, others, kind):
    """Whoever leads (by best so far, for the median; by the value there, for ASHA) goes on."""
    if epoch not in own:
        return
    lead = own[epoch] if kind == "asha" else best_up_to(own, epoch)
    rivals = [c[epoch] if kind == "asha" else best_up_to(c, epoch) for c in others if epoch in c]
    if all(lead >= rival for rival in rivals):
        assert verdict(Rule(kind), epoch, own, others) is None


@given(st.integers(1, EPOCHS), curves, sweeps, st.sampled_from(["median", "asha"]))
def test_a_better_curve_is_never_pruned_where_a_worse_one_went_on(epoch, own, others, kind):
    better = {at: min(1.0, value + 0.2) for at, value in own.items()}
    if verdict(Rule(kind), epoch, own, others) is None:
        assert verdict(Rule(kind), epoch, better, others) is None


@given(curves, sweeps)
def test_no_rule_prunes_before_its_first_epoch_nor_without_a_value_there(own, others):
    for epoch in range(1, EPOCHS + 1):
        assert verdict(Rule("median", epoch + 1), epoch, own, others) is None
        assert verdict(Rule("asha", epoch + 1, 2), epoch, own, others) is None
        gone = {at: value for at, value in own.items() if at != epoch}
        assert verdict(Rule("median"), epoch, gone, others) is None
        assert verdict(Rule("asha"), epoch, gone, others) is None


@given(st.integers(1, 50), st.integers(1, 5), st.integers(2, 5))
def test_the_rungs_are_r_times_powers_of_eta(epoch, first, factor):
    rungs = [first * factor**k for k in range(10)]
    expected = rungs.index(epoch) if epoch in rungs else None
    assert rung_of(epoch, first, factor) == expected


def test_the_first_eta_minus_one_runs_at_a_rung_are_not_cut_for_being_first():
    worst = {1: 0.1}
    assert verdict(Rule("asha", 1, 3), 1, worst, [{1: 0.9}]) is None
    assert verdict(Rule("asha", 1, 3), 1, worst, [{1: 0.9}, {1: 0.8}]) is not None


def test_the_median_waits_for_two_others_at_the_epoch_and_says_why():
    own = {1: 0.2, 2: 0.3}
    assert verdict(Rule("median"), 2, own, [{1: 0.9, 2: 0.9}, {1: 0.9}]) is None
    said = verdict(Rule("median"), 2, own, [{1: 0.9, 2: 0.5}, {1: 0.4, 2: 0.6}])
    assert said == Pruned(
        2, "best val acc 30.0% is below the sweep's median 75.0% at epoch 2 (of 2 other runs)"
    )


def test_close_accuracies_are_told_apart_in_the_reason():
    said = verdict(Rule("median"), 1, {1: 0.41241}, [{1: 0.41249}, {1: 0.41249}])
    assert said is not None and "41.24%" in said.reason and "41.25%" in said.reason


@given(st.integers(1, 10**9 - 1), st.text())
def test_a_pruned_line_reads_back_as_it_was_written(epoch, reason):
    assert Pruned.read(Pruned(epoch, reason).line) == Pruned(epoch, reason)


@given(st.text())
def test_any_other_line_is_no_pruning(line):
    if not line.startswith("pruned at epoch "):
        assert Pruned.read(line) is None
