"""Training in the foreground: `run`, `resume` and `stop`, and following a run to its end."""

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from engine.contract import events as ev
from engine.contract import locate
from engine.contract.spec import RunSpec, SpecError, normalise_device
from resnet_tui.cli import config
from resnet_tui.cli.common import (
    EXIT_USER_ERROR,
    POLL_INTERVAL_S,
    DbOption,
    console,
    count,
    errors,
    fail,
    get_run,
    label,
    open_store,
    say,
    say_error,
)
from resnet_tui.cli.progress import RunProgress
from resnet_tui.cli.queue import print_summary
from resnet_tui.cli.spec_options import (
    command_from_parameters,
    config_option,
    json_and_db_parameters,
    run_option,
    spec_parameters,
)
from resnet_tui.display import run_error, shown
from resnet_tui.runs import launcher
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.model import Run
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.worker import Worker, missing_device, queue_folds

# What stops a run followed in the foreground (after its step, its last checkpoint kept).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_code(run: Run) -> int:
    if run.status in ("completed", "pruned"):  # pruned: its sweep's rule ended it, as meant
        return 0
    if run.status == "failed" and run.error is not None:
        return EXIT_USER_ERROR if run.error.kind in ev.USER_ERROR_KINDS else 1
    if run.status == "stopped":
        return 130
    return 1


def follow_run(
    store: RunStore, run_id: int, supervisor: subprocess.Popen[bytes], as_json: bool
) -> int:
    """Show a run started in the foreground until its supervisor has recorded its end.

    Ctrl-C or SIGTERM (a `kill`, a job scheduler ending us) asks it to stop cleanly: the
    engine finishes its step, keeps its last checkpoint, and we exit 130 once it has
    stopped. A hang-up (SIGHUP) ends us alone and leaves the run training, detached. The
    events file is read, never written, here."""
    run = store.run(run_id)
    assert run is not None
    state, offset = RunState(), run.events_offset
    state.apply_all(ev.read_events(run.events_path, 0, end=offset).events)
    display = None if as_json else RunProgress(console, run_id)
    stopping = False

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            supervisor.send_signal(signal.SIGINT)  # our child: its id is its own
            errors.print("stopping after this step (the last checkpoint is kept)...")

    previous = {signum: signal.signal(signum, on_interrupt) for signum in STOP_SIGNALS}
    try:
        if display:
            display.__enter__()
        while True:
            ended = supervisor.poll() is not None
            read = ev.read_events(run.events_path, offset)
            offset = read.offset
            state.apply_all(read.events)
            if display:
                display.update(state, read.events)
            else:
                for event in read.events:
                    print(json.dumps(event.to_dict()), flush=True)
            if ended:
                break
            time.sleep(POLL_INTERVAL_S)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if display:
            display.__exit__(None, None, None)
    catch_up(store)  # a supervisor that died leaves its run to the next viewer: us
    ended_run = store.run(run_id)
    if ended_run is None:
        say_error(f"run {run_id} was deleted while it ran")
        return 1
    if display:
        display.summary(ended_run)
    if ended_run.status == "failed":
        say_error(run_error(ended_run))
    return _exit_code(ended_run)


def follow_or_detach(
    store: RunStore, run_id: int, process: subprocess.Popen[bytes], detach: bool, as_json: bool
) -> None:
    """Print the run id and return (`--detach`), or follow the run and exit with its code."""
    if detach:
        print(run_id)
        return
    raise typer.Exit(follow_run(store, run_id, process, as_json))


