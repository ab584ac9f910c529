"""The Textual application: screens, the live-run followers, and quitting with runs alive.

The app never imports torch. Runs it launches are detached engine processes; every quarter
second it follows the events of each live run into the store and hands the new events to
the screens that show that run (those with its `run_id`), and starts the next fold of a
cross-validation launched from the form once the one before has ended. The run and compare
screens, and the charting library under them, load when first opened: the history must
paint first.
"""

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from subprocess import Popen
from typing import Any

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from engine.events import STALL_AFTER_S
from engine.spec import FusionSpec, RunSpec, SpecError
from resnet_tui.app.dialogs import ConfirmDialog, EditRunDialog, FuseDialog, QuitDialog
from resnet_tui.app.garbage import YOUNG_EVERY_S, GarbageSchedule
from resnet_tui.app.history import HistoryScreen
from resnet_tui.app.launch import LaunchScreen
from resnet_tui.app.live_screen import LiveRunsScreen
from resnet_tui.app.queue_view import QueueScreen
from resnet_tui.app.sweep_view import SweepScreen
from resnet_tui.follower import EventFollower, refresh_live_runs
from resnet_tui.launcher import (
    fuse,
    fusion_of,
    launch,
    queue,
    request_stop,
    resume,
    start_queued,
)
from resnet_tui.store import LIVE_STATUSES, RunStore, stalled_for
from resnet_tui.sweeps import fold_specs, spread, summary

POLL_INTERVAL_S = 0.25
# How often the app looks in the store for runs started elsewhere (a worker, another shell)
# and shows the queue or sweep in view afresh.
DISCOVER_INTERVAL_S = 1.0


@dataclass
class CrossValidation:
    """The fold runs of a cross-validation launched from the form, which the app trains one
    after another on `device`, as `resnet-tui run --folds K` does; `current` is training."""

    run_ids: list[int]
    device: str
    current: int | None = None


