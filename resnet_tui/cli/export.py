"""`resnet-tui export-metrics`: runs' metrics out, as one tidy CSV for the tools people use,
and as TensorBoard logs (written by `python -m engine tensorboard`: tensorboardX imports
torch, which this side never does)."""

import csv
import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from resnet_tui.cli.common import (
    DbOption,
    count,
    fail,
    flowing_help,
    get_run,
    open_store,
    refuse_store_files,
    say,
    say_error,
)
from resnet_tui.runs.engine_jobs import EngineJob, EngineJobError
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.metrics import EXPORT_COLUMNS, export_rows
from resnet_tui.runs.model import Run
from resnet_tui.runs.store import RunStore

CSV_NAME = "metrics.csv"


@flowing_help
def export_metrics(
    run_ids: Annotated[list[int], typer.Argument(help="Ids of the runs to export.")],
    csv_folder: Annotated[
        Optional[Path],
        typer.Option(
            "--csv",
            help=f"Folder to write {CSV_NAME} into (made if missing): one row a value, "
            "with the columns run, epoch, step, split, metric, value.",
        ),
    ] = None,
    tensorboard_folder: Annotated[
        Optional[Path],
        typer.Option(
            "--tensorboard",
            help="Folder to write TensorBoard logs into (made if missing): a folder a run, "
            "run-ID-NAME, with its metrics as scalars and its spec as hparams.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help=f"Replace a {CSV_NAME}, and runs' TensorBoard folders, already there."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Write runs' metrics (every step's loss, every epoch's losses, accuracies, time and
    learning rates) as one tidy CSV file, e.g. for pandas: `pd.read_csv(".../metrics.csv")`,
    and/or as TensorBoard logs: `tensorboard --logdir DIR`."""
    if csv_folder is None and tensorboard_folder is None:
        raise fail("give --csv DIR, --tensorboard DIR or both: where to write the metrics")
    store = open_store(db)
    catch_up(store)
    runs = [get_run(store, run_id) for run_id in dict.fromkeys(run_ids)]
    for folder, option in ((csv_folder, "--csv"), (tensorboard_folder, "--tensorboard")):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise fail(f"{folder} is a file, not a folder; give a folder for {option}")
        if folder is not None:
            refuse_store_files(folder, option, store)
    if csv_folder is not None:
        refuse_store_files(csv_folder / CSV_NAME, "--csv", store)
    if csv_folder is not None and (csv_folder / CSV_NAME).exists() and not force:
        target = csv_folder / CSV_NAME
        raise fail(f"{target} exists; give another folder, or --force to replace it")
    if csv_folder is not None:
        _export_csv(store, runs, csv_folder)
    if tensorboard_folder is not None:
        _export_tensorboard(
            store, runs, tensorboard_folder, force, wrote_csv=csv_folder is not None
        )


def _export_csv(store: RunStore, runs: list[Run], csv_folder: Path) -> None:
    """Write `runs`' metric rows to CSV_NAME in `csv_folder`, and say so."""
    target = csv_folder / CSV_NAME
    try:
        csv_folder.mkdir(parents=True, exist_ok=True)
        written = _write_atomically(target, export_rows(store.connection, [r.id for r in runs]))
    except OSError as error:
        raise fail(f"cannot write {target} ({error.strerror or error})") from None
    say(f"wrote {written:,} rows of {count(len(runs), 'run')} to {target}")


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


def _export_tensorboard(
    store: RunStore, runs: list[Run], folder: Path, force: bool, wrote_csv: bool
) -> None:
    """Have the engine write `runs` as TensorBoard logs into `folder`, and say what it did:
    its one line where it could not (exit 2 for a mistake, else 1). Where every run's folder
    was already there, and kept, and nothing else written (`wrote_csv`), exit 2 as for a
    CSV file already there."""
    given = {"runs": [_tensorboard_run(store, run) for run in runs]}
    with tempfile.TemporaryDirectory(prefix="resnet-tui-tensorboard-") as temporary:
        runs_file = Path(temporary) / "runs.json"
        runs_file.write_text(json.dumps(given), encoding="utf-8")
        # joined: a folder that starts with `-` is no option
        arguments = [f"--input={runs_file}", f"--out={folder}"]
        arguments += ["--force"] if force else []
        try:
            with EngineJob("tensorboard", arguments, shares_ctrl_c=True) as job:
                answers = list(job.lines())
        except EngineJobError as error:
            say_error(error.message)
            raise typer.Exit(error.exit_code) from None
    if not answers:
        say_error("the engine ended without saying what it wrote; try again")
        raise typer.Exit(1)
    answer = answers[-1]
    place = shlex.quote(str(folder))
    written = count(len(answer["runs"]), "run")
    if answer["runs"]:
        say(
            f"wrote {answer['scalars']:,} scalars of {written} to {folder}; "
            f"open with: tensorboard --logdir {place} (pip install tensorboard)"
        )
    if answer["kept"]:
        kept = ", ".join(answer["kept"])
        if not answer["runs"] and not wrote_csv:
            raise fail(
                f"kept {kept} in {folder}, already there: nothing written; --force replaces them"
            )
        say(f"kept {kept} in {folder}, already there; --force replaces them")


def _tensorboard_run(store: RunStore, run: Run) -> dict[str, Any]:
    """What the engine writes of a run: its name, status, accuracies, spec and metric rows."""
    rows = [list(row[1:]) for row in export_rows(store.connection, [run.id])]
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "test_acc": run.test_acc,
        "best_val_acc": run.best_val_acc,
        "spec": run.spec_values,
        "rows": rows,
    }
