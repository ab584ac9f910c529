"""The learning-rate range test (Smith 2015; fastai's `lr_find`, Lightning's tuner): a run's
training for a few steps with the learning rate growing exponentially, the loss of each
step, and the rates it suggests. A probe, not a run: nothing is saved.

`python -m engine lr-find --spec SPEC.json` writes JSON lines on stdout: `started`
(`steps`, `device`), `progress` (`step`, `lr`, `loss`, `smoothed`; a few a second), then
`finished` with every step's values (`lrs`, `losses`, `smoothed`; null where not
finite), the suggestions
(`steepest`, `valley`, `suggestion`), `stopped_early` (before its last step), `reason`
(why it stopped, or that the loss diverged at its last step; else null) and `seconds`. A stop
request ends it after its step with exit code 130 and no `finished`; a mistake in the input
is one line `error: ...; hint` on stderr and exit code 2.
"""

import argparse
import bisect
import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch

from engine.contract.errors import RunError
from engine.contract.events import USER_ERROR_KINDS
from engine.contract.lr_range import check_lr_range
from engine.contract.spec import RunSpec, SpecError
from engine.contract.stopping import StopRequest
from engine.data.batches import make_batches
from engine.data.datasets import load_dataset
from engine.train.devices import amp_dtype, autocast, pick_device, use_all_cores
from engine.train.failures import what_failed
from engine.train.network import build_network
from engine.train.objective import make_objective
from engine.train.optimisation import StartingPoint, make_optimizer, parameter_groups, take_step
from engine.transfer.freeze import freeze_schedule
from engine.transfer.probe import probe_applies

# fastai's smoothing of the loss (an EMA, its start's bias corrected) and its stop: the
# smoothed loss above DIVERGED times the lowest it has been.
SMOOTHING = 0.98
DIVERGED = 4.0
# The suggestions leave out the first tenth of the planned steps, and at least the first
# SKIP_START (the loss has not begun to move, and the smoothing is still settling), and the
# last TAIL points (where it blows up), as fastai's do.
SKIP_START = 10
TAIL = 5
PROGRESS_INTERVAL_S = 0.1


def lr_schedule(start_lr: float, end_lr: float, steps: int) -> list[float]:
    """The learning rate of each of `steps` steps (2 or more): from `start_lr` to `end_lr`,
    the same factor from each step to the next."""
    growth = math.log(end_lr / start_lr) / (steps - 1)
    return [start_lr * math.exp(growth * step) for step in range(steps)]


class Smoother:
    """fastai's smoothed loss: an exponential moving average of the losses so far, divided
    by the weight it has gathered, so its first values are not pulled towards 0."""

    def __init__(self, factor: float = SMOOTHING) -> None:
        self.factor = factor
        self.average = 0.0
        self.count = 0

    def add(self, loss: float) -> float:
        """Take the next loss; returns the smoothed loss up to it."""
        self.count += 1
        self.average = self.factor * self.average + (1 - self.factor) * loss
        return self.average / (1 - self.factor**self.count)


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The rate (of `lrs`, increasing) where the loss falls fastest against log LR: the first
    point of the steepest slope between neighbours (fastai's `steep`)."""
    slopes = [
        (losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i]) or math.inf)
        for i in range(len(lrs) - 1)
    ]
    slopes = [slope if slope == slope else math.inf for slope in slopes]  # NaN: no descent
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)] if slopes else lrs[0]


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's `valley`: the longest valley of the loss (its longest strictly falling
    sequence of points, not necessarily neighbours), and the rate a third plus a sixth of the
    way from where it starts to where it ends, as fastai's arithmetic has it."""
    lowest_ends: list[float] = []  # of falling sequences of each length, the lowest end
    lengths = []  # of the longest falling sequence that ends at each point
    for loss in losses:
        at = bisect.bisect_left(lowest_ends, -loss)  # negated: a rising sequence
        lowest_ends[at : at + 1] = [-loss]
        lengths.append(at + 1)
    end = lengths.index(max(lengths))
    start = end - lengths[end]
    sections = (end - start) / 3
    return lrs[min(max(start + int(sections) + int(sections / 2), 0), len(lrs) - 1)]