class ResnetApp(App[None]):
    """Launch runs, watch them live, and compare them with earlier ones."""

    TITLE = "resnet-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("n", "new_run", "New run", show=False),
        Binding("h", "history", "History", show=False),
        Binding("ctrl+s", "screenshot", "Save screenshot", show=False),
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.followers: dict[int, EventFollower] = {}
        self.processes: dict[int, Popen[bytes]] = {}
        self.history = HistoryScreen(store)
        self.stalled: set[int] = set()
        self.garbage = GarbageSchedule()
        self.cross_validations: dict[int, CrossValidation] = {}  # by sweep

    def on_mount(self) -> None:
        self.sub_title = str(self.store.path)
        refresh_live_runs(self.store)
        self.push_screen(self.history)
        found = self.discover_runs()
        if found:
            self.notify(f"following {found} live run{'s' if found > 1 else ''} again")
        self.set_interval(POLL_INTERVAL_S, self.poll_runs)
        self.set_interval(DISCOVER_INTERVAL_S, self.look_at_the_store)
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
        textuals = list(super().get_system_commands(screen))
        yield from textuals
        seen = {command.title for command in textuals}
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.description in seen:
                continue
            seen.add(binding.description)
            yield SystemCommand(
                binding.description,
                f"key: {self.get_key_display(binding)}",
                partial(self.run_action, binding.action, active.node),
            )

    def discover_runs(self) -> int:
        """Follow the running runs the app does not follow yet: those running when it
        opened, and those started since by another process (`resnet-tui run --detach` in
        another shell, a queue's worker). Returns how many it found."""
        found = [
            run
            for run in self.store.live_runs()
            if run["status"] == "running" and run["id"] not in self.followers
        ]
        for run in found:
            self.followers[run["id"]] = EventFollower(self.store, run["id"])
        if found and self.history.is_mounted:
            self.history.refresh_runs({run["id"] for run in found})
            for screen in self.screen_stack:
                if hasattr(screen, "show_run_tabs"):
                    screen.show_run_tabs()
        return len(found)

    def look_at_the_store(self) -> None:
        """Follow runs started elsewhere, and show the queue or sweep in view as the store
        has it now (a worker takes runs, another shell queues more or moves them).
        Nothing once the app is closing: its screens are coming down by then."""
        if not self.is_running:
            return
        self.discover_runs()
        if isinstance(self.screen, LiveRunsScreen):
            self.screen.refresh_from_store()

    def poll_runs(self) -> None:
        """Apply what each live run wrote since the last tick; notice runs that ended.
        Nothing once the app is closing."""
        if not self.is_running:
            return
        changed: set[int] = set()
        for run_id, follower in list(self.followers.items()):
            events = follower.poll()
            if events:
                changed.add(run_id)
                for screen in self.screen_stack:
                    if getattr(screen, "run_id", None) == run_id:
                        screen.apply_events(events)
            process = self.processes.get(run_id)
            run = follower.finish_if_dead(None if process is None else process.poll() is None)
            if run is not None and self._stall_changed(run):
                changed.add(run_id)
            if run is None or run["status"] not in LIVE_STATUSES:
                del self.followers[run_id]
                self.processes.pop(run_id, None)
                changed.add(run_id)
                if run is not None:
                    severity = "information" if run["status"] == "completed" else "warning"
                    self.notify(f"run {run_id} {run['status']}", severity=severity)
        if changed:
            self.history.refresh_runs(changed)
            for screen in self.screen_stack:
                if hasattr(screen, "show_run_tabs"):
                    screen.show_run_tabs()
        if self.cross_validations:
            self.train_next_folds()

    def _stall_changed(self, run: dict[str, Any]) -> bool:
        """Note a live run that fell silent (or spoke again); True when that changed."""
        stalled = stalled_for(run) is not None
        if stalled == (run["id"] in self.stalled):
            return False
        if stalled:
            self.stalled.add(run["id"])
            self.notify(
                f"run {run['id']} has written nothing for {STALL_AFTER_S / 60:.0f} minutes, "
                "though its engine is there: stalled?",
                severity="warning",
            )
        else:
            self.stalled.discard(run["id"])
        return True

    def action_new_run(self) -> None:
        self.push_screen(LaunchScreen())

    def action_show_queue(self) -> None:
        self.push_screen(QueueScreen(self.store))

    def open_sweep(self, sweep: int) -> None:
        self.push_screen(SweepScreen(self.store, sweep))

    def action_history(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    def open_run(self, run_id: int) -> None:
        from resnet_tui.app.run_view import RunScreen

        self.push_screen(RunScreen(self.store, run_id))

    def switch_run(self, run_id: int) -> None:
        """Show another run in place of the run screen in view."""
        from resnet_tui.app.run_view import RunScreen

        self.switch_screen(RunScreen(self.store, run_id))

    def compare_runs(self, run_ids: list[int]) -> None:
        from resnet_tui.app.compare_view import CompareScreen

        self.push_screen(CompareScreen(self.store, run_ids))

    def start_run(self, spec: RunSpec) -> None:
        if spec.folds:
            self.start_cross_validation(spec)
            return
        try:
            run_id, process = launch(self.store, spec)
        except SpecError as error:
            self.notify(str(error), severity="error")
            return
        self._watch_new_run(run_id, process)

    def start_cross_validation(self, spec: RunSpec) -> None:
        """Queue the K fold runs of `spec` as one sweep and train them here one after
        another; the sweep's screen shows them, and their mean and spread as they end."""
        try:
            run_ids, sweep = queue(self.store, fold_specs(spec))
        except SpecError as error:
            self.notify(str(error), severity="error")
            return
        assert sweep is not None  # K >= 2 runs are always a sweep
        self.cross_validations[sweep] = CrossValidation(run_ids, spec.device)
        self.action_history()
        self.history.reload()
        self.open_sweep(sweep)
        self.notify(
            f"{spec.folds}-fold cross-validation: runs {run_ids[0]}-{run_ids[-1]} queued as "
            f"sweep {sweep}, to train one after another"
        )
        self.train_next_folds()

    def train_next_folds(self) -> None:
        """Start the next fold of each cross-validation launched here once the one before
        has ended. One the user stopped takes no more folds: they wait in the queue."""
        for sweep, folds in list(self.cross_validations.items()):
            if folds.current in self.followers:
                continue
            ended = None if folds.current is None else self.store.run(folds.current)
            if ended is not None and ended["status"] == "stopped":
                del self.cross_validations[sweep]
                self.notify(
                    f"run {ended['id']} was stopped, so sweep {sweep}'s other folds wait in "
                    "the queue (w), for `resnet-tui worker`",
                    severity="warning",
                )
                continue
            run = self.store.take_next_queued(os.getpid(), among=folds.run_ids)
            if run is None:
                del self.cross_validations[sweep]
                self._cross_validation_done(sweep)
                continue
            try:
                process = start_queued(self.store, run, folds.device)
            except (OSError, SpecError) as error:
                self.store.update(run["id"], status="failed", ended_at=time.time())
                self.notify(f"run {run['id']} could not start: {error}", severity="error")
                continue
            folds.current = run["id"]
            self.processes[run["id"]] = process
            self.followers[run["id"]] = EventFollower(self.store, run["id"])
            self.history.refresh_runs({run["id"]})

    def _cross_validation_done(self, sweep: int) -> None:
        for row in summary(self.store.sweep_runs(sweep)):
            self.notify(
                f"sweep {sweep} done, {row['completed']} of {row['runs']} folds completed: "
                f"val acc {spread(row['best_val_acc'])}, test acc {spread(row['test_acc'])}",
                timeout=30,
            )

    def _watch_new_run(self, run_id: int, process: Popen[bytes]) -> None:
        """Follow a run just started, list it, and open it."""
        self.processes[run_id] = process
        self.followers[run_id] = EventFollower(self.store, run_id)
        self.action_history()
        self.history.reload()
        self.open_run(run_id)
        self.notify(f"run {run_id} started: {self.store.run(run_id)['name']}")

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
        refresh_live_runs(self.store)
        try:
            fusion.validate()
            run_id, process = fuse(self.store, fusion, run_ids)
        except SpecError as error:
            self.notify(str(error), severity="error")
            return
        self._watch_new_run(run_id, process)

    def resume_run(self, run_id: int) -> None:
        """Continue a stopped or crashed run from its last checkpoint, and watch it."""
        refresh_live_runs(self.store)
        try:
            process = resume(self.store, run_id)
        except SpecError as error:
            self.notify(str(error), severity="error")
            return
        self.processes[run_id] = process
        self.followers[run_id] = EventFollower(self.store, run_id)
        self.history.refresh_runs({run_id})
        self.open_run(run_id)
        self.notify(f"run {run_id} resumed from its last checkpoint")

    def launch_again(self, run_id: int) -> None:
        """Open the form on a run's settings; an ensemble or soup is simply made again."""
        run = self.store.run(run_id)
        if run["kind"] != "train":
            fusion = fusion_of(run)
            self.fuse_runs(fusion, [member["run"] for member in fusion.members])
            return
        spec = RunSpec.from_json(run["spec"])
        spec.name = None
        self.push_screen(LaunchScreen(spec))

    def delete_run(self, run_id: int) -> None:
        run = self.store.run(run_id)
        if run["status"] in LIVE_STATUSES:
            self.notify(f"run {run_id} is still {run['status']}; stop it first", severity="error")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.store.delete_runs([run_id])
                if run.get("run_dir"):
                    shutil.rmtree(run["run_dir"], ignore_errors=True)
                self.history.reload()
                self.notify(f"deleted run {run_id}")

        self.push_screen(
            ConfirmDialog(f"Delete run {run_id} ({run['name']}) and its files?", "Delete"), answered
        )

    def edit_run(self, run_id: int) -> None:
        run = self.store.run(run_id)

        def answered(values: dict[str, str] | None) -> None:
            if values:
                self.store.update(run_id, **values)
                self.history.refresh_runs({run_id})
                self.notify(f"saved run {run_id}")

        dialog = EditRunDialog(run_id, run["name"] or "", run["tags"] or "", run["notes"] or "")
        self.push_screen(dialog, answered)

    def confirm_stop(self, run_id: int) -> None:
        def answered(yes: bool | None) -> None:
            if yes and request_stop(self.store.run(run_id)["pid"]):
                self.notify(f"stopping run {run_id} after this step")

        self.push_screen(
            ConfirmDialog(f"Stop run {run_id}? Its last checkpoint is kept.", "Stop"), answered
        )

    async def action_quit(self) -> None:
        live = [run_id for run_id in self.followers]
        queued = {run["id"] for run in self.store.queued_runs()}
        waiting: Counter[str] = Counter()
        for folds in self.cross_validations.values():
            waiting[folds.device] += sum(run_id in queued for run_id in folds.run_ids)
        if not live and not any(waiting.values()):
            self.exit()
            return

        def answered(choice: str | None) -> None:
            if choice == "stop":
                for run_id in live:
                    request_stop(self.store.run(run_id)["pid"])
            if choice in ("stop", "leave"):
                self.exit()

        self.push_screen(QuitDialog(len(live), waiting), answered)

    def on_unmount(self) -> None:
        """Runs are detached on purpose: leaving the app neither waits for nor kills them."""
        self.garbage.stop()
        self.store.close()
