"""What the app does to runs when a screen asks: start, fuse, resume, launch again, edit,
delete and stop them, asking first where a run could be lost.

`RunActions` is a part of `ResnetApp` (app.py), kept apart so that each file stays readable:
it uses the app's store, its notifications (`tell`), its screens and its look at the store.
"""

from subprocess import Popen

from engine.contract.spec import FusionSpec, RunSpec, SpecError
from resnet_tui.app.dialogs import ConfirmDialog, EditRunDialog, FuseDialog
from resnet_tui.display import markup_safe
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.launcher import fuse, launch, resume, stop
from resnet_tui.runs.removal import delete_runs
from resnet_tui.runs.sources import checkpoint_of
from resnet_tui.runs.worker import queue_folds


class RunActions:
    """The app's actions on runs, for the history, the run screen and the launch form."""

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
        from resnet_tui.app.screens.launch import LaunchScreen  # loaded when first asked for

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

    def open_predict(self, run_id: int) -> None:
        """Classify image files with the run's best weights (a run that has some)."""
        from resnet_tui.app.screens.predict import PredictScreen

        try:
            _, checkpoint = checkpoint_of(self.store, f"run:{run_id}", "predict")
        except SpecError as error:
            self.tell(str(error), severity="warning")
            return
        self.push_screen(PredictScreen(self.store, run_id, checkpoint))

    def open_mistakes(self, run_id: int) -> None:
        """Where the run goes wrong on its test images (a run that was tested)."""
        from resnet_tui.app.screens.mistakes import MistakesScreen

        run = self.store.run(run_id)
        if run is None:
            self.tell(f"run {run_id} was deleted", severity="warning")
            return
        if run.status != "completed":
            self.tell(f"run {run_id} is {run.status}: its mistakes are known once it completes")
            return
        self.push_screen(MistakesScreen(self.store, run_id))
