"""The learning-rate range test: its schedule, its stop on divergence, its suggestions (the
valley and steepest rules as pure functions), and that it saves nothing."""

import argparse
import json
import math
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.contract.spec import RunSpec
from engine.contract.stopping import StopRequest
from engine.train.lr_finder import (
    TAIL,
    Smoother,
    lr_schedule,
    range_test,
    run_lr_find,
    steepest,
    suggestions,
    valley,
)


def test_the_rate_grows_by_one_factor_from_start_to_end():
    lrs = lr_schedule(1e-7, 10.0, 100)
    assert len(lrs) == 100
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = [later / earlier for earlier, later in zip(lrs, lrs[1:], strict=False)]
    assert ratios == pytest.approx([1e8 ** (1 / 99)] * 99)


def test_the_smoothed_loss_is_fastais_bias_corrected_average():
    smoother = Smoother()
    assert smoother.add(2.0) == pytest.approx(2.0)  # no pull towards 0 at the start
    assert smoother.add(4.0) == pytest.approx((0.98 * 0.02 * 2 + 0.02 * 4) / (1 - 0.98**2))


def test_the_valley_and_the_steepest_point_of_a_made_curve():
    # flat, then a fall that steepens, then a rise: the valley is the fall (from the last
    # flat point, index 9, to its bottom, 19), the steepest slope the last step of the fall
    losses = [5.0] * 10 + [5.0 - 0.05 * i * i for i in range(1, 11)] + [0.5 * i for i in range(10)]
    lrs = lr_schedule(1e-6, 1.0, len(losses))
    # fastai's arithmetic: start = end - length = 19 - 11 = 8, then a third (3) and a
    # sixth (1) of the 11 points down
    assert valley(lrs, losses) == lrs[8 + 3 + 1]
    assert steepest(lrs, losses) == lrs[18]


def test_a_falling_curve_is_one_valley_and_a_single_point_its_own():
    lrs = lr_schedule(1e-4, 1.0, 9)
    assert valley(lrs, [9.0 - i for i in range(9)]) == lrs[3]  # -1 + 3 + 1: 9 points
    assert valley(lrs[:1], [1.0]) == steepest(lrs[:1], [1.0]) == lrs[0]


@given(
    st.lists(
        st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf)),
        min_size=1,
        max_size=60,
    )
)
def test_suggestions_are_always_rates_of_the_list(losses):
    lrs = lr_schedule(1e-7, 10.0, max(len(losses), 2))[: len(losses)]
    assert valley(lrs, losses) in lrs
    assert steepest(lrs, losses) in lrs


def test_suggestions_leave_out_the_start_the_end_and_what_is_not_finite():
    lrs = lr_schedule(1e-6, 1.0, 100)
    smoothed = [3.0 - 0.01 * i for i in range(100)]
    steep, low = suggestions(lrs, smoothed, 100, diverged=False)
    window = lrs[10 : 100 - TAIL]
    assert steep in window and low in window
    smoothed[50] = math.nan
    steep, low = suggestions(lrs, smoothed, 100, diverged=True)
    assert steep in lrs[10:50] and low in lrs[10:50]
    assert suggestions(lrs[:1], [math.nan], 100, diverged=True) is None


def _spec(tiny_spec_options, **options):
    return RunSpec.from_dict({**tiny_spec_options, "limit": 128, **options})


def test_a_range_test_sweeps_its_rates_suggests_inside_them_and_saves_nothing(
    tmp_path, monkeypatch, tiny_spec_options
):
    monkeypatch.chdir(tmp_path)
    said = []
    finished = range_test(_spec(tiny_spec_options), 1e-5, 1.0, 12, StopRequest(), said.append)
    assert said[0] == {"kind": "started", "steps": 12, "device": "cpu"}
    assert said[-1]["kind"] == "progress" and said[-1]["step"] == 12
    assert finished is not None and finished["kind"] == "finished"
    assert finished["lrs"] == pytest.approx(lr_schedule(1e-5, 1.0, 12))
    assert len(finished["losses"]) == len(finished["smoothed"]) == 12
    assert all(math.isfinite(loss) for loss in finished["losses"])
    assert finished["stopped_early"] is False and finished["reason"] is None
    assert finished["steepest"] in finished["lrs"] and finished["valley"] in finished["lrs"]
    assert finished["suggestion"] == finished["valley"]
    assert list(tmp_path.iterdir()) == []


def test_the_engine_stops_early_where_the_loss_diverges_and_suggests_below(
    tmp_path, tiny_spec_options
):
    folder = tmp_path / "run"
    folder.mkdir()
    spec_file = folder / "spec.json"
    spec_file.write_text(_spec(tiny_spec_options).to_json())
    engine = [sys.executable, "-m", "engine", "lr-find", "--spec", str(spec_file)]
    ended = subprocess.run(
        [*engine, "--start-lr", "1e-3", "--end-lr", "1e4", "--steps", "60"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ended.returncode == 0, ended.stderr
    messages = [json.loads(line) for line in ended.stdout.splitlines()]  # strict JSON lines
    finished = messages[-1]
    assert finished["kind"] == "finished" and finished["stopped_early"] is True
    assert len(finished["lrs"]) < 60
    stopped_at = finished["lrs"][-1]
    assert finished["reason"] in (
        f"the loss diverged at lr {stopped_at:.3g}",
        f"the loss became nan at lr {stopped_at:.3g}",
        f"the loss became inf at lr {stopped_at:.3g}",
    )
    for suggested in (finished["steepest"], finished["valley"]):
        assert 1e-3 <= suggested < stopped_at
    assert [path.name for path in folder.iterdir()] == ["spec.json"]  # no weights saved


def _arguments(spec_file, **values):
    return argparse.Namespace(
        spec=spec_file, **{"start_lr": 1e-5, "end_lr": 1.0, "steps": 10, **values}
    )


def test_a_stop_request_ends_it_with_exit_code_130_and_no_result(
    tmp_path, capsys, tiny_spec_options
):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(_spec(tiny_spec_options).to_json())
    stop = StopRequest()
    stop.requested = True  # as SIGINT or SIGTERM sets it
    assert run_lr_find(_arguments(spec_file), stop) == 130
    kinds = [json.loads(line)["kind"] for line in capsys.readouterr().out.splitlines()]
    assert "finished" not in kinds
    assert [path.name for path in tmp_path.iterdir()] == ["spec.json"]


@pytest.mark.parametrize(
    ("spec_text", "values", "said"),
    [
        (None, {}, "cannot be read"),
        ("{not json", {}, "not valid JSON"),
        ('{"arch": "resnet9000"}', {}, "resnet9000"),
        ("{}", {"steps": 3}, "--steps 3"),
        ("{}", {"end_lr": 1e-9}, "--end-lr"),
        ("{}", {"start_lr": math.nan}, "--start-lr nan"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, spec_text, values, said):
    spec_file = tmp_path / "spec.json"
    if spec_text is not None:
        spec_file.write_text(spec_text)
    assert run_lr_find(_arguments(spec_file, **values), StopRequest()) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0]
