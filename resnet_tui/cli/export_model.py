"""`resnet-tui export`: a run's trained network as an ONNX, TorchScript or safetensors file,
with a JSON sidecar beside it saying how to use it (classes, input size, mean and std).

The engine (`python -m engine export`, engine/use/export.py) writes and checks the file; this
side picks the checkpoint and the file name, follows the engine's JSON lines and says what
was written.
"""

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from resnet_tui.cli.common import (
    DbOption,
    JsonOption,
    console,
    errors,
    fail,
    file_state,
    flowing_help,
    open_store,
    refuse_store_files,
    say_error,
)
from resnet_tui.display import shown
from resnet_tui.runs.engine_jobs import (
    EXIT_STOPPED,
    EngineJob,
    EngineJobError,
    EngineJobStopped,
)
from resnet_tui.runs.store import RunStore

# --format: the file's suffix where --out is not given, and its name in messages.
FORMATS = {
    "onnx": (".onnx", "ONNX"),
    "torchscript": (".pt", "TorchScript"),
    "safetensors": (".safetensors", "safetensors"),
}
CHECKPOINTS = ("best", "last")
# What the spinner says while the engine is at each stage.
STAGES = {
    "loading": "loading run {run}'s {checkpoint} checkpoint and test images",
    "exporting": "writing {what}",
    "checking": "checking the file against the run's network",
}


