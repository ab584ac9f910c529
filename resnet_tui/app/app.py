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
from engine.contract.spec import FusionSpec, RunSpec, SpecError
from resnet_tui.app.dialogs import ConfirmDialog, EditRunDialog, FuseDialog, QuitDialog
from resnet_tui.app.garbage import YOUNG_EVERY_S, GarbageSchedule
from resnet_tui.app.keys import GLOBAL_KEYS, use_the_users_keys
from resnet_tui.app.messages import RunsAdded, RunsChanged, RunsRemoved
from resnet_tui.app.palette import palette_commands
from resnet_tui.app.screens.help import HelpScreen
from resnet_tui.app.screens.history import HistoryScreen
from resnet_tui.app.screens.launch import LaunchScreen
from resnet_tui.app.screens.queue import QueueScreen
from resnet_tui.app.screens.sweep import SweepScreen
from resnet_tui.display import markup_safe, safe
from resnet_tui.runs.follower import RunFollower, catch_up
from resnet_tui.runs.identity import describe_database_error
from resnet_tui.runs.launcher import fuse, launch, resume, stop
from resnet_tui.runs.model import Run
from resnet_tui.runs.removal import delete_runs
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.worker import queue_folds

# How often the app asks the store what changed: a run started elsewhere shows within a
# second, well inside the 2 s a user notices.
LOOK_INTERVAL_S = 0.5


