"""The `resnet-tui` command line: headless runs, listings, comparisons and store management.

`resnet-tui app` (or `resnet-tui` alone, see main.py) opens the interactive app. Every bad
input ends in one line on stderr and exit code 2.
"""

import inspect
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from engine.contract import catalog, locate
from engine.contract import events as ev
from engine.contract.spec import FusionSpec, RunSpec, SpecError, spec_options
from resnet_tui import config
from resnet_tui.display import (
    RunProgress,
    device_chosen,
    duration,
    fusion_line,
    fusion_title,
    init_lines,
    percent,
    policy_line,
    run_error,
    test_report_view,
    weights_from,
)
from resnet_tui.runs import launcher
from resnet_tui.runs.compare import comparison, table_rows
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.launcher import launch, resume
from resnet_tui.runs.model import STATUSES, Run
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import SORTABLE, RunStore, StoreError
from resnet_tui.runs.sweeps import fold_specs, spread, summary, sweep_specs
from resnet_tui.runs.worker import Worker, start_sweep_worker

try:  # Typer 0.20 and later carry their own copy of Click
    from typer._click import exceptions as click_exceptions
except ImportError:
    from click import exceptions as click_exceptions

app = typer.Typer(
    name="resnet-tui",
    help="Train, watch and compare residual networks. `resnet-tui run` trains the default "
    "ResNet on the built-in shapes dataset.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No emoji codes: `run:abc:` in a message is what the user typed, not a picture.
console = Console(emoji=False)
errors = Console(stderr=True, emoji=False)

# The engine reports progress about four times a second; following it more often only takes
# CPU from training (on two cores, every cycle the viewer uses is one the engine waits for).
POLL_INTERVAL_S = 0.25
EXIT_USER_ERROR = 2
# `stalled` is a running run that has written nothing for long; listings show it so.
LISTED_STATUSES = (*STATUSES, "stalled")

DbOption = Annotated[
    Optional[Path],
    typer.Option("--db", envvar="RESNET_TUI_DB", help="Run store (default ./runs.db)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_PANELS = {
    "Model": ("name", "arch", "width", "small_stem"),
    "Data": (
        "dataset",
        "data_root",
        "download",
        "classes",
        "train_per_class",
        "val_fraction",
        "limit",
        "image_size",
        "augment",
    ),
    "Weights": (
        "init",
        "keep_head",
        "head",
        "head_init",
        "freeze",
        "unfreeze_every",
        "probe_epochs",
        "ft_lr_scale",
        "backbone_lr_scale",
        "layer_decay",
        "l2sp",
        "lwf",
        "bn",
    ),
    "Training": (
        "optimizer",
        "lr",
        "momentum",
        "nesterov",
        "weight_decay",
        "schedule",
        "warmup_epochs",
        "lr_gamma",
        "label_smoothing",
        "grad_clip",
        "epochs",
        "batch_size",
        "eval_batch_size",
        "seed",
    ),
    "Distillation": ("teacher", "kd_alpha", "kd_temperature"),
    "Device": ("device", "amp", "channels_last", "compile", "workers"),
    "Several devices (DDP)": ("devices", "nproc", "sync_bn"),
}
_PANEL_OF = {name: panel for panel, names in _PANELS.items() for name in names}


def say_error(message: str) -> None:
    """Print `error: message` on stderr, the message as written (no markup in it)."""
    errors.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def say(line: str) -> None:
    """Print a line as written: run names in it are never read as markup."""
    console.print(line, markup=False, highlight=False)


def fail(message: str) -> typer.Exit:
    """Print one line saying what is wrong, and exit with code 2."""
    say_error(message)
    return typer.Exit(EXIT_USER_ERROR)


def open_store(db: Path | None) -> RunStore:
    try:
        return RunStore(db)
    except StoreError as error:
        raise fail(str(error)) from None


def _spec_parameters(listed: bool = False) -> list[inspect.Parameter]:
    """One Typer option per RunSpec field, each defaulting to None (not given); with
    `listed`, numbers are read as text too, for a sweep's lists (`--lr 0.1,0.01`)."""
    parameters = []
    for name, kind, default, help_text in spec_options():
        flag = "--" + name.replace("_", "-")
        text = str(kind)
        if "bool" in text:
            annotation: Any = Optional[bool]
            declaration = f"{flag}/--no-{flag[2:]}"
        elif "list" in text or listed:
            annotation, declaration = Optional[str], flag
        elif "int" in text:
            annotation, declaration = Optional[int], flag
        elif "float" in text:
            annotation, declaration = Optional[float], flag
        else:
            annotation, declaration = Optional[str], flag
        value = str(default).lower() if isinstance(default, bool) else default
        shown = "" if default is None else f" \\[default: {value}]"
        option = typer.Option(
            None,
            declaration,
            help=help_text + shown,
            show_default=False,
            rich_help_panel=_PANEL_OF.get(name, "Training"),
        )
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
            )
        )
    return parameters


