"""RunState: everything a run's events tell, the same however the log is read."""

from hypothesis import given
from hypothesis import strategies as st

from engine.contract import events as ev
from resnet_tui.runs.state import RunState
from tests.runs.made_events import epoch_ended, finished, progress, started, two_epochs


@st.composite
def logs(draw: st.DrawFn) -> list[ev.Event]:
    """A run's log: one or more lives of an engine (each but the first resumed from its last
    checkpoint), each training some epochs and ending, or dying without a word."""
    events: list[ev.Event] = []
    seq, checkpoint, epochs = 0, 0, draw(st.integers(1, 5))
    for life in range(draw(st.integers(1, 3))):
        seq += 1
        events.append(started(seq, t=100.0 * (life + 1), resumed_from_epoch=checkpoint))
        epoch = checkpoint
        for _ in range(draw(st.integers(0, epochs - checkpoint))):
            epoch += 1
            for step in range(draw(st.integers(0, 2))):
                seq += 1
                loss = draw(st.floats(0, 5))
                events.append(progress(seq, epoch, epoch * 10 + step, loss))
            seq += 1
            events.append(epoch_ended(seq, epoch, draw(st.floats(0, 1))))
            if draw(st.booleans()):
                checkpoint = epoch  # the checkpoint of this epoch was written
        ending = draw(st.sampled_from(["finished", "stopped", "error", "died"]))
        seq += 1
        if ending == "finished":
            events.append(finished(seq, best_val_acc=draw(st.floats(0, 1))))
            break
        if ending == "stopped":
            events.append(finished(seq, status="stopped", test=None))
        elif ending == "error":
            events.append(ev.Error(seq=seq, t=1.0, kind="diverged", message="nan", hint=""))
    return events


def state_of(events: list[ev.Event]) -> RunState:
    return RunState().apply_all(events)


@given(logs(), st.data())
def test_a_log_in_pieces_duplicated_or_out_of_order_gives_the_same_state(events, data):
    whole = state_of(events)
    cut = data.draw(st.integers(0, len(events)))
    in_two = RunState().apply_all(events[:cut]).apply_all(events[cut:])
    assert in_two == whole
    overlapping = RunState().apply_all(events[:cut]).apply_all(events[max(0, cut - 3) :])
    assert overlapping == whole  # a follower that read some lines again
    if len(events) > 1:
        index = data.draw(st.integers(0, len(events) - 2))
        swapped = [*events[:index], events[index + 1], events[index], *events[index + 2 :]]
        assert state_of(swapped) == whole
    shuffled = data.draw(st.permutations(events))
    assert state_of(shuffled) == whole


@given(logs())
def test_what_a_resume_undid_never_counts(events):
    state = state_of(events)
    assert [epoch.epoch for epoch in state.epochs] == sorted({e.epoch for e in state.epochs})
    assert state.epochs_done == max([e.epoch for e in state.epochs], default=0) or (
        state.started is not None and state.epochs_done == state.started.resumed_from_epoch
    )
    last_start = max(state.restarts, default=0)
    for epoch in state.epochs:  # before the last resumed start only what it kept
        assert epoch.seq > last_start or epoch.epoch <= state.restarts.get(last_start, 0)


def test_a_completed_run_has_its_status_metrics_and_report():
    state = state_of(two_epochs())
    assert (state.status, state.ended, state.epochs_done) == ("completed", True, 2)
    assert state.best_val_acc == 0.5 and state.seconds == 5.0
    assert state.test is not None and state.test["top1"] == 0.61
    assert [p.global_step for p in state.step_loss_points] == [10, 20]
    assert state.first_started_at == 100.0 and state.last_seq == 6


def test_a_resumed_run_is_running_again_and_keeps_what_its_checkpoint_kept():
    """Died after epoch 2's metrics but before its checkpoint; resumed from epoch 1."""
    lost = [started(1), epoch_ended(2, 1, 0.5), epoch_ended(3, 2, 0.9)]
    resumed = [started(4, t=300.0, resumed_from_epoch=1, best_val_acc=0.5)]
    state = state_of(lost + resumed)
    assert state.status == "running" and not state.ended
    assert [e.epoch for e in state.epochs] == [1] and state.best_val_acc == 0.5
    assert state.epochs_done == 1 and state.first_started_at == 100.0
    state.apply(epoch_ended(5, 2, 0.45)).apply(finished(6, best_val_acc=0.5))
    assert [e.val_acc for e in state.epochs] == [0.5, 0.45]
    assert (state.status, state.best_val_acc) == ("completed", 0.5)


def test_a_stopped_run_that_resumes_is_running_and_an_error_ends_it_failed():
    state = state_of([started(1), epoch_ended(2, 1, 0.3), finished(3, "stopped", test=None)])
    assert state.status == "stopped" and state.test is None
    state.apply(started(4, resumed_from_epoch=1))
    assert state.status == "running" and state.ended_at is None
    state.apply(ev.Error(seq=5, t=9.0, kind="out_of_memory", message="oom", hint="smaller"))
    assert state.status == "failed" and state.error is not None
    assert state.error.line == "oom; smaller" and state.ended_at == 9.0


def test_progress_gives_the_position_speed_and_time_left():
    state = state_of([started(1, epochs=4), epoch_ended(2, 1, 0.3, seconds=10.0)])
    state.apply(
        ev.Progress(
            seq=3,
            t=1.0,
            epoch=2,
            step=5,
            steps=10,
            global_step=15,
            loss=1.0,
            samples_per_s=50.0,
            lr=0.1,
        )
    )
    assert state.position == 1.5 and state.samples_per_s == 50.0
    assert state.eta_s == 25.0  # 2.5 epochs left at 10 s an epoch
    state.apply(finished(4))
    assert state.eta_s is None
