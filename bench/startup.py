"""How fast resnet-tui starts: `resnet-tui --help`, and the app's first paint in a terminal.

Run: .venv/bin/python bench/startup.py [--repeats 7]
Writes a table to stdout and to bench/RESULTS-startup.md. First paint is the time from
starting the process until the history screen's summary line reaches the terminal (a real
pseudo-terminal, 120x40), against a store of a few runs.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import machine, publish
from terminal import Terminal

COMMAND = [sys.executable, "-m", "resnet_tui"]
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
    lines = [
        f"Machine: {machine()}; median of {args.repeats} after one warm-up, spread is min-max.",
        "",
        "| what | median | spread | goal |",
        "| --- | --- | --- | --- |",
        f"| `resnet-tui --help` | {statistics.median(helps):.2f} s | "
        f"{min(helps):.2f}-{max(helps):.2f} s | 0.3 s |",
        f"| `resnet-tui` first paint | {statistics.median(paints):.2f} s | "
        f"{min(paints):.2f}-{max(paints):.2f} s | 0.6 s |",
    ]
    publish(__file__, "startup", "Start-up", lines)


if __name__ == "__main__":
    main()
