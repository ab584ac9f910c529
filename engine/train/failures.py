"""A run's failures as `error` events: what went wrong in one line, and what to try."""

import errno
import sys
import traceback
from collections.abc import Callable

import torch

from engine.contract import events as ev
from engine.contract.errors import RunError, UnreadableImage
from engine.contract.events import EventWriter
from engine.contract.locate import DatasetMissing
from engine.contract.spec import SpecError
from engine.distributed import NoEvents, RankFailures


def report_failures(
    writer: EventWriter | NoEvents | RankFailures,
    work: Callable[[], int],
    batch_size: int | None,
) -> int:
    """Do `work`, turning any failure into an `error` event; close the log. Returns the exit
    code: `work`'s own, or 1 after a failure. Where the log itself cannot be written (a full
    disk), the failure is one line on stderr, which ends in engine.log."""
    try:
        try:
            return work()
        except Exception as error:
            kind, message, hint = what_failed(error, batch_size)
            if kind in ("internal", "device_lost"):  # the traceback goes to engine.log
                traceback.print_exception(error, file=sys.stderr)
            writer.emit(ev.ERROR, kind=kind, message=message, hint=hint)
        finally:
            writer.close()
    except OSError as error:
        print(f"error: the run's events cannot be written: {error}", file=sys.stderr)
    return 1


def what_failed(error: Exception, batch_size: int | None) -> tuple[str, str, str]:
    """The kind, message and hint of the `error` event a failure of a run becomes."""
    if isinstance(error, RunError):
        return error.kind, error.message, error.hint
    if isinstance(error, SpecError):
        return (
            ("dataset_missing" if isinstance(error, DatasetMissing) else "bad_input"),
            str(error),
            "",
        )
    if isinstance(error, UnreadableImage):
        return "bad_data", _unreadable_image_message(error), "remove or replace the file"
    if isinstance(error, torch.OutOfMemoryError):
        if batch_size is None:
            return "out_of_memory", "out of memory", "fuse fewer runs at once, or use --device cpu"
        return (
            "out_of_memory",
            f"out of memory at batch size {batch_size}",
            f"try --batch-size {max(1, batch_size // 2)} or --amp bf16",
        )
    if isinstance(error, MemoryError) or _CPU_ALLOCATOR in str(error):
        return "out_of_memory", *_out_of_memory(batch_size)
    if _WORKER_KILLED in str(error):
        return (
            "out_of_memory",
            "a data-loading worker was killed by SIGKILL (often the kernel's out-of-memory killer)",
            "try fewer --workers, or a smaller --batch-size",
        )
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({error.filename})" if error.filename else ""
        return (
            "disk_full",
            f"the disk is full: a file of the run could not be written{where}",
            "free some space on that disk, or choose another folder for the run",
        )
    if isinstance(error, PermissionError):
        where = error.filename or "a file the run needs"
        return "bad_input", f"permission denied: {where}", "check the permissions of that path"
    lost = device_lost(error)
    if lost is not None:
        return "device_lost", lost, DEVICE_LOST_HINT
    first_line = next(iter(str(error).strip().splitlines()), "")
    return "internal", f"{type(error).__name__}: {first_line}", "see engine.log in the run folder"


# What torch's CPU allocator says when the computer's memory runs out (a RuntimeError).
_CPU_ALLOCATOR = "DefaultCPUAllocator: can't allocate memory"
# What the DataLoader says when a worker process of its dies of SIGKILL.
_WORKER_KILLED = "is killed by signal: Killed"


def _out_of_memory(batch_size: int | None) -> tuple[str, str]:
    """The message and hint of a run that ran the computer (not a GPU) out of memory."""
    if batch_size is None:
        return "the computer ran out of memory", "fuse fewer runs at once"
    return (
        f"the computer ran out of memory at batch size {batch_size}",
        f"try --batch-size {max(1, batch_size // 2)}, or --limit N to train on fewer images",
    )


DEVICE_LOST_HINT = (
    "the last checkpoint is kept: check the GPU with nvidia-smi, then resume the run "
    "(resnet-tui resume --device moves it to another device)"
)


CUDA_ERROR_PREFIXES = ("CUDA error", "CUDA driver error", "CUDA-capable device")


def device_lost(error: Exception) -> str | None:
    """What happened, where `error` is the device failing under a run (gone, reset, an ECC
    error, a failed launch); None for anything else. A device-side assert is a bug, not a
    lost device."""
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    from_device = isinstance(error, torch.AcceleratorError) or (
        isinstance(error, RuntimeError) and first_line.startswith(CUDA_ERROR_PREFIXES)
    )
    if not from_device or "device-side assert" in text:
        return None
    return f"the device failed during the run: {first_line}"


def _unreadable_image_message(error: UnreadableImage) -> str:
    """The data module's one line, naming the file. Raised in a DataLoader worker, the error
    comes back with the worker's traceback as its text, that line last after the type name."""
    last_line = str(error).strip().splitlines()[-1]
    return last_line.removeprefix(f"{UnreadableImage.__module__}.{UnreadableImage.__name__}: ")
