"""What can be chosen: `archs`, `datasets` and `devices`."""

import json

import typer
from rich.table import Table

from engine.contract import catalog, locate
from engine.contract.spec import RunSpec, SpecError
from resnet_tui.cli.common import JsonOption, console, say_error
from resnet_tui.runs import launcher


def list_architectures(as_json: JsonOption = False) -> None:
    """List the architectures, with parameter counts for 10 classes."""
    if as_json:
        print(json.dumps([vars(arch) for arch in catalog.ARCHITECTURES.values()], indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "parameters", "description"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for arch in catalog.ARCHITECTURES.values():
        table.add_row(arch.name, f"{arch.parameters / 1e6:.2f} M", arch.description)
    console.print(table)


def _dataset_status(name: str) -> str:
    info = catalog.DATASETS[name]
    if info.source == "builtin":
        return "built in"
    if info.source == "folder":
        return "your folder"
    try:
        locate.check_dataset(RunSpec(dataset=name))
    except SpecError:
        return "not downloaded"
    return "on disk"


def list_datasets(as_json: JsonOption = False) -> None:
    """List the datasets, and whether each is on disk (under $RESNET_TUI_DATA)."""
    rows = [
        {
            "name": info.name,
            "classes": len(info.classes) or None,
            "image_size": info.image_size,
            "train_size": info.train_size or None,
            "test_size": info.test_size or None,
            "status": _dataset_status(name),
            "description": info.description,
        }
        for name, info in catalog.DATASETS.items()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "classes", "size", "train", "test", "status", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            str(row["classes"] or "-"),
            f"{row['image_size']} px",
            f"{row['train_size']:,}" if row["train_size"] else "-",
            f"{row['test_size']:,}" if row["test_size"] else "-",
            row["status"],
            row["description"],
        )
    console.print(table)
    console.print(f"[dim]data root: {locate.default_data_root()}[/]")


def list_devices(as_json: JsonOption = False) -> None:
    """List the devices the engine can train on (asks torch in a subprocess)."""
    try:
        devices = launcher.list_devices()
    except launcher.DevicesUnavailable as error:
        say_error(f"the engine could not list devices: {error}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(devices, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("device", "description", "memory"):
        table.add_column(column)
    for device in devices:
        memory = (
            f"{device['free_mb']:,} MB free of {device['total_mb']:,} MB"
            if "total_mb" in device
            else (f"{device['threads']} threads" if "threads" in device else "-")
        )
        table.add_row(device["name"], device["description"], memory)
    console.print(table)
