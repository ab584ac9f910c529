"""A damaged or forged events.jsonl: each bad line is skipped and noted, the lines around it are
applied, and every command that reads the store still answers; a log that is gone, a folder,
unreadable or a device ends a run nobody owns as `crashed`, saying so, with its metrics kept.

Each case starts from a run the fake engine trained (made once for the module), its row put
back to `running` as a supervisor that died leaves it, and its log damaged; the next viewer
(`runs`) catches it up.
"""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.runs.follower import RunFollower
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.supervisor import ENGINE_MODULE_VARIABLE
from tests.cli.command import TINY, cli, invoke, runs_json
from tests.conftest import ROOT, record_fault
from tests.fake_engine import EPOCH_S_VARIABLE

FAULT = "damaged or forged events: skipped and noted, store still opens"
DROP = object()  # a field a forged line leaves out
COMMANDS = [
    ("runs",),
    ("runs", "--json"),
    ("show", "1"),
    ("show", "1", "--json"),
    ("compare", "1", "2"),
]

Damage = Callable[[RunStore, Path, list[bytes]], None]
Make = Callable[[list[bytes]], bytes]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with runs.db and run 1, two epochs the fake engine trained."""
    folder = tmp_path_factory.mktemp("recorded")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENGINE_MODULE_VARIABLE, "tests.fake_engine")
        patch.setenv(EPOCH_S_VARIABLE, "0.05")
        patch.setenv("PYTHONPATH", str(ROOT))
        result = cli("run", *TINY, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def _lines(folder: Path) -> list[bytes]:
    return (folder / "runs" / "1" / "events.jsonl").read_bytes().splitlines(keepends=True)


def _real(lines: list[bytes], kind: str) -> dict:
    """The first event of `kind` in the recorded log, as a dict."""
    return next(json.loads(line) for line in lines if json.loads(line)["type"] == kind)


def forged(kind: str, **changes: object) -> Callable[[list[bytes]], bytes]:
    """A line: the recorded run's first `kind` event (or a bare one) with `changes`, at seq 500
    unless they say otherwise."""

    def make(lines: list[bytes]) -> bytes:
        try:
            values = _real(lines, kind)
        except StopIteration:
            values = {"type": kind, "t": 1.0}
        values = {**values, "seq": 500, **changes}
        return json.dumps({k: v for k, v in values.items() if v is not DROP}).encode() + b"\n"

    return make


def raw(text: bytes) -> Callable[[list[bytes]], bytes]:
    return lambda lines: text


def inserted(*bad: Callable[[list[bytes]], bytes]) -> Damage:
    """Damage: the bad lines between the first epoch's end and the second epoch's start."""

    def damage(store: RunStore, log: Path, lines: list[bytes]) -> None:
        cut = next(i for i, line in enumerate(lines) if b'"epoch_ended"' in line) + 1
        log.write_bytes(b"".join([*lines[:cut], *(make(lines) for make in bad), *lines[cut:]]))

    return damage


def appended(*bad: Callable[[list[bytes]], bytes]) -> Damage:
    def damage(store: RunStore, log: Path, lines: list[bytes]) -> None:
        log.write_bytes(b"".join([*lines, *(make(lines) for make in bad)]))

    return damage


def finished_replaced(make: Callable[[list[bytes]], bytes]) -> Damage:
    """Damage: the run's own `finished` line swapped for a damaged one."""

    def damage(store: RunStore, log: Path, lines: list[bytes]) -> None:
        log.write_bytes(b"".join(make(lines) if b'"finished"' in x else x for x in lines))

    return damage


def torn(keep: float, last: str = "finished") -> Damage:
    """Damage: the log ends `keep` of the way through its last `last` line, no newline."""

    def damage(store: RunStore, log: Path, lines: list[bytes]) -> None:
        at = max(i for i, line in enumerate(lines) if f'"{last}"'.encode() in line)
        cut = lines[at].rstrip(b"\n")
        log.write_bytes(b"".join(lines[:at]) + cut[: int(len(cut) * keep)])

    return damage


