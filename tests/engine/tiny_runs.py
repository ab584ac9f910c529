"""Tiny finished runs for the tests of what is made from runs (distillation, fusion)."""

from pathlib import Path

from engine.contract.spec import RunSpec
from engine.train.run import run

TINY = {"arch": "resnet8", "width": 4, "limit": 128, "image_size": 16, "device": "cpu"}


def trained_run(folder: Path, **options) -> RunSpec:
    """Train a tiny run in `folder`; its best checkpoint is folder/checkpoints/best.pt."""
    folder.mkdir()
    spec = RunSpec.from_dict({**TINY, "epochs": 1, **options})
    assert run(spec, folder / "events.jsonl", folder) == 0
    return spec
