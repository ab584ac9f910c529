"""The options of one training run, each declared with its kind, help, panel and check.

The panels are the groups of `resnet-tui run --help`. RunSpec (contract/spec.py) is these
options with their checks run, the rules between them, their JSON form and what they imply.
"""

from dataclasses import dataclass

from engine.contract import catalog
from engine.contract.model_and_data import (
    DATA,
    MODEL,
    MOST_EPOCHS,
    MOST_IN_A_BATCH,
    MOST_PROCESSES,
    MOST_SEED,
    ModelAndData,
)
from engine.contract.options import (
    Bounds,
    Choice,
    Normalised,
    internal,
    option,
    positive_up_to,
    whole_numbers,
)
from engine.contract.pruning import PRUNING, Pruning
from engine.contract.regularisation import REGULARISATION, Regularisation
from engine.contract.values import (
    read_device,
    read_devices,
    read_endpoint,
    read_freeze,
    read_init,
    read_teachers,
)

WEIGHTS, TRAINING = "Weights", "Training"
DISTILLATION, DEVICE, SEVERAL_DEVICES = "Distillation", "Device", "Several devices (DDP)"
PANELS = (
    *(MODEL, DATA, WEIGHTS, TRAINING, REGULARISATION, DISTILLATION, DEVICE, SEVERAL_DEVICES),
    PRUNING,
)

# How a linear head is fitted under `head` and `lp-ft`: converged by L-BFGS, or by epochs.
PROBE_METHODS = ("lbfgs", "sgd")
# What early stopping may watch: the validation metrics of each epoch.
EARLY_STOP_METRICS = ("val_acc", "val_loss")


