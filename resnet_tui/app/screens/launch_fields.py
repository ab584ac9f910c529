"""The launch form's fields and words: labels, choices, messages in the form's own words, and
the summary and warnings a spec gets before it runs."""

import re
from pathlib import Path
from typing import Any

from engine.contract import catalog
from engine.contract.freezing import parse_freeze, what_trains
from engine.contract.regularisation import AUTO_AUGMENTS
from engine.contract.spec import RunSpec, SpecError, spec_fields
from resnet_tui.display import markup_safe

FOLDER = "imagefolder"

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
    ("unfreeze_every", "Unfreeze every"),
    ("probe_epochs", "Probe epochs"),
    ("early_stop_patience", "Early stop after"),
    ("early_stop_min_delta", "Early stop delta"),
)
# Form fields chosen from a list: (spec option, label).
CHOSEN_FIELDS = (
    ("arch", "Architecture"),
    ("dataset", "Dataset"),
    ("init", "Weights start"),
    ("freeze", "Freeze policy"),
    ("optimizer", "Optimizer"),
    ("device", "Device"),
)
# The recipe's fields (regularisers and augmentation), shown by the form's Recipe switch:
# chosen from a list, then typed as text.
RECIPE_CHOSEN = (("auto_augment", "Auto augment"),)
RECIPE_FIELDS = (
    ("label_smoothing", "Label smoothing"),
    ("mixup", "Mixup alpha"),
    ("cutmix", "CutMix alpha"),
    ("random_erasing", "Random erasing"),
    ("ema_decay", "EMA decay"),
    ("drop_path", "Stochastic depth"),
)
RECIPE = tuple(key for key, _ in RECIPE_CHOSEN + RECIPE_FIELDS)
# Every option the form has a field for, and the field's label: the one place a message's
# `--flag` becomes the words on the screen.
LABELS = dict(
    CHOSEN_FIELDS
    + (("data_root", "Data root"), ("download", "Download"))
    + TEXT_FIELDS
    + RECIPE_CHOSEN
    + RECIPE_FIELDS
)

# What a text field takes, where its default says too little.
PLACEHOLDERS = {
    "teacher": "run ids to distil from, e.g. 3 or 3,5 (ctrl+o picks)",
    "classes": "all",
    "lwf": "0: off; 0.5 keeps the earlier run's task",
    "devices": "e.g. cuda:0,cuda:1",
    "nproc": "1; or e.g. 2",
    "folds": "off; K runs, e.g. 5",
    "unfreeze_every": "1 (gradual: epochs a stage)",
    "probe_epochs": "1 (lp-ft probing by SGD)",
    "early_stop_patience": "off; N epochs without a better val acc",
    "early_stop_min_delta": "0 (a better val acc beats the best by more)",
    "label_smoothing": "0: off; e.g. 0.1",
    "mixup": "0: off; e.g. 0.2",
    "cutmix": "0: off; e.g. 1.0",
    "random_erasing": "0: off; e.g. 0.25",
    "ema_decay": "off; e.g. 0.999",
    "drop_path": "0: off; e.g. 0.1",
}
AUTO_AUGMENT_CHOICES = [(policy, policy) for policy in AUTO_AUGMENTS]

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
AUTO_DEVICE = ("auto · the best there is", "auto")

# What fetching each torchvision dataset downloads (its archives, as torchvision gets them).
DOWNLOAD_MB = {"mnist": 11, "fashion-mnist": 30, "cifar10": 163, "cifar100": 161}

# What a freeze policy leaves to pretrained weights, said where the weights start at random.
NEEDS_PRETRAINED = {
    "head": "only the head trains, on random features",
    "last": "the frozen stages stay random",
    "gradual": "the stages wait frozen at random weights",
    "lp-ft": "the probe learns on random features",
}

# The form's look: the focused field and its label stand out in every theme.
FORM_CSS = """
LaunchScreen Input.-textual-compact:focus,
LaunchScreen Select:focus > SelectCurrent,
LaunchScreen Checkbox:focus {
    background: $accent 35%;
}
LaunchScreen Button.-textual-compact:focus {
    text-style: bold reverse;
}
LaunchScreen .field-label.-focused {
    background: $accent;
    color: auto 90%;
    text-style: bold;
}
LaunchScreen .field-row {
    height: 1;
}
LaunchScreen #data-row, LaunchScreen #init-row {
    margin-top: 1;
}
LaunchScreen .field-row > .field-label {
    width: 17;
}
LaunchScreen .field-row > Input {
    width: 1fr;
}
LaunchScreen .field-row > Button, LaunchScreen .field-row > Checkbox {
    width: auto;
    margin-left: 1;
}
LaunchScreen #folder-facts {
    height: auto;
    color: $text-muted;
}
LaunchScreen #recipe-switch {
    margin-top: 1;
}
LaunchScreen #recipe {
    grid-size: 4;
    grid-columns: 16 1fr 16 1fr;
    grid-rows: 1;
    grid-gutter: 1 1;
    height: auto;
    margin-top: 1;
}
LaunchScreen #recipe-help {
    height: auto;
    color: $text-muted;
}
LaunchScreen #find-lr {
    min-width: 0;
}
LaunchScreen #find-lr-status {
    width: 1fr;
    padding-top: 1;
}
LaunchScreen #warnings {
    height: auto;
    padding: 0 1;
    color: $text-warning;
    background: $warning 10%;
}
"""