def _exit_code(run: Run) -> int:
    if run.status == "completed":
        return 0
    if run.status == "failed" and run.error is not None:
        return EXIT_USER_ERROR if run.error.kind in ev.USER_ERROR_KINDS else 1
    if run.status == "stopped":
        return 130
    return 1


def follow_run(
    store: RunStore, run_id: int, supervisor: subprocess.Popen[bytes], as_json: bool
) -> int:
    """Show a run started in the foreground until its supervisor has recorded its end;
    Ctrl-C asks it to stop cleanly. The events file is read, never written, here."""
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

    previous = signal.signal(signal.SIGINT, on_interrupt)
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
        signal.signal(signal.SIGINT, previous)
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


def _run(
    config_file: Path | None, detach: bool, as_json: bool, db: Path | None, **options: Any
) -> None:
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values.update(config.read_options(config_file))
        except config.ConfigError as error:
            raise fail(str(error)) from None
    values.update({name: value for name, value in options.items() if value is not None})
    if values.get("data_root"):
        values["data_root"] = str(Path(values["data_root"]).expanduser().resolve())
    try:
        spec = RunSpec.from_dict(values)
        locate.check_dataset(spec)
    except SpecError as error:
        raise fail(str(error)) from None
    store = open_store(db)
    if spec.folds:
        _run_folds(store, spec, detach, as_json)
        return
    try:
        run_id, process = launch(store, spec)
    except SpecError as error:
        raise fail(str(error)) from None
    follow_or_detach(store, run_id, process, detach, as_json)


def _run_folds(store: RunStore, spec: RunSpec, detach: bool, as_json: bool) -> None:
    """`run --folds K`: the K runs queued as one sweep and trained one after another here
    (with --detach, by a worker of their own in the background), then the mean and spread
    of their metrics."""
    try:
        run_ids, sweep = launcher.queue(store, fold_specs(spec))
    except SpecError as error:
        raise fail(str(error)) from None
    assert sweep is not None
    if detach:
        start_sweep_worker(store, sweep, spec.device)
        print(json.dumps({"sweep": sweep, "runs": run_ids}) if as_json else sweep)
        return
    report = (lambda line: None) if as_json else say
    worker = Worker(store, [spec.device], report=report, among=run_ids)
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.stop_running()
        worker.run()
    _print_summary(store, sweep, as_json)
    runs = store.sweep_runs(sweep)
    raise typer.Exit(0 if all(run.status == "completed" for run in runs) else 1)


def _print_summary(store: RunStore, sweep: int, as_json: bool) -> None:
    rows = summary(store.sweep_runs(sweep))
    if as_json:
        print(json.dumps({"sweep": sweep, "settings": rows}))
        return
    table = Table(
        "setting", "completed", "best val acc", "test acc", "time", title=f"sweep {sweep}"
    )
    for row in rows:
        table.add_row(
            Text(row["setting"]),
            f"{row['completed']}/{row['runs']}",
            spread(row["best_val_acc"]),
            spread(row["test_acc"]),
            spread(row["seconds"], as_time=True),
        )
    console.print(table)


def _json_and_db_parameters(json_help: str) -> list[inspect.Parameter]:
    """`--json` (saying what it prints) and `--db`, for the commands built from the spec."""
    return [
        inspect.Parameter(
            "as_json",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(False, "--json", help=json_help, rich_help_panel="Run"),
            annotation=bool,
        ),
        inspect.Parameter(
            "db",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                "--db",
                envvar="RESNET_TUI_DB",
                help="Run store (default ./runs.db).",
                rich_help_panel="Run",
            ),
            annotation=Optional[Path],
        ),
    ]


def _command_from_parameters(
    name: str, work: Callable[..., None], parameters: list[inspect.Parameter], doc: str
) -> None:
    """Register `resnet-tui NAME` with options built at run time (one per spec field):
    Typer reads them from the function's signature."""

    def command(**kwargs: Any) -> None:
        work(**kwargs)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = doc
    app.command(name)(command)


_command_from_parameters(
    "run",
    _run,
    [
        *_spec_parameters(),
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                "--config",
                help="TOML or JSON file of options; flags override it.",
                rich_help_panel="Run",
            ),
            annotation=Optional[Path],
        ),
        inspect.Parameter(
            "detach",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                False,
                "--detach",
                help="Print the run id and return; the run goes on.",
                rich_help_panel="Run",
            ),
            annotation=bool,
        ),
        *_json_and_db_parameters("Print the events as JSON lines instead of progress bars."),
    ],
    "Train one run and show its progress; exit 0 when it completes. "
    "With no options: a ResNet-8 on the built-in shapes dataset, under a minute on a CPU.",
)