def after_epoch_one(then: Callable[[Path], None]) -> Damage:
    """Damage: the log of the first epoch caught up into the store (the run still running),
    then `then` done to the log file."""

    def damage(store: RunStore, log: Path, lines: list[bytes]) -> None:
        cut = next(i for i, line in enumerate(lines) if b'"epoch_ended"' in line) + 1
        log.write_bytes(b"".join(lines[:cut]))
        RunFollower(store, store.run(1)).poll()
        then(log)

    return damage


def _folder(log: Path) -> None:
    log.unlink()
    log.mkdir()


def _unreadable(log: Path) -> None:
    log.chmod(0)


def _dev_zero(log: Path) -> None:
    log.unlink()
    log.symlink_to("/dev/zero")


def _fifo(log: Path) -> None:
    log.unlink()
    os.mkfifo(log)


def literal(kind: str, field: str, text: bytes, **changes: object) -> Make:
    """A forged line whose `field` holds `text` as it is: NaN, Infinity, 1e999."""
    return lambda lines: forged(kind, **{field: "?", **changes})(lines).replace(b'"?"', text)


# Lines skipped with a note, the run applied around them: completed, both epochs. (name,
# damage, a fragment of the note)
SKIPPED: list[tuple[str, Damage, str | None]] = [
    # each event type without a field it needs
    ("started without device", inserted(forged("started", device=DROP)), "'device'"),
    ("epoch_started without epoch", inserted(forged("epoch_started", epoch=DROP)), "'epoch'"),
    ("progress without loss", inserted(forged("progress", loss=DROP)), "'loss'"),
    ("epoch_ended without val_acc", inserted(forged("epoch_ended", val_acc=DROP)), "'val_acc'"),
    ("policy without lr", inserted(forged("policy", lr=DROP)), "'lr'"),
    ("checkpoint without path", inserted(forged("checkpoint", path=DROP)), "'path'"),
    ("log without message", inserted(forged("log", level="info")), "'message'"),
    ("fusion without candidate", inserted(forged("fusion", step=1, steps=2)), "'candidate'"),
    ("heartbeat without t", inserted(forged("heartbeat", t=DROP)), "'t'"),
    ("error without kind", inserted(forged("error", message="m")), "'kind'"),
    ("an event without seq", inserted(forged("progress", seq=DROP)), "'seq'"),
    # wrong types
    ("epoch a string", inserted(forged("epoch_ended", epoch="lots")), "'epoch'"),
    ("val_acc a string", inserted(forged("epoch_ended", epoch=2, val_acc="0.9")), "'val_acc'"),
    ("lr a list", inserted(forged("epoch_ended", epoch=2, lr=[0.1])), "'lr'"),
    ("lr null", inserted(forged("epoch_ended", epoch=2, lr=None)), "'lr'"),
    ("loss null", inserted(forged("progress", loss=None)), "'loss'"),
    ("sizes a list", inserted(forged("started", sizes=[1, 2])), "'sizes'"),
    ("test a list", appended(forged("finished", test=[0.9])), "'test'"),
    ("status a number", appended(forged("finished", status=5)), "'status'"),
    ("seq a string", inserted(forged("progress", seq="500")), "'seq'"),
    ("t a string", inserted(forged("progress", t="now")), "'t'"),
    ("best a string", inserted(forged("checkpoint", best="yes")), "'best'"),
    ("true for a number", inserted(forged("epoch_ended", epoch=2, val_acc=True)), "'val_acc'"),
    # numbers out of range
    ("t at 1e308", inserted(forged("progress", t=1e308)), "not a unix time"),
    ("epoch -1", inserted(forged("epoch_ended", epoch=-1)), "'epoch'"),
    ("seq -1", inserted(forged("progress", seq=-1)), "'seq'"),
    ("step at 2**64", inserted(forged("progress", global_step=2**64)), "'global_step'"),
    ("seq at 2**63", inserted(forged("progress", seq=2**63)), "'seq'"),
    ("epoch 0", inserted(forged("epoch_ended", epoch=0)), "epoch 0 of 2"),
    ("epoch beyond epochs", inserted(forged("epoch_ended", epoch=3)), "epoch 3 of 2"),
    ("NaN for t", inserted(literal("heartbeat", "t", b"NaN")), "'t'"),
    ("NaN val_loss", inserted(literal("epoch_ended", "val_loss", b"NaN", epoch=2)), "'val_loss'"),
    ("Infinity seconds", inserted(literal("epoch_ended", "seconds", b"Infinity")), "'seconds'"),
    ("-Infinity lr", inserted(literal("progress", "lr", b"-Infinity")), "'lr'"),
    ("1e999 loss", inserted(literal("progress", "loss", b"1e999")), "'loss'"),
    ("5000 digits", inserted(literal("progress", "step", b"9" * 5000)), "not JSON"),
    # out of order, repeated, after the end: events of the contract, each fact the newest
    ("seq going backwards", inserted(forged("epoch_ended", seq=2, val_acc=0.99)), None),
    ("duplicate finished", appended(lambda lines: lines[-1]), None),
    ("an older finished, stopped", appended(forged("finished", seq=3, status="stopped")), None),
    ("progress after finished", appended(forged("progress", epoch=2**40, step=2**62)), None),
    # not an event at all
    ("an unknown type", inserted(forged("progress", type="launch")), "unknown event type"),
    ("type null", inserted(forged("progress", type=None)), "unknown event type"),
    ("a JSON array", inserted(raw(b"[1, 2, 3]\n")), "JSON list"),
    ("a JSON number", inserted(raw(b"42\n")), "JSON int"),
    ("a JSON string", inserted(raw(b'"finished"\n')), "JSON str"),
    ("a JSON null", inserted(raw(b"null\n")), "JSON null"),
    ("invalid UTF-8", inserted(literal("log", "message", b'"\xff\xfe"')), "not JSON"),
    ("a NUL byte", inserted(raw(b'{"seq":500,"t":1,\x00"type":"heartbeat"}\n')), "not JSON"),
    ("NUL bytes alone", inserted(raw(b"\x00" * 4096 + b"\n")), "not JSON"),
    ("nested too deep", inserted(raw(b"[" * 200_000 + b"\n")), "too deep"),
    (
        "a 10 MB line",
        inserted(raw(b'{"seq":5,"message":"' + b"x" * 10 * 2**20 + b"\n")),
        "not JSON",
    ),
    ("longer than any event", inserted(raw(b"x" * (ev.LONGEST_LINE + 9) + b"\n")), "longer"),
    ("blank lines", inserted(raw(b"\n  \n\t\n")), None),
    ("newline lost at the end", torn(1.0), None),
]
# Damage that ends the run nobody owns: (name, damage, status, epochs in the store, note).
ENDED: list[tuple[str, Damage, str, list[int], str]] = [
    (
        "finished without t",
        finished_replaced(forged("finished", t=DROP, seq=19)),
        "crashed",
        [1, 2],
        "'t'",
    ),
    ("last line torn", torn(0.5), "crashed", [1, 2], "not JSON"),
    ("torn in the second epoch", torn(0.5, "epoch_ended"), "crashed", [1], "not JSON"),
    ("events.jsonl deleted", after_epoch_one(Path.unlink), "crashed", [1], "is gone"),
    ("events.jsonl a folder", after_epoch_one(_folder), "crashed", [1], "is not a file"),
    ("events.jsonl unreadable", after_epoch_one(_unreadable), "crashed", [1], "cannot be read"),
    ("a link to /dev/zero", after_epoch_one(_dev_zero), "crashed", [1], "is not a file"),
    ("events.jsonl a named pipe", after_epoch_one(_fifo), "crashed", [1], "is not a file"),
]
CASES = [(name, damage, "completed", [1, 2], note) for name, damage, note in SKIPPED] + ENDED


