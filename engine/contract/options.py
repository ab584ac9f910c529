"""How a spec's fields are declared, each with its kind, help, panel and check, and checked.

A check raises ValueError with the one line the user sees, as catalog.resolve_name does; the
spec the field belongs to raises that line as its SpecError. Torch-free, like the specs.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Union

from engine.contract import catalog

# What a field holds; `list` is a list of text (`--classes 0,1`).
KINDS = (bool, int, float, str, list)
_KIND_WORDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "text",
    list: "a comma-separated list",
}


@dataclass(frozen=True)
class SpecField:
    """One option users set: its name, kind (bool, int, float, str or list, a list of text),
    default (None: chosen by the run), help text, its panel of `resnet-tui run --help`, and
    the range a number must lie in, in words ("1 to 100000"; empty for other kinds)."""

    name: str
    kind: type
    default: Any
    help: str
    panel: str
    range: str = ""

    @property
    def flag(self) -> str:
        """The option on the command line: `--batch-size`."""
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Bounds:
    """The range a number lies in; any bound may be left out. `message` is the refusal, with
    `{flag}` and `{value}` filled in: "{flag} must be a positive number up to 100000, not
    {value}". NaN lies in no range."""

    message: str
    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None

    def check(self, flag: str, value: Any) -> Any:
        inside = (
            (self.above is None or value > self.above)
            and (self.at_least is None or value >= self.at_least)
            and (self.below is None or value < self.below)
            and (self.at_most is None or value <= self.at_most)
        )
        if not inside:
            raise ValueError(self.message.format(flag=flag, value=_shown(value)))
        return value

    @property
    def range(self) -> str:
        """The range in words, for --help: "1 to 100000", "above 0, at most 100"."""
        if self.at_least is not None and self.at_most is not None:
            return f"{_number(self.at_least)} to {_number(self.at_most)}"
        said = [
            f"{word} {_number(bound)}"
            for word, bound in (
                ("above", self.above),
                ("at least", self.at_least),
                ("below", self.below),
                ("at most", self.at_most),
            )
            if bound is not None
        ]
        return ", ".join(said)


def whole_numbers(low: int, high: int) -> Bounds:
    """Whole numbers from `low` (0 or 1) to `high`: "--epochs must be a positive number up
    to 100000, not 0"."""
    said = "a positive number" if low == 1 else f"{low} or more,"
    return Bounds(
        f"{{flag}} must be {said} up to {high}, not {{value}}", at_least=low, at_most=high
    )


def positive_up_to(high: float) -> Bounds:
    """Numbers above 0 and at most `high`: "--lr must be a positive number up to 100"."""
    return Bounds(
        f"{{flag}} must be a positive number up to {_number(high)}, not {{value}}",
        above=0,
        at_most=high,
    )


def _number(bound: float) -> str:
    """A bound as a user types it: 100000, 0.5."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _shown(value: Any) -> Any:
    """`value` for a message: a whole number too long for Python to print is said so."""
    try:
        str(value)
    except ValueError:
        return "a number of more digits than Python prints"
    return value


@dataclass(frozen=True)
class Choice:
    """One of a catalog's names, in any case and with - or _, written as the catalog does;
    a refusal names the nearest: "unknown architecture 'resnet21'; did you mean resnet20?"."""

    names: tuple[str, ...]
    what: str

    def check(self, flag: str, value: Any) -> Any:
        return catalog.resolve_name(value, self.names, self.what)


@dataclass(frozen=True)
class Normalised:
    """A value written one way by `function`, which raises ValueError (a SpecError is one)
    with the line to show for a value it cannot read."""

    function: Callable[[Any], Any]

    def check(self, flag: str, value: Any) -> Any:
        return self.function(value)


Check = Union[Bounds, Choice, Normalised]


def option(panel: str, kind: type, default: Any, help: str, check: Check | None = None) -> Any:
    """A field users set, shown under `panel` in the help; `check` is its own rule, if any."""
    return _declared(kind, default, help, check, panel)


def internal(
    kind: type, default: Any, help: str, check: Check | None = None, flag: str | None = None
) -> Any:
    """A field resnet-tui sets, not a user (the checkpoint that run:ID stands for, ...);
    `default` MISSING makes it required; `flag` is the option it comes from, where its name
    is another (a fusion's alpha is `--with-init`)."""
    return _declared(kind, default, help, check, None, flag)


def _declared(
    kind: type,
    default: Any,
    help: str,
    check: Check | None,
    panel: str | None,
    flag: str | None = None,
) -> Any:
    if kind not in KINDS:
        raise TypeError(f"a spec field's kind is one of {KINDS}, not {kind!r}")
    metadata = {"kind": kind, "help": help, "check": check, "panel": panel, "flag": flag}
    return field(default=default, metadata=metadata | {"internal": panel is None})


def user_fields(spec_class: type) -> list[SpecField]:
    """The fields of `spec_class` that users set, in the order they are declared."""
    return [
        SpecField(
            item.name,
            item.metadata["kind"],
            item.default,
            item.metadata["help"],
            panel,
            check.range if isinstance(check := item.metadata["check"], Bounds) else "",
        )
        for item in fields(spec_class)
        if (panel := item.metadata["panel"]) is not None
    ]


def declared_checks(spec_class: type) -> dict[str, Check]:
    """The fields of `spec_class` that have a check, and their checks."""
    return {
        item.name: item.metadata["check"]
        for item in fields(spec_class)
        if item.metadata["check"] is not None
    }


def check_fields(spec: Any) -> None:
    """Check each field of `spec` that is set, in the order they are declared, and write it
    the one way its check does: a number must be finite, then meet its field's check."""
    for item in fields(spec):
        value = getattr(spec, item.name)
        if value is None:
            continue
        flag = item.metadata["flag"] or "--" + item.name.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{flag} must be a finite number, not {value}")
        if item.metadata["check"] is not None:
            setattr(spec, item.name, item.metadata["check"].check(flag, value))


def read_options(spec_class: type, data: dict[str, Any]) -> dict[str, Any]:
    """The values of `data` by field, its keys option names (`batch_size` or `batch-size`;
    for an unknown one the nearest is suggested), each read as its field's kind; a None is
    left out, for the default."""
    known = {item.name: item for item in fields(spec_class)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            flags = [option.replace("_", "-") for option in known]
            name = catalog.resolve_name(str(key), flags, "option").replace("-", "_")
        if value is not None:
            values[name] = _read_value(name, value, known[name].metadata["kind"])
    return values


def _read_value(name: str, value: Any, kind: type) -> Any:
    """A value from JSON, TOML or the command line as `kind`: "yes" is True, "3" is 3,
    "0,1" is ["0", "1"]; raises ValueError saying what the option takes."""
    try:
        if kind is list:
            return value.split(",") if isinstance(value, str) else [str(part) for part in value]
        if kind is bool:
            return _read_bool(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"{flag} must be {_KIND_WORDS[kind]}, not {value!r}") from None


def _read_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "on", "1"):
        return True
    if str(value).lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError
