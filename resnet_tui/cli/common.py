"""What every command shares: the consoles, one-line errors, the store, the common options."""

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console, ConsoleOptions, RenderableType, RenderHook, RenderResult
from rich.segment import Segment
from rich.text import Text

from resnet_tui.display import safe, shown
from resnet_tui.runs.labels import LabelError, check_label
from resnet_tui.runs.model import Run
from resnet_tui.runs.store import RunStore, StoreError


class _Shown:
    """A renderable whose text segments are made safe as they go out (styles, line breaks and
    Rich's own cursor moves, which are control segments, pass as they are)."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.renderable, options):
            if segment.control:
                yield segment
            else:  # a line break here is Rich's own: the text it breaks was made safe
                lines = segment.text.split("\n")
                yield Segment("\n".join(safe(line) for line in lines), segment.style)


class _NothingRaw(RenderHook):
    """The last guard: whatever a command prints, no control character or lone surrogate
    reaches the terminal raw, even from text a caller forgot to pass through `shown`."""

    def process_renderables(self, renderables: list[RenderableType]) -> list[RenderableType]:
        return [_Shown(renderable) for renderable in renderables]


def _console(stderr: bool) -> Console:
    # No emoji codes: `run:abc:` in a message is what the user typed, not a picture.
    made = Console(stderr=stderr, emoji=False)
    made.push_render_hook(_NothingRaw())
    return made


console = _console(stderr=False)
errors = _console(stderr=True)

# The engine reports progress about four times a second; following it more often only takes
# CPU from training (on two cores, every cycle the viewer uses is one the engine waits for).
POLL_INTERVAL_S = 0.25
EXIT_USER_ERROR = 2

DbOption = Annotated[
    Optional[Path],
    typer.Option("--db", envvar="RESNET_TUI_DB", help="Run store (default ./runs.db)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# The files SQLite keeps beside a store while it is open.
STORE_COMPANIONS = ("-wal", "-shm", "-journal")
Command = TypeVar("Command", bound=Callable)


def flowing_help(command: Command) -> Command:
    """The command with its docstring's paragraphs each on one line, so that `--help`
    wraps them to the terminal rather than showing the source's line breaks."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    command.__doc__ = "\n\n".join(re.sub(r"\s*\n\s*", " ", text) for text in paragraphs)
    return command


def file_state(path: Path) -> tuple[int, int, int, int] | None:
    """What tells one version of a file from another (its device, inode, size and time of
    change), or None where nothing is there: compared before and after, what was written."""
    try:
        found = path.lstat()
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def refuse_store_files(target: Path, option: str, store: RunStore) -> None:
    """Exit 2 where writing `target` could destroy the store: it is the store's file (or
    SQLite's files beside it) or lies in the folder of its runs' folders (even --force)."""
    place = target.resolve()
    store_file = store.path.resolve()
    if place in [store_file, *(Path(f"{store_file}{end}") for end in STORE_COMPANIONS)]:
        raise fail(f"{option} {target} is the run store's own file; give another {option}")
    runs = store.runs_dir.resolve()
    if place == runs or runs in place.parents:
        raise fail(f"{option} {target} is in the runs' folder {runs}; give another {option}")


def say_error(message: str) -> None:
    """Print `error: message` on stderr, the message as written (no markup in it, any
    control character it quotes shown as an escape)."""
    errors.print(Text.assemble(("error:", "bold red"), " ", shown(message)), soft_wrap=True)


def say(line: str) -> None:
    """Print a line as written: run names in it are never read as markup."""
    console.print(shown(line), highlight=False)


def label(text: str | None, what: str) -> str | None:
    """A name, tags or notes the user gave, checked before anything is made of it
    (exit 2 saying what is wrong), or None where none was given."""
    if text is None:
        return None
    try:
        return check_label(text, what)
    except LabelError as error:
        raise fail(str(error)) from None


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
