"""`resnet-tui predict`: a trained run's (or an exported model's) classes for image files.

The engine (`python -m engine predict`, engine/use/predict.py) decodes and classifies the
images and writes JSON lines; this side shows its progress, then a table, JSON or CSV.
"""

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from engine.contract.spec import SpecError
from resnet_tui.cli.common import (
    DbOption,
    console,
    errors,
    fail,
    flowing_help,
    open_store,
    refuse_store_files,
    say,
    say_error,
)
from resnet_tui.display import percent, shown

# The rows the table shows; --csv or --json gives every image.
TABLE_ROWS = 200
# The bad images the summary names, each with its reason.
BAD_SHOWN = 10
CSV_COLUMNS = ("path", "rank", "class", "probability", "label")
EXIT_INTERRUPTED = 130
# What each number option may be: (least, most).
LIMITS = {"--top-k": (1, 1000), "--batch-size": (1, 65_536), "--workers": (0, 256)}
# The largest id SQLite can hold: a larger one is no run of the store.
LARGEST_RUN_ID = 2**63 - 1


@dataclass
class Outcome:
    """What the engine said: its classes, device, predictions, bad images and summary."""

    classes: list[str] = field(default_factory=list)
    device: str = "cpu"
    predictions: list[dict[str, Any]] = field(default_factory=list)
    bad: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)


