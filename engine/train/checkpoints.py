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
from engine.contract.errors import RunError, load_failure_reason
from engine.contract.events import EventWriter
from engine.contract.spec import RunSpec


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint to a temporary name, flushed to disk, then rename it into place.

    Written through a Python file, so that a full disk is an OSError saying so (torch's own
    file writer says only "unexpected pos"). A write that fails leaves the previous checkpoint as
    it was, no temporary file behind, and fails the run with what happened and what to do.
    """
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        # torch's writer turns a failed write into a RuntimeError ("unexpected pos") raised
        # while the OSError is handled, so the OSError says what happened
        failed = error if isinstance(error, OSError) else error.__context__
        if not isinstance(failed, OSError):
            raise
        raise write_failure(failed, path, "the previous checkpoint is kept") from None
    finally:
        temporary.unlink(missing_ok=True)


def write_failure(
    error: OSError, path: Path, kept: str, then: str = "resume the run (resnet-tui resume ID)"
) -> RunError:
    """The run's error for a file it could not write: `disk_full` for a full disk or quota,
    else `write_failed`; `kept` says what is left as it was, `then` what to do after."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return RunError(
        "disk_full" if full else "write_failed",
        f"could not write {path.name} in {path.parent}: "
        f"{_NO_SPACE.get(error.errno) or error.strerror or error}; {kept}",
        f"free some space on that disk, then {then}; or choose another folder: a store on "
        "another disk (--db PATH) keeps its runs there"
        if full
        else f"check that folder and its permissions, then {then}",
    )


_NO_SPACE = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up"}


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
        raise write_failure(error, kept, "nothing was kept", "launch the run again") from None
    return kept


def save_epoch(
    folder: Path,
    payload: dict[str, Any],
    epoch: int,
    improved: bool,
    writer: EventWriter,
    best_payload: dict[str, Any] | None = None,
) -> None:
    """Write an epoch's checkpoint as last.pt; when the epoch improved, best.pt becomes the
    same file, or holds `best_payload` where one is given (the average of the weights won).
    Each written file is a `checkpoint` event, saying which weights it holds where the run
    has an average of them."""
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / "last.pt"
    save_checkpoint(last, payload)
    weights = payload.get("weights")
    writer.emit(
        ev.CHECKPOINT, path=str(last), name="last", epoch=epoch, best=False, weights=weights
    )
    if not improved:
        return
    best = folder / "best.pt"
    if best_payload is not None:
        save_checkpoint(best, best_payload)
        weights = best_payload.get("weights")
    else:
        try:
            share_file(last, best)
        except OSError as error:
            raise write_failure(error, best, "last.pt holds this epoch") from None
    writer.emit(ev.CHECKPOINT, path=str(best), name="best", epoch=epoch, best=True, weights=weights)


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint's contents, its tensors on `device`; a file that cannot be read as one
    is a damaged checkpoint."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except OSError as error:
        raise damaged_checkpoint(path, error.strerror or str(error)) from None
    except Exception as error:  # not a checkpoint: truncated, overwritten, or a foreign file
        raise damaged_checkpoint(path, load_failure_reason(error)) from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise damaged_checkpoint(path, "it holds no model weights")
    return state


def damaged_checkpoint(path: Path, reason: str) -> RunError:
    """The run's error for a checkpoint of its own that cannot be used, and what to do."""
    return RunError(
        "bad_data",
        f"the checkpoint {path} is damaged ({reason}), so the run cannot go on from it",
        "start a new run instead (--init run:ID starts it from a run's best weights), "
        "or remove this one (resnet-tui rm ID)",
    )


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
