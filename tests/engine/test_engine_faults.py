"""Faults under a run: a full disk, memory running out, hostile or damaged files. Each ends the
run with an `error` event of its own kind naming what is wrong and what to do, one line, no
traceback, no temporary file left behind, never advice to load a file unsafely."""

import errno
import json
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.contract import locate
from engine.contract.errors import RunError
from engine.contract.events import USER_ERROR_KINDS
from engine.contract.spec import RunSpec
from engine.contract.stopping import StopRequest
from engine.data import sources
from engine.train import checkpoints
from engine.train.loop import Trainer
from engine.train.run import run
from tests.conftest import record_fault
from tests.event_log import logged

FAULTS = "engine faults (disk full, out of memory, bad files): named, no traceback"
TINY = {
    "arch": "resnet8",
    "width": 4,
    "dataset": "shapes",
    "limit": 64,
    "image_size": 16,
    "epochs": 1,
    "batch_size": 32,
    "device": "cpu",
}


@dataclass
class Fault:
    """One row of the table: what `make` does to the run (in `folder`, through `patch`) and
    the options it returns, then the error the run must end with."""

    name: str
    make: Callable[[Path, pytest.MonkeyPatch], dict]
    kind: str
    message: str
    hint: str
    resume: bool = False


class FullFile:
    """A file on a disk that fills up after `room` bytes: writes then fail as the OS's do."""

    def __init__(self, file, room: int, code: int) -> None:
        self.file, self.room, self.code = file, room, code

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(self.code, "No space left on device")
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def disk_fills(code: int, room: int = 4096):
    """torch.save writing into a disk that fills up: the checkpoint is half written."""

    def make(folder: Path, patch: pytest.MonkeyPatch) -> dict:
        save = torch.save
        patch.setattr(
            torch, "save", lambda payload, file: save(payload, FullFile(file, room, code))
        )
        return {}

    return make


def best_copy_fills(folder: Path, patch: pytest.MonkeyPatch) -> dict:
    """best.pt cannot be linked (another file system) and its copy fills the disk."""

    def no_link(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def full_copy(source, target):
        Path(target).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    patch.setattr(checkpoints.os, "link", no_link)
    patch.setattr(checkpoints.shutil, "copyfile", full_copy)
    return {}


def fails_with(error: BaseException):
    """The run's training raising `error` (as memory or a disk running out do, anywhere)."""

    def make(folder: Path, patch: pytest.MonkeyPatch) -> dict:
        def fit(self):
            raise error

        patch.setattr(Trainer, "fit", fit)
        return {}

    return make


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header claims `width` x `height` pixels."""
    out = BytesIO()
    Image.new("RGB", (1, 1)).save(out, format="PNG")
    png = out.getvalue()  # signature (8), IHDR length (4), "IHDR", its 13 bytes, its CRC
    chunk = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


def image_folder(folder: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Two classes of small PNGs, and `extra` files (name: bytes) in the red one."""
    root = folder / "images"
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (20, 20), colour).save(root / name / f"{i}.png")
    for name, content in (extra or {}).items():
        (root / "red" / name).write_bytes(content)
    return root


def images(extra: dict[str, bytes] | None = None):
    def make(folder: Path, patch: pytest.MonkeyPatch) -> dict:
        root = image_folder(folder, extra)
        return {"dataset": f"imagefolder:{root}", "batch_size": 4, "workers": 0}

    return make


def unlistable_class_folder(folder: Path, patch: pytest.MonkeyPatch) -> dict:
    """A class folder the user may not list (chmod does not stop root, so the scan is told)."""
    root = image_folder(folder)

    def scan(path: Path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path / "secret"))

    patch.setattr(locate, "scan_image_folder", scan)
    return {"dataset": f"imagefolder:{root}", "batch_size": 4, "workers": 0}


def last_checkpoint_holding(content: Callable[[Path], None]):
    """A run with one epoch done whose last.pt is then replaced by `content`; it resumes."""

    def make(folder: Path, patch: pytest.MonkeyPatch) -> dict:
        assert run(RunSpec.from_dict(TINY), folder / "events.jsonl", folder, StopRequest()) == 0
        content(folder / "checkpoints" / "last.pt")
        return {"epochs": 2}

    return make


