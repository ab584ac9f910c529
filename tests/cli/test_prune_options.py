"""The pruning options on the command line: `sweep` takes them, `run` and `lr-find` refuse
them (a run is judged against its sweep), and every mistake is one line and exit code 2,
before any run is made."""

import json

import pytest

from tests.cli.command import BAD_INPUT, TINY, invoke
from tests.conftest import record_fault

THREE = ["--seed", "1,2,3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--prune", "median"], "--prune is for sweeps, whose runs are judged"),
        (["run", "--prune-after", "2"], "--prune-after is for sweeps"),
        (["lr-find", "--prune", "asha"], "--prune is for sweeps"),
        (["sweep", *THREE, "--prune", "meadian"], "unknown prune rule 'meadian'; did you mean"),
        (["sweep", *THREE, "--prune", "median,asha"], "--prune is one for the whole sweep"),
        (["sweep", *THREE, "--prune-after", "1,2", "--prune", "median"], "one for the whole"),
        (["sweep", "--seed", "1,2", "--prune", "median"], "needs a sweep of 3 runs or more"),
        (["sweep", *THREE, "--prune", "asha", "--prune-factor", "4"], "of 4 runs or more"),
        (["sweep", *THREE, "--prune", "median", "--prune-factor", "2"], "asha's; the median"),
        (["sweep", *THREE, "--prune-after", "2"], "add --prune median or asha"),
        (["sweep", *THREE, "--prune", "asha", "--prune-factor", "1"], "2 or more, up to 100"),
        (["sweep", *THREE, "--prune", "median", "--prune-after", "0"], "a positive number"),
        (["sweep", *THREE, "--prune", "median", "--prune-after", "8"], "leaves no epoch"),
        (["sweep", *THREE, "--prune", "median", "--folds", "2"], "cut a setting's --folds"),
    ],
)
def test_a_pruning_mistake_is_one_line_and_exit_code_2_and_queues_nothing(tmp_path, args, message):
    result = invoke(*args, cwd=tmp_path)
    survived = result.returncode == 2 and message in result.stderr
    record_fault(BAD_INPUT, survived and "Traceback" not in result.stderr)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    listed = invoke("runs", "--json", cwd=tmp_path)
    assert listed.returncode != 0 or json.loads(listed.stdout) == []


def test_a_pruned_sweep_keeps_its_rule_in_each_runs_spec(tmp_path):
    made = invoke(
        "sweep", *TINY, *THREE, "--prune", "ASHA", "--prune-after", "1", "--json", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    runs = json.loads(invoke("runs", "--json", cwd=tmp_path).stdout)
    assert {(run["spec"]["prune"], run["spec"]["prune_after"]) for run in runs} == {("asha", 1)}
    assert {run["spec"]["prune_factor"] for run in runs} == {None}  # eta 3, the default
    shown = invoke("show", str(runs[0]["id"]), cwd=tmp_path).stdout
    assert "prune" in shown and "asha" in shown
    help_text = invoke("sweep", "--help", cwd=tmp_path).stdout
    assert "Pruning (sweeps)" in help_text and "--prune-factor" in help_text


def test_pruned_is_a_status_runs_lists_and_filters(tmp_path):
    listed = invoke("runs", "--status", "pruned", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "pruned" in invoke("runs", "--help", cwd=tmp_path).stdout
