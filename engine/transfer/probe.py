"""A linear probe fitted to convergence, as LP-FT fits it (Kumar et al. 2022): the frozen
backbone's features of the training images taken once, a multinomial logistic regression
fitted on them by L-BFGS with its weight decay chosen on validation, written into the head."""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from engine.data.batches import make_batches
from engine.models import model_stages

if TYPE_CHECKING:
    from engine.train.loop import Trainer

# The weight decays tried, strongest first: each fit starts from the one before it.
WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# Without validation images the decay cannot be chosen, so this middling one is taken.
DECAY_WITHOUT_VALIDATION = 1e-4
# L-BFGS iterations for each decay; a convex fit of this size converges well within them.
MOST_ITERATIONS = 300
# Features beyond this many bytes are more than a probe should hold in memory.
MOST_FEATURE_BYTES = 2 * 1024**3

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ProbeFit:
    """What fitting the probe found: its weight decay and how it scores."""

    weight_decay: float
    train_loss: float
    train_acc: float
    val_acc: float | None
    train_images: int
    val_images: int
    features: int
    seconds: float

    def line(self) -> str:
        """The fit in one line, for the run's log."""
        chosen = (
            f"weight decay {self.weight_decay:g} chosen on {self.val_images} validation "
            f"images (val acc {100 * self.val_acc:.1f}%)"
            if self.val_acc is not None
            else f"weight decay {self.weight_decay:g} (no validation images to choose it on)"
        )
        return (
            f"linear probe fitted by L-BFGS on the features of {self.train_images} training "
            f"images ({self.features} each), {chosen}, in {self.seconds:.1f} s"
        )


def asks_for_probe(spec: RunSpec) -> bool:
    """Whether the spec asks for the converged probe: `head` or `lp-ft` with `--probe lbfgs`."""
    return spec.probe == "lbfgs" and spec.freeze in ("head", "lp-ft")


def probe_applies(spec: RunSpec, model: nn.Module, images: int) -> bool:
    """Whether this run's head is fitted by the converged probe: asked for, and nothing in
    `why_not_probed` (its `images` are its training and validation images)."""
    return asks_for_probe(spec) and why_not_probed(spec, model, images) is None


def why_not_probed(spec: RunSpec, model: nn.Module, images: int) -> str | None:
    """Why a run that asks for the converged probe trains its head by epochs instead: a
    head that is not a single linear layer, an objective that is not a plain cross-entropy
    (distilling and learning without forgetting train the head by their own losses), or
    features of more than the memory a probe may hold; None where it does not ask, or is
    probed."""
    head = model_stages(model)["head"][0]
    if not asks_for_probe(spec):
        return None
    by_epochs = "the head trains by epochs, as with --probe sgd"
    if spec.teacher or spec.lwf > 0:
        how = "distillation" if spec.teacher else "learning without forgetting (--lwf)"
        return f"{how} trains the head by its own loss: {by_epochs}"
    if not isinstance(head, nn.Linear):
        return f"the converged probe fits a linear head, not an {spec.head} one: {by_epochs}"
    if features_fit_in_memory(images, head.in_features):
        return None
    size = images * head.in_features * 4 / 1024**3
    return (
        f"the features of {images:,} images would take {size:.1f} GiB, more than the linear "
        f"probe holds ({MOST_FEATURE_BYTES // 1024**3} GiB): {by_epochs}"
    )


def fit_head(trainer: "Trainer") -> ProbeFit:
    """Fit a run's head by the converged probe on its un-augmented training and validation
    images (every rank alike, then the first rank's head on all), and log how. Where
    validation is the test data, the decay is not chosen on it."""
    spec = trainer.spec
    eval_batch = spec.eval_batch_size or 2 * spec.batch_size

    def features(split: Any) -> tuple[torch.Tensor, torch.Tensor]:
        batches = make_batches(split, trainer.bundle, eval_batch, trainer.device, False, spec)
        return extract_features(
            trainer.model, batches.epoch(0), trainer.predict_batch, trainer.writer.heartbeat
        )

    bundle, head = trainer.bundle, model_stages(trainer.model)["head"][0]
    train = features(bundle.train)
    # with no images held out, validation is the test data, which must not choose the decay
    val = features(bundle.val) if bundle.val is not bundle.test else (train[0][:0], train[1][:0])
    fitted = fit_probe(trainer.model, train, val)
    if trainer.ranks is not None:
        for tensor in head.parameters():
            torch.distributed.broadcast(tensor.data, 0)
    trainer.writer.emit(ev.LOG, level="info", message=fitted.line())
    return fitted


