"""Checking a JSON object read from a file against a dataclass's annotated fields.

What anything may have written is checked for the right JSON types (a bool is no number),
containers one level deep, integers that count (from 0, and fit in SQLite's 64 bits) and
numbers that are finite (JSON has no NaN or Infinity, though Python's reader takes them)."""

import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from functools import cache
from typing import Any, Union

# SQLite keeps integers in 64 bits; a larger one read from a file is damage, not a count.
LARGEST_INTEGER = 2**63 - 1

Check = Callable[[Any], bool]
NONE = type(None)
_ABSENT = object()


@cache
def _fields_of(kind: type) -> tuple[tuple[str, Any, Check, bool], ...]:
    """A dataclass's fields as (name, type, its check, required), made once a class."""
    hints = typing.get_type_hints(kind)
    return tuple(
        (item.name, hints[item.name], _check(hints[item.name]), item.default is MISSING)
        for item in fields(kind)
    )


def _check(hint: Any) -> Check:
    """A check that a value read from JSON is of the annotated type (containers one level
    deep); `type(v) is` keeps a bool from passing for a number."""
    if hint is Any:
        return lambda value: True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [_check(option) for option in typing.get_args(hint) if option is not NONE]
        nullable = NONE in typing.get_args(hint)
        return lambda value: (nullable and value is None) or any(c(value) for c in options)
    if hint is int:
        return lambda value: type(value) is int and 0 <= value <= LARGEST_INTEGER
    if hint is float:
        return lambda value: (
            (type(value) is float and math.isfinite(value))
            or (type(value) is int and abs(value) <= LARGEST_INTEGER)
        )
    if hint in (bool, str):
        return lambda value: type(value) is hint
    if origin is dict:
        item = _check(typing.get_args(hint)[1])
        return lambda value: (
            type(value) is dict
            and all(type(key) is str and item(entry) for key, entry in value.items())
        )
    if origin is list:
        item = _check(typing.get_args(hint)[0])
        return lambda value: type(value) is list and all(item(entry) for entry in value)
    raise TypeError(f"no check for {hint!r}")


def field_names(kind: type) -> set[str]:
    return {name for name, *_ in _fields_of(kind)}


def checked_fields(kind: type, values: dict[str, Any], what: str) -> dict[str, Any]:
    """The values of `kind`'s fields found in `values`, each checked against its annotation
    (fields `values` lacks are left to their defaults). Raises ValueError naming the field
    and `what` it belongs to (`an epoch_ended event`)."""
    given = {}
    for name, hint, conforms, required in _fields_of(kind):
        value = values.get(name, _ABSENT)
        if value is _ABSENT:
            if required:
                raise ValueError(f"{what} without {name!r}")
            continue
        if not conforms(value):
            raise ValueError(
                f"{name!r} of {what} should be {_hint_name(hint)}, not {_shown(value)}"
            )
        given[name] = value
    return given


def type_name(value: Any) -> str:
    """A JSON value's type, as a message names it."""
    return "null" if value is None else type(value).__name__


def _shown(value: Any) -> str:
    """A value that does not fit its field, as a message names it: a number by its value
    (shortened), anything else by its type."""
    return f"{value:.6g}" if type(value) in (int, float) else type_name(value)


def _hint_name(hint: Any) -> str:
    if hint is int:
        return f"int from 0 to {LARGEST_INTEGER}"
    if hint is float:
        return "a finite number"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "null")