@app.command("runs")
def list_runs(
    status: Annotated[
        Optional[str],
        typer.Option(help=f"Only runs with this status: {', '.join(LISTED_STATUSES)}."),
    ] = None,
    arch: Annotated[Optional[str], typer.Option(help="Only runs of this architecture.")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Only runs on this dataset.")] = None,
    sort: Annotated[
        str, typer.Option(help="Column to sort by, e.g. test_acc or created_at.")
    ] = "id",
    ascending: Annotated[
        bool, typer.Option("--asc", help="Sort ascending (default: descending).")
    ] = False,
    limit: Annotated[Optional[int], typer.Option(help="Show at most this many runs.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List the runs in the store."""
    if status and status not in LISTED_STATUSES:
        raise fail(f"unknown status '{status}'; choose one of {', '.join(LISTED_STATUSES)}")
    if sort not in SORTABLE:
        try:
            catalog.resolve_name(sort, list(SORTABLE), "sort column")
        except ValueError as error:
            raise fail(str(error)) from None
    if limit is not None and limit < 1:
        raise fail("--limit must be a positive number")
    store = open_store(db)
    catch_up(store)
    if status == "stalled":  # running, by the store, but silent for long
        running = store.list_runs("running", arch, dataset, sort, not ascending, None)
        runs = [run for run in running if run.stalled_for() is not None][:limit]
    else:
        runs = store.list_runs(status, arch, dataset, sort, not ascending, limit)
    if as_json:
        print(json.dumps([run.to_json() for run in runs], indent=2))
        return
    if not runs:
        everything = store.count_runs()
        if everything and (status or arch or dataset):
            kept = " ".join(f"{value}" for value in (status, arch, dataset) if value)
            total = f"{everything} run{'s' if everything != 1 else ''} in all"
            console.print(f"no {kept} runs in {store.path} ({total})", markup=False)
        else:
            console.print(f"no runs in {store.path}; start one with `resnet-tui run`")
        return
    wide = console.width >= 110
    columns = ["id", "name", "status", "arch", "dataset"]
    columns += ["init", "freeze", "epochs", "val", "test", "time", "created"] if wide else []
    columns += [] if wide else ["epochs", "test"]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        numeric = column in ("id", "epochs", "val", "test", "time")
        table.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=column != "name",
            overflow="fold",
            ratio=1 if column == "name" else None,
        )
    colours = {"completed": "green", "running": "cyan", "failed": "red", "crashed": "red"}
    for run in runs:
        cells = {
            "id": str(run.id),
            "name": Text(run.name),
            "status": _status_cell(run, colours),
            "arch": run.arch,
            "dataset": Text(run.dataset),
            "init": Text(weights_from(run)),
            "freeze": run.freeze,
            "epochs": f"{run.epochs_done}/{run.epochs}" if run.trained else run.kind,
            "val": percent(run.best_val_acc),
            "test": percent(run.test_acc),
            "time": duration(run.seconds),
            "created": time.strftime("%m-%d %H:%M", time.localtime(run.created_at)),
        }
        table.add_row(*(cells[column] for column in columns))
    console.print(table)


def _status_cell(run: Run, colours: dict[str, str]) -> str:
    silent = run.stalled_for()
    if silent is not None:
        return f"[yellow]stalled {duration(silent)}[/]"
    return f"[{colours.get(run.status, 'yellow')}]{run.status}[/]"


def _get_run(store: RunStore, run_id: int) -> Run:
    run = store.run(run_id)
    if run is None:
        raise fail(f"no run {run_id} in {store.path}; `resnet-tui runs` lists them")
    return run


def _state_of(run: Run) -> RunState:
    """Everything the run's events file tells: each change its freeze policy made, each
    candidate an ensemble or soup weighed."""
    return RunState().apply_all(ev.read_events(run.events_path).events)


@app.command("show")
def show_run(
    run_id: Annotated[int, typer.Argument(help="The run's id, from `resnet-tui runs`.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show one run: its spec, a table of its epochs, its test metrics and confusion matrix."""
    store = open_store(db)
    catch_up(store)
    run = _get_run(store, run_id)
    epochs = store.epoch_table(run_id)
    state = _state_of(run)
    policies = [state.policies[seq] for seq in sorted(state.policies)]
    candidates = [state.fusion_steps[seq] for seq in sorted(state.fusion_steps)]
    if as_json:
        summary = {
            **run.to_json(),
            "epoch_table": epochs,
            "policy": [event.to_dict() for event in policies],
            "fusion": [event.to_dict() for event in candidates],
        }
        print(json.dumps(summary, indent=2))
        return
    console.print(Text.assemble((f"run {run.id}", "bold"), f" · {run.name} · {run.status}"))
    chain = store.lineage(run_id)
    if chain:
        steps = " ← ".join(f"run {r.id} ({r.name}, {r.status})" for r in chain)
        console.print(f"started from {steps}", highlight=False, markup=False)
    if run.teachers:
        console.print(
            "distilled from " + _run_names(store, list(run.teachers)), highlight=False, markup=False
        )
    if run.tags or run.notes:
        console.print(f"tags: {run.tags or '-'} · notes: {run.notes or '-'}", markup=False)
    if not run.trained:
        _show_fusion(store, run, candidates)
        return
    try:
        console.print(_spec_table(run))
    except SpecError as error:  # a damaged row: say so, and show the rest
        say_error(f"run {run.id}'s spec in {store.path} cannot be read: {error}")
    info = run.engine_info
    if info:
        console.print(
            f"device {info.device} ({info.device_name}), torch {info.torch_version}, "
            f"{info.parameters:,} parameters ({info.trainable_parameters:,} trainable), "
            f"amp {info.amp}, channels_last {info.channels_last}",
            markup=False,
        )
        for line in init_lines(info.init):
            console.print(line, highlight=False, markup=False)
    for event in policies:
        console.print(Text.assemble(("policy", "cyan"), " ", policy_line(event)))
    if epochs:
        console.print(_epoch_table(epochs))
    _show_outcome(run)


def _epoch_table(epochs: list[dict[str, Any]]) -> Table:
    table = Table(title="Epochs", box=None, header_style="bold")
    distilled = any("train_kd_loss" in row for row in epochs)
    columns = ["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"]
    if distilled:
        columns[2:2] = ["ce", "kd"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in epochs:
        lr = next((v for k, v in row.items() if k.startswith("lr/")), None)
        parts = [_number(row.get(f"train_{name}_loss"), ".4f") for name in ("ce", "kd")]
        table.add_row(
            str(row["epoch"]),
            _number(row.get("train_loss"), ".4f"),
            *(parts if distilled else []),
            percent(row.get("train_acc")),
            _number(row.get("val_loss"), ".4f"),
            percent(row.get("val_acc")),
            _number(lr, ".2e"),
            _number(row.get("seconds"), ".1f"),
        )
    return table


def _ended_how(run: Run) -> str:
    """`failed (out_of_memory)`, or `crashed` where the kind says no more than the status."""
    kind = run.error.kind if run.error else ""
    return run.status if kind in ("", run.status) else f"{run.status} ({kind})"


def _number(value: float | None, form: str) -> str:
    """A metric of the epoch table; `-` where there is none (SQLite keeps a NaN as none)."""
    return "-" if value is None else format(value, form)


def _show_outcome(run: Run) -> None:
    """The end of `show`: the test report or the error, and where the run's files are."""
    if run.test_report:
        console.print(test_report_view(run.test_report))
    if run.error is not None:
        console.print(Text.assemble((f"{_ended_how(run)}:", "red"), " ", run_error(run)))
    console.print(Text(f"folder: {run.run_dir}", style="dim"))


def _spec_table(run: Run) -> Table:
    """The run's settings as it used them: an unset learning rate or weight decay as the
    optimiser's default, `auto` with the device it chose; options it did not use are left
    out. `(set)` marks what differs from the defaults."""
    run_spec, defaults = run.spec, RunSpec()
    used = {"lr": run_spec.peak_lr, "weight_decay": run_spec.decay}
    settings = Table(title="Spec", show_header=False, box=None, padding=(0, 2))
    for key, value in run.spec_values.items():
        marker = "" if getattr(defaults, key, None) == value else " [dim](set)[/]"
        if value is None and key in used:
            shown = f"{used[key]:g} [dim](the {run_spec.optimizer} default)[/]"
        elif value is None or value == []:
            continue
        elif isinstance(value, list):
            shown = escape(",".join(map(str, value)))
        elif key == "device":
            shown = escape(device_chosen(value, run.engine_info))
        else:
            shown = escape(str(value))
        settings.add_row(key.replace("_", "-"), f"{shown}{marker}")
    return settings


def _run_names(store: RunStore, run_ids: list[int]) -> str:
    """`run 3 (resnet56 teacher), run 4 (...)`, for lines about related runs."""
    names = []
    for run_id in run_ids:
        run = store.run(run_id)
        names.append(f"run {run_id} ({run.name if run else 'deleted'})")
    return ", ".join(names)


def _show_fusion(store: RunStore, run: Run, candidates: list[ev.Fusion]) -> None:
    """The rest of `show` for an ensemble or soup: what it fused, and what it chose."""
    try:
        fusion = run.fusion
    except SpecError as error:  # a damaged row: say so, and show the rest
        say_error(f"run {run.id}'s recipe in {store.path} cannot be read: {error}")
        _show_outcome(run)
        return
    members = [member["run"] for member in fusion.members]
    title = fusion_title({**(run.recipe or {}), "members": members})
    console.print(f"{title}: `resnet-tui {launcher.fusion_command(fusion)}`", highlight=False)
    console.print("members: " + _run_names(store, members), markup=False)
    for event in candidates:
        console.print(f"  {fusion_line(event)}", highlight=False, markup=False)
    outcome = run.fusion_outcome
    if "kept" in outcome and fusion.greedy:
        console.print("kept: " + ", ".join(f"run {m}" for m in outcome["kept"]))
    if outcome.get("alpha") is not None:
        console.print(f"alpha: {outcome['alpha']:g}")
    _show_outcome(run)


@app.command("compare")
def compare_runs(
    run_ids: Annotated[list[int], typer.Argument(help="Ids of two or more runs.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Compare runs side by side: the settings that differ, then their results."""
    if len(run_ids) < 2:
        raise fail("compare needs at least two run ids, e.g. `resnet-tui compare 3 4`")
    store = open_store(db)
    catch_up(store)
    try:
        result = comparison(store, run_ids)
    except KeyError as error:
        raise fail(f"{error.args[0]}; `resnet-tui runs` lists them") from None
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(box=None, header_style="bold")
    table.add_column("")
    for run in result["runs"]:
        table.add_column(Text(f"{run['id']} {run['name']}"), justify="right")
    rows = table_rows(result)
    for index, row in enumerate(rows):
        table.add_row(*row, end_section=index == len(result["settings"]) - 1)
    console.print(table)


@app.command("resume")
def resume_run(
    run_id: Annotated[int, typer.Argument(help="The id of a stopped, crashed or failed run.")],
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
    """Continue a stopped, crashed or failed run in place from its last checkpoint.

    Weights, optimiser, schedule, freeze policy, random state and epoch counter all carry on,
    so a seeded CPU run ends as it would have without the interruption.
    """
    store = open_store(db)
    catch_up(store)
    try:
        process = resume(store, run_id, device)
    except SpecError as error:
        raise fail(str(error)) from None
    follow_or_detach(store, run_id, process, detach, as_json)


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
    store = open_store(db)
    catch_up(store)
    try:
        fusion.validate()
        run_id, process = launcher.fuse(store, fusion, run_ids, name)
    except SpecError as error:
        raise fail(str(error)) from None
    follow_or_detach(store, run_id, process, detach, as_json)


@app.command("ensemble")
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


@app.command("soup")
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


@app.command("rm")
def remove_runs(
    run_ids: Annotated[list[int], typer.Argument(help="Ids of the runs to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
) -> None:
    """Delete runs: their rows, metrics and run folders; a queued run leaves the queue."""
    store = open_store(db)
    catch_up(store)
    runs = [_get_run(store, run_id) for run_id in run_ids]
    live = [str(run.id) for run in runs if run.live and not run.waits_in_queue]
    if live:
        raise fail(f"run {', '.join(live)} is still live; stop it first with `resnet-tui stop`")
    if not yes:
        names = ", ".join(f"{run.id} ({run.name})" for run in runs)
        if not sys.stdin.isatty():
            raise fail("rm asks for confirmation; add --yes to delete without asking")
        if not typer.confirm(f"Delete run {names} and its files?"):
            raise typer.Exit(1)
    queue = RunQueue(store)
    cancelled = [run.id for run in runs if run.waits_in_queue and queue.cancel(run.id)]
    deleted = [run.id for run in store.delete_runs(r.id for r in runs if not r.waits_in_queue)]
    gone = len(cancelled) + len(deleted)
    console.print(f"deleted {gone} run{'s' if gone != 1 else ''}")
    started = [str(run.id) for run in runs if run.id not in cancelled + deleted]
    if started:
        names = ", ".join(started)
        raise fail(
            f"run {names} started meanwhile (a worker or a resume); stop it with "
            f"`resnet-tui stop {names}`, then delete it"
        )


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


_command_from_parameters(
    "sweep",
    _sweep,
    [
        *_spec_parameters(listed=True),
        *_json_and_db_parameters("Print the sweep and its run ids as JSON."),
    ],
    "Queue one run for every combination of the options given as lists, e.g. "
    "`--arch resnet20,resnet56 --freeze head,full --lr 0.1,0.01` (8 runs), as one sweep; "
    "`resnet-tui worker` runs the queue.",
)


@app.command("worker")
def run_worker(
    devices: Annotated[
        str, typer.Option(help="Devices to run the queue on, e.g. cuda:0,cuda:1 or cpu.")
    ],
    per_device: Annotated[int, typer.Option(help="Runs at once on each device.")] = 1,
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
    each, until the queue is empty. Ctrl-C takes no more runs and waits for the running ones;
    a second Ctrl-C leaves them running in the background."""
    store = open_store(db)
    among = None
    if sweep is not None:
        among = [run.id for run in store.sweep_runs(sweep) if run.waits_in_queue]
        if not store.sweep_runs(sweep):
            raise fail(f"no sweep {sweep} in {store.path}; `resnet-tui runs --json` shows sweeps")
    try:
        worker = Worker(store, devices.split(","), per_device, wait, say, among)
    except SpecError as error:
        raise fail(str(error)) from None
    waiting = len(RunQueue(store).waiting()) if among is None else len(among)
    console.print(f"{waiting} queued run{'s' if waiting != 1 else ''}; running on {devices}")
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


@app.command("summary")
def show_summary(
    sweep: Annotated[int, typer.Argument(help="The sweep's number (`runs --json` has it).")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A sweep's results: per setting (its folds together, with --folds), the mean and
    standard deviation of best val acc, test acc and time over its completed runs."""
    store = open_store(db)
    if not store.sweep_runs(sweep):
        raise fail(f"no sweep {sweep} in {store.path}; `resnet-tui runs --json` shows sweeps")
    _print_summary(store, sweep, as_json)


@app.command("queue")
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
        run = _get_run(store, first)
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
        table.add_row(str(place), str(run.id), Text(run.name), str(run.sweep or ""))
    console.print(table)


@app.command("stop")
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
    runs = [_get_run(store, run_id) for run_id in run_ids]
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
                how = f"{now.status} after {_count(now.epochs_done, 'epoch')}" if now else "gone"
                console.print(f"run {run_id} {how}")
    if len(asked) < len(runs):
        raise typer.Exit(1)


def _count(number: int, thing: str) -> str:
    """`1 epoch`, `3 epochs`."""
    return f"{number} {thing}{'' if number == 1 else 's'}"


@app.command("archs")
def list_architectures(as_json: JsonOption = False) -> None:
    """List the architectures, with parameter counts for 10 classes."""
    if as_json:
        print(json.dumps([vars(arch) for arch in catalog.ARCHITECTURES.values()], indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "parameters", "description"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for arch in catalog.ARCHITECTURES.values():
        table.add_row(arch.name, f"{arch.parameters / 1e6:.2f} M", arch.description)
    console.print(table)


def _dataset_status(name: str) -> str:
    info = catalog.DATASETS[name]
    if info.source == "builtin":
        return "built in"
    if info.source == "folder":
        return "your folder"
    try:
        locate.check_dataset(RunSpec(dataset=name))
    except SpecError:
        return "not downloaded"
    return "on disk"


@app.command("datasets")
def list_datasets(as_json: JsonOption = False) -> None:
    """List the datasets, and whether each is on disk (under $RESNET_TUI_DATA)."""
    rows = [
        {
            "name": info.name,
            "classes": len(info.classes) or None,
            "image_size": info.image_size,
            "train_size": info.train_size or None,
            "test_size": info.test_size or None,
            "status": _dataset_status(name),
            "description": info.description,
        }
        for name, info in catalog.DATASETS.items()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "classes", "size", "train", "test", "status", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            str(row["classes"] or "-"),
            f"{row['image_size']} px",
            f"{row['train_size']:,}" if row["train_size"] else "-",
            f"{row['test_size']:,}" if row["test_size"] else "-",
            row["status"],
            row["description"],
        )
    console.print(table)
    console.print(f"[dim]data root: {locate.default_data_root()}[/]")


@app.command("devices")
def list_devices(as_json: JsonOption = False) -> None:
    """List the devices the engine can train on (asks torch in a subprocess)."""
    try:
        devices = launcher.list_devices()
    except launcher.DevicesUnavailable as error:
        say_error(f"the engine could not list devices: {error}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(devices, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("device", "description", "memory"):
        table.add_column(column)
    for device in devices:
        memory = (
            f"{device['free_mb']:,} MB free of {device['total_mb']:,} MB"
            if "total_mb" in device
            else (f"{device['threads']} threads" if "threads" in device else "-")
        )
        table.add_row(device["name"], device["description"], memory)
    console.print(table)


@app.command("app")
def open_app(db: DbOption = None) -> None:
    """Open the interactive app (what `resnet-tui` alone does)."""
    store = open_store(db)
    from resnet_tui.app.app import ResnetApp

    ResnetApp(store).run()


def main() -> None:
    """Entry point: Click's usage errors become one line and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except click_exceptions.UsageError as error:
        hint = ""
        if error.ctx is not None:
            hint = f" (see `{error.ctx.command_path} --help`)"
        say_error(f"{error.format_message()}{hint}")
        sys.exit(EXIT_USER_ERROR)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click_exceptions.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
