"""The run store at scale: 10,000 runs of 100 epochs, listed, sorted, filtered and compared,
and how fast a follower takes in an engine's events.

Run: .venv/bin/python bench/store_scale.py [--runs 10000] [--epochs 100] [--repeats 7]

Builds the store once, in a temporary folder, through the store's own code: `create_run`,
then `apply` of each run's events (started, per epoch a progress event and an epoch's end,
finished) in one transaction per run, as a follower catching up would. Then, each timed
`--repeats` times after one warm-up (median and min-max spread): the history's first page
sorted by several columns and filtered by text, the app's first paint of the history, and
`resnet-tui runs --json` (the whole CLI, in a subprocess) for one page and for every run;
loading 20 runs' validation curves as the compare screen does, and a follower reading
100,000 events of one run from its events file into the store.
Writes the table to stdout and to bench/RESULTS-store.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from results import machine, publish
from startup import time_first_paint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.contract import events as ev  # noqa: E402
from engine.contract.spec import RunSpec  # noqa: E402
from resnet_tui.app.screens.history import PAGE_SIZE  # noqa: E402
from resnet_tui.runs.compare import CURVES, comparison  # noqa: E402
from resnet_tui.runs.follower import RunFollower  # noqa: E402
from resnet_tui.runs.state import RunState  # noqa: E402
from resnet_tui.runs.store import RunStore  # noqa: E402

ARCHS = ["resnet20", "resnet32", "resnet56", "plain20", "resnet18"]
DATASETS = ["shapes", "mnist", "cifar10", "imagefolder:/data/flowers"]
FOLLOWED_EVENTS = 100_000


STARTED = {
    "device": "cpu",
    "device_name": "CPU",
    "torch_version": "2.14.1",
    "torchvision_version": "0.29.1",
    "threads": 2,
    "pid": 1,
    "parameters": 270_000,
    "trainable_parameters": 270_000,
    "sizes": {"train": 45_000, "val": 5_000, "test": 10_000},
    "classes": [str(i) for i in range(10)],
    "image_size": 32,
    "amp": "off",
    "channels_last": False,
    "steps_per_epoch": 10,
}


def run_events(index: int, epochs: int, start: float) -> list[dict]:
    """What an engine writes for one run: a progress event and an epoch's end per epoch."""
    events: list[dict] = [{"seq": 1, "t": start, "type": ev.STARTED, **STARTED, "epochs": epochs}]
    accuracy = 0.5 + 0.45 * ((index * 7919) % 1000) / 1000
    for epoch in range(1, epochs + 1):
        progress = epoch / epochs
        events.append(
            {
                "seq": len(events) + 1,
                "t": start + epoch,
                "type": ev.PROGRESS,
                "epoch": epoch,
                "step": 10,
                "steps": 10,
                "global_step": 10 * epoch,
                "loss": 2.0 - progress,
                "samples_per_s": 900.0,
                "lr": 0.005,
            }
        )
        events.append(
            {
                "seq": len(events) + 1,
                "t": start + epoch,
                "type": ev.EPOCH_ENDED,
                "epoch": epoch,
                "epochs": epochs,
                "train_loss": 2.0 - progress,
                "train_acc": accuracy * progress,
                "val_loss": 2.1 - progress,
                "val_acc": accuracy * progress * 0.98,
                "lr": {"decay": 0.005 * (1 - progress)},
                "seconds": 1.0,
                "elapsed": float(epoch),
            }
        )
    events.append(
        {
            "seq": len(events) + 1,
            "t": start + epochs + 1,
            "type": ev.FINISHED,
            "status": "completed",
            "best_val_acc": accuracy * 0.98,
            "best_epoch": epochs,
            "test": {"top1": accuracy * 0.97, "samples": 2000},
            "seconds": float(epochs),
        }
    )
    return events


def build(path: Path, runs: int, epochs: int) -> tuple[float, int]:
    """A store of `runs` finished runs; returns the seconds it took and the events applied."""
    store = RunStore(path)
    began, applied = time.perf_counter(), 0
    for index in range(runs):
        spec = RunSpec(
            name=f"sweep {index // 100} trial {index % 100}",
            arch=ARCHS[index % len(ARCHS)],
            dataset=DATASETS[index % len(DATASETS)],
            epochs=epochs,
            seed=index,
        )
        run_id = store.create_run(spec)
        events = [ev.event_from_dict(e) for e in run_events(index, epochs, 1.7e9 + index * 1000)]
        store.record(run_id, RunState().apply_all(events), events, offset=0)
        applied += len(events)
        if index % 500 == 499:
            print(f"  {index + 1:,} runs built", file=sys.stderr)
    store.close()
    return time.perf_counter() - began, applied


