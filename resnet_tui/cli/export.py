"""`resnet-tui export-metrics`: runs' metrics out, as one tidy CSV for the tools people use."""

import csv
import os
from pathlib import Path
from typing import Annotated

import typer

from resnet_tui.cli.common import DbOption, fail, get_run, open_store, say
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.metrics import EXPORT_COLUMNS, export_rows

CSV_NAME = "metrics.csv"


def export_metrics(
    run_ids: Annotated[list[int], typer.Argument(help="Ids of the runs to export.")],
    csv_folder: Annotated[
        Path,
        typer.Option(
            "--csv",
            help=f"Folder to write {CSV_NAME} into (made if missing): one row a value, "
            "with the columns run, epoch, step, split, metric, value.",
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help=f"Replace a {CSV_NAME} already in the folder.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Write runs' metrics (every step's loss, every epoch's losses, accuracies, time and
    learning rates) as one tidy CSV file, e.g. for pandas: `pd.read_csv(".../metrics.csv")`."""
    store = open_store(db)
    catch_up(store)
    runs = [get_run(store, run_id) for run_id in dict.fromkeys(run_ids)]
    target = csv_folder / CSV_NAME
    if csv_folder.exists() and not csv_folder.is_dir():
        raise fail(f"{csv_folder} is a file, not a folder; give a folder for --csv")
    if target.exists() and not force:
        raise fail(f"{target} exists; give another folder, or --force to replace it")
    try:
        csv_folder.mkdir(parents=True, exist_ok=True)
        written = _write_atomically(target, export_rows(store.connection, [r.id for r in runs]))
    except OSError as error:
        raise fail(f"cannot write {target} ({error.strerror or error})") from None
    say(f"wrote {written:,} rows of {len(runs)} run{'s' if len(runs) > 1 else ''} to {target}")


def _write_atomically(target: Path, rows) -> int:
    """Write the CSV beside `target`, then rename it into place; the number of rows."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    written = 0
    try:
        with open(partial, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(EXPORT_COLUMNS)
            for run_id, epoch, step, split, metric, value in rows:
                writer.writerow(
                    [run_id, epoch, "" if step is None else step, split, metric, repr(value)]
                )
                written += 1
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return written