def garbage(path: Path) -> None:
    path.write_bytes(b"\x80\x02garbage that is no checkpoint" * 10)


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def not_a_checkpoint(path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, path)


def another_runs(path: Path) -> None:
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "epoch": 1}, path)


DAMAGED = "is damaged"
START_AGAIN = "--init run:ID"
FAULT_TABLE = [
    Fault("disk full writing last.pt", disk_fills(errno.ENOSPC), "disk_full",
          "could not write last.pt", "free some space"),
    Fault("quota used up writing last.pt", disk_fills(errno.EDQUOT), "disk_full",
          "quota is used up", "choose another folder"),
    Fault("disk full copying best.pt", best_copy_fills, "disk_full",
          "could not write best.pt", "free some space"),
    Fault("disk full elsewhere", fails_with(OSError(errno.ENOSPC, "No space left", "/x/y")),
          "disk_full", "the disk is full", "free some space"),
    Fault("MemoryError", fails_with(MemoryError()), "out_of_memory",
          "ran out of memory at batch size 32", "--batch-size 16"),
    Fault("CPU allocator out of memory", fails_with(RuntimeError(
              "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
              "allocate memory: you tried to allocate 70368744177664 bytes.")),
          "out_of_memory", "ran out of memory", "--limit"),
    Fault("data worker killed", fails_with(RuntimeError(
              "DataLoader worker (pid 4242) is killed by signal: Killed. ")),
          "out_of_memory", "killed by SIGKILL (often the kernel's out-of-memory killer)",
          "--workers"),
    Fault("decompression bomb (error)", images({"bomb.png": png_claiming(20000, 20000)}),
          "bad_data", "bomb.png: its header claims 400000000 pixels", "remove or replace"),
    Fault("decompression bomb (warning)", images({"bomb.png": png_claiming(10000, 10000)}),
          "bad_data", "(a decompression bomb?)", "remove or replace"),
    Fault("class folder not listable", unlistable_class_folder, "bad_data",
          "cannot read ", "that you can read"),
    Fault("garbage last.pt", last_checkpoint_holding(garbage), "bad_data", DAMAGED,
          START_AGAIN, resume=True),
    Fault("truncated last.pt", last_checkpoint_holding(truncated), "bad_data", DAMAGED,
          START_AGAIN, resume=True),
    Fault("last.pt of no model", last_checkpoint_holding(not_a_checkpoint), "bad_data",
          "holds no model weights", START_AGAIN, resume=True),
    Fault("last.pt of another run", last_checkpoint_holding(another_runs), "bad_data",
          DAMAGED, "resnet-tui rm", resume=True),
]  # fmt: skip


@pytest.mark.parametrize("fault", FAULT_TABLE, ids=lambda fault: fault.name)
def test_a_fault_under_a_run_is_its_own_error_named_in_one_line(
    fault, tmp_path, monkeypatch, capsys
):
    options = fault.make(tmp_path, monkeypatch)
    capsys.readouterr()
    spec = RunSpec.from_dict({**TINY, **options})
    code = run(spec, tmp_path / "events.jsonl", tmp_path, StopRequest(), resume=fault.resume)
    error = logged(tmp_path / "events.jsonl")[-1]
    said = f"{error.get('message')} {error.get('hint')}"
    checks = {
        "exit code 1": code == 1,
        "an error event": error["type"] == "error",
        f"kind {fault.kind}": error.get("kind") == fault.kind,
        f"message has {fault.message!r}": fault.message in error.get("message", ""),
        f"hint has {fault.hint!r}": fault.hint in error.get("hint", ""),
        "one line": "\n" not in said,
        "no traceback": "Traceback" not in said + capsys.readouterr().err,
        "no unsafe advice": "weights_only" not in said,
        "no temporary file": not list(tmp_path.rglob("*.tmp")),
    }
    failed = [check for check, passed in checks.items() if not passed]
    record_fault(FAULTS, not failed)
    assert not failed, (failed, error)


