"""Reading run options from a TOML or JSON file (`resnet-tui run --config FILE`)."""

import json
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the problem."""


def read_options(path: Path) -> dict[str, Any]:
    """The options in `path`: a TOML or JSON table of option names (as flags, without --).

    A TOML file may keep them at the top level or under a `[run]` table.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"{path} is not valid JSON: {error.msg} at line {error.lineno}"
            ) from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table of option names and values")
    if isinstance(data.get("run"), dict):
        data = data["run"]
    return data
