"""`resnet-tui mistakes`: what a finished run got wrong on its test set, image by image."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from resnet_tui.cli.common import (
    DbOption,
    JsonOption,
    console,
    fail,
    flowing_help,
    get_run,
    open_store,
)
from resnet_tui.display import percent, shown
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.mistakes import (
    MistakesError,
    TestPredictions,
    confused_pairs,
    confusion_matrix,
    per_class,
    read_test_predictions,
    top_losses,
)
from resnet_tui.runs.model import Run


@flowing_help
def show_mistakes(
    run_id: Annotated[int, typer.Argument(help="The run's id, from `resnet-tui runs`.")],
    top: Annotated[
        int, typer.Option("--top", help="How many top losses and confused pairs to show.")
    ] = 10,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show a finished run's mistakes on its test set: the images of the highest loss (with
    their thumbnails' files), the classes most often confused, and each class's precision,
    recall and F1."""
    if top < 1:
        raise fail(f"--top must be a positive number, not {top}")
    store = open_store(db)
    catch_up(store)
    run = get_run(store, run_id)
    try:
        predictions = read_test_predictions(run.run_dir) if run.run_dir else None
    except MistakesError as error:
        raise fail(f"run {run.id}'s test predictions cannot be used: {error}") from None
    if predictions is None:
        raise fail(f"run {run.id} has no test predictions: {_why_none(run)}")
    if as_json:
        print(json.dumps(_summary(run, predictions, top), indent=2))
        return
    _show(run, predictions, top)


def _why_none(run: Run) -> str:
    """Why a run has no test predictions, and what to do."""
    if run.status in ("queued", "running"):
        return f"it is {run.status}; they are written when it completes"
    if run.status == "stopped" and run.trained:
        return f"it ended before testing; finish it (resnet-tui resume {run.id})"
    if run.status != "completed":
        return "it ended before testing"
    if (run.test_report or {}).get("predictions"):
        return f"the file is gone from {run.run_dir}; train it again"
    if not run.trained:
        return f"this {run.kind} was made before test predictions were kept; make it again"
    return "it was trained before test predictions were kept; train it again"


def _name(predictions: TestPredictions, index: int) -> str:
    return predictions.classes[index]


def _summary(run: Run, predictions: TestPredictions, top: int) -> dict[str, Any]:
    """Everything the tables show, as JSON."""
    correct = sum(true == guess for true, guess in predictions.pairs())
    return {
        "run": run.id,
        "samples": len(predictions),
        "correct": correct,
        "classes": list(predictions.classes),
        "top_losses": [
            {
                "index": s.index,
                "true": s.true,
                "true_name": _name(predictions, s.true),
                "predicted": s.predicted,
                "predicted_name": _name(predictions, s.predicted),
                "probability": s.probability,
                "true_probability": s.true_probability,
                "loss": s.loss,
                "image": str(s.image) if s.image else None,
                "source": s.source,
            }
            for s in top_losses(predictions, top)
        ],
        "confused_pairs": [
            {
                "true": pair.true,
                "true_name": _name(predictions, pair.true),
                "predicted": pair.predicted,
                "predicted_name": _name(predictions, pair.predicted),
                "count": pair.count,
                "samples": list(pair.samples),
            }
            for pair in confused_pairs(predictions, top)
        ],
        "per_class": [
            {
                "class": c.index,
                "name": c.name,
                "precision": c.precision,
                "recall": c.recall,
                "f1": c.f1,
                "support": c.support,
            }
            for c in per_class(predictions)
        ],
        "confusion": confusion_matrix(predictions),
    }


def _show(run: Run, predictions: TestPredictions, top: int) -> None:
    correct = sum(true == guess for true, guess in predictions.pairs())
    console.print(
        Text.assemble(
            (f"run {run.id}", "bold"),
            shown(f" · {run.name} · {len(predictions):,} test images · "),
            f"{len(predictions) - correct:,} wrong ({percent(correct / len(predictions))} right)",
        )
    )
    worst = top_losses(predictions, top)
    losses = Table(title=f"Top {len(worst)} losses", title_justify="left", box=None, padding=(0, 1))
    for column in ("image", "true", "predicted", "p(predicted)", "p(true)", "loss"):
        losses.add_column(column, justify="left" if column in ("true", "predicted") else "right")
    for s in worst:
        losses.add_row(
            str(s.index),
            shown(_name(predictions, s.true)),
            shown(_name(predictions, s.predicted), "" if s.correct else "red"),
            f"{s.probability:.3f}",
            f"{s.true_probability:.3f}",
            f"{s.loss:.3f}",
        )
    console.print("", losses)
    # Paths as whole lines, never cut by a table's width, so they can be copied.
    for s in worst:
        thumbnail = f"thumbnail {_shown_path(s.image)}" if s.image else "no thumbnail"
        where = f"{s.source} ({thumbnail})" if s.source else thumbnail
        console.print(shown(f"  {s.index}: {where}"), soft_wrap=True, highlight=False)
    pairs = Table(title="Most confused", title_justify="left", box=None, padding=(0, 1))
    for column, justify in (("true", "left"), ("taken for", "left"), ("images", "right")):
        pairs.add_column(column, justify=justify)
    pairs.add_column("highest losses first", overflow="fold")
    for pair in confused_pairs(predictions, top):
        listed = ", ".join(map(str, pair.samples[:8])) + (", …" if pair.count > 8 else "")
        pairs.add_row(
            shown(_name(predictions, pair.true)),
            shown(_name(predictions, pair.predicted)),
            str(pair.count),
            listed,
        )
    console.print("", pairs if pairs.row_count else Text("Most confused: no mistakes", "bold"))
    scores = Table(title="Per class", title_justify="left", box=None, padding=(0, 1))
    scores.add_column("class")
    for column in ("precision", "recall", "F1", "support"):
        scores.add_column(column, justify="right")
    for c in per_class(predictions):
        scores.add_row(
            shown(f"{c.index} {c.name}"),
            percent(c.precision),
            percent(c.recall),
            percent(c.f1),
            f"{c.support:,}",
        )
    console.print("", scores)


def _shown_path(path: Path) -> str:
    """A path as short as it can be: from the working folder where it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
