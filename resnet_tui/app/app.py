"""The Textual application: screens, what changed in the store, and quitting with runs alive.

The app never imports torch and never writes a run's progress: each run's supervisor keeps
`runs.db` current. Twice a second the app asks the store what changed since its last look
(by any process) and tells the screens on its stack with small messages (messages.py); it
catches up runs no supervisor owns any more, as every viewer does. The run and compare
screens, and the charting library under them, load when first opened: the history must
paint first.
"""

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from subprocess import Popen

from textual import events
from textual.app import App, SystemCommand
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen

from engine.contract.events import STALL_AFTER_S
from resnet_tui.app.catching_up import CatchingUp
from resnet_tui.app.dialogs import QuitDialog
from resnet_tui.app.garbage import YOUNG_EVERY_S, GarbageSchedule
from resnet_tui.app.keys import GLOBAL_KEYS, use_the_users_keys
from resnet_tui.app.messages import RunsAdded, RunsChanged, RunsRemoved
from resnet_tui.app.palette import palette_commands
from resnet_tui.app.run_actions import RunActions
from resnet_tui.app.screens.help import HelpScreen
from resnet_tui.app.screens.history import HistoryScreen
from resnet_tui.display import safe
from resnet_tui.runs.identity import describe_database_error
from resnet_tui.runs.launcher import stop
from resnet_tui.runs.model import Run
from resnet_tui.runs.store import RunStore

# How often the app asks the store what changed: a run started elsewhere shows within a
# second, well inside the 2 s a user notices.
LOOK_INTERVAL_S = 0.5


