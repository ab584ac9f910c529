"""What every benchmark reports with its table: the machine it ran on, and its results file."""

import os
import platform
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def machine() -> str:
    """The CPU model, its cores and Python's version, for a results table."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def publish(script: str, name: str, title: str, lines: list[str]) -> None:
    """Print the results and write them to bench/RESULTS-`name`.md under `title`, with the
    command that measures them (`script` is the benchmark's `__file__`)."""
    text = "\n".join(lines) + "\n"
    print(text)
    command = f".venv/bin/python bench/{Path(script).name}"
    (BENCH / f"RESULTS-{name}.md").write_text(f"# {title}\n\n`{command}`\n\n{text}")