@flowing_help
def predict_command(
    arguments: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN PATH",
            help="A run's id, then image files, folders (searched through) or globs; with "
            "--model, the paths alone.",
        ),
    ],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to show per image.")] = 3,
    checkpoint: Annotated[
        Optional[str],
        typer.Option("--checkpoint", help="The run's checkpoint: best (default) or last."),
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option("--model", help="An exported FILE.onnx (its FILE.onnx.json beside it)."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="Where to compute: auto, cpu, cuda:N or mps.")
    ] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 64,
    workers: Annotated[
        Optional[int], typer.Option("--workers", help="Processes decoding images.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead of a table.")
    ] = False,
    csv_file: Annotated[
        Optional[Path],
        typer.Option("--csv", help="Write a CSV: path, rank, class, probability, label."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the --csv file.")] = False,
    db: DbOption = None,
) -> None:
    """Classify image files with a trained run: each image's most likely classes.

    An image whose folder is named after one of the run's classes counts as labelled, so a
    folder of class folders gives an accuracy. `--model FILE.onnx` uses an exported model.
    """
    _check_options(top_k, batch_size, workers, as_json, csv_file, force)
    if model is not None:
        if checkpoint is not None:
            raise fail("--checkpoint picks a run's checkpoint; with --model, leave it out")
        first = arguments[0]
        if _is_number(first) and not Path(first).exists():
            raise fail(f"give a run ({first}) or --model, not both; `predict --model FILE PATH...`")
        if not model.is_file():
            raise fail(f"{model} is not there; give the exported FILE.onnx")
        if csv_file is not None and _store_there(db):
            refuse_store_files(csv_file, "--csv", open_store(db))
        source = [f"--model={model}"]  # joined: a path that starts with `-` is no option
        paths = arguments
    else:
        source, paths = _run_checkpoint(arguments, checkpoint or "best", db, csv_file)
    options = [f"--top-k={top_k}", f"--device={device}", f"--batch-size={batch_size}"]
    if workers is not None:
        options.append(f"--workers={workers}")
    outcome = _run_engine([*source, *options, "--", *paths])
    if as_json:
        print(json.dumps(_document(outcome), indent=2))
    elif csv_file is not None:
        written = _write_csv(csv_file, outcome)
        _print_summary(outcome)
        say(f"wrote {written:,} rows to {csv_file}")
    else:
        _print_table(outcome)
        _print_summary(outcome)
    if outcome.summary and outcome.summary.get("stopped"):
        raise typer.Exit(EXIT_INTERRUPTED)


def _check_options(
    top_k: int,
    batch_size: int,
    workers: int | None,
    as_json: bool,
    csv_file: Path | None,
    force: bool,
) -> None:
    """The mistakes seen before anything starts, each one line and exit code 2."""
    if top_k < 1:
        raise fail(f"--top-k {top_k} is less than 1; give 1 or more")
    if batch_size < 1:
        raise fail(f"--batch-size {batch_size} is less than 1; give 1 or more")
    if workers is not None and workers < 0:
        raise fail(f"--workers {workers} is negative; give 0 or more")
    for option, value in (("--top-k", top_k), ("--batch-size", batch_size), ("--workers", workers)):
        least, most = LIMITS[option]
        if value is not None and value > most:
            raise fail(f"{option} {value} is more than {most:,}; give {least} to {most:,}")
    if as_json and csv_file is not None:
        raise fail("give --json or --csv FILE, not both")
    if csv_file is not None:
        if csv_file.is_dir():
            raise fail(f"{csv_file} is a folder; give --csv a file name")
        if not csv_file.parent.is_dir():
            raise fail(f"the folder of {csv_file} is not there; make it first")
        if csv_file.exists() and not force:
            raise fail(f"{csv_file} exists; give another name, or --force to replace it")


def _is_number(text: str) -> bool:
    """Whether `text` is a run id as typed: ASCII digits only (not `²` nor `٣`)."""
    return text.isascii() and text.isdigit()


def _store_there(db: Path | None) -> bool:
    """Whether there is a store to keep safe (none is made only for the check)."""
    from resnet_tui.runs.store import default_db_path

    return (db or default_db_path()).exists()


def _run_checkpoint(
    arguments: list[str], which: str, db: Path | None, csv_file: Path | None
) -> tuple[list[str], list[str]]:
    """The engine's arguments naming RUN's checkpoint, and the paths after RUN; exit 2
    where the --csv file would land on the store's files."""
    from resnet_tui.runs.sources import checkpoint_of

    if which not in ("best", "last"):
        raise fail(f"--checkpoint {which} is neither best nor last; give one of them")
    first, *paths = arguments
    if not _is_number(first):
        raise fail(
            f"{first!r} is not a run id; give RUN then PATH... (`resnet-tui runs` lists the "
            "runs), or --model FILE.onnx"
        )
    if not paths:
        raise fail(f"give the image files or folders to classify after run {first}")
    store = open_store(db)
    if csv_file is not None:
        refuse_store_files(csv_file, "--csv", store)
    if int(first) > LARGEST_RUN_ID:
        raise fail(f"no run {first} in {store.path}; `resnet-tui runs` lists them")
    suffix = ":last" if which == "last" else ""
    try:
        run, path = checkpoint_of(store, f"run:{int(first)}{suffix}", "predict")
    except SpecError as error:
        raise fail(" ".join(str(error).split())) from None
    return [f"--checkpoint={path}", f"--run={run.id}"], paths


def _run_engine(arguments: list[str]) -> Outcome:
    """Run `python -m engine predict ARGUMENTS`, showing its progress; what it said.

    Its one-line refusals end this command the same way (exit code 2); Ctrl-C stops it and
    exits with code 130."""
    from resnet_tui.runs.engine_jobs import EngineJob, EngineJobError, EngineJobStopped

    outcome = Outcome()
    try:
        with EngineJob("predict", arguments, shares_ctrl_c=True) as job:
            _follow(job.lines(), outcome)
    except EngineJobStopped:
        if outcome.summary is None:  # else stopped by the engine: what it did is shown
            errors.print("stopped", style="yellow")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    except EngineJobError as error:
        say_error(error.message)
        raise typer.Exit(error.exit_code) from None
    if outcome.summary is None:
        say_error("the engine ended without its summary; nothing to show")
        raise typer.Exit(1)
    return outcome


def _follow(messages: Iterator[dict[str, Any]], outcome: Outcome) -> None:
    """Read the engine's messages into `outcome`, with a progress bar on a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "classifying",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )
    task = progress.add_task("images", total=None)
    with progress:
        for said in messages:
            kind = said.get("kind")
            if kind == "started":
                outcome.classes, outcome.device = said["classes"], said["device"]
                # older engines say nothing of the files they skipped
                outcome.skipped = int(said.get("skipped") or 0)
                outcome.skipped_examples = [
                    str(path) for path in said.get("skipped_examples") or []
                ]
                progress.update(task, total=said["total"])
            elif kind == "progress":
                progress.update(task, completed=said["done"])
            elif kind == "prediction":
                outcome.predictions.append(said)
            elif kind == "bad_image":
                outcome.bad.append(said)
            elif kind == "finished":
                outcome.summary = said


def _document(outcome: Outcome) -> dict[str, Any]:
    """The --json output: every prediction, the bad images, the summary."""
    summary = {key: value for key, value in (outcome.summary or {}).items() if key != "kind"}
    return {
        "predictions": [
            {
                "path": prediction["path"],
                "top": [{"class": name, "probability": p} for name, p in prediction["top"]],
                "label": prediction["label"],
            }
            for prediction in outcome.predictions
        ],
        "bad": [{"path": bad["path"], "reason": bad["reason"]} for bad in outcome.bad],
        "summary": {
            **summary,
            "device": outcome.device,
            "classes": outcome.classes,
            "skipped": outcome.skipped,
            "skipped_examples": outcome.skipped_examples,
        },
    }


def _write_csv(target: Path, outcome: Outcome) -> int:
    """Write the predictions as CSV, one row per image and rank, beside `target` first and
    then renamed into place; the number of rows."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    written = 0
    try:
        with open(partial, "w", newline="", encoding="utf-8", errors="surrogateescape") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_COLUMNS)
            for prediction in outcome.predictions:
                for rank, (name, probability) in enumerate(prediction["top"], start=1):
                    label = prediction["label"] or ""
                    writer.writerow([prediction["path"], rank, name, probability, label])
                    written += 1
        os.replace(partial, target)
    except OSError as error:
        raise fail(f"cannot write {target} ({error.strerror or error})") from None
    finally:
        partial.unlink(missing_ok=True)
    return written


