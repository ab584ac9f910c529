"""The launch screen: a form for a new run, validated as you type, said in the form's words."""

from collections.abc import Callable
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Header, Input, Label, Select, Static

from engine.contract.spec import RunSpec, SpecError, dataset_kind
from resnet_tui.app.dialogs import ConfirmDialog
from resnet_tui.app.screens.launch_dataset import (
    FolderFacts,
    check_named_dataset,
    detected_size,
    download_note,
    folder_lines,
    folder_of,
    resolve_folder_classes,
    scan_folder,
)
from resnet_tui.app.screens.launch_fields import (
    FOLDER,
    FORM_CSS,
    device_options,
    in_form_words,
    kept_options,
    naming_the_field,
    recipe_help,
    several_devices_refused,
    summary,
    warnings,
)
from resnet_tui.app.screens.launch_find_lr import LrFinder
from resnet_tui.app.screens.launch_form import form_fields, form_values, show_the_fields_that_apply
from resnet_tui.app.screens.run_picker import RunPicker
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.display import markup_safe
from resnet_tui.runs.launcher import DevicesUnavailable, list_devices, settle_image_size
from resnet_tui.runs.sources import resolve_init, resolve_teachers
from resnet_tui.runs.sweeps import fold_specs

# How long the typing must pause before an image folder is scanned.
DATASET_CHECK_DELAY_S = 0.3
# The label of the field each widget belongs to, where the widget's id is not the option's.
LABEL_OF_WIDGET = {"folder": "dataset", "init-source": "init", "pick-init": "init"}
LABEL_OF_WIDGET |= {"pick-teacher": "teacher", "download": "data_root", "find-lr": "lr"}


