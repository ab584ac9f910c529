"""The regularised recipe against the plain one on CIFAR-10, three seeds each.

ResNet-20 on 10,000 CIFAR-10 training images (1,000 a class, from ../shared/data's JPEG
ImageFolder), the same epochs and everything else at its defaults; `plain` trains with crop
and flip alone, `recipe` adds TrivialAugmentWide, label smoothing 0.1 and an EMA of the
weights (0.999, best checkpoint from either). Validated on 5,000 other training images held
out (--val-fraction 0.1), tested on the official 10,000 test images (the folder's val/).

    python experiments/recipe.py --data-root ../shared/data --db /tmp/recipe/runs.db

The table (mean ± standard deviation over the seeds) is printed and written to
experiments/RESULTS-recipe.md.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from transfer import device_used, train

from engine.contract.spec import SpecError
from resnet_tui.runs.store import RunStore

RESULTS = Path(__file__).with_name("RESULTS-recipe.md")
SEEDS = (0, 1, 2)
RECIPES = {
    "plain": {},
    "recipe": {"auto_augment": "trivialaugment", "label_smoothing": 0.1, "ema_decay": 0.999},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("runs.db"), help="run store")
    parser.add_argument("--data-root", default="../shared/data", help="holds cifar10_jpg/")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of every run")
    parser.add_argument("--per-class", type=int, default=1000, help="training images a class")
    args = parser.parse_args()
    folder = Path(args.data_root).expanduser().resolve() / "cifar10_jpg"
    if not folder.is_dir():
        parser.exit(2, f"error: no {folder}; give --data-root, the folder holding cifar10_jpg\n")
    common: dict[str, Any] = {
        "arch": "resnet20",
        "dataset": f"imagefolder:{folder}",
        "train_per_class": args.per_class,
        "epochs": args.epochs,
        "device": args.device,
    }
    store = RunStore(args.db)
    started = time.perf_counter()
    ids: dict[str, list[int]] = {name: [] for name in RECIPES}
    try:
        for seed in SEEDS:
            for name, options in RECIPES.items():
                spec = {**common, **options, "seed": seed, "name": f"cifar10 {name} seed {seed}"}
                ids[name].append(train(store, spec))
    except SpecError as error:
        sys.exit(f"error: {error}")
    minutes = (time.perf_counter() - started) / 60
    rows = ["| recipe | runs | best val acc | test acc | minutes a run |", "|---|---|---|---|---|"]
    for name, run_ids in ids.items():
        runs = [store.run(run_id) for run_id in run_ids]
        val = [100 * (run.best_val_acc or 0) for run in runs if run]
        test = [100 * (run.test_acc or 0) for run in runs if run]
        seconds = statistics.mean((run.seconds or 0) for run in runs if run)
        rows.append(
            f"| {name} | {', '.join(map(str, run_ids))} | {statistics.mean(val):.2f} ± "
            f"{statistics.stdev(val):.2f}% | {statistics.mean(test):.2f} ± "
            f"{statistics.stdev(test):.2f}% | {seconds / 60:.1f} |"
        )
    print("\n".join(rows))
    command = "python experiments/recipe.py " + " ".join(sys.argv[1:])
    recipe = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in RECIPES["recipe"].items())
    RESULTS.write_text(
        "# The regularised recipe against the plain one on CIFAR-10\n\n"
        f"`{command.strip()}` on {device_used(store, ids['plain'])}, "
        f"{time.strftime('%Y-%m-%d')}: {minutes:.0f} minutes in all.\n\n"
        f"ResNet-20 on {10 * args.per_class:,} CIFAR-10 training images ({args.per_class:,} a "
        f"class, drawn by the seed), validated on 5,000 other training images held out (the "
        f"folder has no test/), {args.epochs} epochs, seeds "
        f"{', '.join(map(str, SEEDS))}, every other option at its default (AdamW, one-cycle, crop "
        f"and flip); the recipe adds {recipe}. Test: the official 10,000 test images. Mean ± "
        "sample standard deviation over the three seeds.\n\n" + "\n".join(rows) + "\n"
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
