"""The LR finder against a grid: does one range test find a rate as good as the best of five?

A ResNet-20 on an MNIST subset: `resnet-tui lr-find` on the spec suggests a rate, one run
trains at it; five runs train at the grid's rates, everything else the same (the defaults:
AdamW, one-cycle). The runs land in the store, to compare in the app afterwards.

    python experiments/lr_finder.py --data-root ../shared/data --db /tmp/lr/runs.db

The table is printed and written to experiments/RESULTS-lr-finder.md.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from transfer import device_used, train

from engine.contract.spec import SpecError
from resnet_tui.runs.store import RunStore

RESULTS = Path(__file__).with_name("RESULTS-lr-finder.md")
GRID = (0.03, 0.01, 0.003, 0.001, 0.0003)
SPEC = {"arch": "resnet20", "dataset": "mnist", "limit": 5000, "epochs": 3, "seed": 0}


def suggested_lr(common: dict[str, Any], db: Path) -> tuple[float, float, dict[str, Any]]:
    """The range test's suggestion, its seconds and its whole answer, from the CLI."""
    options = [f"--{name.replace('_', '-')}={value}" for name, value in common.items()]
    command = [sys.executable, "-m", "resnet_tui", "lr-find", *options, "--json", f"--db={db}"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"lr-find failed: {done.stderr.strip()}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["suggestion"], time.perf_counter() - started, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("runs.db"), help="run store")
    parser.add_argument("--data-root", help="where MNIST lives (default as resnet-tui run)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    args = parser.parse_args()
    common: dict[str, Any] = {**SPEC, "device": args.device}
    if args.data_root:
        common["data_root"] = str(Path(args.data_root).expanduser().resolve())
    store = RunStore(args.db)
    started = time.perf_counter()
    lr, seconds, answer = suggested_lr(common, args.db)
    print(f"suggested lr {lr:.3g} (steepest {answer['steepest']:.3g}) in {seconds:.0f} s")
    try:
        found = train(store, {**common, "lr": lr, "name": f"mnist lr-find {lr:.3g}"})
        grid = [train(store, {**common, "lr": rate, "name": f"mnist lr {rate}"}) for rate in GRID]
    except SpecError as error:
        sys.exit(f"error: {error}")
    minutes = (time.perf_counter() - started) / 60
    rows = ["| run | lr | best val acc | test acc | seconds |", "|---|---|---|---|---|"]
    results = {}
    for run_id in [found, *grid]:
        run = store.run(run_id)
        assert run is not None and run.test_acc is not None and run.best_val_acc is not None
        results[run_id] = run.test_acc
        rows.append(
            f"| {run_id} {run.name} | {run.spec.lr:.3g} | {100 * run.best_val_acc:.2f}% | "
            f"{100 * run.test_acc:.2f}% | {run.seconds or 0:.0f} |"
        )
    best = max(grid, key=lambda run_id: results[run_id])
    gap = 100 * (results[best] - results[found])
    verdict = (
        f"The suggestion's run reaches {100 * results[found]:.2f}% test accuracy, "
        f"{gap:.2f} points {'below' if gap > 0 else 'above'} the grid's best "
        f"({100 * results[best]:.2f}% at lr {store.run(best).spec.lr:g}), in one run instead "
        f"of five: {'within' if gap <= 1 else 'not within'} 1 point."
    )
    print("\n".join(rows), "\n", verdict)
    command = "python experiments/lr_finder.py " + " ".join(sys.argv[1:])
    RESULTS.write_text(
        "# The LR finder against a five-value grid\n\n"
        f"`{command.strip()}` on {device_used(store, grid)}, {time.strftime('%Y-%m-%d')}: "
        f"{minutes:.1f} minutes in all.\n\nResNet-20 on 5,000 MNIST training images, 3 "
        "epochs, seed 0, every other option at its default (AdamW, one-cycle). The range test "
        f"(100 steps, {seconds:.0f} s) suggested lr {lr:.3g} (valley; steepest descent at "
        f"{answer['steepest']:.3g}).\n\n" + "\n".join(rows) + "\n\n" + verdict + "\n"
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
