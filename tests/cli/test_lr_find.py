"""`resnet-tui lr-find`: the range test's chart and suggestion, its JSON, and bad input."""

import json
import re

import pytest

from tests.cli.command import BAD_INPUT, TINY, invoke

STEPS = ["--steps", "20", "--limit", "128"]


def _made(folder):
    """What the command left in its folder, less the data folder the tests point at."""
    return sorted(path.name for path in folder.iterdir() if path.name != "data")


def test_the_chart_marks_both_suggestions_and_says_which_to_give(tmp_path):
    result = invoke("lr-find", *TINY, *STEPS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"loss against learning rate, 20 steps \(completed, \d+ s\)", lines[0])
    axis = next(line for line in lines if "lr└" in line)
    assert "1e-7" in axis and "10" in axis  # the rates, on a log scale
    assert any("▲ valley" in line for line in lines)
    assert any("▲ steepest" in line for line in lines)
    assert any(set(line) & {chr(c) for c in range(0x2801, 0x2900)} for line in lines)  # braille
    assert re.fullmatch(
        r"suggested --lr [0-9.e+-]+ \(valley; steepest descent at [0-9.e+-]+\)", lines[-1]
    )
    assert _made(tmp_path) == []  # no store, no weights: a probe


def test_json_gives_the_finished_test_with_every_step(tmp_path):
    result = invoke("lr-find", *TINY, *STEPS, "--end-lr", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    finished = json.loads(result.stdout)
    assert finished["kind"] == "finished"
    assert len(finished["lrs"]) == len(finished["losses"]) == len(finished["smoothed"]) == 20
    assert finished["lrs"][0] == pytest.approx(1e-7) and finished["lrs"][-1] == pytest.approx(1)
    assert finished["suggestion"] == finished["valley"] and finished["valley"] in finished["lrs"]
    assert finished["steepest"] in finished["lrs"]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--steps", "3"], "--steps 3"),
        (["--end-lr", "1e-9"], "--end-lr 1e-09 is not above --start-lr"),
        (["--start-lr", "-1"], "--start-lr -1.0"),
        (["--arch", "resnet9000"], "resnet9000"),
        (["--init", "run:7"], "there is no run 7"),
        (["--name", "[bold]x\ny"], "name"),
        (["--steps", "many"], "--steps"),
        (["--dataset", "mnist", "--data-root", "nowhere"], "mnist"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_code_2(tmp_path, options, said):
    result = invoke("lr-find", *TINY, *options, cwd=tmp_path)
    assert result.returncode == 2, BAD_INPUT
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines
    assert result.stdout == ""
