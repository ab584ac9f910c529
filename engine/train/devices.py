"""Where a run computes: its device, CPU threads, mixed precision and the process's facts."""

import os
import platform
import resource
from contextlib import nullcontext
from importlib import metadata
from typing import Any

import torch

from engine.contract.errors import RunError
from engine.contract.spec import RunSpec
from engine.distributed import RANK_LAUNCHER_PID


def pick_device(name: str) -> torch.device:
    """The torch device for a spec's device name; a device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError(
                "device_missing",
                f"device {name} is not available: this machine has no usable CUDA GPU",
                "use --device cpu, or --device auto to take the best device there is",
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise RunError(
                "device_missing",
                f"device {name} is not available: there are {torch.cuda.device_count()} CUDA GPUs",
                "`resnet-tui devices` lists them",
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise RunError(
            "device_missing",
            "device mps is not available on this machine",
            "use --device cpu, or --device auto",
        )
    return torch.device(name)


def use_all_cores(device: torch.device, processes: int = 1) -> None:
    """On the CPU, compute with every core this process may use (its share of them when
    `processes` train on this machine at once)."""
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        torch.set_num_threads(max(1, (cores or os.cpu_count() or 1) // processes))


def amp_dtype(spec: RunSpec, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision."""
    if spec.amp == "off" or (spec.amp == "auto" and device.type != "cuda"):
        return None
    if spec.amp == "fp16":
        if device.type != "cuda":
            raise RunError("bad_input", "--amp fp16 needs a CUDA device", "use --amp bf16 or off")
        return torch.float16
    if spec.amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Mixed precision in `dtype` on `device`, or nothing for full precision."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def peak_memory_mb(device: torch.device) -> float:
    """The most memory the run has held: on a GPU its tensors, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    scale = 1 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def device_name(device: torch.device) -> str:
    """What the device is, as its maker names it (the GPU's name, the CPU's model)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_uuid(device: torch.device) -> str | None:
    """A CUDA device's UUID, which names it to NVML whatever CUDA_VISIBLE_DEVICES says."""
    if device.type != "cuda":
        return None
    return str(torch.cuda.get_device_properties(device).uuid)


def process_facts(device: torch.device) -> dict[str, Any]:
    """What every `started` event says of where it runs: device, versions, threads, pid (of
    the process to signal: under torchrun, the rank launcher)."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "device_uuid": device_uuid(device),
        "torch_version": torch.__version__,
        "torchvision_version": metadata.version("torchvision"),
        "threads": torch.get_num_threads(),
        "pid": int(os.environ.get(RANK_LAUNCHER_PID, os.getpid())),
    }
