"""Garbage collection timed so that a key press never waits for it.

Python's cycle collector stops the program while it walks every object it tracks. In the app
with a live run, a full pass (the oldest generation) took 70-120 ms on a 2-core machine,
several times a minute, and a key pressed meanwhile waited that long: most of the slow key
presses in bench/app_responsiveness.py. So the app runs the collector itself: what exists at
the first paint (modules, classes, the history screen) is frozen, since it lives as long as
the app; the young generations are collected every second, a pass of a few milliseconds;
and a full pass runs once the user has left the keys alone for a while, or every few minutes
at the latest. Reference counting frees everything else at once, as always.
"""

import gc
import time

YOUNG_EVERY_S = 1.0
FULL_AFTER_IDLE_S = 3.0  # no key or mouse input for this long: a full pass disturbs nobody
FULL_AT_MOST_EVERY_S = 30.0
FULL_AT_LEAST_EVERY_S = 300.0


class GarbageSchedule:
    """Takes over the cycle collector from `start` to `stop`; `tick` every YOUNG_EVERY_S."""

    def __init__(self) -> None:
        self.last_input = self.last_full = time.monotonic()
        self.was_enabled = gc.isenabled()

    def start(self) -> None:
        """Freeze what exists now and stop collecting on Python's own schedule."""
        gc.collect()
        gc.freeze()
        gc.disable()
        self.last_full = time.monotonic()

    def stop(self) -> None:
        """Give the collector back to Python."""
        gc.unfreeze()
        if self.was_enabled:
            gc.enable()

    def input_seen(self) -> None:
        """The user pressed a key or used the mouse: put off the next full pass."""
        self.last_input = time.monotonic()

    def tick(self) -> int:
        """Collect the young generations, or all of them when that is due and the user is
        idle; returns the generation collected up to (2 for a full pass)."""
        now = time.monotonic()
        since_full = now - self.last_full
        idle = now - self.last_input >= FULL_AFTER_IDLE_S
        if since_full >= FULL_AT_LEAST_EVERY_S or (idle and since_full >= FULL_AT_MOST_EVERY_S):
            gc.collect()
            self.last_full = now
            return 2
        gc.collect(1)
        return 1