_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
_OPTIONS = {field.name for field in spec_fields()}
# The CLI's phrases that the form says another way.
_PHRASES = (
    (re.compile(r"; `resnet-tui runs` lists the runs"), "; ctrl+o picks one"),
    (
        re.compile(r"--nproc (\d+) and (\d+) --devices disagree"),
        r"--nproc says \1 and --devices names \2",
    ),
)


def label_of(option: str) -> str:
    """The form's name of a spec option: its field's label, or (for an option the form has no
    field for, kept from an earlier run) the option in words."""
    return LABELS.get(option) or option.replace("_", " ")


def in_form_words(message: str, markup: bool = False) -> str:
    """A CLI message with each `--flag` of a spec option said as the form's label; with
    `markup`, ready for a Static (user text escaped, labels in bold)."""
    for cli, form in _PHRASES:
        message = cli.sub(form, message)
    said, start = [], 0
    for flag in _FLAG.finditer(message):
        option = flag.group(1).replace("-", "_")
        if option not in _OPTIONS:
            continue
        said.append(_part(message[start : flag.start()], markup))
        said.append(f"[b]{label_of(option)}[/b]" if markup else label_of(option))
        start = flag.end()
    said.append(_part(message[start:], markup))
    return "".join(said)


def naming_the_field(message: str, values: dict[str, Any]) -> str:
    """A message that names no option, led by the label of the field whose value alone is
    refused with it ("unknown device 'gpu:x'" is the Devices field's); else as it is."""
    if any(flag.group(1).replace("-", "_") in _OPTIONS for flag in _FLAG.finditer(message)):
        return message
    for key, label in TEXT_FIELDS + RECIPE_FIELDS:
        if key not in values:
            continue
        try:
            RunSpec.from_dict({key: values[key]})
        except SpecError as error:
            if str(error) == message:
                return f"{label}: {message}"
    return message


def _part(text: str, markup: bool) -> str:
    return markup_safe(text) if markup else text


def arch_options() -> list[tuple[str, str]]:
    return [
        (f"{arch.name}  ·  {arch.parameters / 1e6:.2f} M  ·  {arch.description}", arch.name)
        for arch in catalog.ARCHITECTURES.values()
    ]


def download_size(dataset: str) -> str:
    """What fetching a torchvision dataset downloads, in words: "about 11 MB"."""
    return f"about {DOWNLOAD_MB[dataset]} MB" if dataset in DOWNLOAD_MB else "its files"