def test_a_disk_full_keeps_the_checkpoint_before_it(tmp_path, monkeypatch):
    spec = RunSpec.from_dict({**TINY, "epochs": 2})
    save = torch.save
    saved = []

    def full_at_the_second(payload, file):
        saved.append(payload["epoch"])
        save(payload, FullFile(file, 4096 if len(saved) > 1 else 2**40, errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_at_the_second)
    assert run(spec, tmp_path / "events.jsonl", tmp_path, StopRequest()) == 1
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and sorted(p.name for p in tmp_path.rglob("*.pt*")) == [
        "best.pt",
        "last.pt",
    ]


@pytest.mark.skipif(not Path("/proc/1").is_dir(), reason="needs Linux's /proc")
def test_an_image_folder_with_a_folder_it_cannot_read_names_that_folder(tmp_path, capsys):
    spec = RunSpec.from_dict({**TINY, "dataset": "imagefolder:/proc", "workers": 0})
    code = run(spec, tmp_path / "events.jsonl", tmp_path, StopRequest())
    error = logged(tmp_path / "events.jsonl")[-1]
    ok = (
        code == 1
        and error["kind"] in USER_ERROR_KINDS
        and error["message"].startswith("cannot read /proc/")
        and "in the image folder /proc" in error["message"]
        and "Permission denied" in error["message"]
        and "Traceback" not in capsys.readouterr().err
    )
    record_fault(FAULTS, ok)
    assert ok, error


SPEC_DAMAGE = [
    ("not JSON", b"{not json", "not valid JSON"),
    ("not UTF-8", b'{"arch": "\xff\xfe"}', "utf-8"),
    ("not a spec", b'{"arch": "resnet9000"}', "resnet9000"),
    ("empty", b"", "not valid JSON"),
]


@pytest.mark.parametrize("name, content, fragment", SPEC_DAMAGE, ids=[r[0] for r in SPEC_DAMAGE])
def test_a_damaged_spec_is_one_line_and_an_error_event(tmp_path, name, content, fragment):
    (tmp_path / "spec.json").write_bytes(content)
    events = tmp_path / "events.jsonl"
    command = [sys.executable, "-m", "engine", "run", "--spec", str(tmp_path / "spec.json")]
    command += ["--events", str(events), "--run-dir", str(tmp_path), "--resume"]
    ended = subprocess.run(command, capture_output=True, text=True, timeout=60)
    error = json.loads(events.read_text().splitlines()[-1])
    lines = ended.stderr.strip().splitlines()
    ok = (
        ended.returncode == 2
        and len(lines) == 1
        and "is damaged or unreadable" in lines[0]
        and fragment in lines[0]
        and error["type"] == "error"
        and error["kind"] == "bad_input"
        and fragment in error["message"]
    )
    record_fault(FAULTS, ok)
    assert ok, (ended.returncode, ended.stderr, error)


def test_torch_advice_to_load_unsafely_never_reaches_the_user(tmp_path):
    class Code:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "nothing"),))

    torch.save({"model": Code()}, tmp_path / "code.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02garbage")
    for name in ("code.pt", "garbage.pt"):
        with pytest.raises(RunError) as caught:
            checkpoints.read_checkpoint(tmp_path / name, torch.device("cpu"))
        message = f"{caught.value.message} {caught.value.hint}"
        ok = "weights_only" not in message and "safe_globals" not in message and DAMAGED in message
        record_fault(FAULTS, ok)
        assert ok, message


def test_the_image_folder_scan_error_names_the_folder_not_the_engine(tmp_path, monkeypatch):
    unlistable_class_folder(tmp_path, monkeypatch)
    with pytest.raises(RunError) as caught:
        sources.load_image_folder(RunSpec.from_dict({**TINY, "dataset": f"imagefolder:{tmp_path}"}))
    assert caught.value.kind == "bad_data"
    assert caught.value.message == (
        f"cannot read {tmp_path / 'secret'} in the image folder {tmp_path}: Permission denied"
    )
