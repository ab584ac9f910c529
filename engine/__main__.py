"""Command line of the engine: `python -m engine run --spec SPEC.json --events EVENTS.jsonl`.

Argument parsing only; `engine.train.run.run` does the work, and `engine.fusion.run.run_fusion`
for `python -m engine fuse --fusion FUSION.json --events EVENTS.jsonl` (ensembles and soups).
`python -m engine devices` prints the devices torch can see, as JSON, for the user's side that
never imports torch; `predict` and `export` use a trained run (engine/use/).
"""

import argparse
import json
import sys
from pathlib import Path

from engine.contract.lr_range import DEFAULT_END_LR, DEFAULT_START_LR, DEFAULT_STEPS
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


def _add_use_commands(commands: argparse._SubParsersAction) -> None:
    """`predict` and `export`: what a trained run is used for. Both write JSON lines on
    stdout (engine/use/predict.py and export.py say which) and a bad input is one line on
    stderr and exit code 2."""
    predict = commands.add_parser("predict", help="classify image files with a trained model")
    model = predict.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="a run's checkpoint (best.pt, last.pt)")
    model.add_argument("--model", type=Path, help="an exported .onnx model, its sidecar beside")
    predict.add_argument("--run", type=int, help="the run's id, to name it in messages")
    predict.add_argument("--top-k", type=int, default=3, help="classes to give per image")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda:N or mps")
    predict.add_argument("--batch-size", type=int, default=64, help="images per batch")
    predict.add_argument("--workers", type=int, help="processes decoding images")
    predict.add_argument("paths", nargs="+", type=Path, help="image files and folders")
    export = commands.add_parser("export", help="write a run's model for use elsewhere")
    export.add_argument("--checkpoint", required=True, type=Path, help="the run's checkpoint")
    export.add_argument("--run", type=int, help="the run's id, kept in the sidecar")
    export.add_argument(
        "--format", required=True, choices=("onnx", "torchscript", "safetensors"), help="file kind"
    )
    export.add_argument("--out", required=True, type=Path, help="the model file to write")
    export.add_argument("--data-root", help="where the run's dataset lies, for the check")
    export.add_argument("--force", action="store_true", help="replace a file or sidecar there")
    gradcam = commands.add_parser("gradcam", help="where a run's network looked, over an image")
    gradcam.add_argument("--checkpoint", required=True, type=Path, help="the run's checkpoint")
    gradcam.add_argument("--run", type=int, help="the run's id, to name it in messages")
    gradcam.add_argument("--image", required=True, type=Path, help="the image file")
    gradcam.add_argument("--target", help="the class to explain (default: the predicted one)")
    gradcam.add_argument("--out", required=True, type=Path, help="the PNG file to write")
    board = commands.add_parser("tensorboard", help="write runs' metrics as TensorBoard logs")
    board.add_argument("--input", required=True, type=Path, help="the runs, as JSON")
    board.add_argument("--out", required=True, type=Path, help="the folder to write into")
    board.add_argument("--force", action="store_true", help="replace runs' folders there")


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
    lr_find = commands.add_parser("lr-find", help="the learning-rate range test of a run's spec")
    lr_find.add_argument("--spec", required=True, type=Path, help="the run's spec.json")
    lr_find.add_argument("--start-lr", type=float, default=DEFAULT_START_LR, help="first rate")
    lr_find.add_argument("--end-lr", type=float, default=DEFAULT_END_LR, help="last rate")
    lr_find.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimiser steps")
    _add_use_commands(commands)
    args = parser.parse_args(argv)

    if args.command == "devices":
        print(json.dumps(_devices()))
        return 0
    if args.command == "predict":
        from engine.use.predict import run_predict

        return run_predict(args, stop)
    if args.command == "export":
        from engine.use.export import run_export

        return run_export(args, stop)
    if args.command == "gradcam":
        from engine.use.gradcam import run_gradcam

        return run_gradcam(args, stop)
    if args.command == "lr-find":
        from engine.train.lr_finder import run_lr_find

        return run_lr_find(args, stop)
    if args.command == "tensorboard":
        from engine.use.tensorboard import run_tensorboard

        return run_tensorboard(args, stop)
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
