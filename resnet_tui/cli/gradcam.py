"""`resnet-tui gradcam`: where a run's network looked in an image, as a picture (Grad-CAM)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.contract.spec import SpecError
from resnet_tui.cli.common import (
    DbOption,
    fail,
    file_state,
    flowing_help,
    get_run,
    open_store,
    refuse_store_files,
    say,
    say_error,
)
from resnet_tui.runs.engine_jobs import EngineJob, EngineJobError, EngineJobStopped
from resnet_tui.runs.sources import checkpoint_of


@flowing_help
def gradcam_command(
    run_id: Annotated[int, typer.Argument(help="Id of the run whose network to look into.")],
    image: Annotated[Path, typer.Argument(help="The image file (PNG, JPEG, ...).")],
    target: Annotated[
        Optional[str],
        typer.Option("--class", help="The class to explain (default: the predicted one)."),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(help="The PNG file to write (default: gradcam-RUN-IMAGE.png here)."),
    ] = None,
    checkpoint: Annotated[
        str, typer.Option(help="Which weights: `best` (by validation) or `last`.")
    ] = "best",
    force: Annotated[bool, typer.Option("--force", help="Replace the PNG if it exists.")] = False,
    db: DbOption = None,
) -> None:
    """Draw Grad-CAM over an image: the parts of it that made the run's network choose a
    class (Selvaraju et al. 2017), from its last stage, over the image as the network saw
    it (resized and cropped as in the run's evaluation)."""
    if checkpoint not in ("best", "last"):
        raise fail(f"--checkpoint {checkpoint}: choose best or last")
    store = open_store(db)
    run = get_run(store, run_id)
    try:
        _, weights = checkpoint_of(
            store, f"run:{run.id}" + (":last" if checkpoint == "last" else ""), "gradcam"
        )
    except SpecError as error:
        raise fail(str(error)) from None
    if not image.is_file():
        raise fail(f"{image} is not a file; give an image file")
    out = out or Path(f"gradcam-{run.id}-{image.stem}.png")
    if out.suffix.lower() != ".png":
        raise fail(f"--out {out}: the picture is a PNG; give a name ending in .png")
    refuse_store_files(out, "--out", store)
    if out.exists() and not force:
        raise fail(f"{out} exists; give another --out, or --force to replace it")
    if not out.parent.is_dir():
        raise fail(f"--out {out}: the folder {out.parent} does not exist")
    # each value joined to its option: one that starts with `-` is no option
    arguments = [f"--checkpoint={weights}", f"--run={run.id}", f"--image={image}", f"--out={out}"]
    arguments += [f"--target={target}"] if target is not None else []
    before = file_state(out)
    try:
        with EngineJob("gradcam", arguments, shares_ctrl_c=True) as job:
            answers = [line for line in job.lines() if line.get("kind") == "gradcam"]
    except EngineJobStopped as stopped:
        written = file_state(out) != before  # the stop came after the picture was written
        say_error(
            f"gradcam stopped after it had written {out}"
            if written
            else "gradcam stopped; nothing was written"
        )
        raise typer.Exit(stopped.exit_code) from None
    except EngineJobError as error:
        say_error(error.message)
        raise typer.Exit(error.exit_code) from None
    if not answers:
        raise fail("the engine wrote no picture")
    answer = answers[-1]
    why = "" if target is not None else " (the predicted class)"
    predicted = answer["predicted"]
    also = "" if predicted == answer["class"] else f"; it predicts {predicted!r}"
    say(
        f"wrote {out}: where run {run.id} saw {answer['class']!r}{why}, "
        f"probability {100 * float(answer['probability']):.1f} %{also}"
    )
