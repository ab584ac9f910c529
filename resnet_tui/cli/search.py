"""`resnet-tui search`: an Optuna search over run options given as ranges or choices, its
trials queued as the runs of one sweep and trained here by a worker of its own (or by
`resnet-tui worker` elsewhere), resumed and grown with `--resume`, shown with `--show`."""

import json
import secrets
import signal
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Optional

import typer

from engine.contract import locate
from engine.contract.spec import SpecError
from resnet_tui.cli.common import console, errors, fail, label, open_store, say
from resnet_tui.cli.search_report import describe, print_search, search_report, trial_line
from resnet_tui.cli.spec_options import (
    command_from_parameters,
    json_and_db_parameters,
    run_option,
    spec_parameters,
)
from resnet_tui.runs import launcher
from resnet_tui.runs.search import (
    Search,
    check_pruning,
    check_search,
    extend,
    load_search,
    params_text,
    trials_made,
)
from resnet_tui.runs.search_driver import SearchDriver, check_in_store
from resnet_tui.runs.search_space import read_space
from resnet_tui.runs.search_study import ask
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.worker import MOST_RUNS_PER_DEVICE, Worker, missing_device

DEFAULT_TRIALS = 20
SEARCH = "Search"
# With --resume, the options that may change: how it runs here, and how many trials.
RESUMED_WITH = ("device",)
# The trials asked of a new search to see that its space can make one: as many refused, and
# it cannot (a space where most are refused is rather a mistake than a plan).
FIRST_ASKS = 10


def _search(
    trials: int | None,
    sampler: str | None,
    sampler_seed: int | None,
    parallel: int,
    resume: int | None,
    show: int | None,
    queue_only: bool,
    as_json: bool,
    db: Path | None,
    **options: Any,
) -> None:
    given = {name: value for name, value in options.items() if value is not None}
    store = open_store(db)
    if show is not None:
        _show(store, show, as_json, given, trials, sampler, sampler_seed, resume)
        return
    if not 1 <= parallel <= MOST_RUNS_PER_DEVICE:
        raise fail(f"--parallel must be 1 to {MOST_RUNS_PER_DEVICE}, not {parallel}")
    if resume is not None:
        search = _resumed(store, resume, given, trials, sampler, sampler_seed)
    else:
        search = _new(store, given, trials, sampler, sampler_seed)
    device = given.get("device") or search.fixed.get("device") or "auto"
    worker = None if queue_only else _worker(store, device, parallel)
    tell = _tell_json if as_json else _Teller(search).tell
    driver = SearchDriver(store, search, parallel, worker, tell)
    if not as_json:
        where = "queued for `resnet-tui worker`" if queue_only else f"on {device}"
        say(f"{describe(search)}; {parallel} at a time {where}")
    _drive(driver, as_json)
    if driver.search.sweep:
        found = _print_report(store, driver.search.sweep, as_json, final=True)
        raise typer.Exit(0 if found is not None and found["best"] is not None else 1)


def _new(
    store: RunStore,
    given: dict[str, Any],
    trials: int | None,
    sampler: str | None,
    seed: int | None,
) -> Search:
    """A new search of the options given (not recorded until its first trial is queued),
    its first trial asked to check that it can make one."""
    label(given.get("name"), "name")
    if given.get("data_root"):
        given["data_root"] = str(Path(given["data_root"]).expanduser().resolve())
    try:
        fixed, space = read_space(given)
        search = Search(
            0,
            tuple(space),
            fixed,
            (sampler or "tpe").lower(),
            seed if seed is not None else secrets.randbelow(2**31),
            trials if trials is not None else DEFAULT_TRIALS,
        )
        check_search(search)
        _, spec, _ = ask(search, [], 1, partial(check_in_store, store), FIRST_ASKS)
        check_pruning(search, spec)
        locate.check_dataset(spec)
    except SpecError as error:
        raise fail(str(error)) from None
    return search


def _resumed(
    store: RunStore,
    sweep: int,
    given: dict[str, Any],
    trials: int | None,
    sampler: str | None,
    seed: int | None,
) -> Search:
    """The search to go on with, grown to `trials` where more are given."""
    search = _recorded(store, sweep)
    changed = [name for name in given if name not in RESUMED_WITH]
    if changed or sampler is not None or seed is not None:
        flag = "--" + changed[0].replace("_", "-") if changed else "--sampler"
        raise fail(
            f"{flag}: a search keeps the options it was made with; with --resume give only "
            "--trials, --parallel, --device or --queue-only"
        )
    made = trials_made(store, sweep)
    if trials is not None and trials != search.trials:
        if trials < made:
            raise fail(f"search {sweep} has made {made} trials; give --trials {made} or more")
        try:
            check_search(replace(search, trials=trials))
        except SpecError as error:
            raise fail(str(error)) from None
        extend(store, sweep, trials)
        search = _recorded(store, sweep)
    if made >= search.trials:
        say(f"search {sweep} has made all its {search.trials} trials; --trials N makes more")
    return search


def _recorded(store: RunStore, sweep: int) -> Search:
    try:
        search = load_search(store, sweep)
    except SpecError as error:
        raise fail(str(error)) from None
    if search is None:
        if store.sweep_runs(sweep):
            raise fail(f"sweep {sweep} is no search; `resnet-tui summary {sweep}` shows it")
        raise fail(f"no search {sweep} in {store.path}; `resnet-tui runs --json` shows sweeps")
    return search