def suggestions(
    lrs: Sequence[float], smoothed: Sequence[float], planned: int, diverged: bool
) -> tuple[float, float] | None:
    """The steepest and valley rates over the points fastai looks at: the first tenth of
    the `planned` steps (at least SKIP_START) and the last TAIL points left out, and
    nothing from the first value that is not finite on. Where that leaves fewer than two
    points, every finite point but a diverged last one. None where no point is left."""
    finite = next((i for i, value in enumerate(smoothed) if not math.isfinite(value)), None)
    usable = len(smoothed) if finite is None else finite
    first, end = max(SKIP_START, planned // 10), min(usable, len(smoothed) - TAIL)
    if end - first < 2:
        first, end = 0, usable - (diverged and usable == len(smoothed))
    if end < 1:
        return None
    kept_lrs, kept = lrs[first:end], smoothed[first:end]
    return steepest(kept_lrs, kept), valley(kept_lrs, kept)


def range_test(
    spec: RunSpec,
    start_lr: float,
    end_lr: float,
    steps: int,
    stop: StopRequest,
    say: Callable[[dict[str, Any]], None],
) -> dict[str, Any] | None:
    """Train from the spec's starting weights on its data, as a run's first epoch does (its
    network, loss, optimiser and freeze policy; on one device), with the rate of each step
    from `lr_schedule` in place of the spec's schedule, cycling through the training
    batches; `say` each message. Returns the `finished` message, or None where stopped."""
    began = time.perf_counter()
    if spec.world > 1:
        spec = spec.on_one_device(spec.device)
    device = pick_device(spec.device)
    use_all_cores(device)
    torch.manual_seed(spec.seed)
    bundle = load_dataset(spec)
    network = build_network(spec, bundle, device)
    model = network.model
    forward = torch.compile(model) if spec.compile else model
    amp = amp_dtype(spec, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    objective = make_objective(spec, model, bundle, device, network.memory_format)
    if probe_applies(spec, model, len(bundle.train) + len(bundle.val)):
        raise RunError(
            "bad_input",
            f"--freeze {spec.freeze} fits its head by L-BFGS, which needs no learning rate",
            "give --probe sgd to find the rate of a head trained by epochs"
            + (
                ", or --freeze full for lp-ft's fine-tuning (at --ft-lr-scale times it)"
                if spec.freeze == "lp-ft"
                else ""
            ),
        )
    freeze = freeze_schedule(model, spec)
    freeze.apply_at(model, 1)
    optimizer = make_optimizer(parameter_groups(model, spec), spec, device)
    starting_point = StartingPoint(model, spec.l2sp) if spec.l2sp > 0 else None
    batches = make_batches(bundle.train, bundle, spec.batch_size, device, True, spec)
    if len(batches) == 0:  # cycling through no batches would never end
        raise RunError("bad_input", "the run has no training images", "give a larger --limit")
    schedule = lr_schedule(start_lr, end_lr, steps)
    # Every group keeps its share of the head's rate (--backbone-lr-scale, --layer-decay),
    # so the rate reported is the head's: the --lr to give.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule[min(step, steps - 1)] / spec.peak_lr
    )
    freeze.at_epoch_start(model, optimizer, scheduler, 1)
    model.train()
    freeze.after_train_mode(model)
    say({"kind": "started", "steps": steps, "device": str(device)})

    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    smoother, best, reason = Smoother(), math.inf, None
    last_said, epoch = 0.0, 1
    while len(lrs) < steps and reason is None:
        for images, labels in batches.epoch(epoch):
            images = images.contiguous(memory_format=network.memory_format)
            with autocast(device, amp):
                loss, _ = objective.loss(forward(images), images, labels)
            total = loss if starting_point is None else loss + starting_point.penalty()
            lr = optimizer.param_groups[0]["lr"]
            take_step(total, optimizer, scaler, model, spec.grad_clip)
            scheduler.step()
            lrs.append(lr)
            losses.append(float(loss.detach()))
            smoothed.append(smoother.add(losses[-1]))
            best = min(best, smoothed[-1])
            if not math.isfinite(smoothed[-1]):
                reason = f"the loss became {losses[-1]} at lr {lr:.3g}"
            elif smoothed[-1] > DIVERGED * best:
                reason = f"the loss diverged at lr {lr:.3g}"
            now = time.perf_counter()
            if now - last_said >= PROGRESS_INTERVAL_S or reason or len(lrs) == steps:
                last_said = now
                say(
                    {
                        "kind": "progress",
                        "step": len(lrs),
                        "lr": lr,
                        "loss": losses[-1],
                        "smoothed": smoothed[-1],
                    }
                )
            if stop.requested:
                return None
            if len(lrs) == steps or reason:
                break
        epoch += 1

    suggested = suggestions(lrs, smoothed, steps, reason is not None)
    steep, low = suggested if suggested else (None, None)
    return {
        "kind": "finished",
        "lrs": lrs,
        "losses": losses,
        "smoothed": smoothed,
        "steepest": steep,
        "valley": low,
        # The valley, not the steepest point: one point of the steepest slope moves a long
        # way with the noise of a few batches, while the middle of the longest fall of the
        # loss stands on many points, and lies well below where the loss blows up.
        "suggestion": low,
        "stopped_early": len(lrs) < steps,
        "reason": reason,
        "seconds": time.perf_counter() - began,
    }


def _say(message: dict[str, Any]) -> None:
    """One message as a line of strict JSON on stdout, at once: a loss that is not finite
    (NaN, inf) as null."""
    print(json.dumps(_strict(message), allow_nan=False), flush=True)


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_strict(item) for item in value]
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    return value


def _refuse(message: str, hint: str) -> int:
    print(f"error: {message}; {hint}".rstrip("; "), file=sys.stderr)
    return 2


def run_lr_find(args: argparse.Namespace, stop: StopRequest) -> int:
    """`python -m engine lr-find`: the range test of the run `--spec` describes; exit code 0,
    130 where stopped, 2 for a mistake in the input, 1 for anything else."""
    try:
        check_lr_range(args.start_lr, args.end_lr, args.steps)
    except SpecError as error:
        return _refuse(str(error), "")
    hint = "give a run's spec.json (`resnet-tui lr-find` writes one from run options)"
    try:
        spec = RunSpec.from_json(args.spec.read_text(encoding="utf-8"))
    except SpecError as error:
        return _refuse(str(error), hint)
    except (OSError, ValueError) as error:  # ValueError: not UTF-8
        reason = " ".join(str(error).split()) or type(error).__name__
        return _refuse(f"the spec {args.spec} cannot be read ({reason})", hint)
    try:
        finished = range_test(spec, args.start_lr, args.end_lr, args.steps, stop, _say)
    except Exception as error:
        kind, message, hint = what_failed(error, spec.batch_size)
        if kind not in USER_ERROR_KINDS:
            traceback.print_exception(error, file=sys.stderr)
        _refuse(message, hint)
        return 2 if kind in USER_ERROR_KINDS else 1
    if finished is None:
        return 130
    _say(finished)
    return 0
