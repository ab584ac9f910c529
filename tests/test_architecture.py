"""The house rules of the two packages: the UI never loads torch, the engine never loads the UI,
and the import contracts in pyproject.toml hold (import-linter)."""

import ast
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


def test_the_import_contracts_hold():
    """`lint-imports` checks every import, those inside functions too, against the
    contracts in pyproject.toml."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_cli_imports_the_app_only_inside_its_app_command():
    """The one import of the app that the contracts allow the CLI is inside `open_app`."""
    tree = ast.parse((ROOT / "resnet_tui" / "cli" / "runs.py").read_text(encoding="utf-8"))
    importers = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resnet_tui.app")
    ]
    top_level = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resnet_tui.app")
    ]
    assert importers == ["open_app"] and top_level == []
