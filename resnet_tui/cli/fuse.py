"""Fusing runs into a run of its own: `ensemble` and `soup` (uniform, greedy or WiSE-FT)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.contract.spec import FusionSpec, SpecError
from resnet_tui.cli.common import DbOption, fail, label, open_store
from resnet_tui.cli.run import follow_or_detach
from resnet_tui.runs import launcher
from resnet_tui.runs.follower import catch_up

DeviceOption = Annotated[
    str, typer.Option("--device", help="Where to evaluate: auto, cpu, cuda, cuda:N or mps.")
]
NameOption = Annotated[Optional[str], typer.Option("--name", help="A name for the new run.")]
DetachOption = Annotated[
    bool, typer.Option("--detach", help="Print the run id and return; the engine goes on.")
]
WeightsOption = Annotated[
    Optional[str],
    typer.Option("--weights", help="One weight per run, e.g. 2,1,1 (default: equal)."),
]
EventsJsonOption = Annotated[
    bool, typer.Option("--json", help="Print the events as JSON lines instead of progress.")
]


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise fail(
            f"--weights must be numbers separated by commas, e.g. 2,1,1, not {text!r}"
        ) from None


def _fuse(
    fusion: FusionSpec,
    run_ids: list[int],
    name: str | None,
    detach: bool,
    as_json: bool,
    db: Path | None,
) -> None:
    name = label(name, "name")
    store = open_store(db)
    catch_up(store)
    try:
        fusion.validate()
        run_id, process = launcher.fuse(store, fusion, run_ids, name)
    except SpecError as error:
        raise fail(str(error)) from None
    follow_or_detach(store, run_id, process, detach, as_json)


def ensemble_runs(
    run_ids: Annotated[list[int], typer.Argument(help="Ids of two or more completed runs.")],
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    name: NameOption = None,
    detach: DetachOption = False,
    as_json: EventsJsonOption = False,
    db: DbOption = None,
) -> None:
    """Evaluate several runs together: their averaged class probabilities.

    The runs may be of any architectures, but of one dataset and one set of classes. The
    ensemble is stored as a run of its own, so it lists and compares like any other.
    """
    members = [{"run": run_id} for run_id in run_ids]
    fusion = FusionSpec("ensemble", members, weights=_weights(weights), device=device)
    _fuse(fusion, run_ids, name, detach, as_json, db)


def soup_runs(
    run_ids: Annotated[
        list[int], typer.Argument(help="Ids of runs fine-tuned from the same starting weights.")
    ],
    greedy: Annotated[
        bool,
        typer.Option(
            "--greedy",
            help="Add runs best first, keeping each only if validation accuracy does not drop.",
        ),
    ] = False,
    with_init: Annotated[
        Optional[str],
        typer.Option(
            "--with-init",
            help="WiSE-FT: mix one run's backbone with its starting weights, "
            "(1-ALPHA)·start + ALPHA·fine-tuned; `auto` picks ALPHA on validation data.",
            metavar="ALPHA",
        ),
    ] = None,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    name: NameOption = None,
    detach: DetachOption = False,
    as_json: EventsJsonOption = False,
    db: DbOption = None,
) -> None:
    """Average the weights of runs of one architecture fine-tuned from the same start.

    A model soup (Wortsman et al. 2022): uniform, or greedy with --greedy. BatchNorm
    statistics are measured again on training data. The soup is a run with a checkpoint,
    usable as --init run:ID and as a --teacher.
    """
    members = [{"run": run_id} for run_id in run_ids]
    if with_init is None:
        fusion = FusionSpec("soup", members, _weights(weights), greedy, device=device)
    else:
        alpha = None
        if with_init.strip().lower() != "auto":
            try:
                alpha = float(with_init)
            except ValueError:
                raise fail(
                    f"--with-init must be a number from 0 to 1 or auto, not {with_init!r}"
                ) from None
        if greedy or weights is not None:
            raise fail("--with-init mixes one run with its start; leave --greedy and --weights out")
        fusion = FusionSpec("wise-ft", members, alpha=alpha, device=device)
    _fuse(fusion, run_ids, name, detach, as_json, db)
