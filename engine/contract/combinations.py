"""The rules of a spec that tie several of its options together, each a named check.

Each field's own rule is declared beside it (contract/run_options.py); these are the rest.
A check raises ValueError with the one line the user sees; the spec runs its list in order,
after every field has passed its own check, and raises that line as its SpecError.
"""

from typing import TYPE_CHECKING

from engine.contract import catalog
from engine.contract.freezing import parse_freeze

if TYPE_CHECKING:
    from engine.contract.spec import FusionSpec, RunSpec


def imagenet_weights_need_torchvision(spec: "RunSpec") -> None:
    if (
        spec.init.startswith("imagenet")
        and catalog.ARCHITECTURES[spec.arch].family != "torchvision"
    ):
        raise ValueError(
            f"{spec.arch} has no ImageNet weights; --init imagenet needs a torchvision "
            "ResNet, e.g. --arch resnet18"
        )


def processes_fit_the_devices(spec: "RunSpec") -> None:
    if spec.devices is not None and spec.nproc is not None and spec.nproc != len(spec.devices):
        raise ValueError(
            f"--nproc {spec.nproc} and {len(spec.devices)} --devices disagree; give one"
        )
    one_device = spec.device == "mps" or spec.device.startswith("cuda:")
    if spec.devices is None and spec.processes > 1 and one_device:
        raise ValueError(
            "--nproc needs --device cuda (one GPU a process), cpu or auto; "
            "for chosen GPUs give --devices cuda:0,cuda:1"
        )


def machines_meet_at_an_endpoint(spec: "RunSpec") -> None:
    if spec.nodes > 1 and not spec.rdzv_endpoint:
        raise ValueError(
            f"--nnodes {spec.nnodes} needs --rdzv-endpoint HOST:PORT, where the machines "
            "meet, e.g. --rdzv-endpoint node0:29500"
        )
    if spec.rdzv_endpoint is not None and spec.nodes == 1:
        raise ValueError("--rdzv-endpoint is for a run on several machines; add --nnodes N")


def sync_bn_needs_gpus(spec: "RunSpec") -> None:
    if spec.sync_bn and spec.world == 1:
        raise ValueError("--sync-bn is for several processes; add --devices or --nproc")
    if spec.sync_bn and spec.device == "cpu":
        raise ValueError("--sync-bn needs CUDA devices: PyTorch's SyncBatchNorm runs on GPUs")


def batch_splits_across_processes(spec: "RunSpec") -> None:
    if spec.batch_size % spec.world:
        raise ValueError(
            f"--batch-size {spec.batch_size} is the global batch and must split evenly "
            f"across {spec.world} processes, e.g. --batch-size "
            f"{spec.world * max(1, spec.batch_size // spec.world)}"
        )


def l2sp_needs_starting_weights(spec: "RunSpec") -> None:
    if spec.l2sp > 0 and spec.init == "scratch":
        raise ValueError(
            "--l2sp pulls toward the starting weights, which scratch does not have; "
            "give --init (imagenet, run:ID or file:PATH) or leave --l2sp out"
        )


def lwf_needs_a_source_run(spec: "RunSpec") -> None:
    if spec.lwf == 0:
        return
    if not spec.init.startswith(("run:", "file:")):
        raise ValueError(
            "--lwf keeps the source run's head beside the new one; give the source "
            "with --init run:ID (or file: of a resnet-tui checkpoint)"
        )
    if spec.keep_head:
        raise ValueError("--lwf keeps the source's head beside a new one; leave --keep-head out")
    if spec.teacher:
        raise ValueError("--lwf and --teacher both distil; choose one")


def lp_ft_leaves_epochs_to_fine_tune(spec: "RunSpec") -> None:
    if spec.freeze == "lp-ft" and spec.probe == "sgd" and spec.probe_epochs >= spec.epochs:
        raise ValueError(
            f"--probe-epochs ({spec.probe_epochs}) leaves no epoch to fine-tune in; "
            f"give fewer than --epochs ({spec.epochs})"
        )


def freeze_fits_the_architecture(spec: "RunSpec") -> None:
    policy = parse_freeze(spec.freeze)
    if policy.last_stages is None:
        return
    body = [part for part in catalog.stage_table_of(spec.arch).parts() if part != "head"]
    if policy.last_stages > len(body):
        raise ValueError(
            f"--freeze {spec.freeze}: {spec.arch} has {len(body)} parts below the head "
            f"({', '.join(body)}); write last-K with K from 1 to {len(body)}"
        )


