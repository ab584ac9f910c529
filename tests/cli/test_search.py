"""`resnet-tui search` end to end on the stand-in engine (and once on the real one): a tiny
search run by one command, a line per trial; `--resume` growing it; `--show`, `summary` and
`--json`; Ctrl-C leaving it to resume; pruning passed to every trial; bad input as one line."""

import json
import os
import re
import signal
import time

import pytest

from resnet_tui.runs.store import RunStore
from tests.cli.command import BAD_INPUT, cli, invoke, runs_json
from tests.cli.stops import WAIT_S, start

# A tiny trial; its stand-in's val acc rises with the seed, so searching seeds is searching.
TINY = ["--arch", "resnet8", "--width", "4", "--image-size", "16", "--limit", "64"]
TINY += ["--batch-size", "64", "--device", "cpu"]
SPACE = ["--seed", "0..6", "--lr", "log:1e-3..1e-1", "--epochs", "1..2"]
# The parameters of a trial come in the order of `run --help`.
PARAMS = r"lr [\d.e-]+ epochs [12] seed \d"
LINE = re.compile(rf"^trial (\d)/3: {PARAMS} → val acc [\d.]+% \(best [\d.]+%, trial \d\)$")


def _search(tmp_path, *args: str):
    return invoke("search", *TINY, *SPACE, "--sampler-seed", "5", *args, cwd=tmp_path)


