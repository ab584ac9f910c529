"""The run specification: every choice of one training run, its validation and its JSON form.

Torch-free: the CLI and the app validate a spec before anything starts, with the same
one-line messages, and the engine reads the JSON back. Each option is declared with its kind,
help, panel and check in contract/run_options.py; the rules between options are
contract/combinations.py.

spec_fields() -> [SpecField(name, kind, default, help, panel)]: users' options, for CLI and app.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass
from typing import Any

from engine.contract import catalog
from engine.contract.combinations import FUSION_RULES, RUN_RULES
from engine.contract.freezing import parse_freeze
from engine.contract.options import (
    Bounds,
    Choice,
    Normalised,
    SpecField,
    check_fields,
    internal,
    read_options,
    user_fields,
)
from engine.contract.pruning import pruning_options_fit
from engine.contract.run_options import RunOptions
from engine.contract.values import (
    read_device,
    read_init,
    read_teachers,
    read_weights,
    whole_number,
)

# A stored spec (a run's spec.json, the store's copy, a checkpoint's) holds every option of
# its day; where one predates an option whose default changed what a run does, it means
# what it meant then: a head trained by epochs (`--probe` came with the converged probe),
# an image folder of train/ and val/ validated on val/ (until validation was held out), one
# of small images was decoded by workers every epoch (until they were decoded once).
STORED_BEFORE = {"probe": "sgd", "val_from_train": False, "decode_small_folders": False}


class SpecError(ValueError):
    """A spec that cannot run; the message is one line saying what is wrong and what to do."""


# A line break in a value the user gave is shown as its escape, so a message stays one line.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


@contextmanager
def _refusals() -> Iterator[None]:
    """Raise what a check refuses (a ValueError with the user's line) as one SpecError line."""
    try:
        yield
    except ValueError as error:
        raise SpecError(str(error).translate(_LINE_BREAKS)) from None


def normalise_init(init: str) -> str:
    """Check an --init source and write it one way: `run:12`, `file:/abs/path.pt`..."""
    with _refusals():
        return read_init(init)


def normalise_teachers(teachers: list[str]) -> list[str]:
    """Check --teacher runs and write each as `run:ID` (or `run:ID:last`); a bare id will do."""
    with _refusals():
        return read_teachers(teachers)


def normalise_freeze(freeze: str) -> str:
    """Check a --freeze policy and write it one way (`last-2`, `lp-ft`)."""
    try:
        return parse_freeze(freeze).text
    except ValueError as error:
        raise SpecError(str(error)) from None


def normalise_device(device: str) -> str:
    """Check the form of a device name; whether it is there is the engine's to say."""
    with _refusals():
        return read_device(device)


def dataset_kind(dataset: str) -> str:
    """The catalog entry of a dataset name: `imagefolder` for any `imagefolder:PATH`."""
    return "imagefolder" if dataset.startswith("imagefolder:") else dataset


def resolve_classes(chosen: list[str], known: tuple[str, ...]) -> list[str]:
    """Turn class indices or names into names of `known`; raise SpecError for any other."""
    names = []
    for item in chosen:
        index = whole_number(item)
        if index is not None and index < len(known) and item not in known:
            names.append(known[index])
        elif item in known:
            names.append(item)
        else:
            raise SpecError(
                f"--classes: no class '{item}'; the classes are "
                + ", ".join(f"{i}={c}" for i, c in enumerate(known[:20]))
                + (" ..." if len(known) > 20 else "")
            )
    _refuse_repeats(names)
    return names


def _refuse_repeats(names: list[str]) -> None:
    """Raise SpecError if a class is named twice (by index and by name counts as twice)."""
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        raise SpecError(f"--classes names a class twice ({repeated[0]}); list each class once")


@dataclass
class RunSpec(RunOptions):
    """Everything that defines one training run: its options (contract/run_options.py),
    checked each by its own rule and then by the rules between them."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        """A stored spec read back: an option it predates means what it did then
        (`STORED_BEFORE`). Raises SpecError for JSON that is no spec."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(
                f"the spec is not valid JSON ({error.msg} at line {error.lineno})"
            ) from None
        except ValueError as error:  # a number with more digits than Python reads
            raise SpecError(f"the spec is not valid JSON ({error})") from None
        except RecursionError:
            raise SpecError("the spec is not valid JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise SpecError("the spec must be a JSON object of option names and values")
        return cls.from_dict({**STORED_BEFORE, **data})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        """Build and validate a spec from option names (`batch_size` or `batch-size`)."""
        with _refusals():
            spec = cls(**read_options(cls, data))
        spec.validate()
        return spec

    def validate(self) -> None:
        """Check every choice, each field by its own rule, then the rules that tie fields
        together; write names the one way they are kept. Raises SpecError."""
        with _refusals():
            check_fields(self)
            if self.devices:
                self.device = self.devices[0]  # with --devices, --device is the first of them
            for rule in (*RUN_RULES, pruning_options_fit):
                rule(self)
            if self.classes is not None:
                known = catalog.DATASETS[dataset_kind(self.dataset)].classes
                if known:
                    self.classes = resolve_classes(self.classes, known)
                else:  # an image folder's classes are known once it is scanned (locate.py)
                    _refuse_repeats(self.classes)

    def on_one_device(self, device: str) -> "RunSpec":
        """This spec trained on `device` alone: a run on several devices or machines goes on
        in one process (a worker's device, or `resume --device`)."""
        alone = {"devices": None, "nproc": None, "sync_bn": False}
        alone |= {"nnodes": None, "rdzv_endpoint": None, "device": device}
        return RunSpec.from_dict({**asdict(self), **alone})

    @property
    def placement(self) -> str:
        """Where the run trains, in a word: cuda:0, or cuda:0,cuda:1, or cpu x2, and on how
        many machines: cuda x8 on 2 nodes."""
        if self.devices and len(self.devices) > 1:
            here = ",".join(self.devices)
        else:
            here = f"{self.device} x{self.processes}" if self.processes > 1 else self.device
        return f"{here} on {self.nodes} nodes" if self.nodes > 1 else here

    @property
    def processes(self) -> int:
        """How many training processes the run has on each machine: 1, or one per device."""
        return len(self.devices) if self.devices else (self.nproc or 1)

    @property
    def nodes(self) -> int:
        """How many machines the run spans."""
        return self.nnodes or 1

    @property
    def world(self) -> int:
        """How many training processes the run has in all (DDP ranks): 1 on one device."""
        return self.processes * self.nodes

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else catalog.DEFAULT_LR[self.optimizer]

    @property
    def decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return catalog.DEFAULT_WEIGHT_DECAY[self.optimizer]

    @property
    def display_name(self) -> str:
        """The run's name, or `ARCH on DATASET` (an image folder by its folder's own name)."""
        if self.name:
            return self.name
        kind, _, folder = self.dataset.partition(":")
        shown = folder.rstrip("/").rpartition("/")[2] or folder if kind == "imagefolder" else kind
        return f"{self.arch} on {shown}"


FUSION_KINDS = {
    "ensemble": "the averaged probabilities of several runs",
    "soup": "the averaged weights of runs fine-tuned from the same starting weights",
    "wise-ft": "a fine-tuned run's backbone mixed with its starting weights (WiSE-FT)",
}


@dataclass
class FusionSpec:
    """An ensemble, a model soup or a WiSE-FT mix of finished runs: what the engine fuses.

    `members` are `{"run": id, "name": ..., "checkpoint": path}`, checked against the store
    by resnet-tui before the engine starts.
    """

    kind: str = internal(
        str, MISSING, "ensemble, soup or wise-ft.", Choice(tuple(FUSION_KINDS), "fusion")
    )
    members: list[dict[str, Any]] = internal(list, MISSING, "The runs fused, in order.")
    weights: list[float] | None = internal(
        list, None, "Each member's share, in order (default: equal).", Normalised(read_weights)
    )
    greedy: bool = internal(bool, False, "A greedy soup: add a run only where it helps.")
    alpha: float | None = internal(
        float,
        None,
        "WiSE-FT's share of the fine-tuned weights; None picks it on validation data.",
        Bounds(
            "--with-init must be between 0 and 1 (1 is the fine-tuned run), or auto",
            at_least=0,
            at_most=1,
        ),
        flag="--with-init",
    )
    device: str = internal(str, "auto", "auto, cpu, cuda, cuda:N or mps.", Normalised(read_device))
    data_root: str | None = internal(str, None, "Where datasets live.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FusionSpec":
        try:
            data = json.loads(text)
            fusion = cls(**data)
        except (ValueError, TypeError) as error:
            raise SpecError(f"the fusion spec is not valid ({error})") from None
        except RecursionError:
            raise SpecError("the fusion spec is not valid (nested too deeply)") from None
        fusion.validate()
        return fusion

    def validate(self) -> None:
        """Check what can be checked without the store. Raises SpecError."""
        with _refusals():
            check_fields(self)
            for rule in FUSION_RULES:
                rule(self)


def spec_fields() -> list[SpecField]:
    """The options users set, in the order they read them (the CLI's flags, the app's form)."""
    return user_fields(RunSpec)