def timed(work: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of `work`, after one warm-up call."""
    work()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return times


def cli(folder: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "resnet_tui", *args],
        cwd=folder,
        env={**os.environ, "RESNET_TUI_DB": str(folder / "runs.db")},
        check=True,
        capture_output=True,
    )


def follow(folder: Path, events: list[dict]) -> float:
    """Seconds a new follower takes to bring `events`, already in the file, into the store."""
    store = RunStore(folder / "runs.db")
    run_id = store.create_run(RunSpec(name="followed"))
    run = store.run(run_id)
    run.events_path.write_text("".join(json.dumps(event) + "\n" for event in events))
    began = time.perf_counter()
    RunFollower(store, run).poll()
    seconds = time.perf_counter() - began
    assert store.run(run_id).last_seq == len(events)
    store.delete_runs([run_id])
    store.close()
    return seconds


def followed_events() -> list[dict]:
    """A long run's events, mostly progress, as a follower meets them."""
    epochs = FOLLOWED_EVENTS // 100
    events = []
    for event in run_events(0, epochs, 1.7e9):
        if event["type"] == ev.PROGRESS:  # 98 more progress events per epoch
            for step in range(98):
                events.append({**event, "step": step, "global_step": 100 * event["epoch"] + step})
        events.append(event)
    for seq, event in enumerate(events, start=1):
        event["seq"] = seq
    return events


def row(label: str, times: list[float], goal: str) -> str:
    median = statistics.median(times)
    return (
        f"| {label} | {1000 * median:.0f} ms | {1000 * min(times):.0f}-{1000 * max(times):.0f} ms "
        f"| {goal} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    try:
        print(f"building {args.runs:,} runs of {args.epochs} epochs ...", file=sys.stderr)
        built_s, applied = build(folder / "runs.db", args.runs, args.epochs)
        store = RunStore(folder / "runs.db")
        metric_rows = store.query("SELECT count(*) AS n FROM metrics")[0]["n"]

        def first_page(sort: str, text: str | None = None) -> Callable[[], object]:
            def load() -> object:
                store.count_runs(text=text)
                return store.list_runs(sort=sort, limit=PAGE_SIZE, text=text)

            return load

        twenty = [run.id for run in store.list_runs(sort="test_acc", limit=20)]
        split, name = CURVES["val acc"]

        def compare_twenty() -> object:
            comparison(store, twenty)
            return [store.metric_series(run_id, split, name) for run_id in twenty]

        rows = [
            row("history page, newest first", timed(first_page("id"), args.repeats), "200 ms"),
            row("history page, by test acc", timed(first_page("test_acc"), args.repeats), "200 ms"),
            row("history page, by name", timed(first_page("name"), args.repeats), "200 ms"),
            row(
                "history page, filtered by `resnet56`",
                timed(first_page("id", "resnet56"), args.repeats),
                "200 ms",
            ),
            row(
                "20 runs' settings and val acc curves (compare)",
                timed(compare_twenty, args.repeats),
                "200 ms",
            ),
            row(
                "`resnet-tui` first paint, the history (process)",
                [time_first_paint(folder) for _ in range(args.repeats + 1)][1:],
                "600 ms",
            ),
            row(
                "`resnet-tui runs --json --limit 200` (process)",
                timed(lambda: cli(folder, "runs", "--json", "--limit", "200"), args.repeats),
                "",
            ),
            row(
                f"`resnet-tui runs --json`, all {args.runs:,} runs (process)",
                timed(lambda: cli(folder, "runs", "--json"), max(3, args.repeats // 2)),
                "",
            ),
        ]
        store.close()
        events = followed_events()
        follow_times = [follow(folder, events) for _ in range(max(3, args.repeats // 2))]
        rate = len(events) / statistics.median(follow_times)
    finally:
        shutil.rmtree(folder)

    lines = [
        f"Machine: {machine()}. A store of {args.runs:,} finished runs of {args.epochs} epochs "
        f"({metric_rows:,} metric rows), built through the store's own code in "
        f"{built_s:.0f} s ({applied / built_s:,.0f} events/s, one transaction per run). "
        f"Median of {args.repeats} after one warm-up, spread min-max.",
        "",
        "| what | median | spread | goal |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        f"A follower catching up on one run's events file of {len(events):,} events (98% "
        f"progress): {rate:,.0f} events/s (median of {len(follow_times)}; goal 20,000).",
    ]
    publish(__file__, "store", "The store at scale", lines)


if __name__ == "__main__":
    main()
