"""Runs' metrics as TensorBoard event files: `python -m engine tensorboard --input RUNS.json`.

The user's side never imports torch, and tensorboardX does, so it writes the runs it read from
its store to RUNS.json and this writes them: one folder a run in --out (`run-ID-NAME`), its
metrics as scalars (step losses by global step, the rest by epoch), its spec as hparams so
that TensorBoard's HParams tab compares the runs. On success one JSON line on stdout:
`{"scalars": N, "runs": [FOLDER...], "kept": [FOLDER...]}`; a mistake is one line on stderr,
`error: MESSAGE; HINT`, and exit code 2.
"""

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from engine.contract.stopping import StopRequest

# What a run's name keeps in its folder's name: letters, digits, `.`, `_`, `-`.
UNSAFE = re.compile(r"[^\w.-]+")
NAME_CHARS = 60
# The HParams tab's metrics: the run's test accuracy and best validation accuracy.
METRICS = {"hparams/test_acc": "test_acc", "hparams/best_val_acc": "best_val_acc"}


class ExportRefused(Exception):
    """A mistake in what was asked: `message; hint` for the user."""


def run_tensorboard(args: argparse.Namespace, stop: StopRequest) -> int:
    """Write the runs of `args.input` into `args.out`; 0, or 2 with one line on stderr
    (what was asked cannot be done, or the folder cannot be written); asked to stop, the
    runs not yet begun are not written (exit 130)."""
    try:
        runs = _read_runs(args.input)
        out: Path = args.out
        if out.exists() and not out.is_dir():
            raise ExportRefused(f"{out} is a file, not a folder; give a folder to write into")
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ExportRefused(
                "tensorboardX is not installed; install it with: pip install 'resnet-tui[use]'"
            ) from None
        written, folders, kept = 0, [], []
        out.mkdir(parents=True, exist_ok=True)
        for run in runs:
            if stop.requested:
                return 130
            folder = out / folder_name(run["id"], str(run.get("name") or ""))
            mine = _run_folders(out, run["id"])
            if not args.force and any(map(_taken, mine)):
                kept.extend(path.name for path in mine if _taken(path))
                continue
            written += _write_run(SummaryWriter, run, folder, mine)
            folders.append(folder.name)
    except ExportRefused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = error.filename or args.out
        reason = error.strerror or error
        print(f"error: cannot write {where} ({reason}); give another folder", file=sys.stderr)
        return 2
    print(json.dumps({"scalars": written, "runs": folders, "kept": kept}))
    return 0


def folder_name(run_id: int, name: str) -> str:
    """`run-ID-NAME`, the name made safe for a file name (only letters, digits, `.`, `_`
    and `-`, at most NAME_CHARS of them); `run-ID` where nothing of the name is left."""
    safe = UNSAFE.sub("-", name).strip("-._")[:NAME_CHARS].strip("-._")
    return f"run-{run_id}-{safe}" if safe else f"run-{run_id}"


def scalar_tag(split: str, metric: str) -> str:
    """The TensorBoard tag of a metric row of the store: `loss/train_step`, `loss/val`,
    `accuracy/train`, `lr/GROUP`, `time/epoch_seconds`, ..."""
    if split == "step":
        return f"{metric}/train_step"
    if split in ("train", "val"):
        kind, _, part = metric.partition("_")
        if part == "loss":  # a distilled run's parts of its loss: ce_loss, kd_loss
            return f"loss/{split}_{kind}"
        return f"{'accuracy' if metric == 'acc' else metric}/{split}"
    if metric == "seconds":
        return "time/epoch_seconds"
    return metric if "/" in metric else f"{split}/{metric}"


def hparam_values(spec: dict[str, Any], status: str) -> dict[str, bool | int | float | str]:
    """The spec's options as TensorBoard takes hparams: numbers, booleans and text as they
    are, anything else (lists, None, tables) as text; and the run's status."""
    values: dict[str, bool | int | float | str] = {}
    for name, value in spec.items():
        if isinstance(value, (bool, int, float, str)):
            values[name] = value
        else:
            values[name] = "None" if value is None else json.dumps(value, sort_keys=True)
    values["status"] = status
    return values


def _read_runs(path: Path) -> list[dict[str, Any]]:
    """The runs to write, as the user's side gave them (checked enough to write them)."""
    hint = "it is written by `resnet-tui export-metrics --tensorboard`"
    try:
        given = json.loads(path.read_text(encoding="utf-8"))
        runs = given["runs"]
        for run in runs:
            run["id"] = int(run["id"])
            if not isinstance(run["spec"], dict):
                raise TypeError(f"a run's spec is a table, not {type(run['spec']).__name__}")
            for _epoch, _step, split, metric, value in run["rows"]:
                if not isinstance(split, str) or not isinstance(metric, str):
                    raise TypeError(f"a row's split and metric are text, not {split!r}, {metric!r}")
                float(value)
    except OSError as error:
        raise ExportRefused(f"cannot read {path} ({error.strerror or error}); {hint}") from None
    except (ValueError, KeyError, TypeError) as error:  # ValueError: not JSON, not UTF-8
        raise ExportRefused(f"{path} is not a list of runs ({error!r}); {hint}") from None
    return runs


def _run_folders(out: Path, run_id: int) -> list[Path]:
    """The folders of `out` that hold a run's export (`run-ID`, `run-ID-NAME`): one run
    renamed since it was exported has two."""
    return [
        path
        for path in out.iterdir()
        if path.name == f"run-{run_id}" or path.name.startswith(f"run-{run_id}-")
    ]


def _taken(path: Path) -> bool:
    """Anything but an empty folder: an earlier export's event files, or what the user put
    there (kept unless --force)."""
    return not path.is_dir() or path.is_symlink() or any(path.iterdir())


def _write_run(writer_class: Any, run: dict[str, Any], folder: Path, old: list[Path]) -> int:
    """Write a run's folder beside its place, then put it in place of the run's `old`
    folders; the number of metric values written."""
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    _remove(partial)
    try:
        writer = writer_class(logdir=str(partial), flush_secs=3600)
        with writer:
            for epoch, step, split, metric, value in run["rows"]:
                at = step if split == "step" else epoch
                writer.add_scalar(scalar_tag(split, metric), float(value), at)
            _write_hparams(writer, run)
        for path in old:
            _remove(path)
        os.replace(partial, folder)
    finally:
        _remove(partial)
    return len(run["rows"])


def _write_hparams(writer: Any, run: dict[str, Any]) -> None:
    """The run as one session of TensorBoard's HParams tab, in the run's own folder (not
    the sub-folder `add_hparams` makes, which would show every run twice)."""
    from tensorboardX.summary import hparams

    metrics = {tag: run.get(key) for tag, key in METRICS.items()}
    experiment, start, end = hparams(
        hparam_values(run["spec"], str(run.get("status") or "")), metrics
    )
    for summary in (experiment, start, end):
        writer.file_writer.add_summary(summary)
    for tag, value in metrics.items():
        if isinstance(value, (int, float)):
            writer.add_scalar(tag, float(value), 0)


def _remove(path: Path) -> None:
    """Remove a folder (or a file or link in its place), if there is one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