class LaunchScreen(Screen[None]):
    """A new run's choices; Ctrl+L (or the button) launches it, Ctrl+O picks an earlier run,
    Ctrl+F finds a learning rate for it."""

    DEFAULT_CSS = FORM_CSS

    BINDINGS = [
        Binding("ctrl+l", "launch", "Launch", priority=True, id="launch.launch"),
        Binding("ctrl+o", "pick_run", "Pick a run", priority=True, id="launch.pick_run"),
        Binding("ctrl+f", "find_lr", "Find LR", priority=True, id="launch.find_lr"),
        Binding("escape", "back", "Back", id="launch.back"),
    ]

    def __init__(self, start_from: RunSpec | None = None) -> None:
        super().__init__()
        self.start_from = start_from or RunSpec()
        self.kept = kept_options(self.start_from)  # options the form has no field for
        self.spec: RunSpec | None = None
        # This machine's devices as the engine lists them; None until found (or where the
        # engine cannot say).
        self.devices: list[dict[str, Any]] | None = None
        self.devices_unknown = False
        # What scanning each image folder the form named found, by its path.
        self.folders: dict[str, FolderFacts | SpecError] = {}
        self.dataset_timer: Timer | None = None
        self.scanning: str | None = None  # the folder being scanned (or about to be)
        self.lr_finder = LrFinder(self, self._use_lr)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            yield from form_fields(self.start_from)
        yield Static(id="problem")
        yield Static(id="warnings")
        with Horizontal(id="launch-bar"):
            yield Static(id="find-lr-status")
            yield Button("Launch", id="launch", variant="success")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#arch", Select).focus()
        self.query_one("#find-lr-status", Static).display = False
        self.query_one("#recipe-help", Static).update(recipe_help(None))
        self.find_devices()
        self.validate_form()

    def on_screen_resume(self) -> None:
        """Back on the form: the curve of a range test that finished meanwhile."""
        self.lr_finder.show_the_curve()

    def on_unmount(self) -> None:
        """Leaving the form stops its range test."""
        self.lr_finder.stop()

    def action_back(self) -> None:
        """Stop a range test under way; else leave the form."""
        if self.lr_finder.stop():
            self.app.tell("Find LR stopped")
            return
        self.app.pop_screen()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Mark the focused field's label, beside the field's own highlight."""
        for label in self.query(".field-label.-focused"):
            label.remove_class("-focused")
        labelled = self._field_of(event.widget)
        if labelled:
            for label in self.query(f"#{labelled}-label"):
                label.add_class("-focused")
        self.query_one("#recipe-help", Static).update(recipe_help(labelled))

    def _field_of(self, widget: Widget) -> str | None:
        for node in (widget, *widget.ancestors):
            if isinstance(node, Widget) and node.id:
                return LABEL_OF_WIDGET.get(node.id, node.id)
        return None

    @work(thread=True, exclusive=True, group="devices")
    def find_devices(self) -> None:
        """Ask the engine for the devices, off the UI thread: torch takes a while to load."""
        try:
            devices: list[dict[str, Any]] | None = list_devices()
        except DevicesUnavailable:
            devices = None
        self.app.call_from_thread(self._set_devices, devices)

    def _set_devices(self, devices: list[dict[str, Any]] | None) -> None:
        if self not in self.app.screen_stack:
            return
        self.devices, self.devices_unknown = devices, devices is None
        if devices is not None:
            select = self.query_one("#device", Select)
            current = select.value
            options = device_options(devices)
            select.set_options(options)
            if any(value == current for _, value in options):
                select.value = current
            self._offer_several_devices(sum(d["name"].startswith("cuda") for d in devices) > 1)
        self.validate_form()

    def _offer_several_devices(self, several: bool) -> None:
        """Show the DDP fields only on a machine with several GPUs (or where filled in)."""
        for key in ("devices", "nproc"):
            shown = several or bool(self.query_one(f"#{key}", Input).value)
            self.query_one(f"#{key}", Input).display = shown
            self.query_one(f"#{key}-label", Label).display = shown

    def form_values(self) -> dict[str, Any]:
        return form_values(self, self.kept)

    @on(Checkbox.Changed, "#recipe-switch")
    def show_the_recipe(self, event: Checkbox.Changed) -> None:
        """Bring the recipe's fields into view as its switch shows them."""
        if event.value:
            self.call_after_refresh(self.query_one("#recipe-help").scroll_visible)

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def validate_form(self) -> None:
        """Check the form as the CLI would; show the first problem (in the form's words) and
        hold the button, or what the run will do and any warning.

        An image folder is scanned off the UI thread, a moment after the typing stops, once
        for each folder the form names."""
        show_the_fields_that_apply(self)
        problem = self.query_one("#problem", Static)
        self.spec = None
        cautions: list[str] = []
        values = self.form_values()
        try:
            spec = RunSpec.from_dict(values)
            resolve_init(self.app.store, spec)
            resolve_teachers(self.app.store, spec)
            folds = fold_specs(spec)
            waiting = self._check_devices(spec) or self._check_dataset(spec)
            if waiting:
                problem.update(f"[dim]… {waiting}[/]")
            else:
                self.spec = spec
                note = download_note(spec)
                problem.update(summary(spec, len(folds), self.kept) + (f"\n{note}" if note else ""))
                cautions = warnings(spec)
        except SpecError as error:
            said = in_form_words(naming_the_field(str(error), values), markup=True)
            problem.update(f"[red]✗ {said}[/]")
        shown = self.query_one("#warnings", Static)
        shown.update("\n".join(f"⚠ {markup_safe(line)}" for line in cautions))
        shown.display = bool(cautions)
        self.query_one("#launch", Button).disabled = self.spec is None

    def _check_devices(self, spec: RunSpec) -> str | None:
        """Refuse several devices (DDP) where this machine has fewer than two GPUs; say what
        the form waits for while it finds out."""
        if spec.processes <= 1 or self.devices_unknown:
            return None
        if self.devices is None:
            return "finding this machine's devices"
        refused = several_devices_refused(spec, self.devices)
        if refused:
            raise SpecError(refused)
        return None

    def _check_dataset(self, spec: RunSpec) -> str | None:
        """Check the spec's dataset; for an image folder, what its scan found (the size its
        images train at where the form gives none), or that the scan is under way."""
        facts_shown = self.query_one("#folder-facts", Static)
        image_size = self.query_one("#image_size", Input)
        if dataset_kind(spec.dataset) != FOLDER:
            image_size.placeholder = "default"
            check_named_dataset(spec)
            return None
        folder = folder_of(spec.dataset)
        facts = self.folders.get(folder)
        if facts is None:
            facts_shown.update(f"[dim]… scanning {markup_safe(folder)}[/]")
            if folder != self.scanning:  # once a folder, however often the form changes
                self._check_dataset_soon(folder)
            return f"checking {markup_safe(spec.dataset)}"
        if isinstance(facts, SpecError):
            facts_shown.update("")
            raise facts
        resolve_folder_classes(spec, facts)
        image_size.placeholder = (
            f"{detected_size(facts)} (the images are about {facts.typical_size} px)"
            if facts.typical_size
            else "default"
        )
        given = spec.image_size is not None
        settle_image_size(self.app.store, spec, lambda _: facts.typical_size)
        from_a_run = not given and (spec.init.startswith("run:") or bool(spec.teacher))
        facts_shown.update(folder_lines(facts, spec.image_size, from_a_run))
        return None

    def _check_dataset_soon(self, folder: str) -> None:
        self.scanning = folder
        if self.dataset_timer is not None:
            self.dataset_timer.stop()
        self.dataset_timer = self.set_timer(DATASET_CHECK_DELAY_S, lambda: self.scan(folder))

    @work(thread=True, exclusive=True, group="dataset")
    def scan(self, folder: str) -> None:
        """Scan an image folder and measure its images on a worker thread; then the form is
        checked again with the answer."""
        facts = scan_folder(folder)
        self.app.call_from_thread(self._scanned, folder, facts)

    def _scanned(self, folder: str, facts: FolderFacts | SpecError) -> None:
        self.folders[folder] = facts
        if folder == self.scanning:
            self.scanning = None
        if self in self.app.screen_stack:
            self.validate_form()

    @on(Button.Pressed, "#launch")
    def action_launch(self) -> None:
        """Start the run; where it downloads its dataset, after the user says yes to the
        download's size."""
        self._with_valid_spec(self.app.start_run, "start the run", "Download and launch")

    @on(Button.Pressed, "#find-lr")
    def action_find_lr(self) -> None:
        """Run the learning-rate range test of the form's spec in the background; refused
        while one is under way (Escape stops it)."""
        if self.lr_finder.running:
            self.app.tell("Find LR is under way: escape stops it", severity="warning")
            return
        what = "run the range test"
        self._with_valid_spec(self.lr_finder.start, what, "Download and find LR")

    def _with_valid_spec(self, act: Callable[[RunSpec], None], what: str, yes: str) -> None:
        """`act` on the form's spec, where it is valid (else the form's message, as an
        error); where that downloads its dataset, after the user says yes to its size."""
        self.validate_form()
        spec = self.spec
        if spec is None:
            self.app.tell(str(self.query_one("#problem", Static).render()), severity="error")
            return
        note = download_note(spec)
        if note is None:
            act(spec)
            return

        def answered(answer: bool | None) -> None:
            if answer:
                act(spec)

        question = f"{markup_safe(note)}. Download it and {what}?"
        self.app.push_screen(ConfirmDialog(question, yes), answered)

    def _use_lr(self, lr: float) -> None:
        """Put the rate the range test suggested into the Learning rate field (the form
        checks itself again)."""
        field = self.query_one("#lr", Input)
        field.value = f"{lr:g}"
        field.focus()

    @on(Button.Pressed, "#pick-init")
    def pick_init(self) -> None:
        self.action_pick_run("init")

    @on(Button.Pressed, "#pick-teacher")
    def pick_teacher(self) -> None:
        self.action_pick_run("teacher")

    def action_pick_run(self, field: str = "") -> None:
        """Choose an earlier run from a table: the run to start from, or (from the teachers'
        field) one more teacher."""
        focused = self._field_of(self.focused) if self.focused else None
        target = field or ("teacher" if focused == "teacher" else "init")
        what = "a teacher to distil from" if target == "teacher" else "the run to start from"
        self.app.push_screen(RunPicker(self.app.store, what), lambda run: self._picked(target, run))

    def _picked(self, target: str, run_id: str | None) -> None:
        if run_id is None:
            return
        if target == "init":
            self.query_one("#init", Select).value = "run"
            self.query_one("#init-source", Input).value = run_id
            return
        field = self.query_one("#teacher", Input)
        teachers = [t.strip() for t in field.value.split(",") if t.strip()]
        if run_id not in teachers and f"run:{run_id}" not in teachers:
            teachers.append(run_id)
        field.value = ",".join(teachers)
