"""Reading one option's value as a user writes it and writing it the one way specs keep it.

Init sources, teachers, datasets, devices, rendezvous endpoints, classes and fusion weights.
Each reader raises ValueError with the one line the user sees; the spec raises it as its
SpecError (its normalise_* functions are these, raising SpecError).
"""

import math
import os
from pathlib import Path

from engine.contract import catalog
from engine.contract.freezing import parse_freeze

# The largest id a run can have: SQLite's largest whole number.
MOST_RUN_ID = 2**63 - 1
INIT_FORMS = "scratch, imagenet, imagenet:v1, imagenet:v2, run:ID, run:ID:last or file:PATH"


def read_init(init: str) -> str:
    """An --init source written one way: `run:12`, `file:/abs/path.pt`..."""
    kind, _, rest = init.strip().partition(":")
    kind = kind.lower()
    if kind == "scratch" and not rest:
        return "scratch"
    if kind == "imagenet" and rest.lower() in ("", "v1", "v2"):
        return f"imagenet:{rest.lower()}" if rest else "imagenet"
    if kind == "run":
        run_id, _, which = rest.partition(":")
        number = whole_number(run_id)
        if number is not None and number > MOST_RUN_ID:
            raise ValueError(
                f"--init {init}: there is no run {number}; `resnet-tui runs` lists them"
            )
        if number is not None and which in ("", "best", "last"):
            return f"run:{number}" + (":last" if which == "last" else "")
        raise ValueError(f"--init {init}: write run:ID or run:ID:last, e.g. run:12")
    if kind == "file":
        if not rest:
            raise ValueError("--init file: needs a path, e.g. file:~/weights/resnet20.pt")
        return "file:" + _absolute(rest)
    raise ValueError(f"unknown --init {init!r}; use {INIT_FORMS}")


def read_teachers(teachers: list[str]) -> list[str]:
    """--teacher runs, each written `run:ID` (or `run:ID:last`); a bare id will do."""
    named = []
    for item in (t.strip() for t in teachers):
        if not item:
            continue
        try:
            source = read_init(f"run:{item}" if item.isdecimal() else item)
        except ValueError:
            source = ""
        if not source.startswith("run:"):
            raise ValueError(f"--teacher {item}: a teacher is a run in the store, e.g. run:12")
        if source in named:
            raise ValueError(f"--teacher names {source} twice; list each teacher once")
        named.append(source)
    if not named:
        raise ValueError("--teacher needs a run, e.g. --teacher run:12")
    return named


def read_freeze(freeze: str) -> str:
    """A --freeze policy written one way (`last-2`, `lp-ft`)."""
    return parse_freeze(freeze).text


def read_dataset(dataset: str) -> str:
    """A --dataset written one way: a catalog name, or `imagefolder:/abs/path`."""
    if dataset.lower().startswith(("imagefolder:", "folder:")):
        path = dataset.split(":", 1)[1]
        if not path:
            raise ValueError("imagefolder needs a path, e.g. --dataset imagefolder:~/data/pets")
        return "imagefolder:" + _absolute(path)
    if dataset.lower() == "imagefolder":
        raise ValueError("imagefolder needs a path, e.g. --dataset imagefolder:~/data/pets")
    choices = [name for name in catalog.DATASETS if name != "imagefolder"]
    return catalog.resolve_name(dataset, choices + ["imagefolder"], "dataset")


def read_device(device: str) -> str:
    """The form of a device name; whether it is there is the engine's to say."""
    name = device.strip().lower()
    if name in ("auto", "cpu", "cuda", "mps"):
        return name
    if name.startswith("cuda:") and name[5:].isdecimal():
        return name
    raise ValueError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps")


def read_devices(devices: list[str]) -> list[str]:
    """--devices: CUDA devices, each by its number and once, or cpu, not both."""
    names = [read_device(name) for name in devices if name.strip()]
    kinds = {name.split(":")[0] for name in names}
    if not names or kinds - {"cpu", "cuda"} or len(kinds) > 1:
        raise ValueError(
            "--devices takes CUDA devices or cpu, one kind, e.g. cuda:0,cuda:1 or cpu,cpu"
        )
    cuda = [name for name in names if name.startswith("cuda")]
    if "cuda" in cuda or len(set(cuda)) < len(cuda):
        raise ValueError("--devices: name each GPU once, by number, e.g. cuda:0,cuda:1")
    return names


def read_endpoint(endpoint: str) -> str:
    """An --rdzv-endpoint written `host:port`."""
    host, _, port = endpoint.strip().rpartition(":")
    number = whole_number(port)
    if not host or number is None or not 0 < number < 65536:
        raise ValueError(f"--rdzv-endpoint {endpoint!r} is not HOST:PORT; write e.g. node0:29500")
    return f"{host}:{number}"


def read_classes(classes: list[str]) -> list[str]:
    """--classes, two or more; whether the dataset has them is checked with the dataset."""
    named = [name.strip() for name in classes if name.strip()]
    if len(named) < 2:
        raise ValueError("--classes needs at least two classes, e.g. --classes 0,1")
    return named


def read_weights(weights: list[float]) -> list[float]:
    """A fusion's --weights: 0 or more each, not all 0."""
    if any(not math.isfinite(w) or w < 0 for w in weights) or not sum(weights):
        raise ValueError("--weights must be 0 or more, and not all 0, e.g. 2,1,1")
    return weights


def whole_number(digits: str) -> int | None:
    """The number `digits` write (0-9, or another script's digits), or None where they write
    none or more than Python reads."""
    try:
        return int(digits) if digits.isdecimal() else None
    except ValueError:
        return None


def _absolute(path: str) -> str:
    """`path` with ~ expanded, made absolute; one with a NUL is refused, as no file has one."""
    if "\0" in path:
        raise ValueError(f"the path {path!r} holds a NUL character, which no file name can")
    return str(Path(os.path.expanduser(path)).resolve())
