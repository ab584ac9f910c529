"""A search's space: the run options given as ranges (`--lr log:1e-4..1e-1`, `--epochs 2..8`)
or choices (`--arch resnet20,resnet32`), read and checked one line a mistake, and written
back as the user writes them (the store keeps a search's space as that text)."""

import math
from dataclasses import dataclass
from typing import Any

from engine.contract.options import declared_checks, read_options
from engine.contract.spec import RunSpec, SpecError, spec_fields
from resnet_tui.runs.sweeps import listed_values

LOG, UNIFORM, CHOICE = "log", "uniform", "choice"
# The options that are one for the whole search, never searched: where and as what a
# trial runs, and the pruning that judges its trials against each other.
ONE_FOR_THE_SEARCH = (
    *("device", "devices", "nproc", "nnodes", "rdzv_endpoint", "folds"),
    *("prune", "prune_after", "prune_factor"),
)
# Text taken as it is, commas and dots and all.
TAKEN_WHOLE = ("name", "data_root")


@dataclass(frozen=True)
class Dimension:
    """One searched option: a log-uniform or uniform range (whole numbers where the option
    takes them), or choices."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    whole: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def text(self) -> str:
        """The dimension as the user writes it: `log:0.0001..0.1`, `2..8`, `resnet20,resnet32`."""
        if self.kind == CHOICE:
            return ",".join(str(choice) for choice in self.choices)
        ends = f"{number_text(self.low)}..{number_text(self.high)}"
        return f"log:{ends}" if self.kind == LOG else ends

    @property
    def words(self) -> str:
        """The dimension for a person: `lr log 0.0001..0.1`, `arch resnet20 or resnet32`."""
        name = self.name.replace("_", "-")
        if self.kind == CHOICE:
            return f"{name} {' or '.join(str(choice) for choice in self.choices)}"
        prefix = "log " if self.kind == LOG else ""
        return f"{name} {prefix}{number_text(self.low)}..{number_text(self.high)}"

    def distribution(self) -> Any:
        """The dimension as Optuna's distribution (Optuna loaded here, when first asked)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == CHOICE:
            return CategoricalDistribution(self.choices)
        if self.whole:
            return IntDistribution(int(self.low), int(self.high), log=self.kind == LOG)
        return FloatDistribution(self.low, self.high, log=self.kind == LOG)


def number_text(value: float) -> str:
    """A bound as it reads back exactly: `8`, `0.0001`, `1e-05`."""
    return str(int(value)) if isinstance(value, int) else repr(float(value))


def read_space(options: dict[str, Any]) -> tuple[dict[str, Any], list[Dimension]]:
    """The run options split into those fixed for every trial and the searched dimensions,
    in the order given. Raises SpecError, one line, for the first mistake; a space of no
    dimension is one."""
    fields = {field.name: field for field in spec_fields()}
    fixed: dict[str, Any] = {}
    space: list[Dimension] = []
    for name, value in options.items():
        field = fields.get(name)
        dimension = None
        if field is not None and isinstance(value, str) and field.kind in (int, float, str):
            dimension = read_dimension(name, value)
        if dimension is None:
            fixed[name] = value
        else:
            space.append(dimension)
    if not space:
        raise SpecError(
            "nothing to search: give options as ranges or choices, e.g. --lr log:1e-4..1e-1 "
            "--momentum 0.8..0.99 --arch resnet20,resnet32"
        )
    return fixed, space


def read_dimension(name: str, value: str) -> Dimension | None:
    """The dimension `value` makes of option `name`, or None for a value fixed for every
    trial; raises SpecError saying what is wrong with it."""
    field = next(field for field in spec_fields() if field.name == name)
    if name in TAKEN_WHOLE:
        return None
    flag, shown = field.flag, value if value.isprintable() else repr(value)
    ranged = value.startswith("log:") or (field.kind is not str and ".." in value)
    if field.kind is str and _looks_ranged(value):
        ranged = True
    if name in ONE_FOR_THE_SEARCH:
        if ranged or "," in value:
            raise SpecError(f"{flag} is one for the whole search; give one value, not {shown}")
        return None
    if ranged and field.kind is str:
        raise SpecError(
            f"{flag} {shown}: {flag} takes text, so it has no range; list choices with commas, "
            "e.g. --arch resnet20,resnet32"
        )
    if ranged:
        return _range(name, flag, shown, value, whole=field.kind is int)
    if "," in value:
        return _choices(name, flag, value)
    return None


