"""`resnet-tui lr-find`: the learning-rate range test of a run, its loss against learning
rate drawn in the terminal and the rate it suggests; nothing is saved."""

import json
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from engine.contract.lr_range import (
    DEFAULT_END_LR,
    DEFAULT_START_LR,
    DEFAULT_STEPS,
    check_lr_range,
)
from engine.contract.spec import RunSpec, SpecError
from resnet_tui.cli.common import console, errors, fail, open_store, say, say_error
from resnet_tui.cli.run import spec_from_options
from resnet_tui.cli.spec_options import (
    command_from_parameters,
    config_option,
    json_and_db_parameters,
    run_option,
    spec_parameters,
)
from resnet_tui.display import shown
from resnet_tui.runs import range_test
from resnet_tui.runs.engine_jobs import EngineJobError, EngineJobStopped

PANEL = "Range test"
# The chart's colours: each step's loss faint, the smoothed loss and the suggestions bright.
LOSS_STYLE, SMOOTHED_STYLE = "grey50", "bold #1f77b4"
VALLEY_STYLE, STEEPEST_STYLE = "bold #2ca02c", "#ff7f0e"
CHART_ROWS, WIDEST = 16, 100


def _settle(spec: RunSpec, db: Path | None) -> None:
    """What `run` settles before it starts (`range_test.settle`); the store is opened only
    where the spec names a run."""
    store = open_store(db) if range_test.needs_the_store(spec) else None
    try:
        range_test.settle(spec, store)
    except SpecError as error:
        raise fail(str(error)) from None
    finally:
        if store is not None:
            store.close()


def _lr_find(
    config_file: Path | None,
    start_lr: float,
    end_lr: float,
    steps: int,
    as_json: bool,
    db: Path | None,
    **options: Any,
) -> None:
    try:
        check_lr_range(start_lr, end_lr, steps)
    except SpecError as error:
        raise fail(str(error)) from None
    spec = spec_from_options(config_file, options)
    _settle(spec, db)
    finished = _follow(spec, start_lr, end_lr, steps, as_json)
    if as_json:
        print(json.dumps(finished), flush=True)
        return
    _show(finished)


def _follow(
    spec: RunSpec, start_lr: float, end_lr: float, steps: int, as_json: bool
) -> dict[str, Any]:
    """Run the engine's range test with a progress bar (none with --json); returns its
    `finished` message. A stop or a failure exits with the engine's line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("range test"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lr {task.fields[lr]}  loss {task.fields[loss]}"),
        console=errors,
        transient=True,
        disable=as_json,
    )
    task = progress.add_task("steps", total=steps, lr="-", loss="-")

    def advanced(message: dict[str, Any]) -> None:
        smoothed = message.get("smoothed")
        shown = f"{smoothed:.4g}" if isinstance(smoothed, float) else "not finite"
        lr = f"{message.get('lr', 0.0):.2e}"
        progress.update(task, completed=message.get("step", 0), lr=lr, loss=shown)

    test = range_test.RangeTest(spec, start_lr, end_lr, steps, shares_ctrl_c=True)
    try:
        with progress:
            return test.run(advanced)
    except EngineJobStopped as stopped:
        say_error("lr-find stopped; nothing was saved")
        raise typer.Exit(stopped.exit_code) from None
    except EngineJobError as error:
        say_error(error.message)
        raise typer.Exit(error.exit_code) from None


def _show(finished: dict[str, Any]) -> None:
    """The chart of the loss against the learning rate, what marks it, and the suggestion."""
    from resnet_tui.charts.lr_range import AXIS, LOSS, SMOOTHED, Mark, lr_chart

    valley_ink, steepest_ink = SMOOTHED + 1, SMOOTHED + 2

    lrs, valley, steepest = finished["lrs"], finished["valley"], finished["steepest"]
    console.print(shown(range_test.title(finished)), highlight=False, soft_wrap=True)
    found = valley is not None
    marks = [Mark("valley", valley, valley_ink), Mark("steepest", steepest, steepest_ink)]
    styles = {AXIS: "dim", LOSS: LOSS_STYLE, SMOOTHED: SMOOTHED_STYLE}
    styles |= {valley_ink: VALLEY_STYLE, steepest_ink: STEEPEST_STYLE}
    shown_marks, width = marks if found else [], min(console.width, WIDEST)
    rows = lr_chart(lrs, finished["losses"], finished["smoothed"], shown_marks, width, CHART_ROWS)
    for row in rows:
        console.print(Text.assemble(*((text, styles[ink]) for text, ink in row)), soft_wrap=True)
    legend = [("━ smoothed loss", SMOOTHED_STYLE), ("  · each step", LOSS_STYLE)]
    if found:
        legend += [(f"  ▲ valley {valley:.3g} (suggested)", VALLEY_STYLE)]
        legend += [(f"  ▲ steepest {steepest:.3g}", STEEPEST_STYLE)]
    console.print(Text.assemble(*legend), soft_wrap=True)
    if not found:
        say_error(f"{range_test.NO_SUGGESTION}; give a lower --start-lr")
        raise typer.Exit(1)
    say(range_test.suggestion(finished, "--lr"))


lr_find_command = command_from_parameters(
    _lr_find,
    [
        *spec_parameters(),
        config_option(),
        run_option(
            "start_lr",
            float,
            typer.Option(
                DEFAULT_START_LR, "--start-lr", help="The first rate.", rich_help_panel=PANEL
            ),
        ),
        run_option(
            "end_lr",
            float,
            typer.Option(DEFAULT_END_LR, "--end-lr", help="The last rate.", rich_help_panel=PANEL),
        ),
        run_option(
            "steps",
            int,
            typer.Option(
                DEFAULT_STEPS,
                "--steps",
                help="Optimiser steps, the rate growing by the same factor each.",
                rich_help_panel=PANEL,
            ),
        ),
        *json_and_db_parameters("Print the finished test (every step's values) as JSON."),
    ],
    "Find a learning rate (the range test of Smith 2015, as fastai's lr_find): train the run "
    "the options describe for --steps steps from its starting weights, the learning rate "
    "growing exponentially from --start-lr to --end-lr, stopping early where the loss blows "
    "up; draw the loss against the rate and suggest an --lr (the valley). Nothing is saved.",
)
