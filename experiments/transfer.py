"""The README's transfer experiments: pretrain on some classes, learn new ones from 10 images.

Each experiment trains a source run on one task, then learns a new task from 10 training
images per class four ways, side by side: from scratch, and from the source run's weights
with a linear probe (`head`), full fine-tuning (`full`) and LP-FT (`lp-ft`). Everything runs
offline through the same launcher and store as `resnet-tui run`, so the runs land in the
store and can be compared in the app afterwards.

    python experiments/transfer.py                     # both experiments
    python experiments/transfer.py mnist --data-root ../shared/data

`mnist`: digits 0-4 (the source), then digits 5-9 (needs MNIST under --data-root, see
`resnet-tui datasets`). `shapes`: the built-in `shapes`, then `shapes-shift`, the same kinds
of shape in other colours on other backgrounds. The table of results is printed and written
to experiments/RESULTS-transfer.md.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from engine.contract.spec import RunSpec, SpecError
from resnet_tui.cli.run import follow_run
from resnet_tui.runs.compare import comparison, table_rows
from resnet_tui.runs.launcher import launch
from resnet_tui.runs.store import RunStore

RESULTS = Path(__file__).with_name("RESULTS-transfer.md")

# What the target runs share: 10 images per class, a small validation set so that 30 short
# epochs stay quick, and a fixed seed so that every policy sees the same 10 images.
FEW_SHOT = {"train_per_class": 10, "val_fraction": 0.05, "epochs": 30, "batch_size": 16}

# The four ways of learning the target task: (label, start from the source run?, options).
POLICIES = [
    ("scratch", False, {"freeze": "full"}),
    ("head", True, {"freeze": "head"}),
    ("full", True, {"freeze": "full", "lr": 1e-3}),
    ("lp-ft", True, {"freeze": "lp-ft", "probe_epochs": 15, "ft_lr_scale": 0.2}),
]

EXPERIMENTS: dict[str, dict[str, Any]] = {
    "mnist": {
        "title": "MNIST digits 0-4 to digits 5-9",
        "source": {
            "name": "mnist 0-4 (source)",
            "dataset": "mnist",
            "classes": ["0", "1", "2", "3", "4"],
            "limit": 12000,
            "epochs": 3,
        },
        "target": {"dataset": "mnist", "classes": ["5", "6", "7", "8", "9"]},
        "target_name": "mnist 5-9 x10",
    },
    "shapes": {
        "title": "shapes to shapes-shift",
        "source": {"name": "shapes (source)", "dataset": "shapes", "epochs": 8},
        "target": {"dataset": "shapes-shift"},
        "target_name": "shapes-shift x10",
    },
}


def train(store: RunStore, options: dict[str, Any]) -> int:
    """Run one spec in the foreground, with the CLI's progress display; returns its id."""
    spec = RunSpec.from_dict(options)
    run_id, process = launch(store, spec)
    code = follow_run(store, run_id, process, as_json=False)
    if code != 0:
        raise SystemExit(f"run {run_id} ({spec.display_name}) ended with exit code {code}")
    return run_id


def run_experiment(store: RunStore, name: str, common: dict[str, Any]) -> list[int]:
    """The source run, then the four target runs; returns the target runs' ids."""
    experiment = EXPERIMENTS[name]
    source_id = train(store, {**common, **experiment["source"]})
    ids = []
    for label, transfer, options in POLICIES:
        init = {"init": f"run:{source_id}"} if transfer else {}
        ids.append(
            train(
                store,
                {
                    **common,
                    **FEW_SHOT,
                    **experiment["target"],
                    **init,
                    **options,
                    "name": f"{experiment['target_name']} {label}",
                },
            )
        )
    return ids


def as_flags(options: dict[str, Any]) -> str:
    """Spec fields as the command line gives them: `--lr 0.1 --no-nesterov`."""
    flags = []
    for key, value in options.items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            flags.append(f"--{flag} {value}")
    return " ".join(flags)


def device_used(store: RunStore, ids: list[int]) -> str:
    """What the runs trained on, as their engine reported it: `cpu (AMD EPYC, 2 threads)`."""
    info = store.run(ids[-1]).engine_info
    assert info is not None
    return f"{info.device} ({info.device_name}, {info.threads} threads)"


def markdown_table(store: RunStore, ids: list[int]) -> str:
    """The target runs' settings that differ and their results, as a Markdown table."""
    result = comparison(store, ids)
    header = ["", *(f"{run['id']} {run['name']}" for run in result["runs"])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", help=f"any of {', '.join(EXPERIMENTS)} (all)")
    parser.add_argument("--db", type=Path, default=Path("runs.db"), help="run store")
    parser.add_argument("--data-root", help="where MNIST lives (default as resnet-tui run)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--arch", default="resnet20", help="a CIFAR ResNet, e.g. resnet20")
    args = parser.parse_args()
    unknown = [name for name in args.experiments if name not in EXPERIMENTS]
    if unknown:
        parser.exit(
            2, f"error: no experiment {', '.join(unknown)}; choose {', '.join(EXPERIMENTS)}\n"
        )
    common: dict[str, Any] = {"arch": args.arch, "device": args.device, "seed": 0}
    if args.data_root:
        common["data_root"] = str(Path(args.data_root).expanduser().resolve())
    store = RunStore(args.db)
    sections = []
    for name in args.experiments or list(EXPERIMENTS):
        started = time.perf_counter()
        try:
            ids = run_experiment(store, name, common)
        except SpecError as error:
            sys.exit(f"error: {error}")
        minutes = (time.perf_counter() - started) / 60
        table = markdown_table(store, ids)
        print(f"\n{EXPERIMENTS[name]['title']} ({minutes:.1f} min)\n{table}\n")
        sections.append(
            f"## {EXPERIMENTS[name]['title']}\n\n{minutes:.1f} minutes for the source run "
            f"and the four target runs, runs {ids[0]}-{ids[-1]} in the store.\n\n{table}\n"
        )
    machine = device_used(store, ids)
    command = "python experiments/transfer.py " + " ".join(sys.argv[1:])
    RESULTS.write_text(
        "# Transfer experiments\n\n"
        f"`{command.strip()}` on {machine}, {time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(sections)
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