def _looks_ranged(text: str) -> bool:
    """Text written as a range, `resnet20..resnet56`, not a path (`imagefolder:../x`)."""
    low, dots, high = text.partition("..")
    return bool(dots and low and high) and "/" not in text


def _range(name: str, flag: str, shown: str, value: str, whole: bool) -> Dimension:
    kind = LOG if value.startswith("log:") else UNIFORM
    low_text, dots, high_text = value.removeprefix("log:").partition("..")
    example = "log:1e-4..1e-1" if kind == LOG else ("2..8" if whole else "0.8..0.99")
    if not dots:
        raise SpecError(f"{flag} {shown}: write a range as LOW..HIGH, e.g. {flag} {example}")
    try:
        ends = [_bound(text, whole) for text in (low_text, high_text)]
    except ValueError:
        what = "whole numbers" if whole else "finite numbers"
        raise SpecError(
            f"{flag} {shown}: a range's ends must be {what}, e.g. {flag} {example}"
        ) from None
    low, high = ends
    if kind == LOG and low <= 0:
        raise SpecError(f"{flag} {shown}: a log range needs positive bounds, e.g. {flag} {example}")
    if low >= high:
        raise SpecError(f"{flag} {shown}: its low end must be below its high end, e.g. {example}")
    check = declared_checks(RunSpec).get(name)
    for end in (low, high):
        try:
            if check is not None:
                check.check(flag, end)
        except ValueError as error:
            raise SpecError(f"{flag} {shown}: {error}") from None
    return Dimension(name, kind, low, high, whole=whole)


def _bound(text: str, whole: bool) -> float:
    """One end of a range: a whole number for an option of whole numbers."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    if whole:
        if not number.is_integer():
            raise ValueError(text)
        return int(number)
    return number


def _choices(name: str, flag: str, value: str) -> Dimension:
    """Each choice read and checked as the option's own value, and written as the option
    keeps it (`ResNet20` is `resnet20`), so no two choices are one."""
    check = declared_checks(RunSpec).get(name)
    choices: list[Any] = []
    for text in listed_values(name, value):
        try:
            choice = read_options(RunSpec, {name: text})[name]
            if isinstance(choice, float) and not math.isfinite(choice):
                raise ValueError(f"{flag} must be a finite number, not {text}")
            choice = check.check(flag, choice) if check is not None else choice
        except ValueError as error:
            raise SpecError(str(error)) from None
        if choice in choices:
            raise SpecError(f"{flag} lists {choice} twice: {value}")
        choices.append(choice)
    return Dimension(name, CHOICE, choices=tuple(choices))


def space_text(space: list[Dimension]) -> dict[str, str]:
    """A space as the store keeps it: each option's dimension as the user writes it."""
    return {dimension.name: dimension.text for dimension in space}


def space_from_text(texts: dict[str, str]) -> list[Dimension]:
    """A space kept by `space_text`, read back; SpecError where the text is no space."""
    space = []
    for name, text in texts.items():
        if not isinstance(text, str) or name not in {f.name for f in spec_fields()}:
            raise SpecError(f"the search's space names an unknown option {name!r}")
        dimension = read_dimension(name, text)
        if dimension is None:
            raise SpecError(f"the search's space keeps {name} as {text!r}, which is no range")
        space.append(dimension)
    return space


def shown_value(value: Any) -> str:
    """A sampled value for a line of progress: `0.0123`, `4`, `resnet20`."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)
