"""Sweeps and the queue: `sweep`, `worker`, `summary` and `queue`."""

import json
import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from engine.contract import locate
from engine.contract.spec import SpecError
from resnet_tui.cli.common import DbOption, JsonOption, console, fail, get_run, open_store, say
from resnet_tui.cli.search_report import print_search, search_report
from resnet_tui.cli.spec_options import (
    command_from_parameters,
    json_and_db_parameters,
    spec_parameters,
)
from resnet_tui.display import shown
from resnet_tui.runs import launcher
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.sweeps import spread, summary, sweep_specs
from resnet_tui.runs.worker import MOST_RUNS_PER_DEVICE, Worker, missing_device


def print_summary(store: RunStore, sweep: int, as_json: bool) -> None:
    """A sweep's results per setting, as a table or as JSON; a column of the runs pruned
    where its pruning ended any."""
    rows = summary(store.sweep_runs(sweep))
    if as_json:
        print(json.dumps({"sweep": sweep, "settings": rows}))
        return
    pruned = any(row["pruned"] for row in rows)
    columns = ["setting", "completed", *(["pruned"] if pruned else [])]
    table = Table(*columns, "best val acc", "test acc", "time", title=f"sweep {sweep}")
    for row in rows:
        table.add_row(
            shown(row["setting"]),
            f"{row['completed']}/{row['runs']}",
            *([str(row["pruned"])] if pruned else []),
            spread(row["best_val_acc"]),
            spread(row["test_acc"]),
            spread(row["seconds"], as_time=True),
        )
    console.print(table)


def _sweep(db: Path | None, as_json: bool, **options: Any) -> None:
    values = {name: value for name, value in options.items() if value is not None}
    if values.get("data_root"):
        values["data_root"] = str(Path(values["data_root"]).expanduser().resolve())
    try:
        specs = sweep_specs(values)
        for spec in specs:
            locate.check_dataset(spec)
        if any(spec.world > 1 for spec in specs):
            raise fail(
                "a queued run trains on the one device a worker gives it; leave out --devices, "
                "--nproc and --nnodes (`resnet-tui run` trains on several)"
            )
        store = open_store(db)
        run_ids, sweep = launcher.queue(store, specs)
    except SpecError as error:
        raise fail(str(error)) from None
    if as_json:
        print(json.dumps({"sweep": sweep, "runs": run_ids}))
        return
    group = f"sweep {sweep}: " if sweep else ""
    console.print(
        f"{group}{len(run_ids)} run{'s' if len(run_ids) > 1 else ''} queued "
        f"({', '.join(map(str, run_ids))}); run the queue with "
        "`resnet-tui worker --devices cuda:0,cuda:1` (or --devices cpu)",
        highlight=False,
    )


sweep_command = command_from_parameters(
    _sweep,
    [
        *spec_parameters(listed=True),
        *json_and_db_parameters("Print the sweep and its run ids as JSON."),
    ],
    "Queue one run for every combination of the options given as lists, e.g. "
    "`--arch resnet20,resnet56 --freeze head,full --lr 0.1,0.01` (8 runs), as one sweep; "
    "`resnet-tui worker` runs the queue. With --prune median or asha, a run that falls "
    "behind the others ends early, status pruned (its curves kept; `resume` goes on).",
)


def run_worker(
    devices: Annotated[
        str, typer.Option(help="Devices to run the queue on, e.g. cuda:0,cuda:1 or cpu.")
    ],
    per_device: Annotated[
        int,
        typer.Option(help=f"Runs at once on each device \\[range: 1 to {MOST_RUNS_PER_DEVICE}]."),
    ] = 1,
    wait: Annotated[
        bool, typer.Option("--wait", help="Keep waiting for queued runs when the queue is empty.")
    ] = False,
    sweep: Annotated[
        Optional[int],
        typer.Option(
            help="Run only the queued runs of this sweep (the folds of a --folds run, say); "
            "a run of it stopped by hand leaves the rest waiting."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Run the queue: start queued runs on the devices, one (or --per-device) at a time on
    each, until the queue is empty; a device the engine cannot see is refused at the start.
    Ctrl-C takes no more runs and waits for the running ones; a second Ctrl-C leaves them
    running in the background."""
    store = open_store(db)
    among = None
    if sweep is not None:
        among = [run.id for run in store.sweep_runs(sweep) if run.waits_in_queue]
        if not store.sweep_runs(sweep):
            raise fail(f"no sweep {sweep} in {store.path}; `resnet-tui runs --json` shows sweeps")
    try:
        worker = Worker(store, devices.split(","), per_device, wait, say, among)
        missing = missing_device([slot.device for slot in worker.slots])
    except SpecError as error:
        raise fail(str(error)) from None
    except launcher.DevicesUnavailable as error:
        raise fail(f"the engine could not list its devices: {error}") from None
    if missing:
        raise fail(f"{missing}; `resnet-tui devices` lists them")
    waiting = len(RunQueue(store).waiting()) if among is None else len(among)
    console.print(f"{waiting} queued run{'s' if waiting != 1 else ''}; running on {devices}")

    # SIGTERM (kill's and systemd's) ends a worker as Ctrl-C does: no more runs taken.
    def interrupt(signum: int, frame: object) -> None:  # Ctrl-C or SIGTERM, alike
        worker.interrupt()

    before = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _run_until_interrupted_twice(worker)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _run_until_interrupted_twice(worker: Worker) -> None:
    """Run the queue; a first interrupt takes no more runs and waits for the running ones, a
    second leaves them running."""
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.stopping = True
        console.print("taking no more runs; waiting for the running ones (Ctrl-C leaves them)")
        try:
            worker.run()
        except KeyboardInterrupt:
            left = [str(slot.run_id) for slot in worker.slots if slot.run_id is not None]
            console.print(f"left running: {', '.join(left) or 'none'} (`resnet-tui stop ID`)")
            raise typer.Exit(130) from None


def show_summary(
    sweep: Annotated[int, typer.Argument(help="The sweep's number (`runs --json` has it).")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A sweep's results: per setting (its folds together, with --folds), the mean and
    standard deviation of best val acc, test acc and time over its completed runs; of a
    search, its trials, the best so far and each parameter's importance."""
    store = open_store(db)
    if not store.sweep_runs(sweep):
        raise fail(f"no sweep {sweep} in {store.path}; `resnet-tui runs --json` shows sweeps")
    try:
        found = search_report(store, sweep)  # a search: its trials, best and importances
    except SpecError as error:
        raise fail(str(error)) from None
    if found is None:
        print_summary(store, sweep, as_json)
    elif as_json:
        rows = summary(store.sweep_runs(sweep))
        print(json.dumps({"sweep": sweep, "settings": rows, "search": found}))
    else:
        print_search(found)


def show_queue(
    first: Annotated[
        Optional[int], typer.Option("--first", help="Move this queued run to the front.")
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The queue, first in line first; `resnet-tui rm ID` takes a run out of it."""
    store = open_store(db)
    if first is not None:
        run = get_run(store, first)
        if not run.waits_in_queue or not RunQueue(store).move_to_front(first):
            raise fail(f"run {first} is not in the queue (it is {run.status})")
    queued = RunQueue(store).waiting()
    if as_json:
        print(json.dumps([run.to_json() for run in queued]))
        return
    if not queued:
        console.print("the queue is empty")
        return
    table = Table("place", "id", "name", "sweep", box=None)
    for place, run in enumerate(queued, start=1):
        table.add_row(str(place), str(run.id), shown(run.name), str(run.sweep or ""))
    console.print(table)
