"""The options of `run` and `sweep` are the spec's fields: same flags, kinds, panels and help."""

from typing import Optional

import click
import pytest
import typer.main

from engine.contract.spec import spec_fields
from resnet_tui.cli import app
from resnet_tui.cli.spec_options import spec_parameters

COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]
RUN_OWN = {"as_json", "db", "detach", "config_file"}


def options_of(command: str) -> dict[str, click.Parameter]:
    return {
        param.name: param
        for param in COMMANDS[command].params
        if param.param_type_name == "option" and param.name not in RUN_OWN
    }


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_every_field_users_set_is_an_option_with_its_flag_panel_and_help(command: str) -> None:
    options = options_of(command)
    fields = spec_fields()
    assert set(options) >= {field.name for field in fields}
    for field in fields:
        option = options[field.name]
        assert option.opts[0] == field.flag, field.name
        assert option.rich_help_panel == field.panel, field.name  # type: ignore[attr-defined]
        assert option.help is not None and option.help.startswith(field.help), field.name
        if field.kind is bool:
            assert option.secondary_opts == ["--no-" + field.flag[2:]], field.name


def test_run_reads_each_option_as_its_declared_kind_and_sweep_reads_lists_as_text() -> None:
    run = {parameter.name: parameter.annotation for parameter in spec_parameters()}
    sweep = {parameter.name: parameter.annotation for parameter in spec_parameters(listed=True)}
    for field in spec_fields():
        written = {list: str}.get(field.kind, field.kind)
        assert run[field.name] == Optional[written], field.name
        # a sweep reads "0.1,0.01" for a number; a switch stays a switch
        assert sweep[field.name] == Optional[bool if field.kind is bool else str], field.name


def test_options_that_are_no_field_are_the_commands_own() -> None:
    fields = {field.name for field in spec_fields()}
    extra = {name for name in options_of("run") if name not in fields}
    assert extra == set(), f"run has options no spec field declares: {sorted(extra)}"
