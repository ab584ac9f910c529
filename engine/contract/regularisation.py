"""The recipe's regularisers and augmentation, each declared with its one-line description:
label smoothing, mixup and CutMix, RandAugment or TrivialAugmentWide, random erasing, an
average of the weights (EMA) and stochastic depth."""

from dataclasses import dataclass

from engine.contract.options import Bounds, Choice, option, whole_numbers

REGULARISATION = "Regularisation"

# The automatic augmentation policies, applied on top of crop and flip.
AUTO_AUGMENTS = ("off", "randaugment", "trivialaugment")
# Where a run with an average of its weights takes its best checkpoint from.
BEST_FROM = ("either", "raw", "ema")
# RandAugment's magnitudes run 0 to 30, as torchvision's do (its default is 9).
MOST_MAGNITUDE = 30


@dataclass
class Regularisation:
    """The options that regularise training, as declared; part of RunOptions."""

    label_smoothing: float = option(
        REGULARISATION,
        float,
        0.0,
        "Label smoothing: the cross-entropy's target gives this share to the other classes "
        "(e.g. 0.1).",
        Bounds("{flag} must be at least 0 and below 1, e.g. 0.1", at_least=0, below=1),
    )
    mixup: float = option(
        REGULARISATION,
        float,
        0.0,
        "Mixup: train on blends of two images and of their labels, the blend drawn from "
        "Beta(a, a) for this a (e.g. 0.2; 0 is off).",
        Bounds("{flag} must be 0 (off) or more, up to 100, e.g. 0.2", at_least=0, at_most=100),
    )
    cutmix: float = option(
        REGULARISATION,
        float,
        0.0,
        "CutMix: paste a box of another image in, the labels mixed by its area, drawn from "
        "Beta(a, a) for this a (e.g. 1.0; 0 is off).",
        Bounds("{flag} must be 0 (off) or more, up to 100, e.g. 1.0", at_least=0, at_most=100),
    )
    mix_prob: float = option(
        REGULARISATION,
        float,
        1.0,
        "Mixup and CutMix: the share of training batches mixed.",
        Bounds("{flag} must be above 0 and at most 1, e.g. 0.5", above=0, at_most=1),
    )
    mix_switch_prob: float = option(
        REGULARISATION,
        float,
        0.5,
        "With both mixup and CutMix: the share of mixed batches that use CutMix.",
        Bounds("{flag} must be from 0 to 1, e.g. 0.5", at_least=0, at_most=1),
    )
    auto_augment: str = option(
        REGULARISATION,
        str,
        "off",
        "Augmentation policy, after crop and flip where those are on: randaugment (two "
        "operations at --augment-magnitude) or trivialaugment (TrivialAugmentWide: one at a "
        "random strength).",
        Choice(AUTO_AUGMENTS, "augmentation policy"),
    )
    augment_magnitude: int = option(
        REGULARISATION,
        int,
        9,
        f"randaugment: the strength of its operations, 0 to {MOST_MAGNITUDE}.",
        whole_numbers(0, MOST_MAGNITUDE),
    )
    random_erasing: float = option(
        REGULARISATION,
        float,
        0.0,
        "Random erasing: the chance that a box of each training image is replaced by noise "
        "(e.g. 0.25).",
        Bounds("{flag} must be from 0 to 1, e.g. 0.25", at_least=0, at_most=1),
    )
    ema_decay: float | None = option(
        REGULARISATION,
        float,
        None,
        "Keep an exponential moving average of the weights with this decay (e.g. 0.999), "
        "evaluated and checkpointed beside them (default: off).",
        Bounds("{flag} must be above 0 and below 1, e.g. 0.999", above=0, below=1),
    )
    best_from: str = option(
        REGULARISATION,
        str,
        "either",
        "With --ema-decay: take the best checkpoint from the raw weights, the average (ema) "
        "or either, whichever has the better val acc.",
        Choice(BEST_FROM, "--best-from"),
    )
    drop_path: float = option(
        REGULARISATION,
        float,
        0.0,
        "Stochastic depth: residual blocks are skipped in training, the last with this chance "
        "and earlier ones less (e.g. 0.1; residual networks only).",
        Bounds("{flag} must be at least 0 and below 1, e.g. 0.1", at_least=0, below=1),
    )
