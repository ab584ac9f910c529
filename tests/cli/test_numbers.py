"""Hostile numbers to `run`, `sweep` and `worker`: one line on stderr naming the range, exit
code 2, no traceback, and nothing created or queued."""

import pytest

from tests.cli.command import TINY, invoke, runs_json
from tests.conftest import record_fault

NUMBERS_OUT_OF_RANGE = "numbers out of range: one line, exit 2, nothing queued"
BIG = str(2**63)
HUGE = "99999999999999999999"
CPU_ONLY = [{"name": "cpu", "description": "CPU", "threads": 2}]

# (command and its options after the tiny spec's, a fragment of the one line it is refused with)
HOSTILE = [
    (["run", "--epochs", BIG], "--epochs must be a positive number up to 100000, not " + BIG),
    (["run", "--epochs", "-1"], "--epochs must be a positive number up to 100000, not -1"),
    (["run", "--epochs", "0"], "--epochs must be a positive number up to 100000"),
    (["run", "--epochs", "100001"], "--epochs must be a positive number up to 100000"),
    (["run", "--epochs", "1e20"], "Invalid value for '--epochs'"),
    (["run", "--epochs", ""], "Invalid value for '--epochs'"),
    (["run", "--seed", "-1"], "--seed must be 0 or more, up to 4294967295, not -1"),
    (["run", "--seed", str(2**32)], "--seed must be 0 or more, up to 4294967295"),
    (["run", "--seed", BIG], "--seed must be 0 or more, up to 4294967295"),
    (["run", "--seed", "1e20"], "Invalid value for '--seed'"),
    (["run", "--limit", HUGE], "--limit must be a positive number up to 2147483648"),
    (["run", "--limit", "0"], "--limit must be a positive number up to 2147483648"),
    (["run", "--batch-size", BIG], "--batch-size must be a positive number up to 65536"),
    (["run", "--batch-size", "65537"], "--batch-size must be a positive number up to 65536"),
    (["run", "--eval-batch-size", "0"], "--eval-batch-size must be a positive number"),
    (["run", "--width", "100000"], "--width must be a positive number up to 4096"),
    (["run", "--image-size", BIG], "--image-size must be a positive number up to 4096"),
    (["run", "--workers", "100000"], "--workers must be 0 or more, up to 256"),
    (["run", "--workers", "-1"], "--workers must be 0 or more, up to 256"),
    (["run", "--train-per-class", str(2**31 + 1)], "--train-per-class must be a positive"),
    (["run", "--nproc", BIG], "--nproc must be a positive number up to 1024"),
    (["run", "--nnodes", "0"], "--nnodes must be a positive number up to 1024"),
    (["run", "--unfreeze-every", BIG], "--unfreeze-every must be a positive number"),
    (["run", "--probe-epochs", BIG], "--probe-epochs must be a positive number"),
    (["run", "--folds", BIG], "--folds must be from 2 to 20"),
    (["run", "--lr", "inf"], "--lr must be a finite number, not inf"),
    (["run", "--lr", "-inf"], "--lr must be a finite number, not -inf"),
    (["run", "--lr", "nan"], "--lr must be a finite number, not nan"),
    (["run", "--lr", "1e20"], "--lr must be a positive number up to 100, not 1e+20"),
    (["run", "--lr", "0"], "--lr must be a positive number up to 100"),
    (["run", "--ft-lr-scale", "1e400"], "--ft-lr-scale must be a finite number"),
    (["run", "--weight-decay", "1e300"], "--weight-decay must be 0 or more, up to 10"),
    (["run", "--grad-clip", "inf"], "--grad-clip must be a finite number"),
    (["run", "--kd-temperature", "1e9"], "--kd-temperature must be a positive number up to"),
    (["run", "--warmup-epochs", "inf"], "--warmup-epochs must be a finite number"),
    (["run", "--val-fraction", "nan"], "--val-fraction must be a finite number"),
    (["run", "--l2sp", "1e20"], "--l2sp must be 0 (off) or more, up to 1000"),
    (["run", "--freeze", "last-999"], "resnet8 has 4 parts below the head"),
    (["run", "--freeze", "last-5"], "write last-K with K from 1 to 4"),
    (["run", "--freeze", "last-" + HUGE], "write last-K with K from 1 to 4"),
    (["run", "--freeze", "last-0"], "write last-K with K a stage count"),
    (["run", "--init", "run:" + HUGE], f"--init run:{HUGE}: there is no run {HUGE}"),
    (["sweep", "--lr", ","], "--lr , names no value"),
    (["sweep", "--lr", " , "], "names no value"),
    (["sweep", "--lr", "1,,2"], "--lr 1,,2 has an empty value between commas"),
    (["sweep", "--lr", "0.1,"], "--lr 0.1, has an empty value"),
    (["sweep", "--seed", ",1"], "--seed ,1 has an empty value"),
    (["sweep", "--seed", "1," + HUGE], "--seed must be 0 or more, up to 4294967295"),
    (["sweep", "--seed", "1,-1"], "--seed must be 0 or more, up to 4294967295, not -1"),
    (["sweep", "--epochs", "1," + BIG], "--epochs must be a positive number up to 100000"),
    (["sweep", "--epochs", "1,1e20"], "--epochs must be a whole number, not '1e20'"),
    (["sweep", "--limit", ""], "--limit must be a whole number, not ''"),
    (["sweep", "--batch-size", "64,-1"], "--batch-size must be a positive number"),
    (["sweep", "--lr", "0.1,nan"], "--lr must be a finite number, not nan"),
    (["sweep", "--lr", "0.1,inf"], "--lr must be a finite number, not inf"),
    (["sweep", "--lr", "0.1,1e20"], "--lr must be a positive number up to 100"),
    (["sweep", "--freeze", "full,last-999"], "resnet8 has 4 parts below the head"),
    (["worker", "--per-device", "100000000"], "--per-device must be 1 or more, up to 64"),
    (["worker", "--per-device", BIG], "--per-device must be 1 or more, up to 64"),
    (["worker", "--per-device", "0"], "--per-device must be 1 or more, up to 64, not 0"),
    (["worker", "--per-device", "-1"], "--per-device must be 1 or more, up to 64, not -1"),
    (["worker", "--per-device", "1e20"], "Invalid value for '--per-device'"),
    (["worker", "--devices", "cuda:99"], "device cuda:99 is not there; the engine sees cpu"),
    (["worker", "--devices", "cuda:0,cuda:99"], "device cuda:0 is not there"),
    (["worker", "--devices", "cuda:" + HUGE], f"device cuda:{HUGE} is not there"),
    (["worker", "--devices", "cuda"], "device cuda is not there"),
    (["worker", "--devices", "mps"], "device mps is not there"),
    (["worker", "--devices", ","], "--devices needs at least one device"),
    (["worker", "--devices", ""], "--devices needs at least one device"),
]


