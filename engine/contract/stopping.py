"""Clean stops: SIGINT or SIGTERM sets a flag that the training loop checks after each step.

Installed first thing when the engine starts, before torch loads. The launcher starts the
engine with these signals and SIGHUP blocked (`signals_held`), so one sent before the
handlers are in place waits and is honoured when `install` unblocks it: a stop asked for the
moment a run starts stops it cleanly too. A hang-up is ignored, one that waited included:
the engine has no terminal to lose.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CAUGHT = (signal.SIGINT, signal.SIGTERM)
# The signals held while an engine starts: the caught ones and the ignored hang-up.
_HELD = (*_CAUGHT, signal.SIGHUP) if hasattr(signal, "SIGHUP") else _CAUGHT


class StopRequest:
    """Set by SIGINT or SIGTERM; the loop finishes its step, saves `last` and stops."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> "StopRequest":
        """Catch the signals from now on; `restore` puts back the handlers found here."""
        for signum in _CAUGHT:
            self._previous[signum] = signal.signal(signum, self._request)
        if hasattr(signal, "SIGHUP"):
            self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
        return self

    def restore(self) -> None:
        """Put back the handlers that `install` replaced."""
        for signum, handler in self._previous.items():
            # None: a handler not installed from Python, which cannot be put back from here
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True


@contextmanager
def signals_held() -> Iterator[None]:
    """Block SIGINT, SIGTERM and SIGHUP in this thread while the block lasts, so that a
    process started inside it begins with them blocked (a child inherits the mask) until its
    `StopRequest.install`. Signals sent to this process meanwhile wait, and arrive after."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
