"""Clean stops: SIGINT or SIGTERM sets a flag that the training loop checks after each step.

Installed first thing when the engine starts, before torch loads, so a stop asked for while
the engine is still starting is honoured too. A hang-up is ignored: the engine has no
terminal to lose.
"""

import signal
from typing import Any

_CAUGHT = (signal.SIGINT, signal.SIGTERM)


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
        return self

    def restore(self) -> None:
        """Put back the handlers that `install` replaced."""
        for signum, handler in self._previous.items():
            # None: a handler not installed from Python, which cannot be put back from here
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True
