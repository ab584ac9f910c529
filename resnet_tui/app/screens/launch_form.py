"""The launch form's widgets: its fields as a spec fills them, which of them apply, and the
options they hold."""

from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from engine.contract import catalog, locate
from engine.contract.spec import RunSpec
from resnet_tui.app.screens.launch_dataset import dataset_options, folder_of
from resnet_tui.app.screens.launch_fields import (
    AUTO_AUGMENT_CHOICES,
    AUTO_DEVICE,
    FOLDER,
    FREEZE_CHOICES,
    INIT_CHOICES,
    LABELS,
    PLACEHOLDERS,
    RECIPE,
    RECIPE_FIELDS,
    TEXT_FIELDS,
    arch_options,
    resolved_root,
    text_of,
)

# The buttons beside a text field: (field, button id, label).
FIELD_BUTTONS = {"teacher": ("pick-teacher", "runs…"), "lr": ("find-lr", "find… ^f")}


def form_fields(spec: RunSpec) -> ComposeResult:
    """The form's fields, filled from `spec`: architecture, dataset (an image folder's path
    and what its scan found, a torchvision dataset's data root), where the weights start,
    then the grid of choices and text fields."""
    folder = folder_of(spec.dataset)
    data_root = spec.data_root or str(locate.default_data_root())
    yield Label("Architecture", id="arch-label", classes="field-label")
    yield Select(arch_options(), value=spec.arch, allow_blank=False, compact=True, id="arch")
    yield Label("Dataset", id="dataset-label", classes="field-label")
    yield Select(
        dataset_options(data_root),
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
    yield Static(id="folder-facts")
    with Horizontal(id="data-row", classes="field-row"):
        yield Label("Data root", id="data_root-label", classes="field-label")
        yield Input(data_root, placeholder="where datasets live", id="data_root", compact=True)
        yield Checkbox("Download if missing", spec.download, id="download", compact=True)
    with Horizontal(id="init-row", classes="field-row"):
        yield Input(
            spec.init.split(":", 1)[1] if spec.init.startswith(("run:", "file:")) else "",
            placeholder="the run's id (12, or 12:last), or the weights file's path",
            id="init-source",
            compact=True,
        )
        yield Button("runs… ctrl+o", id="pick-init", compact=True)
    with Grid(id="choices"):
        yield from choices(spec)
    yield from recipe(spec)


def choices(spec: RunSpec) -> ComposeResult:
    """The grid's fields: the choices from a list, then the text fields (a default value
    left empty, its placeholder saying what empty means)."""
    devices = [AUTO_DEVICE, ("cpu", "cpu")]
    if spec.device not in ("auto", "cpu"):
        devices.append((spec.device, spec.device))
    listed = (
        ("init", INIT_CHOICES),
        ("freeze", FREEZE_CHOICES),
        ("optimizer", [(k, k) for k in catalog.OPTIMIZERS]),
        ("device", devices),
    )
    for key, options in listed:
        value = getattr(spec, key).split(":", 1)[0] if key == "init" else getattr(spec, key)
        yield Label(LABELS[key], id=f"{key}-label", classes="field-label")
        yield Select(
            options,
            value=value if any(value == v for _, v in options) else options[0][1],
            allow_blank=False,
            compact=True,
            id=key,
        )
    for key, label in TEXT_FIELDS:
        yield Label(label, id=f"{key}-label", classes="field-label")
        field = text_field(spec, key)
        if key in FIELD_BUTTONS:
            button_id, button_label = FIELD_BUTTONS[key]
            with Horizontal(classes="field-row"):
                yield field
                yield Button(button_label, id=button_id, compact=True)
        else:
            yield field


def text_field(spec: RunSpec, key: str) -> Input:
    """The text field of a spec option: its value, or empty for the default (which its
    placeholder says)."""
    default = getattr(RunSpec(), key)
    return Input(
        text_of(getattr(spec, key)) if getattr(spec, key) != default else "",
        placeholder=PLACEHOLDERS.get(key) or text_of(default) or "default",
        id=key,
        compact=True,
    )


def recipe(spec: RunSpec) -> ComposeResult:
    """The Recipe switch and the regularisers and augmentation it shows (on from the start
    where `spec` sets any), with a line describing the focused one."""
    default = RunSpec()
    used = any(getattr(spec, key) != getattr(default, key) for key in RECIPE)
    yield Checkbox(
        "Recipe: regularisation and augmentation", used, id="recipe-switch", compact=True
    )
    with Grid(id="recipe"):
        yield Label(LABELS["auto_augment"], id="auto_augment-label", classes="field-label")
        yield Select(
            AUTO_AUGMENT_CHOICES,
            value=spec.auto_augment,
            allow_blank=False,
            compact=True,
            id="auto_augment",
        )
        for key, label in RECIPE_FIELDS:
            yield Label(label, id=f"{key}-label", classes="field-label")
            yield text_field(spec, key)
    yield Static(id="recipe-help")


def form_values(form: Widget, kept: dict[str, Any]) -> dict[str, Any]:
    """The spec's options as the form's fields hold them, over the `kept` options it has
    no field for."""
    values: dict[str, Any] = dict(kept)
    for key in ("arch", "init", "freeze", "optimizer", "device"):
        values[key] = form.query_one(f"#{key}", Select).value
    if "," in values["device"]:  # all the GPUs: several devices (DDP)
        values["devices"] = values["device"]
        values["device"] = values["device"].split(",")[0]
    if values["init"] in ("run", "file"):
        values["init"] += ":" + form.query_one("#init-source", Input).value.strip()
    dataset = str(form.query_one("#dataset", Select).value)
    if catalog.DATASETS[dataset].source == "torchvision":  # where it is, and fetch it?
        root = form.query_one("#data_root", Input).value.strip()
        values["data_root"] = resolved_root(root) if root else None
        values["download"] = form.query_one("#download", Checkbox).value
    if dataset == FOLDER:
        dataset = FOLDER + ":" + form.query_one("#folder", Input).value.strip()
    values["dataset"] = dataset
    values["auto_augment"] = form.query_one("#auto_augment", Select).value
    for key, _ in TEXT_FIELDS + RECIPE_FIELDS:  # the recipe's too where hidden: still used
        text = form.query_one(f"#{key}", Input).value.strip()
        if text:
            values[key] = text
    return values


def show_the_fields_that_apply(form: Widget) -> None:
    """Show an image folder's path only for an image folder, the data root only for a
    torchvision dataset, the weights' source only where they start from a run or a file,
    the recipe's fields where its switch is on."""
    dataset = form.query_one("#dataset", Select).value
    init = form.query_one("#init", Select).value
    form.query_one("#folder", Input).display = dataset == FOLDER
    form.query_one("#folder-facts", Static).display = dataset == FOLDER
    torchvision = catalog.DATASETS[str(dataset)].source == "torchvision"
    form.query_one("#data-row").display = torchvision
    for shown in ("#init-row", "#init-source"):
        form.query_one(shown).display = init in ("run", "file")
    form.query_one("#pick-init", Button).display = init == "run"
    shown = form.query_one("#recipe-switch", Checkbox).value
    form.query_one("#recipe").display = shown
    form.query_one("#recipe-help").display = shown
