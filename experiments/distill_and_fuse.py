"""The README's distillation and fusion experiments, on real MNIST, offline.

`distill`: a ResNet-56 teacher is distilled into a ResNet-20 student that learns from 60
images per class, against the same student trained alone on the same images. Two teachers:
one trained on those same 600 images, one on ten times as many (the usual setting of
compression, where the teacher had more to learn from than the student gets).

`fuse`: a ResNet-20 pretrained on digits 0-4 learns digits 5-9 as Wortsman et al. make
soups: a linear probe first (20 images per class), then three fine-tunings from the probe,
head kept, for one epoch of all 5-9 training images, that differ only in their seed (the
order of the images). The three are combined as an ensemble (averaged probabilities), a
uniform soup and a greedy soup (averaged weights), and the best of them is mixed with its
starting weights (the probe) by WiSE-FT.

    python experiments/distill_and_fuse.py --data-root ../shared/data            # both
    python experiments/distill_and_fuse.py fuse --data-root ../shared/data --device cuda

Everything goes through the same launcher and store as `resnet-tui run`, `ensemble` and
`soup`, so the runs land in runs.db. The tables are printed and written to
experiments/RESULTS-distill-and-fuse.md (running one experiment keeps the other's section).
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from engine.contract.spec import FusionSpec, RunSpec, SpecError
from resnet_tui.cli.run import follow_run
from resnet_tui.runs.launcher import fuse, launch
from resnet_tui.runs.store import RunStore

RESULTS = Path(__file__).with_name("RESULTS-distill-and-fuse.md")

# Validation on 2% of MNIST's training images (1,200; 600 for five digits) keeps the
# per-epoch evaluation short; the test metrics are on all of the test images.
SMALL_VAL = {"val_fraction": 0.02}
STUDENT = {"arch": "resnet20", "train_per_class": 60, "epochs": 30, "batch_size": 32}
TEACHER = {"arch": "resnet56", "batch_size": 32}

FIVE_TO_NINE = {"dataset": "mnist", "classes": ["5", "6", "7", "8", "9"]}
# Three fine-tunings from one start (the probe, its head kept) on the same images, differing
# in their seed alone: the order of the batches.
FINE_TUNINGS = [(f"seed {seed}", {"seed": seed}) for seed in (0, 1, 2)]


def train(store: RunStore, options: dict[str, Any]) -> int:
    """Run one spec in the foreground, with the CLI's progress display; returns its id."""
    spec = RunSpec.from_dict(options)
    run_id, process = launch(store, spec)
    return finish(store, run_id, process, spec.display_name)


def fuse_runs(store: RunStore, fusion: FusionSpec, run_ids: list[int], name: str) -> int:
    run_id, process = fuse(store, fusion, run_ids, name)
    return finish(store, run_id, process, name)


def finish(store: RunStore, run_id: int, process: Any, name: str) -> int:
    code = follow_run(store, run_id, process, as_json=False)
    if code != 0:
        raise SystemExit(f"run {run_id} ({name}) ended with exit code {code}")
    return run_id


def distill(store: RunStore, common: dict[str, Any]) -> list[tuple[str, int]]:
    """Two teachers, and the student alone and distilled from each; returns (row, run id)."""
    digits = {**common, **SMALL_VAL, "dataset": "mnist"}
    same = train(
        store,
        {**digits, **TEACHER, "train_per_class": 60, "epochs": 30, "name": "teacher x60"},
    )
    more = train(
        store, {**digits, **TEACHER, "train_per_class": 600, "epochs": 10, "name": "teacher x600"}
    )
    alone = train(store, {**digits, **STUDENT, "name": "student alone"})
    rows = [
        ("ResNet-56 teacher, 60 images per class, 30 epochs", same),
        ("ResNet-56 teacher, 600 images per class, 10 epochs", more),
        ("ResNet-20 student alone, 60 per class, 30 epochs", alone),
    ]
    for teacher, label in ((same, "x60"), (more, "x600")):
        student = train(
            store,
            {**digits, **STUDENT, "teacher": [f"run:{teacher}"], "name": f"student kd {label}"},
        )
        rows.append((f"the same student distilled from the {label} teacher", student))
    return rows