def _command(args: list[str]) -> list[str]:
    """The whole command line: a run or sweep of the tiny spec with `args` after it (the last
    of an option given twice counts), a worker on the CPU unless `args` name its devices."""
    command, *rest = args
    if command == "worker":
        return [command, *([] if "--devices" in rest else ["--devices", "cpu"]), *rest]
    return [command, *TINY, *rest]


@pytest.mark.parametrize(("args", "message"), HOSTILE, ids=[" ".join(a) for a, _ in HOSTILE])
def test_a_hostile_number_is_one_line_exit_2_and_nothing_queued(
    tmp_path, monkeypatch, fake_engine, args, message
):
    monkeypatch.setattr("resnet_tui.runs.worker.list_devices", lambda: CPU_ONLY)
    result = invoke(*_command(args), cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    left = runs_json(tmp_path)
    survived = (
        result.returncode == 2
        and len(lines) == 1
        and message in lines[0]
        and "Traceback" not in result.stderr + result.stdout
        and left == []
    )
    record_fault(NUMBERS_OUT_OF_RANGE, survived, rows_lost=len(left))
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert left == []


def test_the_table_has_forty_cases_or_more_across_the_three_commands():
    commands = {args[0] for args, _ in HOSTILE}
    assert len(HOSTILE) >= 40 and commands == {"run", "sweep", "worker"}


def test_the_help_states_the_bounds(tmp_path):
    assert "[range: 1 to 100000]" in invoke("run", "--help", cwd=tmp_path).stdout
    assert "[range: 1 to 64]" in invoke("worker", "--help", cwd=tmp_path).stdout
