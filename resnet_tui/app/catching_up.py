"""The app's catching up of runs no supervisor owns, in a thread of its own.

A run whose supervisor died (or one started by an older resnet-tui) is brought up to date by
whichever viewer looks: the app does it twice a second. Reading and folding four busy runs'
events took 10-35 ms a look on a 2-core machine, and a key pressed meanwhile waited that
long; here it runs beside the app's thread, on its own connection to the store (SQLite
serialises the writes, as between processes), and the app only reads what changed.
"""

import sqlite3
import threading
from pathlib import Path

from resnet_tui.runs.follower import RunFollower, catch_up
from resnet_tui.runs.identity import StoreError
from resnet_tui.runs.store import RunStore


class CatchingUp(threading.Thread):
    """Every `every_s`, catch up the store's unowned live runs, until `stop()`."""

    def __init__(self, store_path: str | Path, every_s: float) -> None:
        super().__init__(name="catching up runs", daemon=True)
        self.store_path = store_path
        self.every_s = every_s
        self.stopping = threading.Event()
        self.trouble: Exception | None = None  # the last look's failure, for the app to tell
        self.looks = 0  # looks done, so a caller can wait for the next one

    def run(self) -> None:
        followers: dict[int, RunFollower] = {}
        store: RunStore | None = None
        while not self.stopping.is_set():
            try:
                store = store or RunStore(self.store_path)
                catch_up(store, followers)
                self.trouble = None
            except (sqlite3.Error, StoreError, OSError) as error:  # a locked or full store
                self.trouble = error
            self.looks += 1
            self.stopping.wait(self.every_s)
        if store is not None:
            store.close()

    def stop(self) -> None:
        """End the loop after the look under way (if any), and wait for it a moment."""
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=5)
