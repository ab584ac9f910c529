"""Short engine jobs that use a trained run (predict, export, Grad-CAM, TensorBoard logs), for
the CLI and the app: the one way the user's side starts them and reads what they say.

The engine runs as `python -m engine COMMAND ...` in a process of its own (the user's side
never imports torch) and says what it does in JSON lines on stdout; a mistake is one line
`error: ...` on stderr and exit code 2, a stop exit code 130. `EngineJob` starts one, hands
its lines over as they come, and ends it cleanly when the user gives up:

    with EngineJob("gradcam", arguments, shares_ctrl_c=True) as job:
        for message in job.lines():
            ...

raises EngineJobError where the job failed, EngineJobStopped (one of them) where it was
stopped: by Ctrl-C in the block, by `stop()`, or by a signal to the engine itself.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from engine.contract.stopping import signals_held

# What starts the engine: always the real one (the tests' stand-in only trains).
ENGINE = [sys.executable, "-m", "engine"]
# A line of the engine's output longer than this is not one of its messages.
LONGEST_LINE = 1 << 20
# How long a stopped engine has to finish its batch before it is killed.
STOP_WAIT_S = 10.0
EXIT_MISTAKE = 2
EXIT_STOPPED = 130


class EngineJobError(Exception):
    """An engine job that failed: `message` is the engine's own line, `mistake` whether the
    input was at fault (exit code 2) rather than the machine."""

    def __init__(self, message: str, mistake: bool) -> None:
        super().__init__(message)
        self.message = message
        self.mistake = mistake

    @property
    def exit_code(self) -> int:
        """The command line's exit code for it: 2 for a mistake in the input, else 1."""
        return EXIT_MISTAKE if self.mistake else 1


class EngineJobStopped(EngineJobError):
    """An engine job stopped before its end: by Ctrl-C, by `stop()` or by a signal to it."""

    def __init__(self) -> None:
        super().__init__("stopped", mistake=False)

    @property
    def exit_code(self) -> int:
        return EXIT_STOPPED


class EngineJob:
    """One `python -m engine COMMAND ARGS...` process and its JSON lines.

    `shares_ctrl_c`: the command line's way, where Ctrl-C at the terminal reaches the engine
    as well as this process (one process group), and a Ctrl-C while the engine starts waits
    for its handlers. Otherwise (the app's way: the app owns the terminal and its keys) the
    engine runs in a session of its own, and only `stop()` ends it early."""

    def __init__(
        self,
        command: str,
        arguments: list[str],
        *,
        shares_ctrl_c: bool = False,
        stop_wait_s: float = STOP_WAIT_S,
    ) -> None:
        self.command = [*ENGINE, command, *arguments]
        self.shares_ctrl_c = shares_ctrl_c
        self.stop_wait_s = stop_wait_s
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False

    @property
    def pid(self) -> int | None:
        """The engine's process id, once started."""
        return self.process.pid if self.process is not None else None

    @property
    def code(self) -> int | None:
        """The engine's exit code, once it has ended."""
        return self.process.returncode if self.process is not None else None

    def __enter__(self) -> "EngineJob":
        return self

    def __exit__(self, kind: Any, error: BaseException | None, trace: Any) -> None:
        """Stop the job whatever ended the block; Ctrl-C in it becomes EngineJobStopped."""
        self.stop()
        if isinstance(error, KeyboardInterrupt):
            raise EngineJobStopped() from None

    def lines(self) -> Iterator[dict[str, Any]]:
        """Start the job and yield each JSON object it writes; once its output is read,
        raises EngineJobStopped where it was stopped and EngineJobError where it failed."""
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # stderr goes to a file: a library's warnings there can never fill a pipe and
        # block the engine while its stdout is read
        with tempfile.TemporaryFile() as errors_file:
            with signals_held() if self.shares_ctrl_c else contextlib.nullcontext():
                self.process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=errors_file,
                    env=environment,
                    start_new_session=not self.shares_ctrl_c,
                )
            stdout = self.process.stdout
            assert stdout is not None
            yield from _messages(stdout)
            stdout.close()
            code = self.process.wait()
            if code == 0:
                return
            if code == EXIT_STOPPED or self.stopping:
                raise EngineJobStopped()
            raise EngineJobError(_error_line(_tail(errors_file), code), mistake=code == 2)

    def stop(self) -> None:
        """End the job (SIGTERM, then SIGKILL after `stop_wait_s`, or at once on a second
        Ctrl-C) and wait for it."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.stopping = True
        self._signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_wait_s)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            self._signal(signal.SIGKILL)
            process.wait()

    def _signal(self, signum: int) -> None:
        """Send `signum` to the engine: to its whole session (its workers too) where it has
        one of its own."""
        assert self.process is not None
        if self.shares_ctrl_c:
            self.process.send_signal(signum)
            return
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.killpg(self.process.pid, signum)


def _messages(stdout: IO[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects among `stdout`'s lines; anything else (a library's print, a line
    too long to be ours) passed over without reading it whole."""
    in_long_line = False
    while raw := stdout.readline(LONGEST_LINE):
        ended = raw.endswith(b"\n")
        if in_long_line or (not ended and len(raw) == LONGEST_LINE):
            in_long_line = not ended
            continue
        try:
            message = json.loads(raw)
        except ValueError:
            continue  # a library's chatter on stdout, not one of ours
        if isinstance(message, dict):
            yield message


def _tail(errors_file: IO[bytes]) -> str:
    """The end of what the engine wrote on stderr, where its last words are."""
    size = errors_file.seek(0, os.SEEK_END)
    errors_file.seek(max(0, size - LONGEST_LINE))
    return errors_file.read().decode("utf-8", "replace")


def _error_line(errors: str, code: int) -> str:
    """The engine's `error:` line without its prefix, or what is known of a crash."""
    lines = [line.strip() for line in errors.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return f"the engine failed (exit code {code}): {lines[-1] if lines else 'no output'}"
