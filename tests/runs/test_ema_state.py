"""What the store side says of a run with an average of its weights (--ema-decay): the line
`show` prints, and the run screen's log lines, from the events alone."""

from rich.text import Text

from engine.contract import events as ev
from resnet_tui.app.screens.run_text import event_lines
from resnet_tui.runs.metrics import metric_rows
from resnet_tui.runs.state import RunState
from tests.runs.made_events import TEST_REPORT, epoch_ended, started


def test_the_ema_line_says_its_best_val_acc_and_which_weights_best_pt_holds():
    events = [
        started(1),
        epoch_ended(2, 1, 0.50, ema_val_acc=0.55, ema_val_loss=1.0),
        ev.Checkpoint(seq=3, t=103.0, path="b", name="best", epoch=1, best=True, weights="ema"),
        epoch_ended(4, 2, 0.70, ema_val_acc=0.65, ema_val_loss=0.9),
        ev.Checkpoint(seq=5, t=105.0, path="l", name="last", epoch=2, best=False, weights="raw"),
        ev.Checkpoint(seq=6, t=106.0, path="b", name="best", epoch=2, best=True, weights="raw"),
    ]
    state = RunState().apply_all(events)
    assert state.ema_line == "EMA val acc 65.0% (epoch 2) · best from raw, epoch 2"
    # in any order, and while only the first epoch is known
    assert RunState().apply_all(events[::-1]).ema_line == state.ema_line
    assert RunState().apply_all(events[:3]).ema_line == (
        "EMA val acc 55.0% (epoch 1) · best from ema, epoch 1"
    )
    plain = RunState().apply_all([started(1), epoch_ended(2, 1, 0.5)])
    assert plain.ema_line is None


def test_the_run_screen_says_the_ema_val_acc_and_the_weights_tested():
    [line] = event_lines(epoch_ended(2, 1, 0.5, ema_val_acc=0.625, ema_val_loss=1.0))
    assert line.endswith("EMA val acc 62.5%")
    [line] = event_lines(epoch_ended(2, 1, 0.5))
    assert "EMA" not in line
    forged = {**TEST_REPORT, "weights": "[red]ema\n"}
    finished = ev.Finished(seq=9, t=109.0, status="completed", best_val_acc=0.6, test=forged)
    said = Text.from_markup(event_lines(finished)[1]).plain
    assert said.startswith("test accuracy 61.0% of the [red]ema") and "\n" not in said


def test_the_ema_scores_are_kept_in_the_metrics_beside_the_raw_ones():
    rows = metric_rows(7, epoch_ended(2, 1, 0.5, ema_val_acc=0.625, ema_val_loss=1.25))
    val = {name: value for _, _, _, _, split, name, value in rows if split == "val"}
    assert val["ema_acc"] == 0.625 and val["ema_loss"] == 1.25 and val["acc"] == 0.5
    plain = metric_rows(7, epoch_ended(2, 1, 0.5))
    assert not [row for row in plain if row[5].startswith("ema")]
