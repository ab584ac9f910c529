"""The files the engine keeps in a run folder: checkpoints, and the weights the run started from.

Checkpoints are written atomically and read back to resume; the --init source and teachers
are kept beside them so that a run resumes without them."""

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from engine.contract import events as ev
from engine.contract.errors import RunError
from engine.contract.events import EventWriter
from engine.contract.spec import RunSpec


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint to a temporary name, then rename it into place.

    A write that fails (a full disk, say) leaves the previous checkpoint as it was and
    fails the run with what happened and what to do.
    """
    temporary = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        raise RunError(
            "disk_full" if full else "write_failed",
            f"could not write {path.name} in {path.parent} ({error.strerror or error}); "
            "the previous checkpoint is kept",
            "free some space there, then resume the run"
            if full
            else "check the folder, then resume the run",
        ) from None


def share_file(source: Path, path: Path) -> None:
    """Make `path` hold what `source` holds, renamed into place when ready.

    A hard link where the file system has them (no second write of a large checkpoint), else
    a copy. The next `save_checkpoint` of `source` renames a new file over it, so `path`
    keeps this content.
    """
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    try:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # no half-written copy left behind
        raise


def keep_sources(spec: RunSpec, run_dir: Path, resume: bool) -> None:
    """Keep the files a run starts from in its folder's `sources/` and point `spec` at them.

    Its `--init run:ID` or `file:PATH` weights become `sources/init.*`, its teachers
    `sources/teacher-N.*`: hard links where the file system has them (no space taken), else
    copies. A resumed run, or a WiSE-FT mix of it, then finds them after the originals were
    deleted or replaced. On `resume` nothing is copied; the kept files are used where there
    are some (a run from before they were kept uses the originals).
    """
    folder = run_dir / "sources"
    init = spec.init_checkpoint or (spec.init[5:] if spec.init.startswith("file:") else None)
    if init is not None:
        kept = _keep(Path(init).expanduser(), folder, "init", f"--init {spec.init}", resume)
        if kept is not None:
            spec.init_checkpoint = str(kept)
    if spec.teacher_checkpoints:
        teachers = spec.teacher or [""] * len(spec.teacher_checkpoints)
        spec.teacher_checkpoints = [
            str(_keep(Path(path), folder, f"teacher-{index}", f"--teacher {name}", resume) or path)
            for index, (path, name) in enumerate(
                zip(spec.teacher_checkpoints, teachers, strict=True), start=1
            )
        ]


def _keep(source: Path, folder: Path, stem: str, role: str, resume: bool) -> Path | None:
    kept = folder / (stem + source.suffix)
    if resume:
        return kept if kept.is_file() else None
    if not source.is_file():
        raise RunError("bad_input", f"{role}: {source} is not there", "check the path")
    folder.mkdir(mode=0o700, exist_ok=True)
    try:
        share_file(source, kept)
    except OSError as error:
        raise RunError(
            "disk_full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "write_failed",
            f"could not keep a copy of {source} in {folder} ({error.strerror or error})",
            "free some space there, then launch the run again",
        ) from None
    return kept


def save_epoch(
    folder: Path, payload: dict[str, Any], epoch: int, improved: bool, writer: EventWriter
) -> None:
    """Write an epoch's checkpoint as last.pt; when the epoch improved, best.pt becomes the
    same file. Each written file is a `checkpoint` event."""
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / "last.pt"
    save_checkpoint(last, payload)
    writer.emit(ev.CHECKPOINT, path=str(last), name="last", epoch=epoch, best=False)
    if improved:
        best = folder / "best.pt"
        share_file(last, best)
        writer.emit(ev.CHECKPOINT, path=str(best), name="best", epoch=epoch, best=True)


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint's contents, its tensors on `device`."""
    return torch.load(path, map_location=device, weights_only=True)


def last_checkpoint(folder: Path, device: torch.device) -> dict[str, Any]:
    """last.pt, to resume from; a run that has none cannot be resumed."""
    path = folder / "last.pt"
    if not path.is_file():
        raise RunError(
            "bad_input",
            f"there is no checkpoint to resume from ({path} is missing)",
            "the run ended before its first epoch; launch it again instead",
        )
    return read_checkpoint(path, device)


def random_state(device: torch.device) -> dict[str, Any]:
    """The random number generators' states, for a resumed run to go on with."""
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_random_state(state: dict[str, Any], device: torch.device) -> None:
    """Put back the generators' states that `random_state` gave."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
