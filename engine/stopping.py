"""Clean stops: SIGINT or SIGTERM sets a flag that the training loop checks after each step.

Installed first thing when the engine starts, before torch loads, so a stop asked for while
the engine is still starting is honoured too. A hang-up is ignored: the engine has no
terminal to lose.
"""

import signal
from typing import Any


class StopRequest:
    """Set by SIGINT or SIGTERM; the loop finishes its step, saves `last` and stops."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> "StopRequest":
        signal.signal(signal.SIGINT, self._request)
        signal.signal(signal.SIGTERM, self._request)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return self

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True
