"""Training on several processes with PyTorch's own engine: torchrun starts the ranks, DDP
keeps their weights equal, and a rank launcher reports the run's end whichever rank failed.

`python -m engine run` on a spec with `--devices`, `--nproc` or `--nnodes` becomes the
rank launcher: it starts torchrun (`--standalone` on one machine; with `--nnodes`, a
rendezvous at `--rdzv-endpoint` that the other machines' rank launchers join), which starts one
`python -m engine run` a rank. Each machine's first rank writes that machine's event log and
checkpoints (the ranks' metrics are reduced over all of them, so every machine's record is
the whole run's, and any machine can resume it); each rank sees its share of every global
batch. A rank that fails writes what went wrong to `ranks/rank-N-error.json` in the run
folder instead of the event log; when torchrun has ended, the rank launcher puts the first
failure in the log as the run's `error`, so the rank that broke is named rather than the
peers its death stopped.
"""

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.contract import events as ev
from engine.contract.events import EventWriter, read_events
from engine.contract.spec import RunSpec
from engine.contract.stopping import StopRequest

# Ranks agree whether to stop every this many steps (a stop flag summed over the ranks).
STOP_CHECK_STEPS = 8
# The rank launcher's pid, for the ranks to give as the run's process in their `started`
# event: the process a stop is sent to, and the one that outlives the ranks to report their end.
RANK_LAUNCHER_PID = "RESNET_TUI_RANK_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1
# The machines of one run meet under this name at their endpoint (torchrun --rdzv-id); the
# endpoint's port tells runs apart.
RENDEZVOUS_ID = "resnet-tui"


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the run's processes, as torchrun's variables say."""

    rank: int
    world: int
    local_rank: int
    local_world: int
    node: int = 0
    nodes: int = 1

    @property
    def writes(self) -> bool:
        """Whether this rank keeps its machine's record of the run: events, checkpoints."""
        return self.local_rank == 0

    @classmethod
    def from_environment(cls) -> "Ranks | None":
        """This rank, when torchrun started the process; None for a process of its own."""
        if "LOCAL_RANK" not in os.environ:
            return None
        return cls(
            rank=int(os.environ["RANK"]),
            world=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ["LOCAL_RANK"]),
            local_world=int(os.environ["LOCAL_WORLD_SIZE"]),
            node=int(os.environ.get("GROUP_RANK", 0)),
            nodes=int(os.environ.get("GROUP_WORLD_SIZE", 1)),
        )

    def device_name(self, spec: RunSpec) -> str:
        """This rank's device: its entry of --devices, else its own GPU (with --device cuda,
        or auto where there are GPUs) or the CPU."""
        import torch

        if spec.devices:
            return spec.devices[self.local_rank]
        if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()):
            return f"cuda:{self.local_rank}"
        return "cpu"

    def join(self, device: Any) -> None:
        """Join the process group: NCCL between GPUs, gloo on the CPU."""
        import torch
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def leave(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def failure_file(self, run_dir: Path) -> Path:
        return run_dir / "ranks" / f"rank-{self.rank}-error.json"


def total(tensor: Any) -> Any:
    """`tensor` summed over the ranks (in place), for metrics of the whole global batch."""
    import torch.distributed as dist

    dist.all_reduce(tensor)
    return tensor


def any_rank(flag: bool, device: Any) -> bool:
    """Whether `flag` is set on any rank: how the ranks agree to stop at the same step."""
    import torch

    return bool(total(torch.tensor([float(flag)], device=device)).item() > 0)


def gathered(tensor: Any) -> Any:
    """Every rank's `tensor` (their first dimensions may differ) joined in rank order."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    size = torch.tensor([len(tensor)], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(n.item())] for part, n in zip(parts, sizes, strict=True)])


class RankFailures:
    """Where a rank's failure goes: its own file, for the rank launcher to report. Stands in for
    the event log in `train.report_failures`; everything but an error passes through to
    `events` (the log of a machine's first rank, or nothing on the others)."""

    def __init__(self, path: Path, events: "EventWriter | NoEvents") -> None:
        self.path = path
        self.events = events

    def emit(self, event_type: str, **payload: Any) -> dict[str, Any]:
        if event_type != ev.ERROR:
            return self.events.emit(event_type, **payload)
        failure = {"t": time.time(), "rank_pid": os.getpid(), **payload}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(failure), encoding="utf-8")
        return failure

    def close(self) -> None:
        self.events.close()


class NoEvents:
    """The event log of a machine's ranks but its first: DDP keeps the ranks in step, and
    one rank a machine speaks."""

    def emit(self, event_type: str, **payload: Any) -> dict[str, Any]:
        return {"type": event_type, **payload}

    def heartbeat(self, interval: float | None = None) -> None:
        pass

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def torchrun_command(spec: RunSpec, engine_args: list[str]) -> list[str]:
    """torchrun with one process per rank of this machine, each running `engine_args`: on
    its own (`--standalone`), or meeting the run's other machines at its rendezvous."""
    if spec.nodes > 1:
        where = ["--nnodes", str(spec.nodes), "--rdzv-backend", "c10d"]
        where += ["--rdzv-endpoint", str(spec.rdzv_endpoint), "--rdzv-id", RENDEZVOUS_ID]
    else:
        where = ["--standalone"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *where,
        "--nproc-per-node",
        str(spec.processes),
        "--max-restarts",
        "0",
        "-m",
        "engine",
        *engine_args,
    ]


def _die_with_parent() -> None:
    """In the child before it runs torchrun: SIGTERM it when the rank launcher dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def launch_ranks(
    spec: RunSpec, engine_args: list[str], events_path: Path, run_dir: Path, stop: StopRequest
) -> int:
    """Start the ranks through torchrun, pass a stop on to them, and see that the event log
    ends with the run's end: the first rank's `finished`, else the earliest rank's failure."""
    began = time.time()
    if stop.requested:
        _report(events_path, ev.FINISHED, status="stopped", seconds=0.0)
        return 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // spec.processes)
    process = subprocess.Popen(
        torchrun_command(spec, engine_args),
        env={**os.environ, "OMP_NUM_THREADS": str(threads), RANK_LAUNCHER_PID: str(os.getpid())},
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )
    forwarded = False
    while process.poll() is None:
        if stop.requested and not forwarded:
            process.send_signal(signal.SIGTERM)  # torchrun passes it to every rank
            forwarded = True
        time.sleep(0.1)
    return conclude(spec, events_path, run_dir, began, process.returncode)


def conclude(spec: RunSpec, events_path: Path, run_dir: Path, began: float, exit_code: int) -> int:
    """The rank launcher's exit code, writing the run's error if no rank wrote its end."""
    since = [e for e in read_events(events_path).events if e.t >= began - 1]
    for event in reversed(since):
        if isinstance(event, ev.Finished):
            return 0 if event.status == "completed" else 3
        if isinstance(event, ev.Error):
            return 1
    failures = []
    for path in sorted((run_dir / "ranks").glob("rank-*-error.json")):
        try:
            failure = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if failure.get("t", 0) >= began:
            rank = path.name.split("-")[1]
            failures.append((failure["t"], rank, failure))
    if failures:
        _, rank, first = min(failures, key=lambda item: item[0])
        message = first["message"] if len(failures) == 1 else f"rank {rank}: {first['message']}"
        _report(events_path, ev.ERROR, kind=first["kind"], message=message, hint=first["hint"])
    elif spec.nodes > 1 and not any(isinstance(event, ev.Started) for event in since):
        _report(
            events_path,
            ev.ERROR,
            kind="bad_input",
            message=f"the {spec.nodes} machines did not all meet at {spec.rdzv_endpoint}",
            hint=f"start the same command on each of the {spec.nodes} machines within ten "
            "minutes, with an endpoint every one of them can reach (see engine.log)",
        )
    else:
        _report(
            events_path,
            ev.ERROR,
            kind="internal",
            message=f"the training processes ended without a word (torchrun exit code {exit_code})",
            hint="see engine.log in the run folder",
        )
    return 1


def _report(events_path: Path, event_type: str, **payload: Any) -> None:
    writer = EventWriter(events_path)
    try:
        writer.emit(event_type, **payload)
    finally:
        writer.close()