@flowing_help
def export_command(
    run_id: Annotated[int, typer.Argument(help="Id of the run whose network to export.")],
    model_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx (onnxruntime and most runtimes), torchscript (torch.jit.load) or "
            "safetensors (the weights alone, for torch).",
        ),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="The file to write (default ./run-ID-ARCH.onnx, .pt or .safetensors); its "
            "folder is made if missing, and the sidecar is written beside it as FILE.json.",
        ),
    ] = None,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", help="best (best validation accuracy) or last.")
    ] = "best",
    force: Annotated[
        bool, typer.Option("--force", help="Replace a file or sidecar already there.")
    ] = False,
    data_root: Annotated[
        Optional[Path],
        typer.Option(
            "--data-root",
            help="Where the run's dataset lies now, for the check on its test images "
            "(default: where it was trained from).",
        ),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Write a run's trained network for use elsewhere, with a JSON sidecar beside it
    (classes, input size, mean and std); the file is loaded back (by onnxruntime, torch.jit
    or safetensors) and checked against the run's network on its test images before it is
    kept."""
    chosen = model_format.lower()
    if chosen not in FORMATS:
        raise fail(f"--format {model_format} is not one of onnx, torchscript, safetensors")
    if checkpoint not in CHECKPOINTS:
        raise fail(f"--checkpoint {checkpoint} is not best or last")
    store, run_arch, weights = _checkpoint(db, run_id, checkpoint)
    suffix, what = FORMATS[chosen]
    target = out if out is not None else Path(f"run-{run_id}-{run_arch}{suffix}")
    if target.is_file() and os.path.samefile(target, weights):
        raise fail(f"{target} is the run's {checkpoint} checkpoint; give another --out")
    for place in (target, _sidecar(target)):
        refuse_store_files(place, "--out", store)
    made = _check_place(target, force)
    arguments = [
        f"--checkpoint={weights}",  # joined: a path that starts with `-` is no option
        f"--run={run_id}",
        f"--format={chosen}",
        f"--out={target}",
    ]
    if data_root is not None:
        arguments.append(f"--data-root={data_root}")
    if force:
        arguments.append("--force")
    words = {"run": run_id, "checkpoint": checkpoint, "what": f"{what} file {target}"}
    done = _run_engine(arguments, target, made, words, show_status=not as_json)
    if as_json:
        print(json.dumps(done))
        return
    _report(done, what)


def _checkpoint(db: Path | None, run_id: int, checkpoint: str) -> tuple[RunStore, str, Path]:
    """The store, the run's architecture and the checkpoint file to export; exit 2 where
    there is none."""
    from engine.contract.spec import SpecError
    from resnet_tui.runs.follower import catch_up
    from resnet_tui.runs.sources import checkpoint_of

    store = open_store(db)
    catch_up(store)
    source = f"run:{run_id}" + (":last" if checkpoint == "last" else "")
    try:
        run, path = checkpoint_of(store, source, "export")
    except SpecError as error:
        raise fail(str(error)) from None
    return store, run.arch, path


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def _check_place(target: Path, force: bool) -> list[Path]:
    """Make the file's folder; the folders made, deepest first. Exit 2 where the file or its
    sidecar is there (without --force), or the folder cannot be made or written in."""
    sidecar = _sidecar(target)
    if target.is_dir():
        raise fail(f"{target} is a folder; give a file name for --out")
    for there in (target, sidecar):
        if (there.exists() or there.is_symlink()) and not force:
            raise fail(f"{there} exists; give another --out, or --force to replace it")
    folder = target.parent
    made = [above for above in (folder, *folder.parents) if not above.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = "a file is in the way" if isinstance(error, FileExistsError) else error.strerror
        raise fail(f"cannot make the folder {folder} ({reason}); give another --out") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise fail(f"cannot write in {folder} (permission denied); give another --out")
    return made


def _run_engine(
    arguments: list[str], target: Path, made: list[Path], words: dict[str, Any], show_status: bool
) -> dict[str, Any]:
    """Run the engine's export, showing its stage on a terminal; its `exported` line.

    Ctrl-C (or SIGTERM) stops it, removes what it had begun to write and the folders `made`
    for it that are still empty, says what it had written, if anything, and exits 130."""
    places = (target, _sidecar(target))
    before = [file_state(place) for place in places]
    job = EngineJob("export", arguments, shares_ctrl_c=True)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with job:
            done = _follow(job.lines(), words, show_status and errors.is_terminal)
    except EngineJobStopped:
        _remove_leftovers(target, job.pid, made)
        written = [p for p, then in zip(places, before, strict=True) if file_state(p) != then]
        if written:  # it had put them in place before the stop reached it
            say_error(f"export stopped after it had written {' and '.join(map(str, written))}")
        else:
            say_error("export stopped; nothing was written")
        raise typer.Exit(EXIT_STOPPED) from None
    except EngineJobError as error:
        _remove_leftovers(target, job.pid, made)
        say_error(error.message)
        raise typer.Exit(error.exit_code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if done is None:
        say_error("the engine ended without saying what it wrote; try again")
        raise typer.Exit(1)
    return done


def _follow(
    messages: Iterator[dict[str, Any]], words: dict[str, Any], spinner: bool
) -> dict[str, Any] | None:
    """Read the engine's messages until it ends; the `exported` one, if it came."""
    done = None
    status = errors.status(shown(STAGES["loading"].format(**words))) if spinner else None
    with status if status is not None else contextlib.nullcontext():
        for message in messages:
            if message.get("kind") == "progress" and status is not None:
                stage = STAGES.get(str(message.get("stage")))
                if stage is not None:
                    status.update(shown(stage.format(**words)))
            elif message.get("kind") == "exported":
                done = message
    return done


def _remove_leftovers(target: Path, engine_pid: int | None, made: list[Path]) -> None:
    """Remove what a stopped engine left of its unfinished files, if it could not, and the
    folders made for the file that are still empty."""
    if engine_pid is not None:
        partial = target.with_name(f".{target.name}.{engine_pid}.partial")
        for leftover in (partial, partial.with_name(partial.name + ".json")):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    for folder in made:
        with contextlib.suppress(OSError):  # not empty: something is in it now
            folder.rmdir()


def _report(done: dict[str, Any], what: str) -> None:
    """Say what was written and how the check went, a line each (paths never wrapped)."""
    runtime = str(done.get("runtime", "")).split(" ")[0]
    same = "top-1 identical" if done.get("top1_identical") else "top-1 differs on a near tie"
    lines = [
        f"wrote {done['path']} ({what}, {_size(int(done['bytes']))})",
        f"sidecar {done['sidecar']}",
        f"{runtime}: max |Δlogit| {float(done['max_abs_diff']):.1e} on {done['checked_on']}, "
        + same,
    ]
    if done.get("why_random"):
        lines.append(f"(the run's test images could not be read: {done['why_random']})")
    for line in lines:
        console.print(shown(line), soft_wrap=True, highlight=False)


def _size(count: int) -> str:
    """`812 bytes`, `352.7 kB`, `44.7 MB`."""
    if count < 1000:
        return f"{count} bytes"
    scaled, unit = next(
        (count / 1000**power, unit)
        for power, unit in ((1, "kB"), (2, "MB"), (3, "GB"))
        if count < 1000 ** (power + 1) or unit == "GB"
    )
    return f"{scaled:.1f} {unit}"
