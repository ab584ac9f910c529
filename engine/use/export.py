"""`python -m engine export`: a trained run's network as an ONNX, TorchScript or safetensors
file, with a JSON sidecar beside it saying how to use it, checked before it is kept.

The file and its sidecar are written under temporary names beside their place, checked (the
file loaded back by onnxruntime, torch.jit or safetensors and run on a batch of the run's
test images, then on a batch of another size), and only then renamed in: a file that failed
its check, or an export that was stopped or ran out of disk, leaves nothing behind.

Output, JSON lines on stdout: `{"kind": "progress", "stage": "loading"|"exporting"|
"checking"}`, then `{"kind": "exported", "path", "sidecar", "bytes", "max_abs_diff",
"top1_identical", "checked_on", "batch_sizes", "seconds", ...}`. A bad input is
`error: MESSAGE; HINT` on stderr and exit code 2, a file that failed its check exit code 1.
"""

import argparse
import contextlib
import errno
import io
import json
import os
import signal
import sys
import time
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.contract.errors import RunError
from engine.contract.stopping import StopRequest, signals_held
from engine.transfer.weights import network_of_record
from engine.use import parity
from engine.use.trained import TrainedModel, load_trained_model, sidecar_path

FORMATS = ("onnx", "torchscript", "safetensors")
DAMAGED_HINT = "train the run again, or export its other checkpoint (--checkpoint last)"
# The batch the network is traced with; the ONNX file's batch dimension stays free.
EXAMPLE_BATCH = 2
# What os.link fails with where the file system has no hard links.
NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def run_export(args: argparse.Namespace, stop: StopRequest) -> int:
    """Export as the command line asks; the process's exit code (130 when stopped).

    From here a stop (SIGINT, SIGTERM) ends the export at once, its files removed; one that
    came while the engine was starting (`stop` holds it) ends it before it begins."""
    stop.restore()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    if stop.requested:
        return 130
    started = time.monotonic()
    try:
        done = export(
            args.checkpoint, args.run, args.format, args.out, args.data_root, force=args.force
        )
    except RunError as error:
        print(f"error: {error.message}; {error.hint}", file=sys.stderr)
        return 2 if error.kind == "bad_input" else 1
    except KeyboardInterrupt:
        return 130
    _emit({"kind": "exported", **done, "seconds": round(time.monotonic() - started, 3)})
    return 0


