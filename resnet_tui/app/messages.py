"""What the app tells its screens: runs added to, changed in or removed from the store.

The app looks at the store twice a second for what changed since its last look (by any
process: a supervisor, a worker, another shell) and posts these to the screens on its stack,
dialogs excepted; each screen handles the ones it cares about.
"""

from textual.message import Message

from resnet_tui.runs.model import Run


class RunsAdded(Message, bubble=False):
    """Runs new to the store since the app last looked."""

    def __init__(self, runs: list[Run]) -> None:
        super().__init__()
        self.runs = runs


class RunsChanged(Message, bubble=False):
    """Runs whose row changed: a new epoch, a new status, a rename."""

    def __init__(self, runs: list[Run]) -> None:
        super().__init__()
        self.runs = runs

    def of(self, run_ids: "set[int] | list[int]") -> list[Run]:
        """The changed runs among `run_ids`."""
        return [run for run in self.runs if run.id in run_ids]


class RunsRemoved(Message, bubble=False):
    """Runs deleted from the store (by this app or any other process)."""

    def __init__(self, run_ids: list[int]) -> None:
        super().__init__()
        self.run_ids = run_ids
