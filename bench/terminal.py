"""A program in a real pseudo-terminal, for benchmarks: start it, type keys, wait for text.

What the program draws is read as it arrives, with escape sequences taken out, so a benchmark
can wait for words on the screen the way a user's eyes would.
"""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

ESCAPES = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-B]|.)")


class Terminal:
    """One program running in a pseudo-terminal of a given size."""

    def __init__(self, command: list[str], cwd: Path, columns: int = 120, rows: int = 40) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self.seen = b""

    def wait_for(self, text: str, timeout: float = 10) -> float:
        """Read output until `text` shows; returns the time it showed (perf_counter)."""
        wanted = text.encode()
        deadline = time.perf_counter() + timeout
        while wanted not in self.seen:
            left = deadline - time.perf_counter()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"{text!r} did not show within {timeout} s")
            self.raw = (self.raw + os.read(self.master, 1 << 16))[-(1 << 16) :]
            self.seen = ESCAPES.sub(b"", self.raw)
        return time.perf_counter()

    def drain(self) -> None:
        """Forget what was drawn so far (so the next wait sees only new output)."""
        while select.select([self.master], [], [], 0)[0]:
            os.read(self.master, 1 << 16)
        self.raw = self.seen = b""

    def press(self, keys: str) -> float:
        """Type `keys`; returns the moment they were sent (perf_counter)."""
        os.write(self.master, keys.encode())
        return time.perf_counter()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self.master)