def fusion(store: RunStore, common: dict[str, Any]) -> list[tuple[str, int]]:
    """The source, three fine-tunings, and what fusing them gives; returns (row, run id)."""
    source = train(
        store,
        {
            **common,
            **SMALL_VAL,
            "arch": "resnet20",
            "dataset": "mnist",
            "classes": ["0", "1", "2", "3", "4"],
            "limit": 12000,
            "epochs": 3,
            "name": "mnist 0-4 (source)",
        },
    )
    # A tenth of the 5-9 images held out (2,900): at 99% accuracy the greedy soup's choices
    # need more than a few hundred validation images to mean anything.
    target = {**common, **FIVE_TO_NINE, "arch": "resnet20", "val_fraction": 0.1}
    probe = train(
        store,
        {
            **target,
            "init": f"run:{source}",
            "freeze": "head",
            "train_per_class": 20,
            "batch_size": 16,
            "epochs": 10,
            "name": "5-9 probe",
        },
    )
    members = [
        train(
            store,
            {
                **target,
                **options,
                "init": f"run:{probe}",
                "keep_head": True,
                "lr": 1e-3,
                "epochs": 1,
                "name": f"5-9 {label}",
            },
        )
        for label, options in FINE_TUNINGS
    ]
    rows = [("linear probe from the source, 20 per class (the members' start)", probe)]
    rows += [
        (f"fine-tuned from the probe, one epoch, {label}", run_id)
        for (label, _), run_id in zip(FINE_TUNINGS, members, strict=True)
    ]
    device = common["device"]

    def spec(kind: str, **options: Any) -> FusionSpec:
        return FusionSpec(kind, [{"run": m} for m in members], device=device, **options)

    ensemble = fuse_runs(store, spec("ensemble"), members, "ensemble of 3")
    uniform = fuse_runs(store, spec("soup"), members, "uniform soup of 3")
    greedy = fuse_runs(store, spec("soup", greedy=True), members, "greedy soup of 3")
    best = max(members, key=lambda run_id: store.run(run_id).best_val_acc)
    wise = fuse_runs(
        store, FusionSpec("wise-ft", [{"run": best}], device=device), [best], "WiSE-FT auto"
    )
    rows += [
        ("ensemble of the three (averaged probabilities)", ensemble),
        ("uniform soup of the three (averaged weights)", uniform),
        ("greedy soup of the three", greedy),
        (f"WiSE-FT of run {best} with the probe, alpha chosen on validation", wise),
    ]
    return rows


EXPERIMENTS = {
    "distill": ("Distillation: ResNet-56 into ResNet-20 on MNIST", distill),
    "fuse": ("Ensembles, soups and WiSE-FT: MNIST 0-4 fine-tuned to 5-9", fusion),
}


def markdown_table(store: RunStore, rows: list[tuple[str, int]]) -> str:
    lines = ["| run | | val acc | test acc | time |", "|---|---|---|---|---|"]
    for label, run_id in rows:
        run = store.run(run_id)
        outcome = run.fusion_outcome
        note = ""
        if "kept" in outcome and (run.recipe or {}).get("greedy"):
            note = " (kept runs " + ", ".join(str(i) for i in outcome["kept"]) + ")"
        if outcome.get("alpha") is not None:
            note = f" (alpha {outcome['alpha']:g})"
        lines.append(
            f"| {run_id} | {label}{note} | {100 * run.best_val_acc:.2f}% | "
            f"{100 * run.test_acc:.2f}% | {run.seconds:.0f} s |"
        )
    return "\n".join(lines)


def device_used(store: RunStore, run_id: int) -> str:
    info = store.run(run_id).engine_info
    assert info is not None
    return f"{info.device} ({info.device_name}, {info.threads} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", help=f"any of {', '.join(EXPERIMENTS)} (all)")
    parser.add_argument("--db", type=Path, default=Path("runs.db"), help="run store")
    parser.add_argument("--data-root", help="where MNIST lives (default as resnet-tui run)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    args = parser.parse_args()
    unknown = [name for name in args.experiments if name not in EXPERIMENTS]
    if unknown:
        parser.exit(
            2, f"error: no experiment {', '.join(unknown)}; choose {', '.join(EXPERIMENTS)}\n"
        )
    common: dict[str, Any] = {"device": args.device, "seed": 0}
    if args.data_root:
        common["data_root"] = str(Path(args.data_root).expanduser().resolve())
    store = RunStore(args.db)
    sections = earlier_sections()
    command = "python experiments/distill_and_fuse.py " + " ".join(sys.argv[1:])
    for name in args.experiments or list(EXPERIMENTS):
        title, experiment = EXPERIMENTS[name]
        started = time.perf_counter()
        try:
            rows = experiment(store, common)
        except SpecError as error:
            sys.exit(f"error: {error}")
        minutes = (time.perf_counter() - started) / 60
        table = markdown_table(store, rows)
        print(f"\n{title} ({minutes:.1f} min)\n{table}\n")
        sections[title] = (
            f"## {title}\n\n`{command.strip()}` on {device_used(store, rows[-1][1])}, "
            f"{time.strftime('%Y-%m-%d')}: {minutes:.1f} minutes.\n\n{table}\n"
        )
    ordered = [sections[title] for title, _ in EXPERIMENTS.values() if title in sections]
    RESULTS.write_text("# Distillation and fusion experiments\n\n" + "\n".join(ordered))
    print(f"written to {RESULTS}")


def earlier_sections() -> dict[str, str]:
    """The results file's sections by title, so running one experiment keeps the other's."""
    if not RESULTS.is_file():
        return {}
    sections = {}
    for part in RESULTS.read_text().split("\n## ")[1:]:
        title = part.split("\n", 1)[0]
        sections[title] = f"## {part.rstrip()}\n"
    return sections


if __name__ == "__main__":
    main()
