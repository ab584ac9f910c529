"""The event log: a line torn by a crash is left for later, a damaged one is skipped."""

import json

from engine import events as ev
from engine.events import EventWriter


def test_a_torn_last_line_is_left_until_it_is_whole(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit(ev.LOG, level="info", message="one")
    writer.close()
    whole = path.read_bytes()
    torn = json.dumps({"seq": 2, "t": 1.0, "type": ev.LOG, "level": "info", "message": "two"})
    path.write_bytes(whole + torn[:20].encode())

    events, offset = ev.read_events(path, 0)
    assert [e["seq"] for e in events] == [1] and offset == len(whole)
    path.write_bytes(whole + torn.encode() + b"\n")  # the writer finishes the line
    events, offset = ev.read_events(path, offset)
    assert [e["seq"] for e in events] == [2] and offset == path.stat().st_size


def test_a_damaged_line_is_skipped_and_a_resumed_writer_goes_on_numbering(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"seq": 1, "t": 1.0, "type": "log"}\nnot json at all\n[1, 2]\n')
    events, _ = ev.read_events(path, 0)
    assert [e["seq"] for e in events] == [1]
    writer = EventWriter(path)
    assert writer.emit(ev.LOG, level="info", message="again")["seq"] == 2
    writer.close()
