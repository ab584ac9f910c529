"""Command line of the engine: `python -m engine run --spec SPEC.json --events EVENTS.jsonl`.

Argument parsing only; `engine.train.run.run` does the work, and `engine.fusion.run.run_fusion`
for `python -m engine fuse --fusion FUSION.json --events EVENTS.jsonl` (ensembles and soups).
`python -m engine devices` prints the devices torch can see, as JSON, for the user's side that
never imports torch.
"""

import argparse
import json
import sys
from pathlib import Path

from engine.contract.spec import FusionSpec, RunSpec, SpecError
from engine.contract.stopping import StopRequest


def _devices() -> list[dict[str, object]]:
    import torch

    found: list[dict[str, object]] = [
        {"name": "cpu", "description": "CPU", "threads": torch.get_num_threads()}
    ]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            found.append(
                {
                    "name": f"cuda:{index}",
                    "description": torch.cuda.get_device_name(index),
                    "free_mb": free // 2**20,
                    "total_mb": total // 2**20,
                }
            )
    if torch.backends.mps.is_available():
        found.append({"name": "mps", "description": "Apple GPU (Metal)"})
    return found


def _refuse_spec(path: Path, events: Path, error: Exception) -> int:
    """End a run whose spec cannot be read: one line on stderr, and an `error` event, so
    that the run is recorded as failed with the reason rather than as crashed."""
    reason = " ".join(str(error).split()) or type(error).__name__
    message = f"the run's spec {path} is damaged or unreadable ({reason})"
    hint = "start a new run instead (--init run:ID starts it from a run's weights)"
    print(f"error: {message}; {hint}", file=sys.stderr)
    from engine.contract import events as ev

    try:
        writer = ev.EventWriter(events)
        writer.emit(ev.ERROR, kind="bad_input", message=message, hint=hint)
        writer.close()
    except OSError:
        pass  # no events file to write to: the line on stderr is all there is
    return 2


def main(argv: list[str] | None = None) -> int:
    stop = StopRequest().install()
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train one run from a spec file")
    run.add_argument("--spec", required=True, type=Path, help="the run's spec.json")
    run.add_argument("--events", required=True, type=Path, help="events.jsonl to append to")
    run.add_argument("--run-dir", type=Path, help="folder for checkpoints (default: beside events)")
    run.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last checkpoint"
    )
    fuse = commands.add_parser("fuse", help="make an ensemble, soup or WiSE-FT of runs")
    fuse.add_argument("--fusion", required=True, type=Path, help="the run's fusion.json")
    fuse.add_argument("--events", required=True, type=Path, help="events.jsonl to append to")
    fuse.add_argument(
        "--run-dir", type=Path, help="folder for checkpoints (default: beside events)"
    )
    commands.add_parser("devices", help="list the devices torch can see, as JSON")
    args = parser.parse_args(argv)

    if args.command == "devices":
        print(json.dumps(_devices()))
        return 0
    run_dir = args.run_dir or args.events.parent
    if args.command == "fuse":
        try:
            fusion = FusionSpec.from_json(args.fusion.read_text(encoding="utf-8"))
        except (OSError, ValueError, SpecError) as error:  # ValueError: not UTF-8
            print(f"error: {error}", file=sys.stderr)
            return 2
        from engine.fusion.run import run_fusion

        return run_fusion(fusion, args.events, run_dir, stop)
    try:
        spec = RunSpec.from_json(args.spec.read_text(encoding="utf-8"))
    except (OSError, ValueError, SpecError) as error:  # ValueError: not UTF-8
        return _refuse_spec(args.spec, args.events, error)
    from engine.distributed import Ranks, launch_ranks

    if spec.world > 1 and Ranks.from_environment() is None:
        rank_args = ["run", "--spec", str(args.spec), "--events", str(args.events)]
        rank_args += ["--run-dir", str(run_dir)] + (["--resume"] if args.resume else [])
        return launch_ranks(spec, rank_args, args.events, run_dir, stop)
    from engine.train.run import run as train

    return train(spec, args.events, run_dir, stop, args.resume)


if __name__ == "__main__":
    sys.exit(main())