def extract_features(
    model: nn.Module,
    batches: Batches,
    forward: Callable[[torch.Tensor], torch.Tensor],
    heartbeat: Callable[[], None] = lambda: None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input of the model's head for every image of `batches` (the backbone's features,
    in eval mode, in float32) and their labels; `heartbeat` is called after each batch."""
    head = model_stages(model)["head"][0]
    captured: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, args, out: captured.append(args[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for images, batch_labels in batches:
                forward(images)
                labels.append(batch_labels)
                heartbeat()
    finally:
        hook.remove()
        model.train(was_training)
    if not captured:
        return torch.zeros(0, head.in_features), torch.zeros(0, dtype=torch.long)
    return torch.cat(captured).float(), torch.cat(labels)


def fit_probe(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
) -> ProbeFit:
    """Fit the head of `model` to the (features, labels) of `train`, trying each decay of
    `WEIGHT_DECAYS` and keeping the one with the best val accuracy (the lower val loss breaks
    ties), then write it into the head."""
    started = time.perf_counter()
    head = model_stages(model)["head"][0]
    features, labels = train
    val_features, val_labels = val
    classes = head.out_features
    mean = features.mean(0)
    scale = features.std(0, unbiased=False).clamp_min(1e-6)
    standard = (features - mean) / scale
    val_standard = (val_features - mean) / scale
    weight = torch.zeros(classes, features.shape[1], device=features.device)
    bias = torch.zeros(classes, device=features.device)
    decays = WEIGHT_DECAYS if len(val_labels) else (DECAY_WITHOUT_VALIDATION,)
    best: tuple[float, float, float, torch.Tensor, torch.Tensor] | None = None
    for decay in decays:
        weight, bias = _fit(standard, labels, weight, bias, decay)
        if not len(val_labels):
            best = (0.0, 0.0, decay, weight, bias)
            break
        with torch.no_grad():
            logits = val_standard @ weight.T + bias
            acc = float((logits.argmax(1) == val_labels).float().mean())
            loss = float(F.cross_entropy(logits, val_labels))
        if best is None or (acc, -loss) > (best[0], -best[1]):
            best = (acc, loss, decay, weight, bias)
    assert best is not None
    val_acc, _, decay, weight, bias = best
    with torch.no_grad():
        logits = standard @ weight.T + bias
        train_loss = float(F.cross_entropy(logits, labels))
        train_acc = float((logits.argmax(1) == labels).float().mean())
        # the standardisation folded into the head: w·(x - m)/s + b = (w/s)·x + b - (w/s)·m
        head_weight = weight / scale
        head.weight.copy_(head_weight.to(head.weight.dtype))
        head.bias.copy_((bias - head_weight @ mean).to(head.bias.dtype))
    return ProbeFit(
        weight_decay=decay,
        train_loss=train_loss,
        train_acc=train_acc,
        val_acc=val_acc if len(val_labels) else None,
        train_images=len(labels),
        val_images=len(val_labels),
        features=features.shape[1],
        seconds=time.perf_counter() - started,
    )


def _fit(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    decay: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The multinomial logistic regression of `labels` on `features` with an L2 penalty of
    `decay` on the weights (not the bias), by L-BFGS from the weights given."""
    weight = weight.clone().requires_grad_(True)
    bias = bias.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1,
        max_iter=MOST_ITERATIONS,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels)
        loss = loss + 0.5 * decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    return weight.detach(), bias.detach()


def features_fit_in_memory(images: int, features: int) -> bool:
    """Whether the features of `images` images fit the probe's memory budget."""
    return images * features * 4 <= MOST_FEATURE_BYTES