class ResnetApp(App[None]):
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
        self.caught_up: dict[int, RunFollower] = {}  # runs no supervisor owns, followed here
        self.garbage = GarbageSchedule()
        self.store_trouble = False  # the last look at the store failed (and the user was told)
        self.deleted_here: set[int] = set()  # runs this app deleted (and said so)

    def on_mount(self) -> None:
        self.sub_title = safe(self.store.path)
        use_the_users_keys(self)
        catch_up(self.store, self.caught_up)
        self.live = {run.id: run for run in self.store.live_runs()}
        self.push_screen(self.history)
        running = sum(run.status == "running" for run in self.live.values())
        if running:
            self.tell(f"following {running} live run{'s' if running > 1 else ''} again")
        self.set_interval(LOOK_INTERVAL_S, self.look_at_the_store)
        self.call_after_refresh(self._take_over_garbage_collection)

    def _take_over_garbage_collection(self) -> None:
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
            catch_up(self.store, self.caught_up)
            changes = self.store.changes_since(self.revision)
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
                severity = "information" if run.status == "completed" else "warning"
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
        self.push_screen(LaunchScreen())

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.screen))

    def action_show_queue(self) -> None:
        self.push_screen(QueueScreen(self.store))

    def open_sweep(self, sweep: int) -> None:
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

    def start_run(self, spec: RunSpec) -> None:
        if spec.folds:
            self.start_cross_validation(spec)
            return
        try:
            run_id, supervisor = launch(self.store, spec)
        except SpecError as error:
            self.tell(str(error), severity="error")
            return
        self._show_new_run(run_id, supervisor)

    def start_cross_validation(self, spec: RunSpec) -> None:
        """Queue the K fold runs of `spec` as one sweep, and start a worker of their own in
        the background that trains them one after another (closing the app stops nothing);
        the sweep's screen shows them, and their mean and spread as they end."""
        try:
            folds = queue_folds(self.store, spec, in_background=True)
        except SpecError as error:
            self.tell(str(error), severity="error")
            return
        assert folds.worker is not None  # started in the background, as asked
        self.started_here.append(folds.worker)
        self.action_history()
        self.open_sweep(folds.sweep)
        first, last = folds.run_ids[0], folds.run_ids[-1]
        self.tell(
            f"{spec.folds}-fold cross-validation: runs {first}-{last} queued as sweep "
            f"{folds.sweep}; a worker trains them one after another, with or without the app"
        )

    def _show_new_run(self, run_id: int, supervisor: Popen[bytes]) -> None:
        """Open a run just started; the history lists it at the next look at the store."""
        self.started_here.append(supervisor)
        self.action_history()
        self.open_run(run_id)
        run = self.store.run(run_id)
        self.tell(f"run {run_id} started: {run.name if run else ''}")

    def choose_fusion(self, run_ids: list[int]) -> None:
        """Ask how to fuse the runs (ensemble, soup, greedy soup, WiSE-FT), then do it."""

        def answered(choice: str | None) -> None:
            if not choice:
                return
            members = [{"run": run_id} for run_id in run_ids]
            if choice == "greedy":
                self.fuse_runs(FusionSpec("soup", members, greedy=True), run_ids)
            else:
                self.fuse_runs(FusionSpec(choice, members), run_ids)

        self.push_screen(FuseDialog(run_ids), answered)

    def fuse_runs(self, fusion: FusionSpec, run_ids: list[int]) -> None:
        catch_up(self.store)
        try:
            fusion.validate()
            run_id, supervisor = fuse(self.store, fusion, run_ids)
        except SpecError as error:
            self.tell(str(error), severity="error")
            return
        self._show_new_run(run_id, supervisor)

    def resume_run(self, run_id: int, open_its_screen: bool = True) -> None:
        """Continue a stopped or crashed run from its last checkpoint, and watch it (on its
        own screen, opened unless it is already in view)."""
        catch_up(self.store)
        try:
            supervisor = resume(self.store, run_id)
        except SpecError as error:
            self.tell(str(error), severity="error")
            return
        self.started_here.append(supervisor)
        if open_its_screen:
            self.open_run(run_id)
        self.tell(f"run {run_id} resumed from its last checkpoint")

    def launch_again(self, run_id: int) -> None:
        """Open the form on a run's settings; an ensemble or soup is simply made again."""
        run = self.store.run(run_id)
        if run is None:
            self.tell(f"run {run_id} is no longer in the store", severity="warning")
            return
        if not run.trained:
            fusion = run.fusion
            self.fuse_runs(fusion, [member["run"] for member in fusion.members])
            return
        try:
            spec = run.spec
        except SpecError as error:
            self.tell(f"run {run_id}'s spec cannot be read: {error}", severity="error")
            return
        spec.name = None
        self.push_screen(LaunchScreen(spec))

    def delete_run(self, run_id: int) -> None:
        run = self.store.run(run_id)
        if run is None:
            return
        if run.live and not run.waits_in_queue:
            self.tell(f"run {run_id} is still {run.status}; stop it first", severity="error")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if not delete_runs(self.store, [run]).started:
                self.deleted_here.add(run_id)
                self.tell(f"deleted run {run_id}")
            else:
                self.tell(
                    f"run {run_id} started meanwhile (a resume or a worker); stop it first",
                    severity="warning",
                )
            self.look_at_the_store()

        self.push_screen(
            ConfirmDialog(
                f"Delete run {run_id} ({markup_safe(run.name)}) and its files?", "Delete"
            ),
            answered,
        )

    def edit_run(self, run_id: int) -> None:
        run = self.store.run(run_id)
        if run is None:
            return

        def answered(values: dict[str, str] | None) -> None:
            if values and self.store.run(run_id) is not None:
                self.store.edit(run_id, **values)
                self.tell(f"saved run {run_id}")
                self.look_at_the_store()
            elif values:
                self.tell(f"run {run_id} was deleted meanwhile", severity="warning")

        self.push_screen(EditRunDialog(run_id, run.name, run.tags, run.notes), answered)

    def confirm_stop(self, run_id: int) -> None:
        def answered(yes: bool | None) -> None:
            run = self.store.run(run_id) if yes else None
            if run is not None and stop(run):
                self.tell(f"stopping run {run_id} after this step")

        self.push_screen(
            ConfirmDialog(f"Stop run {run_id}? Its last checkpoint is kept.", "Stop"), answered
        )

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
        self.store.close()
