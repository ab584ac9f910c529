"""The options of `run` and `sweep`, one per RunSpec field, built when the CLI loads.

Typer reads a command's options from its function's signature, so these commands get a
signature made here from `engine.contract.spec.spec_fields()`, which also says each option's
kind and the heading of `--help` it shows under.
"""

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from engine.contract.run_options import PANELS
from engine.contract.spec import spec_fields


def spec_parameters(listed: bool = False) -> list[inspect.Parameter]:
    """One Typer option per RunSpec field, each defaulting to None (not given), grouped by
    panel in the spec's panel order, a number's help saying its range; with `listed`,
    numbers are read as text too, for a sweep's lists (`--lr 0.1,0.01`)."""
    parameters = []
    for field in sorted(spec_fields(), key=lambda field: PANELS.index(field.panel)):
        if field.kind is bool:
            annotation: Any = Optional[bool]
            declaration = f"{field.flag}/--no-{field.flag[2:]}"
        elif field.kind is list or listed:
            annotation, declaration = Optional[str], field.flag
        else:
            annotation, declaration = Optional[field.kind], field.flag
        name, default, help_text = field.name, field.default, field.help
        value = str(default).lower() if isinstance(default, bool) else default
        shown = "" if default is None else f" \\[default: {value}]"
        shown += f" \\[range: {field.range}]" if field.range else ""
        option = typer.Option(
            None,
            declaration,
            help=help_text + shown,
            show_default=False,
            rich_help_panel=field.panel,
        )
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
            )
        )
    return parameters


def run_option(name: str, annotation: Any, option: Any) -> inspect.Parameter:
    """An option of the command's own (not a spec field): `option` is a typer.Option."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
    )


def json_and_db_parameters(json_help: str) -> list[inspect.Parameter]:
    """`--json` (saying what it prints) and `--db`, for the commands built from the spec."""
    return [
        run_option(
            "as_json", bool, typer.Option(False, "--json", help=json_help, rich_help_panel="Run")
        ),
        run_option(
            "db",
            Optional[Path],
            typer.Option(
                None,
                "--db",
                envvar="RESNET_TUI_DB",
                help="Run store (default ./runs.db).",
                rich_help_panel="Run",
            ),
        ),
    ]


def config_option() -> inspect.Parameter:
    """`--config FILE`: a TOML or JSON file of the spec's options, under the flags given."""
    return run_option(
        "config_file",
        Optional[Path],
        typer.Option(
            None,
            "--config",
            help="TOML or JSON file of options; flags override it.",
            rich_help_panel="Run",
        ),
    )


def command_from_parameters(
    work: Callable[..., None], parameters: list[inspect.Parameter], doc: str
) -> Callable[..., None]:
    """A command whose options are `parameters` (made at run time, one per spec field), for
    `app.command(NAME)`: Typer reads them from the function's signature."""

    def command(**kwargs: Any) -> None:
        work(**kwargs)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = doc
    return command
