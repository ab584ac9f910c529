"""Every benchmark in turn, and their tables gathered in bench/RESULTS.md with the machine.

Run: .venv/bin/python bench/all.py [--device cuda] [--skip store,app]

Runs, one after another (so that none takes CPU from another): start-up, the app's
responsiveness under live runs, a chart of 50,000 steps redrawn, the store at scale, how
current runs.db and an open app stay (run state), the data path, what augmentation and
mixing cost per batch against a ResNet-20's step, predicting with a trained
run (against a bare loop, and onnxruntime against torch), and the engine against a
bare loop (on CPU; with `--device cuda` also on the GPU, with the modes of issue #7:
fp32, bf16, channels_last, torch.compile). Each writes its own bench/RESULTS-<name>.md as
well; an engine table measured on another machine stays in its file and is linked here.
Takes about 10 minutes on a 2-core machine.
"""

import argparse
import subprocess
import sys
import time
from datetime import date
from importlib import metadata

from results import BENCH, machine

BENCHMARKS = {
    "startup": ["startup.py", "--repeats", "9"],
    "app": ["app_responsiveness.py"],
    "charts": ["chart_draw.py"],
    "store": ["store_scale.py"],
    "run-state": ["run_state_latency.py"],
    "data": ["data_path.py"],
    "augmentation": ["augmentation.py"],
    "predict": ["predict.py"],
    "engine-cpu": ["engine_speed.py", "--device", "cpu", "--epochs", "3", "--rounds", "10"],
    "engine-cuda": ["engine_speed.py", "--device", "cuda", "--arch", "resnet18,resnet20"],
}
RESULT_FILES = {
    "startup": "RESULTS-startup.md",
    "app": "RESULTS-responsiveness.md",
    "charts": "RESULTS-charts.md",
    "store": "RESULTS-store.md",
    "run-state": "RESULTS-run-state.md",
    "data": "RESULTS-data.md",
    "augmentation": "RESULTS-augmentation.md",
    "predict": "RESULTS-predict.md",
    "engine-cpu": "RESULTS-engine-cpu.md",
    "engine-cuda": "RESULTS-engine-cuda.md",
}


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name from nvidia-smi, without importing torch; None without one."""
    try:
        found = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = found.stdout.strip().splitlines()
    return names[0] if found.returncode == 0 and names else None


def versions() -> str:
    return ", ".join(
        f"{name} {metadata.version(name)}" for name in ("torch", "torchvision", "textual")
    )


def section(name: str) -> str:
    """A benchmark's results file as a section of RESULTS.md (its title one level down)."""
    text = (BENCH / RESULT_FILES[name]).read_text()
    return "#" + text if text.startswith("# ") else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add the GPU's table")
    parser.add_argument("--skip", default="", help=f"comma-separated of {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    skipped = {name for name in args.skip.split(",") if name}
    unknown = skipped - set(BENCHMARKS)
    if unknown:
        choices = ", ".join(BENCHMARKS)
        sys.exit(f"unknown benchmark {', '.join(sorted(unknown))}; choose from {choices}")
    chosen = [name for name in BENCHMARKS if name not in skipped]
    if args.device != "cuda":
        chosen = [name for name in chosen if name != "engine-cuda"]
    timings = {}
    for name in chosen:
        print(f"== {name}", flush=True)
        began = time.perf_counter()
        script, *options = BENCHMARKS[name]
        subprocess.run([sys.executable, str(BENCH / script), *options], check=True)
        timings[name] = time.perf_counter() - began
    gpu = gpu_name()
    measured = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    lines = [
        "# Benchmarks",
        "",
        f"`.venv/bin/python bench/all.py{' --device cuda' if args.device == 'cuda' else ''}`"
        f" on {date.today().isoformat()}",
        "",
        f"Machine: {machine()}; GPU: {gpu or 'none'}; {versions()}.",
        f"Measured here now: {measured or 'nothing'}. Each section below names the machine "
        "and command of its own numbers; a section not measured now is the last one its "
        "file holds.",
    ]
    for name in RESULT_FILES:
        if (BENCH / RESULT_FILES[name]).exists():
            lines += ["", section(name).rstrip()]
    (BENCH / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {BENCH / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
