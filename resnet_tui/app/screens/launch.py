"""The launch screen: a form for a new run, validated as you type with the CLI's messages."""

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from engine.contract import catalog, locate
from engine.contract.freezing import what_trains
from engine.contract.spec import RunSpec, SpecError, dataset_kind
from resnet_tui.display import markup_safe
from resnet_tui.runs.launcher import DevicesUnavailable, list_devices
from resnet_tui.runs.sources import resolve_init, resolve_teachers
from resnet_tui.runs.sweeps import fold_specs

FOLDER = "imagefolder"
# How long the typing must pause before the dataset is checked (an image folder is scanned).
DATASET_CHECK_DELAY_S = 0.3

# Form fields typed as text: (spec option, label).
TEXT_FIELDS = (
    ("devices", "Devices (DDP)"),
    ("nproc", "DDP processes"),
    ("name", "Name"),
    ("epochs", "Epochs"),
    ("batch_size", "Batch size"),
    ("lr", "Learning rate"),
    ("seed", "Seed"),
    ("classes", "Classes"),
    ("limit", "Limit images"),
    ("image_size", "Image size"),
    ("teacher", "Teachers"),
    ("kd_alpha", "KD alpha"),
    ("kd_temperature", "KD temperature"),
    ("lwf", "LwF alpha"),
    ("folds", "Cross-val folds"),
)
# What a text field takes, where its default says too little.
PLACEHOLDERS = {
    "teacher": "run ids to distil from, e.g. 3 or 3,5",
    "classes": "all",
    "lwf": "0: off; 0.5 keeps the --init run's task",
    "devices": "e.g. cuda:0,cuda:1",
    "nproc": "1; or e.g. 2",
    "folds": "off; K runs, e.g. 5",
}


def _arch_options() -> list[tuple[str, str]]:
    return [
        (f"{arch.name}  ·  {arch.parameters / 1e6:.2f} M  ·  {arch.description}", arch.name)
        for arch in catalog.ARCHITECTURES.values()
    ]


def _dataset_options() -> list[tuple[str, str]]:
    options = []
    for name, info in catalog.DATASETS.items():
        if name == FOLDER:
            options.append(("imagefolder  ·  your own images (give the path below)", FOLDER))
            continue
        try:
            locate.check_dataset(RunSpec(dataset=name))
            where = "built in" if info.source == "builtin" else "on disk"
        except SpecError:
            where = "not downloaded"
        options.append((f"{name}  ·  {len(info.classes)} classes  ·  {where}", name))
    return options


def _dataset_key(spec: RunSpec) -> tuple[Any, ...]:
    """What checking a spec's dataset depends on."""
    return (spec.dataset, tuple(spec.classes or ()), spec.download, spec.data_root)


