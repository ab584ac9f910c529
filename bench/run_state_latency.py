"""How current is runs.db, and how soon does an open app show what another process did?

Run: .venv/bin/python bench/run_state_latency.py [--trials 5]

Three latencies, each over `--trials` tiny runs on the CPU, in a fresh store:
- an epoch's end in runs.db: from the engine's `epoch_ended` event (its time) until a plain
  sqlite3 reader sees the run's `epochs_done` count it, with no viewer open (the supervisor);
- a crash in runs.db: from SIGKILL of the engine until a plain sqlite3 reader sees the run
  `crashed` (goal: 5 s);
- a new run in an open history: from the row's creation by `resnet-tui run --detach` in
  another process until the open app's history table shows it (goal: 2 s).
Writes the table to stdout and to bench/RESULTS-run-state.md.
"""

import argparse
import asyncio
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import machine, publish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.contract import events as ev  # noqa: E402
from resnet_tui.app.app import ResnetApp  # noqa: E402
from resnet_tui.runs.ownership import Owners  # noqa: E402
from resnet_tui.runs.store import RunStore  # noqa: E402

TINY = ["--arch", "resnet8", "--width", "4", "--limit", "256", "--image-size", "16"]
TINY += ["--device", "cpu"]
GOALS = {"crash": 5.0, "new run": 2.0}


def resnet_tui(folder: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "resnet_tui", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RESNET_TUI_DATA": str(folder / "data")},
    )
    return result.stdout


def column(db: Path, run_id: int, name: str) -> object:
    connection = sqlite3.connect(db)
    try:
        found = connection.execute(f"SELECT {name} FROM runs WHERE id = ?", [run_id]).fetchone()
    finally:
        connection.close()
    return found[0] if found else None


def wait(condition, timeout: float = 120.0, every: float = 0.005) -> float:
    """Poll `condition` until it holds; returns the moment (time.time()) it was seen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never held")
        time.sleep(every)
    return time.time()


def epoch_and_crash(folder: Path) -> tuple[float, float]:
    """One run: the latency of its first epoch's end, then of its engine's death, in runs.db."""
    run_id = int(resnet_tui(folder, "run", *TINY, "--epochs", "1000", "--detach"))
    db, run_dir = folder / "runs.db", folder / "runs" / str(run_id)
    seen = wait(lambda: (column(db, run_id, "epochs_done") or 0) >= 1)
    ended = next(
        event.t
        for event in ev.read_events(run_dir / "events.jsonl").events
        if isinstance(event, ev.EpochEnded)
    )
    owners = Owners.read(run_dir)
    assert owners is not None and owners.engine is not None
    os.kill(owners.engine.pid, signal.SIGKILL)
    killed = time.time()
    crashed = wait(lambda: column(db, run_id, "status") == "crashed")
    return seen - ended, crashed - killed


async def new_runs_in_history(folder: Path, trials: int) -> list[float]:
    """Open the app on the store; start runs from another process; time each row's arrival."""
    store = RunStore(folder / "runs.db")
    app = ResnetApp(store)
    latencies = []
    async with app.run_test(size=(140, 40)) as pilot:
        for _ in range(trials):
            out = await asyncio.to_thread(
                resnet_tui, folder, "run", *TINY, "--epochs", "1", "--detach"
            )
            run_id = out.strip()
            created = column(folder / "runs.db", int(run_id), "created_at")
            table = app.history.query_one("DataTable")
            deadline = time.monotonic() + 60
            while run_id not in table.rows:
                assert time.monotonic() < deadline, "the run never showed"
                await pilot.pause(0.01)
            latencies.append(time.time() - float(created))
    return latencies


def row(label: str, values: list[float], goal: float | None) -> str:
    shown = f"{statistics.median(values):.3f} | {max(values):.3f}"
    return f"| {label} | {len(values)} | {shown} | {'-' if goal is None else f'{goal:g}'} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        pairs = [epoch_and_crash(folder) for _ in range(args.trials)]
        arrivals = asyncio.run(new_runs_in_history(folder, args.trials))
        resnet_tui(folder, "runs")  # leaves nothing running: every run above has ended
    lines = [
        f"Machine: {machine()}",
        "",
        "| latency (s) | trials | median | max | goal |",
        "|---|---|---|---|---|",
        row("an epoch's end in runs.db, no viewer open", [p[0] for p in pairs], None),
        row("a killed engine `crashed` in runs.db", [p[1] for p in pairs], GOALS["crash"]),
        row("a run started elsewhere in an open history", arrivals, GOALS["new run"]),
    ]
    publish(__file__, "run-state", "How current runs.db and the app are", lines)


if __name__ == "__main__":
    main()