@pytest.mark.parametrize(
    ("damage", "status", "epochs", "noted"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_damaged_log_is_skipped_and_noted_and_every_command_answers(
    recorded, tmp_path, damage, status, epochs, noted
):
    closure = [cell.cell_contents for cell in damage.__closure__ or ()]
    if _unreadable in closure and os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode")
    shutil.copytree(recorded, tmp_path, dirs_exist_ok=True)
    lines = _lines(tmp_path)
    store = RunStore(tmp_path / "runs.db")
    other = store.create_run(RunSpec(), status="completed")
    store.update(
        1,
        **dict.fromkeys(("best_val_acc", "test_acc", "test_top5", "test_report", "seconds"), None),
        **{
            "status": "running",
            "ended_at": None,
            "events_offset": 0,
            "last_seq": 0,
            "epochs_done": 0,
        },
        run_dir=str(store.folder_of(1).resolve()),  # the copy's, not the recorded run's
    )
    store.connection.execute("DELETE FROM metrics WHERE run_id = 1")
    log = store.run(1).events_path
    damage(store, log, lines)
    answers = [invoke(*command, cwd=tmp_path) for command in COMMANDS]
    survived = all(a.returncode == 0 and "Traceback" not in a.stdout + a.stderr for a in answers)
    listed = {run["id"] for run in runs_json(tmp_path)} == {1, other}
    run = store.run(1)
    table = store.epoch_table(1)
    kept = [row["epoch"] for row in table] == epochs
    if noted is None or (run.status == "crashed" and noted in run.error.line):
        said = True
    else:
        read = ev.read_events(log, final=True) if log.is_file() else ev.EventsRead([], 0, [])
        said = any(noted in note for note in RunState().apply_read(read).skipped_notes)
    record_fault(FAULT, survived and listed and kept and said and run.status == status)
    assert survived, [a.stdout[-800:] + a.stderr[-800:] for a in answers]
    assert listed
    assert run.status == status, run.error
    assert kept, table
    assert said, (run.error, noted)
    if status == "completed":
        assert run.epochs_done == 2 and run.test_acc == pytest.approx(
            _real(lines, "finished")["test"]["top1"]
        )
        assert table[0]["val_acc"] == _real(lines, "epoch_ended")["val_acc"]


def test_a_line_being_written_waits_for_its_rest_while_the_engine_lives(recorded, tmp_path):
    """A last line without its newline is read once whole, not rejected meanwhile."""
    lines = _lines(recorded)
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run(RunSpec(), status="running")
    log = store.run(run_id).events_path
    half = len(lines[-1]) // 2
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:half])
    follower = RunFollower(store, store.run(run_id))
    follower.poll()
    waiting = (store.run(run_id).status, follower.rejected) == ("running", [])
    with open(log, "ab") as file:
        file.write(lines[-1][half:])
    follower.poll()
    done = (store.run(run_id).status, store.run(run_id).epochs_done) == ("completed", 2)
    record_fault(FAULT, waiting and done)
    assert waiting and done


def test_a_test_report_of_the_wrong_shape_leaves_its_numbers_out(recorded, tmp_path):
    """The test report is free-form: a top-1 that is no number is no test accuracy."""
    lines = _lines(recorded)
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run(RunSpec(), status="running")
    report = {"top1": "lots", "top5": float("inf"), "loss": [1]}
    log = store.run(run_id).events_path
    log.write_bytes(b"".join(lines) + forged("finished", test=report)(lines))
    RunFollower(store, store.run(run_id)).poll()
    run = store.run(run_id)
    answers = [invoke(*command, cwd=tmp_path) for command in (("runs",), ("runs", "--json"))]
    survived = all(a.returncode == 0 for a in answers)
    record_fault(FAULT, survived and run.test_acc is None and run.test_top5 is None)
    assert survived, [a.stderr for a in answers]
    assert (run.status, run.test_acc, run.test_top5) == ("completed", None, None)
