"""Few-shot transfer with default settings: the converged linear probe against the probe
trained by epochs (issue 27, item 0).

A ResNet-20 learns MNIST digits 0-4 (the source), then digits 5-9 from 10 training images
a class, every option at its default but the classes and the image count: from scratch,
full fine-tuning, and `head` and `lp-ft` both ways, `--probe sgd` (how they trained before:
the head by the epochs) and `--probe lbfgs` (the default now: fitted to convergence on the
frozen features). The runs land in the store, to compare in the app afterwards.

    python experiments/few_shot.py --data-root ../shared/data --db /tmp/few/runs.db

The table is printed and written to experiments/RESULTS-few-shot.md.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from transfer import device_used, markdown_table, train

from engine.contract.spec import SpecError
from resnet_tui.runs.store import RunStore

RESULTS = Path(__file__).with_name("RESULTS-few-shot.md")

SOURCE = {
    "name": "mnist 0-4 (source)",
    "dataset": "mnist",
    "classes": ["0", "1", "2", "3", "4"],
    "limit": 12000,
    "epochs": 3,
}
# The target: digits 5-9 from 10 images a class; everything else at its default.
TARGET = {"dataset": "mnist", "classes": ["5", "6", "7", "8", "9"], "train_per_class": 10}

# (label, start from the source run?, options)
WAYS = [
    ("scratch", False, {"freeze": "full"}),
    ("full", True, {"freeze": "full"}),
    ("head sgd (before)", True, {"freeze": "head", "probe": "sgd"}),
    ("head lbfgs (after)", True, {"freeze": "head", "probe": "lbfgs"}),
    ("lp-ft sgd (before)", True, {"freeze": "lp-ft", "probe": "sgd"}),
    ("lp-ft lbfgs (after)", True, {"freeze": "lp-ft", "probe": "lbfgs"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("runs.db"), help="run store")
    parser.add_argument("--data-root", help="where MNIST lives (default as resnet-tui run)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    args = parser.parse_args()
    common: dict[str, Any] = {"arch": "resnet20", "device": args.device}
    if args.data_root:
        common["data_root"] = str(Path(args.data_root).expanduser().resolve())
    store = RunStore(args.db)
    started = time.perf_counter()
    try:
        source = train(store, {**common, **SOURCE})
        ids = [
            train(
                store,
                {
                    **common,
                    **TARGET,
                    **({"init": f"run:{source}"} if transfer else {}),
                    **options,
                    "name": f"mnist 5-9 x10 {label}",
                },
            )
            for label, transfer, options in WAYS
        ]
    except SpecError as error:
        sys.exit(f"error: {error}")
    minutes = (time.perf_counter() - started) / 60
    table = markdown_table(store, ids)
    print(f"\n{table}\n")
    command = "python experiments/few_shot.py " + " ".join(sys.argv[1:])
    RESULTS.write_text(
        "# Few-shot transfer with default settings\n\n"
        f"`{command.strip()}` on {device_used(store, ids)}, {time.strftime('%Y-%m-%d')}: "
        f"{minutes:.1f} minutes in all (source run {source}, target runs "
        f"{ids[0]}-{ids[-1]}).\n\nMNIST digits 0-4 (12,000 images, 3 epochs) to digits 5-9 "
        "from 10 training images a class; every other option at its default (8 epochs, "
        "batch 64, AdamW at its default rate, one-cycle: under `--probe sgd` the head gets "
        "one optimiser step an epoch).\n\n" + table + "\n"
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
