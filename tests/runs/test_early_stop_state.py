"""Early stopping as the run layer folds it from the `finished` event, and as the app's run
screen says it: forged or damaged fields shown as text, never as markup."""

from engine.contract import events as ev
from resnet_tui.app.screens.run_text import completed_words
from resnet_tui.runs.state import EarlyStop, RunState
from tests.runs.made_events import epoch_ended, finished, started

EARLY = {
    "epoch": 2,
    "reason": "val_acc did not improve by more than 0.5 for 1 epoch",
    "best": "50.0% at epoch 1",
}


def folded(**end) -> RunState:
    return RunState().apply_all(
        [started(1, epochs=30), epoch_ended(2, 1, 0.5), epoch_ended(3, 2, 0.45), finished(4, **end)]
    )


def test_the_finished_event_says_when_and_why_and_the_screen_says_completed_early():
    state = folded(early_stop=EARLY)
    assert state.status == "completed"
    assert state.early_stop == EarlyStop(2, EARLY["reason"], EARLY["best"])
    assert state.early_stop.line == (
        "stopped early after epoch 2: val_acc did not improve by more than 0.5 for 1 epoch "
        "(best 50.0% at epoch 1)"
    )
    assert completed_words(197.0, state) == (
        "completed early in 3:17 (epoch 2 of 30: val_acc did not improve by more than 0.5 "
        "for 1 epoch)"
    )


def test_a_run_that_ran_its_epochs_says_completed_as_before():
    state = folded()
    assert state.early_stop is None
    assert completed_words(197.0, state) == "completed in 3:17"


def test_a_forged_early_stop_is_shown_as_text():
    state = folded(early_stop={"epoch": True, "reason": "[red]x[/]\n", "best": ["?"]})
    assert state.early_stop == EarlyStop(None, "[red]x[/]\n", "['?']")
    assert completed_words(5.0, state) == r"completed early in 0:05 (\[red]x\[/]\x0a)"
    assert folded(early_stop={}).early_stop is None
    assert RunState().apply(ev.Finished(seq=1, t=1.0, status="stopped")).early_stop is None
