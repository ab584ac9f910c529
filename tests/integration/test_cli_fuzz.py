"""The command line under arbitrary input (hypothesis): whatever the options and their values,
a command ends with an exit code from the documented set, never a traceback, one line for a
refusal, and the store still opens and lists every run it had.

Commands that start no engine are fuzzed (`sweep` queues runs from any spec options, and the
listings, `rm`, `queue`, `stop` read or change the store); what an engine does with a spec is
the spec's own property test (tests/contract).
"""

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.contract.spec import spec_fields
from tests.cli.command import invoke
from tests.conftest import record_fault

FUZZ = "fuzzed command lines: documented exit code, no traceback, store intact"
EXIT_CODES = {0, 1, 2}  # 130 is a user's Ctrl-C, which a fuzzed command never gets
FLAGS = [field.flag for field in spec_fields()]

HOSTILE_WORDS = [
    "",
    ",",
    "1,,2",
    "-1",
    "0",
    str(2**63),
    str(2**64 + 1),
    "1e20",
    "nan",
    "inf",
    "-inf",
    "last-999",
    "last-0",
    "cuda:99",
    "[bold]x[/]",
    "[link=http://x]y",
    "\x1b[31mred\x07",
    "\x9b2J",
    "a\u202eb",
    "imagefolder:/",
    "imagefolder:/proc",
    "run:999",
    "file:/dev/zero",
    "x" * 300,
]


def _number_text(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value == int(value) else repr(value)


values = st.one_of(
    st.sampled_from(HOSTILE_WORDS),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(_number_text),
    st.text(max_size=12).filter(lambda text: "\x00" not in text),
)
listed = st.lists(values, min_size=1, max_size=3).map(",".join)
ids = st.one_of(st.integers(min_value=-5, max_value=2**65).map(str), st.sampled_from(HOSTILE_WORDS))


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(["sweep", "runs", "show", "compare", "rm", "queue", "stop"]))
    if command == "sweep":
        flags = draw(st.lists(st.sampled_from(FLAGS), min_size=1, max_size=4, unique=True))
        args = ["sweep"]
        for flag in flags:
            args += [flag, draw(listed)]
        return args
    if command == "runs":
        choices = ["--sort", "--status", "--arch", "--dataset", "--limit"]
        flags = draw(st.lists(st.sampled_from(choices), max_size=3, unique=True))
        return ["runs", *[part for flag in flags for part in (flag, draw(values))]]
    if command == "queue":
        return ["queue", "--first", draw(ids)]
    extra = ["--yes"] if command == "rm" else []
    return [command, *draw(st.lists(ids, min_size=1, max_size=3)), *extra]


def _run_ids(cwd) -> list[int]:
    result = invoke("runs", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [run["id"] for run in json.loads(result.stdout)]


@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(args=command_lines())
def test_any_command_line_ends_in_a_documented_way_and_keeps_the_store(tmp_path, args):
    before = _run_ids(tmp_path)
    result = invoke(*args, cwd=tmp_path)
    after = _run_ids(tmp_path)
    kept = set(before) <= set(after) or args[0] == "rm"
    one_line = result.returncode != 2 or len(result.stderr.strip().splitlines()) == 1
    survived = (
        result.returncode in EXIT_CODES
        and "Traceback" not in result.stderr + result.stdout
        and one_line
        and kept
    )
    record_fault(FUZZ, survived)
    assert survived, (args, result.returncode, result.stderr[-2000:])
