"""Reading run options from a TOML or JSON file (`resnet-tui run --config FILE`)."""

import json
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


# A config file is a page of options: anything longer is not one (and `/dev/zero` never ends).
LARGEST_CONFIG_BYTES = 1 << 20


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the problem."""


def _read_small_file(path: Path) -> str:
    """The text of a regular file of at most LARGEST_CONFIG_BYTES; a FIFO or a device is
    never opened for reading (it could block, or never end)."""
    if path.exists() and not path.is_file():
        raise ConfigError(f"config file {path} is not a regular file; give a .toml or .json file")
    with open(path, "rb") as file:
        data = file.read(LARGEST_CONFIG_BYTES + 1)
    if len(data) > LARGEST_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is over 1 MiB; a config file holds run options")
    return data.decode("utf-8")


def read_options(path: Path) -> dict[str, Any]:
    """The options in `path`: a TOML or JSON table of option names (as flags, without --).

    A TOML file may keep them at the top level or under a `[run]` table.
    """
    try:
        text = _read_small_file(path)
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
        except (ValueError, RecursionError):
            raise ConfigError(f"{path} is not valid JSON: nested too deeply") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
        except RecursionError:
            raise ConfigError(f"{path} is not valid TOML: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table of option names and values")
    if isinstance(data.get("run"), dict):
        data = data["run"]
    return data
