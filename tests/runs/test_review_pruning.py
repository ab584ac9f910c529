"""Review of pruned sweeps: a sibling's val acc forged out of the range of an accuracy (a
damaged store) moves no median and no rung's line."""

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.runs.launcher import queue
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.sweeps import SweepPruning


def _val_acc(store: RunStore, run_id: int, epoch: int, value) -> None:
    with store.write_transaction() as connection:
        connection.execute(
            "INSERT INTO metrics (run_id, seq, epoch, step, split, name, value) VALUES (?, "
            "(SELECT coalesce(max(seq), 0) + 1 FROM metrics WHERE run_id = ?), ?, NULL, 'val', "
            "'acc', ?)",
            [run_id, run_id, epoch, value],
        )


@pytest.mark.parametrize("forged", [5.0, -0.5, 2, 10])
def test_a_forged_accuracy_out_of_range_counts_for_no_rule(tmp_path, forged):
    store = RunStore(tmp_path / "runs.db")
    base = {"epochs": 3, "prune": "median", "device": "cpu"}
    ids, _ = queue(store, [RunSpec.from_dict({**base, "seed": s}) for s in range(3)])
    own, first, second = ids
    pruning = SweepPruning.of(store, store.run(own), RunState())
    assert pruning is not None
    _val_acc(store, own, 1, 0.5)
    _val_acc(store, first, 1, 0.6)
    _val_acc(store, second, 1, forged)
    assert pruning.judge(1) is None  # one other run with an accuracy: too few to judge
    _val_acc(store, second, 1, 0.4)  # its newest row, a real one
    assert pruning.judge(1) is None  # 0.5 is the median of 0.6 and 0.4: the run goes on
    assert pruning.curves()[second] == {1: 0.4}
