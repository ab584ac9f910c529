"""The event log's contract: typed events, one parser that rejects with a reason, a writer
that writes only what the parser accepts, and torn or damaged lines skipped."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.contract import events as ev
from engine.contract.events import EventWriter
from tests.event_log import logged


def test_a_torn_last_line_is_left_until_it_is_whole(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit(ev.LOG, level="info", message="one")
    writer.close()
    whole = path.read_bytes()
    torn = json.dumps({"seq": 2, "t": 1.0, "type": ev.LOG, "level": "info", "message": "two"})
    path.write_bytes(whole + torn[:20].encode())

    read = ev.read_events(path, 0)
    assert [e.seq for e in read.events] == [1] and read.offset == len(whole)
    path.write_bytes(whole + torn.encode() + b"\n")  # the writer finishes the line
    read = ev.read_events(path, read.offset)
    assert [e.seq for e in read.events] == [2] and read.offset == path.stat().st_size


def test_a_damaged_line_is_skipped_and_a_resumed_writer_goes_on_numbering(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"seq": 1, "t": 1.0, "type": "log", "level": "info", "message": "x"}\n'
        "not json at all\n[1, 2]\n"
    )
    events = logged(path)
    assert [e["seq"] for e in events] == [1]
    writer = EventWriter(path)
    assert writer.emit(ev.LOG, level="info", message="again").seq == 2
    writer.close()


def test_a_writer_after_a_torn_line_starts_a_line_of_its_own(tmp_path):
    """An engine killed mid-line, then resumed: its first event is not glued to the torn
    fragment (which would lose it), and the fragment alone is rejected."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"seq": 1, "t": 1.0, "type": "heartbeat"}\n{"seq": 2, "t": 2.0, "ty')
    writer = EventWriter(path)
    writer.emit(ev.HEARTBEAT)
    writer.close()
    read = ev.read_events(path)
    assert [e.seq for e in read.events] == [1, 2]
    assert len(read.rejected) == 1 and "not JSON" in read.rejected[0][1]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON list, not an object"),
        ('{"seq": 1, "t": 1, "type": "launch_missiles"}', "unknown event type"),
        ('{"seq": 1, "t": 1, "type": "log", "level": "info"}', "without 'message'"),
        ('{"seq": 1, "t": 1, "type": "log", "level": 3, "message": "x"}', "'level'"),
        ('{"seq": "1", "t": 1, "type": "heartbeat"}', "'seq'"),
        ('{"seq": 0, "t": 1, "type": "heartbeat"}', "count from 1"),
        ('{"seq": true, "t": 1, "type": "heartbeat"}', "'seq'"),
        ('{"seq": 1, "t": 1, "type": "epoch_started", "epoch": 1e400, "epochs": 3}', "'epoch'"),
        ('{"seq": 99999999999999999999999, "t": 1, "type": "heartbeat"}', "'seq'"),
        (
            '{"seq": 1, "t": 1, "type": "policy", "epoch": 1, "policy": "full", "lr": {"a": "x"},'
            ' "training": [], "frozen": [], "trainable_parameters": 1}',
            "'lr'",
        ),
    ],
)
def test_a_line_that_is_not_an_event_of_the_contract_is_rejected_with_its_reason(line, reason):
    with pytest.raises(ev.BadEvent, match=reason):
        ev.parse_event(line)


def test_fields_a_reader_does_not_know_are_left_alone_and_defaults_fill_the_rest():
    event = ev.parse_event(
        '{"seq": 3, "t": 5.5, "type": "finished", "status": "stopped", "from_the_future": 1}'
    )
    assert isinstance(event, ev.Finished)
    assert (event.status, event.test, event.best_val_acc) == ("stopped", None, None)
    assert "from_the_future" not in event.to_dict()


def test_the_writer_refuses_what_the_contract_has_no_place_for(tmp_path):
    writer = EventWriter(tmp_path / "events.jsonl")
    with pytest.raises(TypeError, match="no fields"):
        writer.emit(ev.LOG, level="info", message="x", colour="red")
    with pytest.raises(ev.BadEvent, match="'message'"):
        writer.emit(ev.LOG, level="info", message=4)
    with pytest.raises(ev.BadEvent, match="without 'message'"):
        writer.emit(ev.LOG, level="info")
    writer.emit(ev.LOG, level="info", message="fine")
    writer.close()
    assert [e.seq for e in ev.read_events(tmp_path / "events.jsonl").events] == [1]


def test_every_event_type_round_trips_through_its_line():
    for kind in ev.EVENT_TYPES.values():
        assert kind.TYPE and ev.EVENT_TYPES[kind.TYPE] is kind
    event = ev.Progress(
        seq=4,
        t=1.5,
        epoch=1,
        step=2,
        steps=3,
        global_step=2,
        loss=0.5,
        samples_per_s=9.0,
        lr=0.1,
    )
    assert ev.parse_event(json.dumps(event.to_dict())) == event


_text = st.text(max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["seq", "t", "type", "epoch", "epochs", "message", "level", "status"])
        | _text,
        _json | st.sampled_from(list(ev.EVENT_TYPES)),
        max_size=8,
    )
)
def test_any_json_object_is_an_event_or_a_reason_never_another_error(values):
    try:
        event = ev.parse_event(json.dumps(values))
    except ev.BadEvent as error:
        assert str(error)
    else:
        assert event.seq >= 1 and ev.EVENT_TYPES[event.type] is type(event)


@given(st.binary(max_size=200))
def test_any_bytes_read_as_a_log_give_events_and_reasons_never_an_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("log") / "events.jsonl"
    path.write_bytes(data)
    read = ev.read_events(path)
    assert read.offset == data.rfind(b"\n") + 1
    assert all(reason for _, reason in read.rejected)
