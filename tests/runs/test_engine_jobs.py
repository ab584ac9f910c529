"""`EngineJob`, the one way the user's side runs a short engine job: its JSON lines as they
come, the engine's `error:` line as EngineJobError (a mistake for exit code 2), a crash's last
line, and a stop that ends a job that will not end by itself.

Most jobs here are small `python -c` stand-ins for the engine (put in `engine_jobs.ENGINE`);
the last ones run the real engine."""

import json
import os
import signal
import sys
import time

import pytest

from resnet_tui.runs import engine_jobs
from resnet_tui.runs.engine_jobs import EngineJob, EngineJobError, EngineJobStopped

# A stand-in that says it started, with the signals it started with held, lets them in (as
# the engine's StopRequest does), then waits for a minute unless stopped.
WAITS = (
    "import json, signal, time\n"
    "held = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])\n"
    "print(json.dumps({'kind': 'started', 'held': sorted(map(int, held))}), flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def stand_in(monkeypatch):
    """Have the jobs run `python -c CODE COMMAND ARGS...` in place of the engine."""
    return lambda code: monkeypatch.setattr(engine_jobs, "ENGINE", [sys.executable, "-c", code])


def test_a_job_gives_its_json_objects_and_passes_over_the_rest(stand_in, monkeypatch):
    monkeypatch.setattr(engine_jobs, "LONGEST_LINE", 100)
    stand_in(
        "import json, sys\n"
        "print(json.dumps({'kind': 'started', 'argv': sys.argv[1:]}))\n"
        "print('a library says hello')\n"
        "print(json.dumps({'kind': 'long', 'padding': 'x' * 250}))\n"
        "print(json.dumps([1, 2]))\n"
        "sys.stdout.buffer.write(b'\\xff\\xfe not utf-8\\n')\n"
        "print(json.dumps({'kind': 'finished', 'path': '[red]x\\n'}), end='')\n"
    )
    job = EngineJob("predict", ["--top-k", "3", "[bold]a b"])
    said = list(job.lines())
    assert said == [
        {"kind": "started", "argv": ["predict", "--top-k", "3", "[bold]a b"]},
        {"kind": "finished", "path": "[red]x\n"},
    ]
    assert job.code == 0


@pytest.mark.parametrize(("code", "mistake"), [(2, True), (1, False)])
def test_the_engines_error_line_is_the_message(stand_in, code, mistake):
    stand_in(
        "import sys\n"
        "print('UserWarning: something a library thinks', file=sys.stderr)\n"
        "print('error: cannot read image x.png; give a PNG or JPEG', file=sys.stderr)\n"
        "print('  a line after it', file=sys.stderr)\n"
        f"sys.exit({code})\n"
    )
    with pytest.raises(EngineJobError) as raised, EngineJob("gradcam", []) as job:
        list(job.lines())
    assert raised.value.message == "cannot read image x.png; give a PNG or JPEG"
    assert raised.value.mistake is mistake
    assert raised.value.exit_code == code


def test_a_crash_is_told_by_its_last_line(stand_in):
    stand_in("raise RuntimeError('out of cheese')")
    with pytest.raises(EngineJobError) as raised, EngineJob("export", []) as job:
        list(job.lines())
    assert raised.value.message == ("the engine failed (exit code 1): RuntimeError: out of cheese")
    assert not raised.value.mistake and raised.value.exit_code == 1


def test_a_flood_on_stderr_never_blocks_the_job_and_its_last_line_is_kept(stand_in):
    stand_in(
        "import sys\n"
        "for _ in range(40_000):\n"
        "    print('warning: ' + 'w' * 90, file=sys.stderr)\n"
        "print('error: the folder is full; free some space', file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    with pytest.raises(EngineJobError) as raised, EngineJob("tensorboard", []) as job:
        list(job.lines())
    assert raised.value.message == "the folder is full; free some space"


def test_exit_code_130_is_a_stop(stand_in):
    stand_in("import json, sys\nprint(json.dumps({'kind': 'finished'}))\nsys.exit(130)\n")
    said = []
    with pytest.raises(EngineJobStopped) as raised, EngineJob("predict", []) as job:
        said.extend(job.lines())
    assert said == [{"kind": "finished"}]
    assert raised.value.message == "stopped" and raised.value.exit_code == 130


@pytest.mark.parametrize("shares_ctrl_c", [False, True])
def test_stop_ends_a_job_that_ignores_sigterm_after_its_wait(stand_in, shares_ctrl_c):
    stand_in("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + WAITS)
    job = EngineJob("predict", [], shares_ctrl_c=shares_ctrl_c, stop_wait_s=0.5)
    lines = job.lines()
    assert next(lines)["kind"] == "started"
    assert job.pid is not None
    own_session = os.getsid(job.pid) == job.pid
    assert own_session is not shares_ctrl_c
    started = time.monotonic()
    job.stop()
    assert 0.5 <= time.monotonic() - started < 10
    assert job.code == -9
    with pytest.raises(EngineJobStopped):
        next(lines)


def test_ctrl_c_in_the_block_stops_the_job_at_once(stand_in):
    stand_in(WAITS)
    started = time.monotonic()
    with pytest.raises(EngineJobStopped), EngineJob("export", [], shares_ctrl_c=True) as job:
        for said in job.lines():
            # Ctrl-C at the start waited for the engine's handlers
            assert said["held"] == sorted([signal.SIGHUP, signal.SIGINT, signal.SIGTERM])
            raise KeyboardInterrupt
    assert time.monotonic() - started < 10
    assert job.code == -15


def test_the_real_engine_writes_its_answer_and_refuses_in_one_line(tmp_path, monkeypatch):
    """Whatever the environment names as the engine (the tests' fake one, say), a job runs
    the real one."""
    monkeypatch.setenv("RESNET_TUI_ENGINE_MODULE", "tests.fake_engine")
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps({"runs": []}))
    job = EngineJob("tensorboard", ["--input", str(runs), "--out", str(tmp_path / "board")])
    assert list(job.lines()) == [{"scalars": 0, "runs": [], "kept": []}]
    (tmp_path / "taken").write_text("mine")
    refused = EngineJob("tensorboard", ["--input", str(runs), "--out", str(tmp_path / "taken")])
    with pytest.raises(EngineJobError) as raised:
        list(refused.lines())
    assert raised.value.mistake and "is a file, not a folder" in raised.value.message
    assert "\n" not in raised.value.message and not raised.value.message.startswith("error")
    assert (tmp_path / "taken").read_text() == "mine"
