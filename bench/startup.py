"""How fast resnet-tui starts: `resnet-tui --help`, and the app's first paint in a terminal.

Run: .venv/bin/python bench/startup.py [--repeats 7]
Writes a table to stdout and to bench/RESULTS-startup.md. First paint is the time from
starting the process until the history screen's summary line reaches the terminal (a real
pseudo-terminal, 120x40): against a store of a few runs, and against a store of four live
runs whose stand-in engines each write 200 events a second (bench/app_responsiveness.py's).
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app_responsiveness import start_runs
from results import machine, publish
from terminal import Terminal

# The command a user types: the console script pip installed beside this Python.
COMMAND = [str(Path(sys.executable).parent / "resnet-tui")]
MARKER = "sorted by"


def time_help() -> float:
    start = time.perf_counter()
    subprocess.run([*COMMAND, "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


def time_first_paint(folder: Path) -> float:
    """Seconds from spawning the app in a pseudo-terminal until its first screen is drawn."""
    terminal = Terminal(COMMAND, folder)
    try:
        return terminal.wait_for(MARKER) - terminal.started
    finally:
        terminal.close()


def first_paints_with_live_runs(repeats: int, runs: int = 4, rate: float = 200) -> list[float]:
    """First paints while `runs` stand-in engines each write `rate` events a second."""
    folder = Path(tempfile.mkdtemp())
    engines = start_runs(folder, runs, rate)
    try:
        time.sleep(3)  # the runs have a history of events when the app opens
        time_first_paint(folder)
        return [time_first_paint(folder) for _ in range(repeats)]
    finally:
        for engine in engines:
            engine.kill()
            engine.wait()
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    try:
        subprocess.run(
            [*COMMAND, "runs"], cwd=folder, capture_output=True, check=True
        )  # creates runs.db, so the app opens an existing store
        time_help()
        time_first_paint(folder)  # warm-up: the file cache, as a user's second start
        helps = [time_help() for _ in range(args.repeats)]
        paints = [time_first_paint(folder) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(folder)
    live_paints = first_paints_with_live_runs(args.repeats)
    lines = [
        f"Machine: {machine()}; median of {args.repeats} after one warm-up, spread is min-max.",
        "",
        "| what | median | spread | goal |",
        "| --- | --- | --- | --- |",
        f"| `resnet-tui --help` | {statistics.median(helps):.2f} s | "
        f"{min(helps):.2f}-{max(helps):.2f} s | 0.3 s |",
        f"| `resnet-tui` first paint | {statistics.median(paints):.2f} s | "
        f"{min(paints):.2f}-{max(paints):.2f} s | 0.5 s |",
        f"| first paint, 4 live runs at 200 events/s each | {statistics.median(live_paints):.2f} s"
        f" | {min(live_paints):.2f}-{max(live_paints):.2f} s | 0.5 s |",
        "",
        "`--help` is timed from spawning the installed `resnet-tui` script to its exit, its "
        "output read through a pipe. First paint is timed from spawning `resnet-tui` in a real "
        "pseudo-terminal (120x40) until the history screen's summary line reaches it, against "
        "a store of a few runs, and while four stand-in engines (no supervisor: the app "
        "catches their runs up itself) each write 200 events a second. Where the time goes "
        "(`python -X importtime`): Typer with "
        "Rich's help (which loads Rich's Markdown) about 0.15 s, Textual about 0.2 s. Bare "
        "`resnet-tui` opens the app without building the Typer CLI; the run, compare, launch, "
        "queue and sweep screens load only when first opened, and runs no supervisor owns "
        "are caught up (in a thread) after the first paint. The machine's speed drifts with "
        "its host: the same build has measured up to 0.1 s slower at busy times.",
    ]
    publish(__file__, "startup", "Start-up", lines)


if __name__ == "__main__":
    main()
