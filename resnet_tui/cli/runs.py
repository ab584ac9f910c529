"""The runs in the store: `runs`, `show`, `compare` and `rm`, and `app` to look at them."""

import json
import sys
import time
from dataclasses import asdict
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from engine.contract import catalog
from engine.contract import events as ev
from engine.contract.spec import RunSpec, SpecError, spec_fields
from resnet_tui.cli.common import (
    DbOption,
    JsonOption,
    console,
    count,
    fail,
    get_run,
    open_store,
    say_error,
)
from resnet_tui.display import (
    device_chosen,
    duration,
    fusion_line,
    fusion_title,
    init_lines,
    markup_safe,
    percent,
    policy_line,
    run_error,
    safe,
    shown,
    test_report_view,
    weights_from,
)
from resnet_tui.runs import launcher
from resnet_tui.runs.compare import comparison, table_rows
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.model import STATUSES, Run
from resnet_tui.runs.removal import delete_runs
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import SORTABLE, RunStore

# `stalled` is a running run that has written nothing for long; listings show it so.
LISTED_STATUSES = (*STATUSES, "stalled")


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
    matching: Annotated[
        Optional[str],
        typer.Option(
            "--filter",
            help="Only runs matching every word, as the app's filter: e.g. 'deeper tag:lab "
            "arch:resnet20 acc>90 sweep:2 from:1'.",
        ),
    ] = None,
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
        running = store.list_runs(
            "running", arch, dataset, sort, not ascending, None, text=matching
        )
        runs = [run for run in running if run.stalled_for() is not None][:limit]
    else:
        runs = store.list_runs(status, arch, dataset, sort, not ascending, limit, text=matching)
    if as_json:
        print(json.dumps([run.to_json() for run in runs], indent=2))
        return
    if not runs:
        everything = store.count_runs()
        if everything and (status or arch or dataset or matching):
            kept = "".join(f"{value} " for value in (status, arch, dataset) if value)
            words = f" matching '{matching}'" if matching else ""
            total = f"{everything} run{'s' if everything != 1 else ''} in all"
            console.print(shown(f"no {kept}runs{words} in {store.path} ({total})"))
        else:
            console.print(shown(f"no runs in {store.path}; start one with `resnet-tui run`"))
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
    colours["pruned"] = "magenta"  # ended early by its sweep's pruning, as the sweep meant
    for run in runs:
        cells = {
            "id": str(run.id),
            "name": shown(run.name),
            "status": _status_cell(run, colours),
            "arch": run.arch,
            "dataset": shown(run.dataset),
            "init": shown(weights_from(run)),
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


def _state_of(run: Run) -> RunState:
    """Everything the run's events file tells: each change its freeze policy made, each
    candidate an ensemble or soup weighed."""
    return RunState().apply_read(ev.read_events(run.events_path, final=not run.live))


def show_run(
    run_id: Annotated[int, typer.Argument(help="The run's id, from `resnet-tui runs`.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show one run: its spec, a table of its epochs, its test metrics and confusion matrix."""
    store = open_store(db)
    catch_up(store)
    run = get_run(store, run_id)
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
            "skipped_lines": state.skipped_notes,
            "early_stop": asdict(state.early_stop) if state.early_stop else None,
            "pruned": asdict(state.pruned) if state.pruned else None,
        }
        print(json.dumps(summary, indent=2))
        return
    console.print(Text.assemble((f"run {run.id}", "bold"), shown(f" · {run.name} · {run.status}")))
    chain = store.lineage(run_id)
    if chain:
        steps = " ← ".join(f"run {r.id} ({r.name}, {r.status})" for r in chain)
        console.print(shown(f"started from {steps}"), highlight=False)
    if run.teachers:
        console.print(
            shown("distilled from " + _run_names(store, list(run.teachers))), highlight=False
        )
    if run.tags or run.notes:
        console.print(shown(f"tags: {run.tags or '-'} · notes: {run.notes or '-'}"))
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
            shown(
                f"device {info.device} ({info.device_name}), torch {info.torch_version}, "
                f"{info.parameters:,} parameters ({info.trainable_parameters:,} trainable), "
                f"amp {info.amp}, channels_last {info.channels_last}"
            )
        )
        for line in init_lines(info.init):
            console.print(shown(line), highlight=False)
    for event in policies:
        console.print(Text.assemble(("policy", "cyan"), " ", shown(policy_line(event))))
    if epochs:
        console.print(_epoch_table(epochs))
    if state.ema_line:  # a run with an average of its weights (--ema-decay)
        console.print(shown(state.ema_line), highlight=False)
    for note in state.skipped_notes:  # a damaged or forged line of the log
        console.print(shown(note, style="dim"))
    if state.early_stop:
        console.print(shown(state.early_stop.line), highlight=False)
    if state.pruned:
        console.print(shown(state.pruned.line), highlight=False)
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
        console.print(Text.assemble((f"{_ended_how(run)}:", "red"), " ", shown(run_error(run))))
    console.print(shown(f"folder: {run.run_dir}", style="dim"))


def _spec_table(run: Run) -> Table:
    """The run's settings as it used them: an unset learning rate or weight decay as the
    optimiser's default, `auto` with the device it chose; options it did not use are left
    out. `(set)` marks what differs from the defaults."""
    run_spec, defaults = run.spec, RunSpec()
    used = {"lr": run_spec.peak_lr, "weight_decay": run_spec.decay}
    settings = Table(title="Spec", show_header=False, box=None, padding=(0, 2))
    options = {field.name for field in spec_fields()}
    for key, value in run.spec_values.items():
        if key not in options and getattr(defaults, key, None) == value:
            continue  # a field the tool keeps (the rules a run was made under), as usual
        marker = "" if getattr(defaults, key, None) == value else " [dim](set)[/]"
        if value is None and key in used:
            value_shown = f"{used[key]:g} [dim](the {run_spec.optimizer} default)[/]"
        elif value is None or value == []:
            continue
        elif isinstance(value, list):
            value_shown = markup_safe(",".join(map(str, value)))
        elif key == "device":
            value_shown = markup_safe(device_chosen(value, run.engine_info))
        else:
            value_shown = markup_safe(value)
        settings.add_row(key.replace("_", "-"), f"{value_shown}{marker}")
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
    console.print(
        shown(f"{title}: `resnet-tui {launcher.fusion_command(fusion)}`"), highlight=False
    )
    console.print(shown("members: " + _run_names(store, members)))
    for event in candidates:
        console.print(shown(f"  {fusion_line(event)}"), highlight=False)
    outcome = run.fusion_outcome
    if "kept" in outcome and fusion.greedy:
        console.print("kept: " + ", ".join(f"run {m}" for m in outcome["kept"]))
    if outcome.get("alpha") is not None:
        console.print(f"alpha: {outcome['alpha']:g}")
    _show_outcome(run)


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
        table.add_column(shown(f"{run['id']} {run['name']}"), justify="right")
    rows = table_rows(result)
    for index, row in enumerate(rows):
        cells = [shown(cell) for cell in row]
        table.add_row(*cells, end_section=index == len(result["settings"]) - 1)
    console.print(table)


def remove_runs(
    run_ids: Annotated[list[int], typer.Argument(help="Ids of the runs to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
) -> None:
    """Delete runs: their rows, metrics and run folders; a queued run leaves the queue."""
    store = open_store(db)
    catch_up(store)
    runs = [get_run(store, run_id) for run_id in run_ids]
    live = [str(run.id) for run in runs if run.live and not run.waits_in_queue]
    if live:
        raise fail(f"run {', '.join(live)} is still live; stop it first with `resnet-tui stop`")
    if not yes:
        names = ", ".join(f"{run.id} ({run.name})" for run in runs)
        if not sys.stdin.isatty():
            raise fail("rm asks for confirmation; add --yes to delete without asking")
        if not typer.confirm(f"Delete run {safe(names)} and its files?"):
            raise typer.Exit(1)
    deletion = delete_runs(store, runs)
    gone = len(deletion.deleted) + len(deletion.gone)
    console.print(f"deleted {count(gone, 'run')}")
    if deletion.started:
        names = ", ".join(str(run.id) for run in deletion.started)
        raise fail(
            f"run {names} started meanwhile (a worker or a resume); stop it with "
            f"`resnet-tui stop {names}`, then delete it"
        )


def open_app(db: DbOption = None) -> None:
    """Open the interactive app (what `resnet-tui` alone does)."""
    store = open_store(db)
    from resnet_tui.app.app import ResnetApp

    ResnetApp(store).run()