def fold_is_one_of_the_folds(spec: "RunSpec") -> None:
    if spec.fold is not None and (spec.folds is None or not 0 <= spec.fold < spec.folds):
        raise ValueError("a run's fold must be one of its --folds (0 to K-1)")


def warmup_ends_before_training(spec: "RunSpec") -> None:
    if spec.warmup_epochs >= spec.epochs:
        raise ValueError("--warmup-epochs must be 0 or more and fewer than --epochs")


def width_is_for_cifar_resnets_and_cnn(spec: "RunSpec") -> None:
    if spec.width is not None and catalog.ARCHITECTURES[spec.arch].family == "torchvision":
        raise ValueError(f"--width applies to CIFAR ResNets and cnn, not to {spec.arch}")


def early_stop_options_need_a_patience(spec: "RunSpec") -> None:
    if spec.early_stop_patience is not None:
        return
    if spec.early_stop_min_delta > 0:
        raise ValueError(
            "--early-stop-min-delta is for early stopping; add --early-stop-patience N "
            "(epochs without improvement) or leave it out"
        )
    if spec.early_stop_metric != "val_acc":
        raise ValueError(
            "--early-stop-metric is for early stopping; add --early-stop-patience N "
            "(epochs without improvement) or leave it out"
        )


def drop_path_needs_residual_blocks(spec: "RunSpec") -> None:
    arch = catalog.ARCHITECTURES[spec.arch]
    if spec.drop_path > 0 and (arch.family == "cnn" or not arch.shortcuts):
        raise ValueError(
            f"--drop-path skips residual blocks, which {spec.arch} has none of; choose a "
            "ResNet (e.g. --arch resnet20) or leave --drop-path out"
        )


def best_from_needs_an_average(spec: "RunSpec") -> None:
    if spec.best_from != "either" and spec.ema_decay is None:
        raise ValueError(
            f"--best-from {spec.best_from} chooses between the weights and their average; "
            "add --ema-decay (e.g. 0.999) or leave --best-from out"
        )


RUN_RULES = (
    imagenet_weights_need_torchvision,
    processes_fit_the_devices,
    machines_meet_at_an_endpoint,
    sync_bn_needs_gpus,
    batch_splits_across_processes,
    l2sp_needs_starting_weights,
    lwf_needs_a_source_run,
    lp_ft_leaves_epochs_to_fine_tune,
    freeze_fits_the_architecture,
    fold_is_one_of_the_folds,
    warmup_ends_before_training,
    width_is_for_cifar_resnets_and_cnn,
    early_stop_options_need_a_patience,
    drop_path_needs_residual_blocks,
    best_from_needs_an_average,
)


def fusion_has_its_runs(fusion: "FusionSpec") -> None:
    if fusion.kind == "wise-ft" and len(fusion.members) != 1:
        raise ValueError("--with-init mixes one run with its starting weights; give one id")
    if fusion.kind != "wise-ft" and len(fusion.members) < 2:
        article = "an" if fusion.kind == "ensemble" else "a"
        raise ValueError(f"{article} {fusion.kind} needs two runs or more, e.g. 3 4 5")


def weights_are_one_per_run(fusion: "FusionSpec") -> None:
    if fusion.weights is not None and len(fusion.weights) != len(fusion.members):
        raise ValueError(
            f"--weights has {len(fusion.weights)} numbers for {len(fusion.members)} runs; "
            "give one per run"
        )


def greedy_is_for_soups(fusion: "FusionSpec") -> None:
    if fusion.greedy and fusion.kind != "soup":
        raise ValueError("--greedy is for soups; leave it out here")
    if fusion.greedy and fusion.weights is not None:
        raise ValueError("--greedy chooses the members itself; leave --weights out")


def alpha_is_for_wise_ft(fusion: "FusionSpec") -> None:
    if fusion.alpha is not None and fusion.kind != "wise-ft":
        raise ValueError("an alpha is for --with-init (WiSE-FT) only")


FUSION_RULES = (
    fusion_has_its_runs,
    weights_are_one_per_run,
    greedy_is_for_soups,
    alpha_is_for_wise_ft,
)