def _summary(spec: RunSpec, folds: int) -> str:
    """The form's line for a spec that can run: what it trains, how, and what is frozen."""
    arch = catalog.ARCHITECTURES[spec.arch]
    trains = what_trains(
        spec.arch, spec.freeze, spec.epochs, spec.unfreeze_every, spec.probe_epochs
    )
    return (
        f"[green]✓[/] {spec.arch} ({arch.parameters / 1e6:.2f} M parameters) on "
        f"{markup_safe(spec.dataset)}, {spec.epochs} epochs of batch {spec.batch_size}, "
        f"{spec.optimizer} lr {spec.peak_lr:g}; weights {markup_safe(spec.init)} "
        f"({catalog.describe_init(spec.init)}), policy {spec.freeze} "
        f"({catalog.describe_freeze(spec.freeze)})"
        + (
            f"; distilled from {', '.join(spec.teacher)} (alpha {spec.kd_alpha:g}, "
            f"temperature {spec.kd_temperature:g})"
            if spec.teacher
            else ""
        )
        + (f"; learning without forgetting (alpha {spec.lwf:g})" if spec.lwf else "")
        + (f"; DDP on {spec.placement}" if spec.processes > 1 else "")
        + (
            f"; {folds}-fold cross-validation: {folds} runs queued as one sweep, trained one "
            "after another by a worker of their own"
            if spec.folds
            else ""
        )
        + f"\n{markup_safe(trains)}"
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


INIT_CHOICES = [
    ("scratch · random weights", "scratch"),
    ("imagenet · torchvision's weights", "imagenet"),
    ("an earlier run's checkpoint", "run"),
    ("a weights file", "file"),
]
FREEZE_CHOICES = [
    ("full · everything trains", "full"),
    ("head · a linear probe", "head"),
    ("last-1 · last stage and head", "last-1"),
    ("last-2 · last two stages and head", "last-2"),
    ("gradual · thaw a stage at a time", "gradual"),
    ("lp-ft · probe, then fine-tune", "lp-ft"),
]


class LaunchScreen(Screen[None]):
    """A new run's choices; Ctrl+L (or the button) launches it."""

    BINDINGS = [
        Binding("ctrl+l", "launch", "Launch", priority=True),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, start_from: RunSpec | None = None) -> None:
        super().__init__()
        self.start_from = start_from or RunSpec()
        self.spec: RunSpec | None = None
        # What checking each dataset the form named found: its classes, or why it cannot be
        # used; keyed by what the check reads (_dataset_key).
        self.dataset_checks: dict[tuple[Any, ...], list[str] | SpecError] = {}
        self.dataset_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        spec = self.start_from
        folder = spec.dataset.split(":", 1)[1] if spec.dataset.startswith(FOLDER + ":") else ""
        yield Header()
        with VerticalScroll(id="form"):
            yield Label("Architecture")
            yield Select(
                _arch_options(), value=spec.arch, allow_blank=False, compact=True, id="arch"
            )
            yield Label("Dataset")
            yield Select(
                _dataset_options(),
                value=FOLDER if folder else spec.dataset,
                allow_blank=False,
                compact=True,
                id="dataset",
            )
            yield Input(
                folder,
                placeholder="image folder path (train/ and val/, or classes)",
                id="folder",
                compact=True,
            )
            yield Input(
                spec.init.split(":", 1)[1] if spec.init.startswith(("run:", "file:")) else "",
                placeholder="the run's id (12, or 12:last), or the weights file's path",
                id="init-source",
                compact=True,
            )
            with Grid(id="choices"):
                choices = (
                    ("init", "Weights start", INIT_CHOICES),
                    ("freeze", "Freeze policy", FREEZE_CHOICES),
                    ("optimizer", "Optimizer", [(k, k) for k in catalog.OPTIMIZERS]),
                    ("device", "Device", [("auto · the best there is", "auto"), ("cpu", "cpu")]),
                )
                for key, label, options in choices:
                    value = (
                        getattr(spec, key).split(":", 1)[0] if key == "init" else getattr(spec, key)
                    )
                    yield Label(label)
                    yield Select(
                        options,
                        value=value if any(value == v for _, v in options) else options[0][1],
                        allow_blank=False,
                        compact=True,
                        id=key,
                    )
                for key, label in TEXT_FIELDS:
                    yield Label(label)
                    default = getattr(RunSpec(), key)
                    yield Input(
                        _text(getattr(spec, key)) if getattr(spec, key) != default else "",
                        placeholder=PLACEHOLDERS.get(key) or _text(default) or "default",
                        id=key,
                        compact=True,
                    )
        yield Static(id="problem")
        with Horizontal(id="launch-bar"):
            yield Button("Launch", id="launch", variant="success")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#arch", Select).focus()
        self.find_devices()
        self.validate_form()

    @work(thread=True, exclusive=True)
    def find_devices(self) -> None:
        """Ask the engine for the devices, off the UI thread: torch takes a while to load."""
        try:
            devices = list_devices()
        except DevicesUnavailable:
            return
        options = [("auto · the best there is", "auto")]
        for device in devices:
            detail = device["description"]
            if "free_mb" in device:
                detail += f" · {device['free_mb']:,} MB free"
            options.append((f"{device['name']} · {detail}", device["name"]))
        self.app.call_from_thread(self._set_devices, options)

    def _set_devices(self, options: list[tuple[str, str]]) -> None:
        select = self.query_one("#device", Select)
        current = select.value
        select.set_options(options)
        if any(value == current for _, value in options):
            select.value = current

    def form_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key in ("arch", "init", "freeze", "optimizer", "device"):
            values[key] = self.query_one(f"#{key}", Select).value
        if values["init"] in ("run", "file"):
            values["init"] += ":" + self.query_one("#init-source", Input).value.strip()
        dataset = self.query_one("#dataset", Select).value
        if dataset == FOLDER:
            dataset = FOLDER + ":" + self.query_one("#folder", Input).value.strip()
        values["dataset"] = dataset
        for key, _ in TEXT_FIELDS:
            text = self.query_one(f"#{key}", Input).value.strip()
            if text:
                values[key] = text
        return values

    @on(Input.Changed)
    @on(Select.Changed)
    def validate_form(self) -> None:
        """Check the form as the CLI would; show the first problem and hold the button.

        An image folder is scanned off the UI thread, a moment after the typing stops, once
        for each folder the form names."""
        self.query_one("#folder", Input).display = (
            self.query_one("#dataset", Select).value == FOLDER
        )
        self.query_one("#init-source", Input).display = self.query_one("#init", Select).value in (
            "run",
            "file",
        )
        problem = self.query_one("#problem", Static)
        self.spec = None
        try:
            spec = RunSpec.from_dict(self.form_values())
            resolve_init(self.app.store, spec)
            resolve_teachers(self.app.store, spec)
            folds = fold_specs(spec)
            dataset = self.dataset_checked(spec)
            if dataset is None:
                problem.update(f"[dim]… checking {markup_safe(spec.dataset)}[/]")
                self._check_dataset_soon(spec)
            elif isinstance(dataset, SpecError):
                raise dataset
            else:
                spec.classes = dataset or None
                self.spec = spec
                problem.update(_summary(spec, len(folds)))
        except SpecError as error:
            problem.update(f"[red]✗ {markup_safe(str(error))}[/]")
        self.query_one("#launch", Button).disabled = self.spec is None

    def dataset_checked(self, spec: RunSpec) -> list[str] | SpecError | None:
        """What checking the spec's dataset found: its classes, or why it cannot be used; None
        while an image folder waits to be scanned. Built-in and torchvision datasets take a
        few file lookups, checked at once."""
        if dataset_kind(spec.dataset) == FOLDER:
            return self.dataset_checks.get(_dataset_key(spec))
        try:
            locate.check_dataset(spec)
        except SpecError as error:
            return error
        return list(spec.classes or [])

    def _check_dataset_soon(self, spec: RunSpec) -> None:
        if self.dataset_timer is not None:
            self.dataset_timer.stop()
        self.dataset_timer = self.set_timer(DATASET_CHECK_DELAY_S, lambda: self.check_dataset(spec))

    @work(thread=True, exclusive=True, group="dataset")
    def check_dataset(self, spec: RunSpec) -> None:
        """Whether the spec's dataset is there (its classes, resolved), or why not; then the
        form is checked again with the answer."""
        key = _dataset_key(spec)
        try:
            locate.check_dataset(spec)
            answer: list[str] | SpecError = list(spec.classes or [])
        except SpecError as error:
            answer = error
        self.app.call_from_thread(self._dataset_checked, key, answer)

    def _dataset_checked(self, key: tuple[Any, ...], answer: list[str] | SpecError) -> None:
        self.dataset_checks[key] = answer
        self.validate_form()

    @on(Button.Pressed, "#launch")
    def action_launch(self) -> None:
        self.validate_form()
        if self.spec is None:
            self.app.tell(str(self.query_one("#problem", Static).render()), severity="error")
            return
        self.app.start_run(self.spec)
