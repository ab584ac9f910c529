"""A search as the CLI shows it: a line per trial as it ends, and the whole search (its
trials, the best so far, each parameter's importance) for `search --show` and `summary`."""

from typing import Any

from rich.table import Table
from rich.text import Text

from resnet_tui.cli.common import console, count
from resnet_tui.runs.search import Search, load_search, params_text, trials_made, trials_of
from resnet_tui.runs.search_space import shown_value
from resnet_tui.runs.search_study import report
from resnet_tui.runs.store import RunStore

# The widest bar of an importance, in characters (an importance of 1).
BAR = 20


def search_report(store: RunStore, sweep: int) -> dict[str, Any] | None:
    """The search sweep `sweep` is, as `report` gives it; None where it is no search."""
    search = load_search(store, sweep)
    if search is None:
        return None
    return report(search, trials_of(store, search), trials_made(store, sweep))


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def trial_line(event: dict[str, Any]) -> Text:
    """A trial that ended, as one line: `trial 7/20: lr 0.0123 → val acc 81.2% (best 83.4%,
    trial 4)`."""
    where = f"trial {event['trial']}/{event['trials']}: {params_text(event['params'])} → "
    status = event["status"]
    if status == "completed" and event["value"] is not None:
        outcome = f"val acc {percent(event['value'])}"
    elif status == "pruned":
        at = (
            f" at epoch {event['epoch']}, val acc {percent(event['value'])}"
            if "epoch" in event
            else ""
        )
        outcome = f"pruned{at}"
    elif status == "completed":
        outcome = "completed without a val acc that is a number"
    else:
        outcome = status + (f": {event['error']}" if event.get("error") else "")
    best = event["best"]
    after = f" (best {percent(best['value'])}, trial {best['trial']})" if best else ""
    style = "" if status in ("completed", "pruned") else "yellow"
    return Text.assemble(where, (outcome, style), after)


def print_search(found: dict[str, Any]) -> None:
    """The search of `report`: what it is, its best trial, its importances, its trials."""
    runs = found["trial_runs"]
    statuses: dict[str, int] = {}
    for trial in runs:
        statuses[trial["status"]] = statuses.get(trial["status"], 0) + 1
    states = ", ".join(f"{number} {status}" for status, number in statuses.items())
    console.print(
        Text(
            f"search {found['search']}: {found['sampler']} (seed {found['seed']}), best val acc "
            f"maximised · {found['made']}/{count(found['trials'], 'trial')} made"
            + (f": {states}" if states else "")
        )
    )
    space = " · ".join(f"{name.replace('_', '-')} {text}" for name, text in found["space"].items())
    console.print(Text(f"space: {space}"))
    best = found["best"]
    if best:
        console.print(
            Text(
                f"best: trial {best['trial']} (run {best['run']}): {params_text(best['params'])}"
                f" → val acc {percent(best['value'])}"
            )
        )
    else:
        console.print("best: none yet (no trial has completed)")
    if found["importances"] is None:
        console.print(Text(f"importance: {found['importances_note']}"))
    else:
        console.print("importance (of each parameter to the best val acc, summing to 1):")
        for name, value in found["importances"].items():
            bar = "█" * round(BAR * value)
            console.print(Text(f"  {name.replace('_', '-'):<16} {value:5.2f} {bar}"))
    if not runs:
        return
    names = list(found["space"])
    table = Table("trial", "run", "status", "val acc", *(n.replace("_", "-") for n in names))
    for trial in runs:
        table.add_row(
            str(trial["trial"]),
            str(trial["run"]),
            trial["status"],
            percent(trial["value"]),
            *(
                shown_value(trial["params"][name]) if name in trial["params"] else "-"
                for name in names
            ),
        )
    console.print(table)


def describe(search: Search) -> str:
    """`search 3: 20 trials of tpe (seed 7) over lr log 0.0001..0.1, arch resnet20 or resnet32`."""
    space = ", ".join(dimension.words for dimension in search.space)
    which = f"search {search.sweep}: " if search.sweep else ""
    made = f"{count(search.trials, 'trial')} of {search.sampler} (seed {search.seed})"
    return f"{which}{made} over {space}"