def _worker(store: RunStore, device: str, parallel: int) -> Worker:
    """The search's own worker, `parallel` trials at a time on `device` (checked there)."""
    try:
        worker = Worker(store, [device], parallel, report=lambda line: None, among=[])
        missing = missing_device([slot.device for slot in worker.slots])
    except SpecError as error:
        raise fail(str(error)) from None
    except launcher.DevicesUnavailable as error:
        raise fail(f"the engine could not list its devices: {error}") from None
    if missing:
        raise fail(f"{missing}; `resnet-tui devices` lists them")
    return worker


def _drive(driver: SearchDriver, as_json: bool) -> None:
    """Run the search. A first Ctrl-C (or SIGTERM) asks for no more trials and waits for the
    running ones; a second leaves them running. Either way `--resume` goes on."""
    notice = errors.print if as_json else say

    def interrupt(signum: int, frame: object) -> None:
        driver.interrupt()

    before = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        driver.run()
    except SpecError as error:  # no trial could be made: the store changed under the search
        raise fail(f"{error}{_goes_on(driver)}") from None
    except KeyboardInterrupt:
        driver.stop_asking()
        goes_on = _goes_on(driver)
        notice(
            f"asking for no more trials; waiting for the running ones (Ctrl-C leaves them){goes_on}"
        )
        try:
            driver.run()
        except KeyboardInterrupt:
            slots = driver.worker.slots if driver.worker else []
            left = [str(slot.run_id) for slot in slots if slot.run_id is not None]
            notice(f"left running: {', '.join(left) or 'none'}{goes_on}")
            raise typer.Exit(130) from None
        if driver.search.sweep:
            _print_report(driver.store, driver.search.sweep, as_json, final=True)
        raise typer.Exit(130) from None
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _goes_on(driver: SearchDriver) -> str:
    sweep = driver.search.sweep
    return f"; `resnet-tui search --resume {sweep}` goes on" if sweep else ""


class _Teller:
    """The search's events as lines for a person."""

    def __init__(self, search: Search) -> None:
        self.started = bool(search.sweep)

    def tell(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if not self.started and kind == "queued":
            self.started = True
            sweep = event["search"]
            say(f"search {sweep} (Ctrl-C stops asking; `--resume {sweep}` goes on)")
        if kind == "ended":
            console.print(trial_line(event), highlight=False)
        elif kind == "queued":
            trial = f"trial {event['trial']}/{event['trials']}"
            say(f"{trial} queued (run {event['run']}): {params_text(event['params'])}")
        elif kind == "refused":
            say(f"trial {event['trial']} refused, {event['reason']}; asking for another")
        elif kind == "deleted":
            say(f"trial {event['trial']} (run {event['run']}) was deleted from the store")


def _tell_json(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def _print_report(
    store: RunStore, sweep: int, as_json: bool, final: bool = False
) -> dict[str, Any] | None:
    """Print the search (`final`: as the last event of --json); returns what was printed."""
    found = search_report(store, sweep)
    if found is None:
        return None
    if as_json:
        print(json.dumps({"event": "done", **found} if final else found), flush=True)
    else:
        print_search(found)
    return found


def _show(
    store: RunStore,
    sweep: int,
    as_json: bool,
    given: dict[str, Any],
    *others: Any,
) -> None:
    """`search --show SWEEP`: the search, its best trial and its importances."""
    if given or any(other is not None for other in others):
        raise fail("--show only shows a search; leave out the other options")
    _recorded(store, sweep)
    _print_report(store, sweep, as_json)


def _option(name: str, annotation: Any, default: Any, flag: str, help_text: str) -> Any:
    return run_option(
        name, annotation, typer.Option(default, flag, help=help_text, rich_help_panel=SEARCH)
    )


search_command = command_from_parameters(
    _search,
    [
        *spec_parameters(listed=True),
        _option(
            "trials",
            Optional[int],
            None,
            "--trials",
            f"How many trials (default {DEFAULT_TRIALS}).",
        ),
        _option("sampler", Optional[str], None, "--sampler", "tpe (default) or random."),
        _option(
            "sampler_seed",
            Optional[int],
            None,
            "--sampler-seed",
            "The sampler's seed, for a search that asks the same again (default: drawn, and "
            "kept with the search). --seed is each trial's own.",
        ),
        _option("parallel", int, 1, "--parallel", "Trials queued or running at once."),
        _option(
            "resume", Optional[int], None, "--resume", "Go on with search N (more with --trials)."
        ),
        _option("show", Optional[int], None, "--show", "Show search N: trials, best, importances."),
        _option(
            "queue_only",
            bool,
            False,
            "--queue-only",
            "Train no trial here: `resnet-tui worker` on the devices takes them from the queue.",
        ),
        *json_and_db_parameters("Print the search's events as JSON lines."),
    ],
    "Search run options for the best val acc: give some as ranges or choices, e.g. "
    "`--lr log:1e-4..1e-1 --momentum 0.8..0.99 --epochs 2..8 --arch resnet20,resnet32`, "
    "the rest as `run` takes them. TPE (or random) sampling asks for each trial, a run of "
    "the search's sweep, trained here (--parallel at a time on --device); Ctrl-C stops asking "
    "and `--resume N` goes on. With --prune, trials behind the others end early.",
)
