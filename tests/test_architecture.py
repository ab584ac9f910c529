"""The house rule of the two packages: the UI never loads torch, the engine never loads the UI."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import engine
import resnet_tui

ROOT = Path(__file__).resolve().parents[1]


def _modules(package) -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        if not info.name.endswith("__main__")
    ]


def _loaded_after_import(modules: list[str], watched: list[str]) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(','.join(m for m in {watched!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return [name for name in result.stdout.strip().split(",") if name]


def test_no_resnet_tui_module_imports_torch():
    modules = _modules(resnet_tui)
    assert {"resnet_tui.cli", "resnet_tui.runs.store", "resnet_tui.runs.supervisor"} <= set(modules)
    assert _loaded_after_import(modules, ["torch", "torchvision"]) == []


def test_engine_never_imports_the_ui_libraries():
    modules = _modules(engine)
    assert "engine.train" in modules
    assert _loaded_after_import(modules, ["textual", "rich", "sqlite_utils", "resnet_tui"]) == []


def test_the_contract_modules_are_torch_free():
    contract = [
        "engine.contract.spec",
        "engine.contract.catalog",
        "engine.contract.events",
        "engine.contract.locate",
    ]
    assert _loaded_after_import(contract, ["torch"]) == []