class ResnetApp(RunActions, App[None]):
    """Launch runs, watch them live, and compare them with earlier ones."""

    TITLE = "resnet-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = GLOBAL_KEYS

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.history = HistoryScreen(store)
        self.revision = store.revision()
        self.known: set[int] = {row["id"] for row in store.query("SELECT id FROM runs")}
        self.live: dict[int, Run] = {}
        self.stalled: set[int] = set()
        self.started_here: list[Popen[bytes]] = []  # supervisors and workers started here
        self.catching_up = CatchingUp(store.path, LOOK_INTERVAL_S)  # runs no supervisor owns
        self.garbage = GarbageSchedule()
        self.store_trouble = False  # the last look at the store failed (and the user was told)
        self.deleted_here: set[int] = set()  # runs this app deleted (and said so)

    def on_mount(self) -> None:
        self.sub_title = safe(self.store.path)
        use_the_users_keys(self)
        self.live = {run.id: run for run in self.store.live_runs()}
        self.push_screen(self.history)
        running = sum(run.status == "running" for run in self.live.values())
        if running:
            self.tell(f"following {running} live run{'s' if running > 1 else ''} again")
        self.set_interval(LOOK_INTERVAL_S, self.look_at_the_store)
        self.call_after_refresh(self._after_the_first_paint)

    def _after_the_first_paint(self) -> None:
        """What can wait for the history: catching up runs, the collector's schedule."""
        self.catching_up.start()
        self.garbage.start()
        self.set_interval(YOUNG_EVERY_S, self.garbage.tick)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self.garbage.input_seen()
        await super().on_event(event)

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Save an SVG of the screen in the folder the app was started from (Textual's
        default, ~/Downloads, is seldom there on a GPU box reached over SSH)."""
        self.deliver_screenshot(filename, path or str(Path.cwd()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every key binding of the screen in view is also a command in the palette."""
        return palette_commands(self, screen, super().get_system_commands(screen))

    def look_at_the_store(self) -> None:
        """Tell the screens what changed in the store since the last look, from whichever
        process; note runs that ended or fell silent. Nothing once the app is closing: its
        screens are coming down by then."""
        if not self.is_running:
            return
        self.started_here = [child for child in self.started_here if child.poll() is None]
        try:
            changes = self.store.changes_since(self.revision)
            if isinstance(self.catching_up.trouble, sqlite3.Error):
                raise self.catching_up.trouble
        except sqlite3.Error as error:  # locked long by another process, a full disk
            if not self.store_trouble:
                self.tell(describe_database_error(self.store.path, error), severity="warning")
            self.store_trouble = True
            return
        self.store_trouble = False
        self.revision = changes.revision
        removed = [run_id for run_id in changes.deleted if run_id in self.known]
        self.known.difference_update(changes.deleted)
        added = [run for run in changes.runs if run.id not in self.known]
        changed = [run for run in changes.runs if run.id in self.known]
        self.known.update(run.id for run in added)
        for run_id in removed:
            self.live.pop(run_id, None)
        self._note_endings(changes.runs)
        # A stalled run changes nothing in the store, but how long it has been silent does.
        seen = {run.id for run in changed}
        changed += [
            run
            for run in self.live.values()
            if self._stall_changed(run) or (run.id in self.stalled and run.id not in seen)
        ]
        for message in (
            RunsRemoved(removed) if removed else None,
            RunsAdded(added) if added else None,
            RunsChanged(changed) if changed else None,
        ):
            if message is not None:
                self.tell_screens(message)

    def tell(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
    ) -> None:
        """A notification of the app or its screens, its text as written: a run name or an
        error quoting one is never read as markup, a control character in it is shown as an
        escape. (Textual's own notifications, written in markup, keep `notify`.)"""
        self.notify(
            safe(message), title=safe(title), severity=severity, timeout=timeout, markup=False
        )

    def tell_screens(self, message: RunsAdded | RunsChanged | RunsRemoved) -> None:
        """Post a message to every screen on the stack but dialogs (they show no runs)."""
        for screen in self.screen_stack:
            if not isinstance(screen, ModalScreen):
                screen.post_message(message)

    def _note_endings(self, runs: list[Run]) -> None:
        """Keep the live runs current, and say so when one of them ends."""
        for run in runs:
            if run.live:
                self.live[run.id] = run
            elif self.live.pop(run.id, None) is not None:
                self.stalled.discard(run.id)
                ended_well = run.status in ("completed", "pruned")  # pruned: as the sweep says
                severity = "information" if ended_well else "warning"
                self.tell(f"run {run.id} {run.status}", severity=severity)

    def _stall_changed(self, run: Run) -> bool:
        """Note a live run that fell silent (or spoke again); True when that changed."""
        stalled = run.stalled_for() is not None
        if stalled == (run.id in self.stalled):
            return False
        if stalled:
            self.stalled.add(run.id)
            self.tell(
                f"run {run.id} has written nothing for {STALL_AFTER_S / 60:.0f} minutes, "
                "though its engine is there: stalled?",
                severity="warning",
            )
        else:
            self.stalled.discard(run.id)
        return True

    def live_run_ids(self) -> list[int]:
        """The runs training now, as the store had them at the last look."""
        return sorted(run_id for run_id, run in self.live.items() if run.status == "running")

    def action_new_run(self) -> None:
        from resnet_tui.app.screens.launch import LaunchScreen  # loaded when first asked for

        self.push_screen(LaunchScreen())

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.screen))

    def action_show_queue(self) -> None:
        from resnet_tui.app.screens.queue import QueueScreen

        self.push_screen(QueueScreen(self.store))

    def open_sweep(self, sweep: int) -> None:
        from resnet_tui.app.screens.sweep import SweepScreen

        self.push_screen(SweepScreen(self.store, sweep))

    def action_history(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    def open_run(self, run_id: int) -> None:
        from resnet_tui.app.screens.run import RunScreen

        if self.store.run(run_id) is None:
            self.tell(f"run {run_id} was deleted", severity="warning")
            self.look_at_the_store()
            return
        self.push_screen(RunScreen(self.store, run_id))

    def switch_run(self, run_id: int) -> None:
        """Show another run in place of the run screen in view."""
        from resnet_tui.app.screens.run import RunScreen

        if self.store.run(run_id) is not None:
            self.switch_screen(RunScreen(self.store, run_id))

    def compare_runs(self, run_ids: list[int]) -> None:
        from resnet_tui.app.screens.compare import CompareScreen

        gone = [str(run_id) for run_id in run_ids if self.store.run(run_id) is None]
        if gone:
            self.tell(f"run {', '.join(gone)} was deleted meanwhile", severity="warning")
            self.look_at_the_store()
            return
        self.push_screen(CompareScreen(self.store, run_ids))

    async def action_quit(self) -> None:
        live = [run for run in self.store.live_runs() if run.status == "running"]
        if not live:
            self.exit()
            return

        def answered(choice: str | None) -> None:
            if choice == "stop":
                for run in live:
                    stop(run)
            if choice in ("stop", "leave"):
                self.exit()

        self.push_screen(QuitDialog(len(live)), answered)

    def on_unmount(self) -> None:
        """Runs are detached on purpose: leaving the app neither waits for nor kills them."""
        self.garbage.stop()
        self.catching_up.stop()
        self.store.close()
