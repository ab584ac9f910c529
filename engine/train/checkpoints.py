"""Files the engine keeps in a run folder: checkpoints written atomically, and the weights
the run started from (its --init source and teachers), kept so that it resumes without them."""

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from engine.contract.errors import RunError
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
