"""How busy a run's device is: a GPU's utilisation and memory through NVML, else CPU and RAM.

NVIDIA's management library (the `nvidia-ml-py` package, imported as `pynvml`) answers in
about a millisecond and never touches the GPU's work; where it or a driver is missing, the
load of the machine's CPUs and memory is read from /proc, with the engine process's share.
Nothing here imports torch.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
GIB = 2**30


@dataclass(frozen=True)
class DeviceLoad:
    """One reading of a device's load; None where a figure is not known yet."""

    device: str
    utilisation: float | None
    memory_used: int
    memory_total: int
    process_utilisation: float | None = None
    process_memory: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None

    def describe(self) -> str:
        """One line for a status bar, e.g. `GPU 0 87% · memory 12.3/79.6 GiB · 61 °C · 310 W`."""
        parts = [self.device]
        if self.utilisation is not None:
            parts[0] += f" {self.utilisation:.0f}%"
        if self.process_utilisation is not None:
            parts.append(f"engine {self.process_utilisation:.0f}%")
        memory = f"memory {self.memory_used / GIB:.1f}/{self.memory_total / GIB:.1f} GiB"
        if self.process_memory is not None:
            memory += f" (engine {_size(self.process_memory)})"
        parts.append(memory)
        if self.temperature_c is not None:
            parts.append(f"{self.temperature_c} °C")
        if self.power_w is not None:
            parts.append(f"{self.power_w:.0f} W")
        return " · ".join(parts)


def _size(count: int) -> str:
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / 2**20:.0f} MiB"


def _nvml() -> Any:
    """The initialised `pynvml` module, or None without the package or a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no package, no driver, no GPU: all mean "not available"
        return None
    return pynvml


class GpuLoad:
    """Readings of one NVIDIA GPU, found by its UUID (as torch reports it) or its index."""

    def __init__(self, nvml: Any, index: int, uuid: str | None = None) -> None:
        self.nvml = nvml
        if uuid:
            name = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
            self.handle = nvml.nvmlDeviceGetHandleByUUID(name)
        else:
            self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
        self.label = f"GPU {index}"

    def sample(self) -> DeviceLoad:
        nvml, handle = self.nvml, self.handle
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            power = nvml.nvmlDeviceGetPowerUsage(handle) / 1000
        except nvml.NVMLError:
            power = None
        return DeviceLoad(
            device=self.label,
            utilisation=float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            memory_used=int(memory.used),
            memory_total=int(memory.total),
            temperature_c=int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            power_w=power,
        )


def _cpu_times() -> tuple[int, int]:
    """Busy and total clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _memory() -> tuple[int, int]:
    """Used and total bytes of RAM, from /proc/meminfo (used = total - available)."""
    found: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            key, value = line.split(":", 1)
            found[key] = int(value.split()[0]) * 1024
    return found["MemTotal"] - found["MemAvailable"], found["MemTotal"]


def _process(pid: int) -> tuple[int, int] | None:
    """Clock ticks of CPU used so far and resident bytes of one process, or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        statm = Path(f"/proc/{pid}/statm").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")


class CpuLoad:
    """Readings of the machine's CPUs and RAM, with the engine process's share of both.

    CPU figures are rates, so the first reading has none; a process's share is in percent of
    one core, as `top` shows it.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.cores = os.cpu_count() or 1
        self.last_cpu = _cpu_times()
        self.last_process = _process(pid) if pid else None

    def sample(self) -> DeviceLoad:
        busy, total = _cpu_times()
        last_busy, last_total = self.last_cpu
        elapsed_ticks = total - last_total
        utilisation = 100 * (busy - last_busy) / elapsed_ticks if elapsed_ticks else None
        self.last_cpu = (busy, total)
        process_utilisation = process_memory = None
        process = _process(self.pid) if self.pid else None
        if process is not None:
            process_memory = process[1]
            if self.last_process is not None and elapsed_ticks:
                wall_ticks = elapsed_ticks / self.cores
                process_utilisation = 100 * (process[0] - self.last_process[0]) / wall_ticks
        self.last_process = process
        used, total_memory = _memory()
        return DeviceLoad(
            device=f"CPU ({self.cores} cores)",
            utilisation=utilisation,
            memory_used=used,
            memory_total=total_memory,
            process_utilisation=process_utilisation,
            process_memory=process_memory,
        )


def load_reader(device: str, pid: int | None, gpu_uuid: str | None = None) -> Any:
    """A reader of the load of `device` (as the engine's `started` event names it).

    A CUDA device is read through NVML where it is present; anything else, or a GPU without
    NVML, falls back to the CPU and RAM. Returns None where neither can be read (no /proc).
    """
    if device.startswith("cuda"):
        nvml = _nvml()
        if nvml is not None:
            index = int(device.partition(":")[2] or 0)
            try:
                return GpuLoad(nvml, index, gpu_uuid)
            except nvml.NVMLError:
                pass
    if not Path("/proc/stat").exists():
        return None
    return CpuLoad(pid)