def export(
    checkpoint: Path,
    run_id: int | None,
    model_format: str,
    out: Path,
    data_root: str | None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the checkpoint's network to `out` in `model_format`, its sidecar beside; what
    the `exported` line says. RunError where it cannot (bad_input) or the check fails, and
    where, without `force`, a file appeared in the place of either meanwhile."""
    _refuse_place(out)
    if model_format == "onnx":
        _refuse_without_onnx()
    _emit({"kind": "progress", "stage": "loading"})
    trained = _load(checkpoint, run_id)
    record = trained.record
    inputs = parity.check_inputs(trained.spec, data_root, trained.preprocessing)
    sidecar = {
        **trained.sidecar(out.name, model_format),
        "torch_version": torch.__version__,
        "checkpoint": {
            "file": checkpoint.name,
            "epoch": record.get("epoch"),
            "best_val_acc": record.get("best_val_acc"),
        },
    }
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    sidecar_partial = partial.with_name(partial.name + ".json")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _emit({"kind": "progress", "stage": "exporting"})
        _write(model_format, trained, partial, sidecar)
        _emit({"kind": "progress", "stage": "checking"})
        check = _check(model_format, trained.model, record, partial, inputs)
        sidecar["check"] = check.as_json()
        if inputs.why_random:
            sidecar["check"]["why_random"] = inputs.why_random
        sidecar_partial.write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
        size = partial.stat().st_size
        _as_new_file(partial)
        with signals_held():  # both files in place, or neither: a stop waits for this
            _put_in_place([(partial, out), (sidecar_partial, sidecar_path(out))], force)
    except OSError as error:  # a full disk, a folder we may not write in
        raise RunError(
            "bad_input",
            f"cannot write {out} ({error.strerror or error})",
            "give another --out, or free some disk space",
        ) from None
    finally:
        for leftover in (partial, sidecar_partial):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    return {
        "path": str(out),
        "sidecar": str(sidecar_path(out)),
        "format": model_format,
        "bytes": size,
        **check.as_json(),
        "why_random": inputs.why_random,
        "epoch": record.get("epoch"),
    }


def _put_in_place(files: list[tuple[Path, Path]], force: bool) -> None:
    """Rename each written file to its place. With `force`, whatever is there is replaced;
    without, nothing is (a link cannot overwrite): where a file appeared in one place since
    the user's side looked, those already put in place are taken back and a RunError says so.
    Where links cannot be made (some file systems), a rename after a last look."""
    placed: list[Path] = []
    try:
        for written, place in files:
            if force:
                os.replace(written, place)
            else:
                _put_without_replacing(written, place)
            placed.append(place)
    except FileExistsError:
        for ours in placed:
            with contextlib.suppress(OSError):
                ours.unlink()
        raise RunError(
            "bad_input",
            f"{place} appeared while exporting",
            "nothing replaced; give another --out, or --force to replace it",
        ) from None
    for written, _place in files:
        written.unlink(missing_ok=True)


def _put_without_replacing(written: Path, place: Path) -> None:
    """Link `written` at `place` (FileExistsError where something is there), or where the
    file system has no links, rename it after looking."""
    try:
        os.link(written, place)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in NO_LINKS:
            raise
        if place.exists() or place.is_symlink():
            raise FileExistsError(errno.EEXIST, "exists", str(place)) from None
        os.replace(written, place)


def _refuse_place(out: Path) -> None:
    """A RunError (bad_input) where `out` cannot be a file: a folder, or under a file."""
    if out.is_dir():
        raise RunError("bad_input", f"{out} is a folder", "give a file name for --out")
    for folder in out.parents:
        if folder.exists():
            if not folder.is_dir():
                raise RunError(
                    "bad_input", f"{folder} is a file, not a folder", "give another --out"
                )
            return


def _refuse_without_onnx() -> None:
    """A RunError (bad_input) where the `use` extra's ONNX libraries are not installed."""
    missing = [name for name in ("onnxscript", "onnxruntime", "onnx") if not find_spec(name)]
    if missing:
        raise RunError(
            "bad_input",
            f"ONNX export needs onnxscript and onnxruntime (not installed: {', '.join(missing)})",
            "pip install 'resnet-tui[use]', or give --format torchscript or safetensors",
        )


def _load(checkpoint: Path, run_id: int | None) -> TrainedModel:
    """The run's network with its checkpoint's record; a damaged file says so, with what to
    do."""
    try:
        trained = load_trained_model(checkpoint, run_id)
    except RunError as error:
        hint = error.hint if not checkpoint.is_file() else DAMAGED_HINT
        raise RunError(error.kind, error.message, hint) from None
    except (ValueError, KeyError, TypeError, RuntimeError) as error:  # SpecError is a ValueError
        reason = " ".join(str(error).split()) or type(error).__name__
        raise RunError("bad_input", f"{checkpoint} is damaged ({reason})", DAMAGED_HINT) from None
    return trained


def _write(model_format: str, trained: TrainedModel, partial: Path, sidecar: dict) -> None:
    """Write the network to `partial` in its format, the sidecar inside it as metadata."""
    model = trained.model
    shape = (EXAMPLE_BATCH, trained.preprocessing.channels, *(trained.preprocessing.size,) * 2)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    metadata = parity.metadata_text(sidecar)
    if model_format == "safetensors":
        from safetensors.torch import save

        tensors = {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}
        partial.write_bytes(save(tensors, metadata={"resnet_tui": metadata}))
        return
    with _quiet():
        try:
            if model_format == "onnx":
                program = torch.onnx.export(
                    model,
                    (example,),
                    None,
                    dynamo=True,
                    input_names=["images"],
                    output_names=["logits"],
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    verbose=False,
                )
                program.model.metadata_props["resnet_tui"] = metadata
            else:
                with torch.no_grad():
                    traced = torch.jit.trace(model, (example,))
        except Exception as error:  # an exporter's failure: its own words say which
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise RunError(
                "failed",
                f"torch could not export the network as {model_format} ({first})",
                "try another --format; safetensors keeps the weights as they are",
            ) from None
        if model_format == "onnx":
            program.save(str(partial), external_data=False)
        else:  # written by us, not torch: a full disk is an OSError as with the others
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={"resnet_tui.json": metadata})
            partial.write_bytes(buffer.getbuffer())


def _check(
    model_format: str, model: nn.Module, record: dict[str, Any], path: Path, inputs: parity.Inputs
) -> parity.Parity:
    """Load the written file back and compare it with the run's network; RunError (failed)
    where it does not compute the same."""
    with _quiet():
        if model_format == "onnx":
            runner, runtime = parity.onnx_runner(path)
        elif model_format == "torchscript":
            runner, runtime = parity.torchscript_runner(path)
        else:
            runner, runtime = parity.safetensors_runner(path, network_of_record(record))
        check = parity.compare(model, runner, runtime, inputs)
    if not check.passed:
        raise RunError(
            "failed",
            f"the exported model does not compute what the run's network does ({runtime}: max "
            f"|Δlogit| {check.max_abs_diff:.2g} on {check.checked_on}, more than "
            f"{parity.TOLERANCE:g} allows), so it was not kept",
            "report it as a bug; --format safetensors keeps the weights as they are",
        )
    return check


def _as_new_file(path: Path) -> None:
    """Give a written file the permissions a new file gets here (some writers make theirs
    private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def _quiet():
    """Keep the exporters' notes and warnings off our stdout (JSON lines only) and stderr."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)
