"""Any bytes in an events file, folded through the reader into a run's state: nothing raises,
and the state's epochs are only ever the good `epoch_ended` events the file holds."""

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.contract import events as ev
from resnet_tui.runs.state import RunState
from tests.runs.made_events import epoch_ended, finished, progress, started

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_good = st.builds(
    lambda seq, epoch, kind: {
        "started": lambda: started(seq),
        "progress": lambda: progress(seq, epoch, seq, 0.5),
        "epoch_ended": lambda: epoch_ended(seq, epoch, 0.5),
        "finished": lambda: finished(seq),
    }[kind]().to_dict(),
    st.integers(1, 50),
    st.integers(1, 2),
    st.sampled_from(["started", "progress", "epoch_ended", "finished"]),
)


def _line(values: dict) -> bytes:
    return json.dumps(values, allow_nan=True).encode()


_forged = st.builds(
    lambda values, field, value: _line({**values, field: value}),
    _good,
    st.sampled_from(["seq", "t", "type", "epoch", "epochs", "val_acc", "lr", "test", "status"]),
    _json,
)
_lines = st.lists(
    st.one_of(
        _good.map(_line), _forged, st.binary(max_size=64), _json.map(lambda v: _line({"v": v}))
    ),
    max_size=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_lines, st.booleans(), st.data())
def test_any_lines_fold_without_raising_into_epochs_of_good_events(
    tmp_path: Path, lines, ends_a_line, data
):
    content = b"\n".join(lines) + (b"\n" if ends_a_line else b"")
    log = tmp_path / "events.jsonl"
    log.write_bytes(content)
    good = set()
    for line in content.split(b"\n"):
        try:
            event = ev.parse_event(line)
        except ev.BadEvent:
            continue
        if isinstance(event, ev.EpochEnded):
            good.add((event.seq, event.epoch))
    split = data.draw(st.integers(0, len(content)))
    first = ev.read_events(log, 0, end=split)
    rest = ev.read_events(log, first.offset, final=True)
    state = RunState().apply_read(first).apply_read(rest)
    whole = RunState().apply_read(ev.read_events(log, final=True))
    assert {(e.seq, e.epoch) for e in state.epochs} <= good
    assert state.epochs == whole.epochs and state.status == whole.status
    assert state.skipped_notes == whole.skipped_notes
    assert rest.offset == len(content)
    for summary in (state.epochs_done, state.best_val_acc, state.seconds, state.position):
        assert summary is None or summary == summary  # computed, and no NaN