def test_one_command_runs_a_tiny_search_with_a_line_per_trial(tmp_path, fake_engine):
    done = _search(tmp_path, "--trials", "3", "--parallel", "2")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if LINE.match(line)]
    assert sorted(LINE.match(line).group(1) for line in lines) == ["1", "2", "3"]
    assert "search 1: tpe (seed 5), best val acc maximised · 3/3 trials made: 3 completed" in (
        done.stdout
    )
    assert "best: trial " in done.stdout and "importance (of each parameter" in done.stdout
    runs = runs_json(tmp_path)
    assert sorted(run["id"] for run in runs) == [1, 2, 3]
    assert {run["sweep"] for run in runs} == {1} and {run["status"] for run in runs} == {
        "completed"
    }
    assert all(run["name"].startswith("trial ") for run in runs)
    assert {run["spec"]["width"] for run in runs} == {4}

    shown = invoke("search", "--show", "1", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    best = max(runs, key=lambda run: run["best_val_acc"])
    assert report["best"]["run"] == best["id"] and report["best"]["value"] == best["best_val_acc"]
    assert set(report["importances"]) == {"seed", "lr", "epochs"}
    assert report["space"] == {"lr": "log:0.001..0.1", "epochs": "1..2", "seed": "0..6"}
    summary = json.loads(invoke("summary", "1", "--json", cwd=tmp_path).stdout)
    assert summary["search"] == report and len(summary["settings"]) == 3
    assert "best: trial" in invoke("summary", "1", cwd=tmp_path).stdout

    # --resume grows it: the trials made stay, the next are asked of the study they make
    grown = invoke("search", "--resume", "1", "--trials", "4", "--json", cwd=tmp_path)
    assert grown.returncode == 0, grown.stderr
    events = [json.loads(line) for line in grown.stdout.splitlines()]
    assert [e["event"] for e in events] == ["queued", "ended", "done"]
    assert events[0]["trial"] == 4 and events[0]["run"] == 4 and events[1]["trials"] == 4
    assert events[-1]["made"] == 4 and len(events[-1]["trial_runs"]) == 4
    again = invoke("search", "--resume", "1", cwd=tmp_path)
    assert again.returncode == 0 and "has made all its 4 trials" in again.stdout


def test_with_a_prune_rule_every_trial_carries_it_and_refused_ones_are_asked_again(
    tmp_path, fake_engine
):
    args = ["--trials", "3", "--parallel", "3", "--prune", "median", "--prune-after", "2"]
    # sampler seed 2 asks for a trial of too few epochs first (5 times)
    done = _search(tmp_path, *args, "--epochs", "1..3", "--sampler-seed", "2", "--json")
    assert done.returncode == 0, done.stderr
    specs = [run["spec"] for run in runs_json(tmp_path)]
    assert [spec["prune"] for spec in specs] == ["median"] * 3
    assert all(spec["epochs"] > 2 for spec in specs)  # 1 or 2 epochs leave none to prune after
    events = [json.loads(line) for line in done.stdout.splitlines()]
    refused = [event["reason"] for event in events if event["event"] == "refused"]
    assert refused and all("leaves no epoch to prune after" in reason for reason in refused)
    ended = {event["run"]: event["status"] for event in events if event["event"] == "ended"}
    report = {trial["run"]: trial for trial in events[-1]["trial_runs"]}
    assert ended == {run: trial["status"] for run, trial in report.items()}  # told once settled
    assert {trial["state"] for trial in report.values()} <= {"COMPLETE", "PRUNED"}


def test_ctrl_c_asks_for_no_more_trials_and_resume_goes_on(tmp_path, fake_engine, monkeypatch):
    monkeypatch.setenv("RESNET_TUI_FAKE_EPOCH_S", "1")
    command = start("search", *TINY, *SPACE, "--trials", "3", "--sampler-seed", "5", cwd=tmp_path)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if (tmp_path / "runs" / "1" / "events.jsonl").exists():
            break
        assert command.poll() is None, command.communicate()
        time.sleep(0.05)
    os.kill(command.pid, signal.SIGINT)
    said, complained = command.communicate(timeout=WAIT_S)
    assert command.returncode == 130, complained
    assert "asking for no more trials" in said and "search --resume 1` goes on" in said
    store = RunStore(tmp_path / "runs.db")
    assert [run.status for run in store.sweep_runs(1)] == ["completed"]  # waited for, not cut
    resumed = cli("search", "--resume", "1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert [run.status for run in store.sweep_runs(1)] == ["completed"] * 3
    assert "3/3 trials made" in resumed.stdout


@pytest.mark.slow
def test_a_tiny_search_trains_on_the_real_engine(tmp_path):
    started = time.monotonic()
    done = invoke(
        "search",
        *TINY,
        "--dataset",
        "shapes",
        "--lr",
        "log:1e-3..1e-1",
        "--epochs",
        "1",
        "--trials",
        "2",
        "--sampler",
        "random",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert [trial["status"] for trial in report["trial_runs"]] == ["completed"] * 2
    assert 0 <= report["best"]["value"] <= 1
    assert report["importances_note"] is None
    assert time.monotonic() - started < 120


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "log:0..1"], "--lr log:0..1: a log range needs positive bounds"),
        (["--momentum", "0.99..0.8"], "its low end must be below its high end"),
        (["--arch", "resnet20..resnet32"], "--arch takes text, so it has no range"),
        (["--lr", "0..1"], "--lr must be a positive number up to 100, not 0"),
        (["--lr", "0.1"], "nothing to search"),
        (["--lr", "log:1e-3..1e-1", "--trials", "0"], "--trials must be 1 to 500"),
        (["--lr", "log:1e-3..1e-1", "--sampler", "grid"], "--sampler must be tpe or random"),
        (["--lr", "log:1e-3..1e-1", "--parallel", "0"], "--parallel must be 1 to 64"),
        (["--lr", "log:1e-3..1e-1", "--sampler-seed", "1" + "0" * 30], "--sampler-seed must be"),
        (["--lr", "log:1e-3..1e-1", "--folds", "3"], "a search has no --folds"),
        (["--lr", "log:1e-3..1e-1", "--val-fraction", "0"], "leaves no validation set"),
        (["--lr", "log:1e-3..1e-1", "--prune", "median", "--trials", "2"], "give --trials 3"),
        (["--lr", "log:1e-3..1e-1", "--init", "run:9"], "there is no run 9"),
        (["--lr", "log:1e-3..1e-1", "--name", "a\nb"], "control character"),
        (["--resume", "4"], "no search 4 in"),
        (["--show", "4"], "no search 4 in"),
    ],
)
def test_a_bad_search_is_one_line_and_makes_nothing(tmp_path, args, message):
    made_with = [] if args[0] in ("--resume", "--show") else TINY
    result = invoke("search", *made_with, *args, cwd=tmp_path)
    assert result.returncode == 2, BAD_INPUT
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert runs_json(tmp_path) == []


def test_resume_refuses_what_a_search_keeps_and_fewer_trials_than_it_made(tmp_path, fake_engine):
    assert _search(tmp_path, "--trials", "2", "--epochs", "1").returncode == 0
    sweep = invoke("sweep", *TINY, "--epochs", "1", "--seed", "1,2", "--json", cwd=tmp_path)
    assert json.loads(sweep.stdout)["sweep"] == 2
    for args, message in [
        (["--resume", "1", "--lr", "0.1"], "--lr: a search keeps the options it was made with"),
        (["--resume", "1", "--sampler", "random"], "--sampler: a search keeps"),
        (["--resume", "1", "--trials", "1"], "search 1 has made 2 trials; give --trials 2"),
        (["--resume", "2"], "sweep 2 is no search; `resnet-tui summary 2` shows it"),
        (["--show", "1", "--trials", "3"], "--show only shows a search"),
    ]:
        result = invoke("search", *args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
