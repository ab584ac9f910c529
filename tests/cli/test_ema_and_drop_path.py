"""The average of the weights and stochastic depth from the command line: a tiny run with
both completes and `show` says the average's val acc and which weights best.pt holds; the
options that cannot apply are one line and exit code 2, before anything starts."""

import pytest

from tests.cli.command import BAD_INPUT, TINY, invoke


@pytest.mark.slow
def test_a_run_with_an_average_and_drop_path_completes_and_show_says_the_ema(tmp_path):
    ran = invoke("run", *TINY, "--ema-decay", "0.9", "--drop-path", "0.1", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = " ".join(invoke("show", "1", cwd=tmp_path).stdout.split())
    assert "EMA val acc " in shown and "· best from " in shown, shown
    plain = invoke("run", *TINY, cwd=tmp_path)
    assert plain.returncode == 0 and "EMA" not in invoke("show", "2", cwd=tmp_path).stdout


@pytest.mark.parametrize(
    "options, says",
    [
        (["--arch", "plain20", "--drop-path", "0.1"], "--drop-path skips residual blocks"),
        (["--arch", "cnn", "--drop-path", "0.1"], "which cnn has none of"),
        (["--best-from", "ema"], "add --ema-decay (e.g. 0.999)"),
        (["--best-from", "raw"], "add --ema-decay (e.g. 0.999)"),
        (["--ema-decay", "1"], "--ema-decay must be above 0 and below 1"),
        (["--ema-decay", "nan"], "--ema-decay"),
        (["--drop-path", "-0.1"], "--drop-path must be at least 0 and below 1"),
        (["--drop-path", "1e400"], "--drop-path"),
        (["--ema-decay", "0.9", "--best-from", "[bold]sideways\n"], "unknown --best-from '[bold]"),
    ],
)
def test_options_that_cannot_apply_are_one_line(tmp_path, options, says):
    done = invoke("run", "--arch", "resnet8", "--device", "cpu", *options, cwd=tmp_path)
    assert done.returncode == 2, BAD_INPUT
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs.db").exists()
