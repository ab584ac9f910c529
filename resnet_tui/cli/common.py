"""What every command shares: the consoles, one-line errors, the store, the common options."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from resnet_tui.runs.model import Run
from resnet_tui.runs.store import RunStore, StoreError

# No emoji codes: `run:abc:` in a message is what the user typed, not a picture.
console = Console(emoji=False)
errors = Console(stderr=True, emoji=False)

# The engine reports progress about four times a second; following it more often only takes
# CPU from training (on two cores, every cycle the viewer uses is one the engine waits for).
POLL_INTERVAL_S = 0.25
EXIT_USER_ERROR = 2

DbOption = Annotated[
    Optional[Path],
    typer.Option("--db", envvar="RESNET_TUI_DB", help="Run store (default ./runs.db)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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


def get_run(store: RunStore, run_id: int) -> Run:
    """The run, or exit 2 saying there is no such run."""
    run = store.run(run_id)
    if run is None:
        raise fail(f"no run {run_id} in {store.path}; `resnet-tui runs` lists them")
    return run


def count(number: int, thing: str) -> str:
    """`1 epoch`, `3 epochs`."""
    return f"{number} {thing}{'' if number == 1 else 's'}"
