"""The paper's CIFAR-10 schedule for ResNet-20 and plain-20 (He et al. 2016, §4.2), and the
time the engine's fastest recipe takes to reach ResNet-20's accuracy: meant for a GPU.

    python experiments/paper_cifar10.py schedule --device cuda   # 64k iterations, two runs
    python experiments/paper_cifar10.py speed --device cuda      # the fastest recipe

`schedule`: batch 128, SGD 0.1 with momentum 0.9, weight decay 1e-4, the rate ÷10 at 32k and
48k iterations (half and three quarters: the engine's `--schedule step`), 64k iterations
(`--iterations` to shorten it), crop and flip, on 45,000 training images validated on the
other 5,000, tested on the official 10,000. `speed`: one-cycle, bf16, channels-last, batch
512, `--compile`, label smoothing 0.1, for `--epochs`; seconds from the process's start to
its end, and whether it reached the paper's 91.25% test accuracy. On a CPU, --compile and
bf16 are left out (a check that the script works, not a timing).

Each writes experiments/RESULTS-paper-<part>.md with the command, device and torch version.
"""

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from transfer import as_flags, device_used, train

from engine.contract.spec import SpecError
from resnet_tui.runs.store import RunStore

PAPER_RESNET20_ERROR = 8.75  # Table 6
PAPER_ITERATIONS = 64_000
BATCH = 128
SCHEDULE = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 1e-4,
    "batch_size": BATCH,
    "schedule": "step",
    "lr_gamma": 0.1,
}
FASTEST = {
    "arch": "resnet20",
    "optimizer": "sgd",
    "lr": 0.4,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "batch_size": 512,
    "schedule": "onecycle",
    "label_smoothing": 0.1,
    "amp": "bf16",
    "channels_last": True,
    "compile": True,
}
JPEG_CAVEAT = (
    "The images are ../shared/data's JPEG copy of CIFAR-10 (see its README: JPEG costs some "
    "accuracy against the original PNG-exact pixels), framed as the tool frames any image "
    "folder (shorter side to 36 px, the centre 32 px), so the numbers are close to, not the "
    "same experiment as, the paper's."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("schedule", "speed"), help="which experiment")
    parser.add_argument("--db", type=Path, default=Path("runs.db"), help="run store")
    parser.add_argument("--data-root", default="../shared/data", help="holds cifar10_jpg/")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--iterations", type=int, default=PAPER_ITERATIONS, help="schedule")
    parser.add_argument("--epochs", type=int, default=10, help="speed: epochs of the recipe")
    parser.add_argument("--per-class", type=int, help="fewer training images a class (a check)")
    args = parser.parse_args()
    folder = Path(args.data_root).expanduser().resolve() / "cifar10_jpg"
    if not folder.is_dir():
        parser.exit(2, f"error: no {folder}; give --data-root, the folder holding cifar10_jpg\n")
    common: dict[str, Any] = {"dataset": f"imagefolder:{folder}", "device": args.device}
    if args.per_class:
        common["train_per_class"] = args.per_class
    store = RunStore(args.db)
    command = f"python experiments/paper_cifar10.py {' '.join(sys.argv[1:])}".strip()
    try:
        if args.part == "schedule":
            text = paper_schedule(store, common, args.iterations, args.per_class or 4500)
        else:
            text = fastest_recipe(store, common, args.epochs)
    except SpecError as error:
        sys.exit(f"error: {error}")
    results = Path(__file__).with_name(f"RESULTS-paper-{args.part}.md")
    title, _, body = text.partition("\n\n")
    results.write_text(f"{title}\n\n`{command}`, {time.strftime('%Y-%m-%d')}.\n\n{body}\n")
    print(text)
    print(f"written to {results}")


def paper_schedule(store: RunStore, common: dict[str, Any], iterations: int, per_class: int) -> str:
    """ResNet-20 and plain-20 for `iterations` steps of batch 128; their test errors."""
    steps_per_epoch = math.ceil(10 * per_class / BATCH)
    epochs = math.ceil(iterations / steps_per_epoch)
    rows = ["| network | run | iterations | test error | paper (Table 6) | minutes |"]
    rows.append("|---|---|---|---|---|---|")
    ids = []
    for arch in ("resnet20", "plain20"):
        options = {**common, **SCHEDULE, "arch": arch, "epochs": epochs, "name": f"paper {arch}"}
        run_id = train(store, options)
        ids.append(run_id)
        run = store.run(run_id)
        assert run is not None
        paper = f"{PAPER_RESNET20_ERROR}%" if arch == "resnet20" else "(Fig. 6 only)"
        rows.append(
            f"| {arch} | {run_id} | {epochs * steps_per_epoch:,} | "
            f"{100 * (1 - (run.test_acc or 0)):.2f}% | {paper} | {(run.seconds or 0) / 60:.1f} |"
        )
    shortened = (
        f" A check that the script works, not the experiment: {epochs * steps_per_epoch:,} "
        f"iterations of the paper's {PAPER_ITERATIONS:,}."
        if iterations < PAPER_ITERATIONS
        else ""
    )
    return (
        f"# The paper's CIFAR-10 schedule\n\n{environment(store, ids)}.{shortened} {epochs} "
        f"epochs of {steps_per_epoch} steps ({10 * per_class:,} training images an epoch, "
        f"batch {BATCH}), "
        "SGD 0.1, momentum 0.9, weight decay 1e-4, ÷10 at half and three quarters of the steps, "
        f"crop and flip.\n\n" + "\n".join(rows) + f"\n\n{JPEG_CAVEAT}"
    )


def fastest_recipe(store: RunStore, common: dict[str, Any], epochs: int) -> str:
    """The fastest recipe for `epochs`: wall seconds from process start, test accuracy."""
    recipe = dict(FASTEST)
    on_cpu = common["device"] == "cpu"
    if on_cpu:
        recipe |= {"compile": False, "amp": "off", "channels_last": False}
    options = {**common, **recipe, "epochs": epochs, "name": f"fastest {epochs} epochs"}
    started = time.perf_counter()
    run_id = train(store, options)
    seconds = time.perf_counter() - started
    run = store.run(run_id)
    assert run is not None
    accuracy = 100 * (run.test_acc or 0)
    reached = accuracy >= 100 - PAPER_RESNET20_ERROR
    flags = as_flags(recipe)
    return (
        f"# Time to ResNet-20's accuracy\n\n{environment(store, [run_id])}. Run {run_id}: "
        f"`{flags} --epochs {epochs}`.\n\n| seconds from process start | test accuracy | "
        f"reached {100 - PAPER_RESNET20_ERROR:.2f}% |\n|---|---|---|\n| {seconds:.0f} | "
        f"{accuracy:.2f}% | {'yes' if reached else 'no'} |\n\n"
        + ("On a CPU: no --compile, bf16 or channels-last; not a timing.\n\n" if on_cpu else "")
        + JPEG_CAVEAT
    )


def environment(store: RunStore, ids: list[int]) -> str:
    """The device and the torch version the runs reported."""
    info = store.run(ids[-1]).engine_info
    assert info is not None
    return f"On {device_used(store, ids)}, torch {info.torch_version}"


if __name__ == "__main__":
    main()