@dataclass
class RunOptions(Pruning, Regularisation, ModelAndData):
    """The options of one training run, as declared; RunSpec is these checked. Those of its
    model and data (contract/model_and_data.py) come first, then its regularisers
    (contract/regularisation.py) and a sweep's pruning (contract/pruning.py)."""

    init: str = option(
        WEIGHTS,
        str,
        "scratch",
        "Where the weights start: scratch, imagenet, run:ID[:last] or file:PATH.",
        Normalised(read_init),
    )
    keep_head: bool = option(
        WEIGHTS, bool, False, "Keep the source's classifier head when its classes fit."
    )
    head: str = option(
        WEIGHTS,
        str,
        "linear",
        "A new classifier head: linear or mlp.",
        Choice(catalog.HEADS, "head"),
    )
    head_init: str = option(
        WEIGHTS,
        str,
        "default",
        "The new head's initialisation: default (PyTorch's) or normal (N(0, 0.01)).",
        Choice(catalog.HEAD_INITS, "head initialisation"),
    )
    freeze: str = option(
        WEIGHTS,
        str,
        "full",
        "Which parts train: full, head, last-K, gradual or lp-ft.",
        Normalised(read_freeze),
    )
    unfreeze_every: int = option(
        WEIGHTS,
        int,
        1,
        "gradual: epochs between thawing one more stage.",
        whole_numbers(1, MOST_EPOCHS),
    )
    probe: str = option(
        WEIGHTS,
        str,
        "lbfgs",
        "How head and lp-ft fit a linear head: lbfgs (to convergence on the frozen features, "
        "weight decay chosen on val, before the first epoch) or sgd (trained by the epochs).",
        Choice(PROBE_METHODS, "probe method"),
    )
    probe_epochs: int = option(
        WEIGHTS,
        int,
        1,
        "lp-ft with --probe sgd: epochs of the linear probe before fine-tuning.",
        whole_numbers(1, MOST_EPOCHS),
    )
    ft_lr_scale: float = option(
        WEIGHTS, float, 0.1, "lp-ft: fine-tuning runs at this times the lr.", positive_up_to(100)
    )
    backbone_lr_scale: float = option(
        WEIGHTS, float, 1.0, "Learning rate of the backbone, times the lr.", positive_up_to(100)
    )
    layer_decay: float = option(
        WEIGHTS,
        float,
        1.0,
        "Layer-wise lr decay: each stage below the head learns at this times the one above "
        "(e.g. 0.7).",
        Bounds("{flag} must be above 0 and at most 1, e.g. 0.7 (1 is off)", above=0, at_most=1),
    )
    l2sp: float = option(
        WEIGHTS,
        float,
        0.0,
        "L2-SP: pull the backbone toward its starting weights with this strength, in place of "
        "weight decay on it (e.g. 0.01).",
        Bounds("{flag} must be 0 (off) or more, up to 1000, e.g. 0.01", at_least=0, at_most=1000),
    )
    bn: str = option(
        WEIGHTS,
        str,
        "frozen",
        "BatchNorm in frozen parts: frozen (statistics kept), eval or train.",
        Choice(catalog.BATCHNORM_MODES, "BatchNorm mode"),
    )
    init_checkpoint: str | None = internal(
        str, None, "The checkpoint file --init run:ID stands for."
    )
    teacher: list[str] | None = option(
        DISTILLATION,
        list,
        None,
        "Distil from these runs: run:ID, or several (run:3,run:5) whose logits are averaged.",
        Normalised(read_teachers),
    )
    kd_alpha: float = option(
        DISTILLATION,
        float,
        0.9,
        "Distillation: the KD share of the loss; (1 - alpha) is cross-entropy.",
        Bounds(
            "{flag} must be between 0 and 1, e.g. 0.9 (0 is plain training)", at_least=0, at_most=1
        ),
    )
    kd_temperature: float = option(
        DISTILLATION,
        float,
        4.0,
        "Distillation: the temperature that softens teacher and student outputs.",
        positive_up_to(1000),
    )
    lwf: float = option(
        WEIGHTS,
        float,
        0.0,
        "Learning without forgetting: keep the --init run's head and its answers on the new "
        "data, this share of the loss (e.g. 0.5); 0 is off.",
        Bounds("{flag} must be at least 0 and below 1, e.g. 0.5 (0 is off)", at_least=0, below=1),
    )
    teacher_checkpoints: list[str] | None = internal(
        list, None, "The checkpoint files --teacher stands for."
    )
    device: str = option(
        DEVICE, str, "auto", "auto, cpu, cuda, cuda:N or mps.", Normalised(read_device)
    )
    devices: list[str] | None = option(
        SEVERAL_DEVICES,
        list,
        None,
        "Train on several devices at once, one process each (torchrun and DDP), e.g. "
        "cuda:0,cuda:1; the batch size is the global batch, split across them.",
        Normalised(read_devices),
    )
    nproc: int | None = option(
        SEVERAL_DEVICES,
        int,
        None,
        "Processes for DDP on this machine: with --device cuda one GPU each (cuda:0, cuda:1, "
        "...), with --device cpu each on its share of the cores.",
        whole_numbers(1, MOST_PROCESSES),
    )
    sync_bn: bool = option(
        SEVERAL_DEVICES, bool, False, "DDP: BatchNorm statistics over the global batch (SyncBN)."
    )
    nnodes: int | None = option(
        SEVERAL_DEVICES,
        int,
        None,
        "Machines the run spans (torchrun --nnodes): start the same command on each, with "
        "--rdzv-endpoint; each keeps the run's events and checkpoints in its own store.",
        whole_numbers(1, MOST_PROCESSES),
    )
    rdzv_endpoint: str | None = option(
        SEVERAL_DEVICES,
        str,
        None,
        "host:port where the machines of a run with --nnodes meet (torchrun rendezvous), "
        "e.g. node0:29500: a machine of the run, and a port free on it.",
        Normalised(read_endpoint),
    )
    optimizer: str = option(
        TRAINING,
        str,
        "adamw",
        "adamw, sgd or adam.",
        Choice(tuple(catalog.OPTIMIZERS), "optimizer"),
    )
    lr: float | None = option(
        TRAINING,
        float,
        None,
        "Peak learning rate (default: 5e-3 for adamw, 0.1 for sgd, 1e-3 for adam).",
        positive_up_to(100),
    )
    momentum: float = option(
        TRAINING,
        float,
        0.9,
        "SGD momentum.",
        Bounds("{flag} must be at least 0 and below 1, e.g. 0.9", at_least=0, below=1),
    )
    nesterov: bool = option(TRAINING, bool, True, "Nesterov momentum for SGD.")
    weight_decay: float | None = option(
        TRAINING,
        float,
        None,
        "Weight decay, not on norms and biases (default: 5e-4 sgd, 0.05 adamw, 0 adam).",
        Bounds("{flag} must be 0 or more, up to 10, e.g. 0.05", at_least=0, at_most=10),
    )
    schedule: str = option(
        TRAINING,
        str,
        "onecycle",
        "Learning-rate schedule: onecycle, cosine, step, constant.",
        Choice(tuple(catalog.SCHEDULES), "schedule"),
    )
    warmup_epochs: float = option(
        TRAINING,
        float,
        0.0,
        "Linear warm-up epochs for cosine, step and constant.",
        Bounds(
            "{flag} must be 0 or more and fewer than --epochs",
            at_least=0,
            below=MOST_EPOCHS,
        ),
    )
    lr_gamma: float = option(
        TRAINING,
        float,
        0.1,
        "Factor of the step schedule.",
        Bounds("{flag} must be above 0 and at most 1, e.g. 0.1", above=0, at_most=1),
    )
    grad_clip: float | None = option(
        TRAINING,
        float,
        None,
        "Clip the gradient norm to this value.",
        positive_up_to(1_000_000),
    )
    amp: str = option(
        DEVICE,
        str,
        "auto",
        "Mixed precision: auto (bf16/fp16 on CUDA, off on CPU), off, bf16, fp16.",
        Choice(catalog.AMP_MODES, "amp mode"),
    )
    channels_last: bool | None = option(
        DEVICE, bool, None, "channels_last memory format (default: on CUDA)."
    )
    compile: bool = option(
        DEVICE,
        bool,
        False,
        "Compile the model with torch.compile (slower first epoch, faster after, on CUDA).",
    )
    epochs: int = option(TRAINING, int, 8, "Training epochs.", whole_numbers(1, MOST_EPOCHS))
    batch_size: int = option(
        TRAINING, int, 64, "Training batch size.", whole_numbers(1, MOST_IN_A_BATCH)
    )
    eval_batch_size: int | None = option(
        TRAINING,
        int,
        None,
        "Evaluation batch size (default 2x batch size).",
        whole_numbers(1, MOST_IN_A_BATCH),
    )
    workers: int | None = option(
        DEVICE,
        int,
        None,
        "Data-loading processes for image folders.",
        whole_numbers(0, 256),
    )
    seed: int = option(
        TRAINING,
        int,
        0,
        "Random seed; a seeded CPU run is reproducible bit for bit.",
        whole_numbers(0, MOST_SEED),
    )
    early_stop_patience: int | None = option(
        TRAINING,
        int,
        None,
        "Early stopping: end the run (completed, tested on its best checkpoint) after this "
        "many epochs without the --early-stop-metric improving (default: off).",
        whole_numbers(1, MOST_EPOCHS),
    )
    early_stop_min_delta: float = option(
        TRAINING,
        float,
        0.0,
        "Early stopping: an improvement must exceed this; accuracy as a fraction (0.001 is "
        "0.1 points), loss in its own units.",
        Bounds("{flag} must be 0 or more, up to 1000, e.g. 0.001", at_least=0, at_most=1000),
    )
    early_stop_metric: str = option(
        TRAINING,
        str,
        "val_acc",
        "Early stopping watches val_acc (higher is better) or val_loss (lower is better).",
        Choice(EARLY_STOP_METRICS, "early-stopping metric"),
    )
