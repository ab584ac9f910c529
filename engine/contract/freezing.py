"""Freeze policies as users write them: reading one, what it trains each epoch, a line saying so.

Torch-free, so the spec's check, the launch form and the engine share it: the one place a
--freeze is parsed.
"""

from dataclasses import dataclass

from engine.contract import catalog


@dataclass(frozen=True)
class FreezePolicy:
    """A parsed --freeze: its name (`last` for `last-K`) and, for `last-K`, K."""

    name: str
    last_stages: int | None = None

    @property
    def text(self) -> str:
        """The policy written the one way specs keep it: `full`, `last-2`, `lp-ft` ..."""
        return f"last-{self.last_stages}" if self.name == "last" else self.name


def parse_freeze(freeze: str) -> FreezePolicy:
    """Read a --freeze policy in any usual spelling (`last-2`, `last2`, `last_2`, `LP-FT`,
    `lpft`, any case, spaces around); raise ValueError with one line saying what to write."""
    text = freeze.strip().lower().replace("_", "-")
    if text.startswith("last"):
        count = _whole_number(text.removeprefix("last").lstrip("-"))
        if count is not None and count >= 1:
            return FreezePolicy("last", count)
        raise ValueError(
            f"--freeze {_shown(freeze)}: write last-K with K a stage count, e.g. last-1"
        )
    listed = list(catalog.FREEZE_POLICIES)
    if not text.isprintable():
        raise ValueError(f"unknown freeze policy {text!r}; choose one of {', '.join(listed)}")
    named = [policy for policy in listed if policy != "last-K"]
    return FreezePolicy(catalog.resolve_name(text, named, "freeze policy", listed=listed))


def _whole_number(digits: str) -> int | None:
    """The number `digits` write, or None where they write none (or one too long to read)."""
    if not digits.isdecimal():
        return None
    try:
        return int(digits)
    except ValueError:
        return None


def _shown(text: str) -> str:
    """`text` as typed where it prints on one line, else quoted with its escapes."""
    return text if text.isprintable() else repr(text)


def trainable_parts(
    policy: FreezePolicy,
    part_names: list[str],
    epoch: int,
    unfreeze_every: int = 1,
    probe_epochs: int = 1,
) -> list[str]:
    """The parts that train in `epoch` (from 1), in model order.

    - `full`: every part. `head`: the head alone.
    - `last-K`: the last K stages and the head. The stem counts as the lowest stage, so a K
      of the stage count trains every stage but the stem, and a larger K everything.
    - `gradual` (ULMFiT; Lightning's BackboneFinetuning): the head for `unfreeze_every`
      epochs, then one more part from the top down every `unfreeze_every` epochs, the stem
      last.
    - `lp-ft` (Kumar et al. 2022): the head for `probe_epochs` epochs, then everything.
    """
    body = [name for name in part_names if name != "head"]  # stem, stage1..N
    if policy.name == "full":
        return list(part_names)
    if policy.name == "head":
        return ["head"]
    if policy.name == "last":
        thawed = policy.last_stages or 0
    elif policy.name == "gradual":
        thawed = (epoch - 1) // unfreeze_every
    else:  # lp-ft
        thawed = 0 if epoch <= probe_epochs else len(body)
    return body[len(body) - min(thawed, len(body)) :] + ["head"]


def stage_names(arch: str) -> list[str]:
    """The parts of architecture `arch` in model order, as its stage table names them:
    `stem` (where it has one), `stage1`..`stageN`, `head`."""
    return list(catalog.stage_table_of(arch).parts())


def what_trains(
    arch: str,
    freeze: str,
    epochs: int,
    unfreeze_every: int = 1,
    probe_epochs: int = 1,
    probe: str = "lbfgs",
) -> str:
    """One plain line saying which parts of `arch` train under `freeze`, and when, e.g.
    "resnet20, last-2: stage2, stage3 and the head train; the stem and stage1 stay frozen".
    `probe` is how `head` and `lp-ft` fit a linear head (`lbfgs`, converged, or `sgd`).
    Raises ValueError for an architecture or a policy there is not."""
    name = catalog.resolve_name(arch, list(catalog.ARCHITECTURES), "architecture")
    policy = parse_freeze(freeze)
    parts = stage_names(name)
    said = f"{name}, {policy.text}: "
    if policy.name == "gradual":
        return said + _gradual(parts, epochs, unfreeze_every)
    if policy.name == "lp-ft" and probe == "lbfgs":
        return said + (
            "the head first, a linear probe fitted to convergence (L-BFGS), then everything "
            "fine-tunes "
            f"for {_count(epochs, 'epoch')} at --ft-lr-scale times the rate"
        )
    if policy.name == "lp-ft":
        return said + _probe_then_fine_tune(epochs, probe_epochs)
    training = trainable_parts(policy, parts, 1)
    if training == ["head"] and probe == "lbfgs":
        return said + (
            "only the head trains, fitted to convergence (L-BFGS) in one epoch; "
            + _frozen(parts, training)
        )
    if len(training) == len(parts):
        return said + f"everything trains: {_listed(parts)}"
    if training == ["head"]:
        return said + f"only the head trains; {_frozen(parts, training)}"
    return said + f"{_listed(training)} train; {_frozen(parts, training)}"


def _gradual(parts: list[str], epochs: int, unfreeze_every: int) -> str:
    body = [part for part in parts if part != "head"]
    line = (
        f"the head for {_count(unfreeze_every, 'epoch')}, then one more part "
        f"{_every(unfreeze_every)}, top down ({_listed(list(reversed(body)))})"
    )
    all_from = len(body) * unfreeze_every + 1
    if all_from <= epochs:
        return line + f"; everything trains from epoch {all_from}"
    policy = FreezePolicy("gradual")
    last = trainable_parts(policy, parts, epochs, unfreeze_every)
    return line + f"; {_frozen(parts, last)} to the end (epoch {epochs})"


def _probe_then_fine_tune(epochs: int, probe_epochs: int) -> str:
    line = f"only the head trains for {_count(probe_epochs, 'epoch')} (a linear probe)"
    if probe_epochs >= epochs:
        return line + f", and a run of {_count(epochs, 'epoch')} has none left to fine-tune"
    fine_tune = _count(epochs - probe_epochs, "epoch")
    return line + f", then everything fine-tunes for {fine_tune} at --ft-lr-scale times the rate"


def _frozen(parts: list[str], training: list[str]) -> str:
    frozen = [part for part in parts if part not in training]
    return f"{_listed(frozen)} {'stays' if len(frozen) == 1 else 'stay'} frozen"


def _listed(parts: list[str]) -> str:
    """Parts as a reader says them: "the stem, stage1 and the head"."""
    said = [f"the {part}" if part in ("stem", "head") else part for part in parts]
    return said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def _every(number: int) -> str:
    return "every epoch" if number == 1 else f"every {number} epochs"
