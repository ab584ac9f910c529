"""Every number of a spec has a range, declared beside its field and said in --help; a spec
that passes holds numbers the store (SQLite) and torch take, and nothing else is raised."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.contract import catalog
from engine.contract.freezing import stage_names
from engine.contract.options import Bounds
from engine.contract.spec import FusionSpec, RunSpec, SpecError, spec_fields

NUMBER_FIELDS = [
    item
    for spec_class in (RunSpec, FusionSpec)
    for item in dataclasses.fields(spec_class)
    if item.metadata["kind"] in (int, float)
]
RUN_NUMBERS = [item.name for item in NUMBER_FIELDS if item in dataclasses.fields(RunSpec)]
SQLITE_LARGEST = 2**63 - 1


@pytest.mark.parametrize("item", NUMBER_FIELDS, ids=[item.name for item in NUMBER_FIELDS])
def test_every_number_is_bounded_below_and_above(item):
    check = item.metadata["check"]
    assert isinstance(check, Bounds), item.name
    assert check.above is not None or check.at_least is not None, item.name
    assert check.below is not None or check.at_most is not None, item.name
    assert max(b for b in (check.below, check.at_most) if b is not None) <= SQLITE_LARGEST


def test_the_help_of_every_number_says_its_range():
    ranges = {field.name: field.range for field in spec_fields()}
    assert all(ranges[name] for name in RUN_NUMBERS if name in ranges)
    assert ranges["epochs"] == "1 to 100000"
    assert ranges["seed"] == "0 to 4294967295"
    assert ranges["lr"] == "above 0, at most 100"
    assert ranges["arch"] == "" and ranges["augment"] == ""


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"epochs": 2**63},
            "--epochs must be a positive number up to 100000, not 9223372036854775808",
        ),
        ({"epochs": 100_001}, "--epochs must be a positive number up to 100000, not 100001"),
        ({"seed": -1}, "--seed must be 0 or more, up to 4294967295, not -1"),
        ({"seed": 2**32}, "--seed must be 0 or more, up to 4294967295, not 4294967296"),
        ({"seed": 1e20}, "--seed must be 0 or more, up to 4294967295, not 100000000000000000000"),
        ({"limit": 2**31 + 1}, "--limit must be a positive number up to 2147483648"),
        ({"lr": 1e20}, "--lr must be a positive number up to 100, not 1e+20"),
        ({"lr": -math.inf}, "--lr must be a finite number, not -inf"),
        ({"workers": 10**6}, "--workers must be 0 or more, up to 256, not 1000000"),
        (
            {"epochs": 10**5000},
            "--epochs must be a positive number up to 100000, not a number of more digits",
        ),
        ({"fold": 2**63, "folds": 2}, "a run's fold must be one of its --folds (0 to K-1)"),
        ({"init": "run:" + "9" * 20}, "--init run:99999999999999999999: there is no run"),
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_range(values, message):
    with pytest.raises(SpecError) as caught:
        RunSpec.from_dict(values)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("arch", sorted(catalog.ARCHITECTURES))
def test_last_k_goes_up_to_the_parts_below_the_head_of_the_architecture(arch):
    below_head = len(stage_names(arch)) - 1
    assert RunSpec.from_dict({"arch": arch, "freeze": f"last-{below_head}"}).freeze
    for too_many in (below_head + 1, 999, 10**20):
        with pytest.raises(SpecError, match=f"write last-K with K from 1 to {below_head}$"):
            RunSpec.from_dict({"arch": arch, "freeze": f"last-{too_many}"})


HOSTILE_NUMBERS = (
    st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([0, -1, 2**31, 2**32, 2**63, 2**64, 10**20, 100_000, 100_001])
    | st.floats()
    | st.sampled_from([math.nan, math.inf, -math.inf, 1e20, 1e308, -0.0, 5e-324])
    | st.sampled_from(["", ",", "1,,2", "1e20", "nan", "inf", " 3 ", "0x10", "1_000", "٣"])
    | st.text(max_size=8)
    | st.booleans()
    | st.none()
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(RUN_NUMBERS), HOSTILE_NUMBERS, max_size=4))
def test_any_value_of_any_number_gives_a_spec_in_range_or_one_line(values):
    try:
        spec = RunSpec.from_dict(values)
    except SpecError as error:
        message = str(error)
        assert message and len(message.splitlines()) == 1 and message.strip() == message
        return
    for name in RUN_NUMBERS:
        number = getattr(spec, name)
        if number is None:
            continue
        assert not isinstance(number, bool) and math.isfinite(number), name
        assert -SQLITE_LARGEST <= number <= SQLITE_LARGEST, name
        check = RunSpec.__dataclass_fields__[name].metadata["check"]
        assert check.check("--" + name, number) == number, name
    assert 0 <= spec.seed < 2**32  # what torch.manual_seed takes
