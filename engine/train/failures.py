"""A run's failures as `error` events: what went wrong in one line, and what to try."""

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
    code: `work`'s own, or 1 after a failure."""
    try:
        return work()
    except RunError as error:
        writer.emit(ev.ERROR, kind=error.kind, message=error.message, hint=error.hint)
    except SpecError as error:
        kind = "dataset_missing" if isinstance(error, DatasetMissing) else "bad_input"
        writer.emit(ev.ERROR, kind=kind, message=str(error), hint="")
    except UnreadableImage as error:
        writer.emit(
            ev.ERROR,
            kind="bad_data",
            message=_unreadable_image_message(error),
            hint="remove or replace the file",
        )
    except torch.OutOfMemoryError:
        if batch_size is None:
            message, hint = "out of memory", "fuse fewer runs at once, or use --device cpu"
        else:
            message = f"out of memory at batch size {batch_size}"
            hint = f"try --batch-size {max(1, batch_size // 2)} or --amp bf16"
        writer.emit(ev.ERROR, kind="out_of_memory", message=message, hint=hint)
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        lost = device_lost(error)
        if lost is not None:
            writer.emit(ev.ERROR, kind="device_lost", message=lost, hint=DEVICE_LOST_HINT)
            return 1
        # an engine bug: report it, with the traceback in engine.log
        writer.emit(
            ev.ERROR,
            kind="internal",
            message=f"{type(error).__name__}: {error}",
            hint="see engine.log in the run folder",
        )
    finally:
        writer.close()
    return 1


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