def _print_table(outcome: Outcome) -> None:
    """A row per image: its path, the top class, the others, and its label where known."""
    labelled = any(prediction["label"] is not None for prediction in outcome.predictions)
    table = Table(box=None, header_style="bold")
    table.add_column("image")
    table.add_column("class")
    table.add_column("then", style="dim")
    if labelled:
        table.add_column("label")
        table.add_column("")
    for prediction in outcome.predictions[:TABLE_ROWS]:
        (best, chance), *others = prediction["top"]
        row = [
            shown(prediction["path"]),
            shown(f"{best} {percent(chance)}"),
            shown(", ".join(f"{name} {percent(p)}" for name, p in others)),
        ]
        if labelled:
            label = prediction["label"]
            row.append(shown(label if label is not None else "-"))
            mark = "" if label is None else ("✓" if label == best else "✗")
            row.append(Text(mark, style="green" if mark == "✓" else "red"))
        table.add_row(*row)
    console.print(table)
    left = len(outcome.predictions) - TABLE_ROWS
    if left > 0:
        say(f"... and {left:,} more images; --csv FILE or --json gives every one")


def _print_summary(outcome: Outcome) -> None:
    """How many images in how long, the accuracy where labelled, the bad images and why."""
    summary = outcome.summary or {}
    predicted, seconds = summary.get("predicted", 0), summary.get("seconds") or 0.0
    took = f"{seconds:.2f}" if seconds < 10 else f"{seconds:,.0f}"
    line = f"{predicted:,} image{'' if predicted == 1 else 's'} in {took} s"
    if seconds > 0:
        line += f" ({predicted / seconds:,.0f} images/s)"
    line += f" on {outcome.device}"
    if summary.get("labelled"):
        line += f" · accuracy {percent(summary['accuracy'])} of {summary['labelled']:,} labelled"
    if summary.get("stopped"):
        line += " · stopped before the end"
    say(line)
    if outcome.skipped:
        examples = ", ".join(outcome.skipped_examples)
        were = (
            "file in the folders was not an image and was"
            if outcome.skipped == 1
            else ("files in the folders were not images and were")
        )
        say(f"{outcome.skipped:,} {were} skipped" + (f" (e.g. {examples})" if examples else ""))
    if outcome.bad:
        count = len(outcome.bad)
        say(f"{count:,} bad image{'' if count == 1 else 's'}, not classified:")
        for bad in outcome.bad[:BAD_SHOWN]:
            console.print(Text.assemble("  ", shown(bad["path"]), ": ", shown(bad["reason"])))
        if count > BAD_SHOWN:
            say(f"  and {count - BAD_SHOWN:,} more")