def spec_from_options(config_file: Path | None, options: dict[str, Any]) -> RunSpec:
    """The spec the run options give (`spec_parameters`, over a --config file's), checked
    and its dataset looked for; a mistake exits 2 with one line."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values.update(config.read_options(config_file))
        except config.ConfigError as error:
            raise fail(str(error)) from None
    values.update({name: value for name, value in options.items() if value is not None})
    pruning = [n for n in ("prune", "prune_after", "prune_factor") if values.get(n) is not None]
    if pruning:
        raise fail(
            f"--{pruning[0].replace('_', '-')} is for sweeps, whose runs are judged against each "
            "other; e.g. `resnet-tui sweep --lr 0.1,0.01,0.001 --prune median`"
        )
    if isinstance(values.get("name"), str):
        label(values["name"], "name")
    if values.get("data_root"):
        values["data_root"] = str(Path(values["data_root"]).expanduser().resolve())
    try:
        spec = RunSpec.from_dict(values)
        locate.check_dataset(spec)
    except SpecError as error:
        raise fail(str(error)) from None
    return spec


def _run(
    config_file: Path | None, detach: bool, as_json: bool, db: Path | None, **options: Any
) -> None:
    spec = spec_from_options(config_file, options)
    store = open_store(db)
    chosen = launcher.settle_image_size(store, spec)
    if spec.folds:
        _run_folds(store, spec, detach, as_json, chosen)
        return
    try:
        run_id, process = launcher.launch(store, spec)
    except SpecError as error:
        raise fail(str(error)) from None
    _say_chosen(chosen)
    follow_or_detach(store, run_id, process, detach, as_json)


def _say_chosen(image_size: str | None) -> None:
    """Say on stderr, once the run is made, the image size chosen for it where it gave none."""
    if image_size:
        errors.print(
            shown(f"{image_size} (give --image-size to choose)"), highlight=False, soft_wrap=True
        )


def _run_folds(
    store: RunStore, spec: RunSpec, detach: bool, as_json: bool, image_size: str | None
) -> None:
    """`run --folds K`: the K runs queued as one sweep and trained one after another here
    (with --detach, by a worker of their own in the background), then the mean and spread
    of their metrics."""
    try:
        folds = queue_folds(store, spec, in_background=detach)
    except SpecError as error:
        raise fail(str(error)) from None
    _say_chosen(image_size)
    if detach:
        print(json.dumps({"sweep": folds.sweep, "runs": folds.run_ids}) if as_json else folds.sweep)
        return
    report = (lambda line: None) if as_json else say
    worker = Worker(store, [spec.device], report=report, among=folds.run_ids)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM as Ctrl-C
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.stop_running()
        try:
            worker.run()
        except KeyboardInterrupt:  # a second one: the folds stop on their own
            say("the running folds are stopping on their own (`resnet-tui runs` shows them)")
            raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_summary(store, folds.sweep, as_json)
    runs = store.sweep_runs(folds.sweep)
    raise typer.Exit(0 if all(run.status == "completed" for run in runs) else 1)


run_command = command_from_parameters(
    _run,
    [
        *spec_parameters(),
        config_option(),
        run_option(
            "detach",
            bool,
            typer.Option(
                False,
                "--detach",
                help="Print the run id and return; the run goes on.",
                rich_help_panel="Run",
            ),
        ),
        *json_and_db_parameters("Print the events as JSON lines instead of progress bars."),
    ],
    "Train one run and show its progress; exit 0 when it completes. Ctrl-C or SIGTERM "
    "stops it after its step, keeping its last checkpoint (exit 130). "
    "With no options: a ResNet-8 on the built-in shapes dataset, under a minute on a CPU.",
)


def resume_run(
    run_id: Annotated[
        int, typer.Argument(help="The id of a stopped, pruned, crashed or failed run.")
    ],
    detach: Annotated[
        bool, typer.Option("--detach", help="Print the run id and return; the run goes on.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the events as JSON lines instead of bars.")
    ] = False,
    device: Annotated[
        Optional[str],
        typer.Option(
            "--device",
            help="Go on on another device (cpu, cuda:N, ...), say after a GPU failed; "
            "default: where it ran.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Continue a stopped, pruned, crashed or failed run in place from its last checkpoint (a
    pruned run then trains on, unpruned).

    Weights, optimiser, schedule, freeze policy, random state and epoch counter all carry on,
    so a seeded CPU run ends as it would have without the interruption.
    """
    store = open_store(db)
    catch_up(store)
    try:
        if device is not None:  # a device not there refused before the run is touched
            device = normalise_device(device)
            launcher.check_resumable(get_run(store, run_id))
            missing = missing_device([device])
            if missing:
                raise fail(f"{missing}; the run stays as it was (`resnet-tui devices` lists them)")
        process = launcher.resume(store, run_id, device)
    except (SpecError, launcher.DevicesUnavailable) as error:
        raise fail(str(error)) from None
    follow_or_detach(store, run_id, process, detach, as_json)


def stop_runs(
    run_ids: Annotated[list[int], typer.Argument(help="Ids of the runs to stop.")],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Return once the runs have stopped (default), or at once.",
        ),
    ] = True,
    db: DbOption = None,
) -> None:
    """Stop running runs cleanly: each finishes its step and keeps its last checkpoint, so
    `resnet-tui resume` can go on from it. Ctrl-C while waiting leaves them stopping."""
    store = open_store(db)
    catch_up(store)
    runs = [get_run(store, run_id) for run_id in run_ids]
    for run in runs:
        if run.status != "running":
            raise fail(f"run {run.id} is not running (it is {run.status})")
    asked = []
    for run in runs:
        if launcher.stop(run):
            asked.append(run.id)
            console.print(f"asked run {run.id} to stop after its step")
        else:
            say_error(f"run {run.id} has no process left to stop; `resnet-tui runs` marks it")
    left = list(asked) if wait else []
    while left:
        time.sleep(POLL_INTERVAL_S)
        catch_up(store)
        for run_id in list(left):
            now = store.run(run_id)
            if now is None or not now.live:
                left.remove(run_id)
                how = f"{now.status} after {count(now.epochs_done, 'epoch')}" if now else "gone"
                console.print(f"run {run_id} {how}")
    if len(asked) < len(runs):
        raise typer.Exit(1)
