"""Every `torch.…` name the engine uses exists, CUDA-only paths included, which CI cannot run."""

import ast
import importlib
from pathlib import Path

import pytest
import torch

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def dotted(node: ast.Attribute) -> str | None:
    """`torch.cuda.get_device_name` for that attribute chain; None if it is not rooted in a
    plain name."""
    parts = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    if not isinstance(value, ast.Name):
        return None
    return ".".join([value.id, *reversed(parts)])


def torch_names(path: Path) -> set[tuple[str, int]]:
    """The longest `torch.…` attribute chains in a module, with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)
    }  # chains inside a longer chain are checked as part of it
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            name = dotted(node)
            if name and name.startswith("torch."):
                found.add((name, node.lineno))
    return found


def resolves(name: str) -> bool:
    """Whether `torch.a.b` exists, importing submodules the way attribute access would not."""
    target: object = torch
    parts = name.split(".")[1:]
    for index, part in enumerate(parts):
        if not hasattr(target, part):
            try:
                target = importlib.import_module(".".join(["torch", *parts[: index + 1]]))
                continue
            except ImportError:
                return False
        target = getattr(target, part)
    return True


@pytest.mark.parametrize(
    "module", sorted(ENGINE.rglob("*.py")), ids=lambda path: str(path.relative_to(ENGINE))
)
def test_every_torch_name_in_the_engine_exists(module: Path) -> None:
    names = torch_names(module)
    missing = sorted(f"{name} (line {line})" for name, line in names if not resolves(name))
    assert not missing, f"{module.name} names what torch does not have: {', '.join(missing)}"


def test_the_check_finds_a_misspelt_cuda_call(tmp_path: Path) -> None:
    module = tmp_path / "misspelt.py"
    module.write_text("import torch\nname = torch.cuda.getdevice_name(0)\n")
    names = torch_names(module)
    assert names == {("torch.cuda.getdevice_name", 2)}
    assert not resolves("torch.cuda.getdevice_name")
    assert resolves("torch.cuda.get_device_name")