def device_options(devices: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The device choices of this machine, with their memory; all its GPUs at once (DDP)
    where it has several."""
    options = [AUTO_DEVICE]
    for device in devices:
        detail = str(device.get("description", ""))
        if "free_mb" in device and "total_mb" in device:
            detail += (
                f" · {device['free_mb'] / 1024:.1f} of {device['total_mb'] / 1024:.1f} GB free"
            )
        elif "free_mb" in device:
            detail += f" · {device['free_mb'] / 1024:.1f} GB free"
        if "threads" in device:
            detail += f" · {device['threads']} threads"
        options.append((f"{device['name']} · {detail}", str(device["name"])))
    gpus = gpus_of(devices)
    if len(gpus) > 1:
        options.append((f"all {len(gpus)} GPUs · several devices (DDP)", ",".join(gpus)))
    return options


def gpus_of(devices: list[dict[str, Any]]) -> list[str]:
    return [str(d["name"]) for d in devices if str(d["name"]).startswith("cuda")]


def several_devices_refused(spec: RunSpec, devices: list[dict[str, Any]]) -> str | None:
    """Why this machine cannot train `spec` on several devices (DDP), in the form's words; None
    where it can (or the spec asks for one device)."""
    gpus = gpus_of(devices)
    field = LABELS["devices"] if spec.devices else LABELS["nproc"]
    if spec.processes <= 1:
        return None
    if len(gpus) < 2:
        has = "no GPU" if not gpus else "one GPU"
        return (
            f"{field}: this machine has {has}, and several devices (DDP) need two GPUs or "
            f"more; leave {LABELS['devices']} and {LABELS['nproc']} empty to train on one"
        )
    unknown = [d for d in spec.devices or () if d not in gpus]
    if unknown:
        return f"{field}: there is no {unknown[0]} here; this machine has {', '.join(gpus)}"
    if spec.processes > len(gpus):
        return (
            f"{field}: {spec.processes} processes, but this machine has {len(gpus)} GPUs; "
            f"give {len(gpus)} or fewer"
        )
    return None


def warnings(spec: RunSpec) -> list[str]:
    """What may not work as meant, though the run can start: a freeze policy that needs
    pretrained weights on weights that start at random."""
    policy = parse_freeze(spec.freeze)
    if spec.init != "scratch" or policy.name not in NEEDS_PRETRAINED:
        return []
    return [
        f"{policy.text} on scratch weights: {NEEDS_PRETRAINED[policy.name]}; start from "
        "imagenet or an earlier run, or train in full"
    ]


def summary(spec: RunSpec, folds: int, kept: dict[str, Any]) -> str:
    """The form's line for a spec that can run: what it trains, how, and what is frozen."""
    arch = catalog.ARCHITECTURES[spec.arch]
    # the converged probe fits a linear head on a plain cross-entropy alone (engine/transfer)
    linear_probe = spec.head == "linear" and not spec.teacher and spec.lwf == 0
    probe = spec.probe if linear_probe else "sgd"
    trains = what_trains(
        spec.arch, spec.freeze, spec.epochs, spec.unfreeze_every, spec.probe_epochs, probe
    )
    return (
        f"[green]✓[/] {spec.arch} ({arch.parameters / 1e6:.2f} M parameters) on "
        f"{markup_safe(spec.dataset)}, {spec.epochs} epochs of batch {spec.batch_size}, "
        f"{spec.optimizer} lr {spec.peak_lr:g}; weights {markup_safe(spec.init)} "
        f"({in_form_words(catalog.describe_init(spec.init), markup=True)}), policy {spec.freeze} "
        f"({in_form_words(catalog.describe_freeze(spec.freeze), markup=True)})"
        + (
            f"; distilled from {', '.join(spec.teacher)} (alpha {spec.kd_alpha:g}, "
            f"temperature {spec.kd_temperature:g})"
            if spec.teacher
            else ""
        )
        + (f"; learning without forgetting (alpha {spec.lwf:g})" if spec.lwf else "")
        + (f"; recipe: {recipe_words(spec)}" if recipe_words(spec) else "")
        + (f"; DDP on {spec.placement}" if spec.processes > 1 else "")
        + (
            f"; {folds}-fold cross-validation: {folds} runs queued as one sweep, trained one "
            "after another by a worker of their own"
            if spec.folds
            else ""
        )
        + (
            "; kept from the run it repeats: "
            + ", ".join(f"{label_of(k)} {markup_safe(text_of(v))}" for k, v in kept.items())
            if kept
            else ""
        )
        + f"\n{markup_safe(trains)}"
    )


def recipe_help(key: str | None) -> str:
    """The line under the recipe's fields: what the focused one does, in the form's words
    (markup), or how to find out."""
    if key not in RECIPE:
        return "[dim]Each field's use shows here when it has the focus; empty is off.[/]"
    (field,) = [field for field in spec_fields() if field.name == key]
    return in_form_words(field.help, markup=True)


def recipe_words(spec: RunSpec) -> str:
    """The recipe's fields that differ from their defaults, by label: `Mixup alpha 0.2,
    EMA decay 0.999`; empty where none does."""
    default = RunSpec()
    return ", ".join(
        f"{LABELS[key]} {text_of(getattr(spec, key))}"
        for key in RECIPE
        if getattr(spec, key) != getattr(default, key)
    )


def text_of(value: Any) -> str:
    """A spec value as a text field shows it."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def kept_options(start_from: RunSpec) -> dict[str, Any]:
    """The options of the spec the form starts from that it has no field for and that differ
    from the default: kept as they are, so a run made again keeps them."""
    default = RunSpec()
    shown = set(LABELS) | {"devices", "prune", "prune_after", "prune_factor"}  # sweeps' own
    return {
        field.name: getattr(start_from, field.name)
        for field in spec_fields()
        if field.name not in shown
        and getattr(start_from, field.name) != getattr(default, field.name)
    }


def resolved_root(root: str) -> str:
    """A data root as the CLI keeps it: absolute, `~` expanded."""
    try:
        return str(Path(root).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):
        return root
