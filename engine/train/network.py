"""The network a run trains: built for its data, its head and starting weights, on its device."""

from dataclasses import dataclass

import torch
from torch import nn

from engine.contract.spec import RunSpec
from engine.data.datasets import DatasetBundle
from engine.models import add_stochastic_depth, build_model
from engine.transfer.weights import InitReport, load_initial_weights, replace_head


@dataclass
class Network:
    """A run's model on its device, and how it was made."""

    model: nn.Module
    init_report: InitReport
    small_stem: bool
    channels_last: bool
    memory_format: torch.memory_format


def build_network(spec: RunSpec, bundle: DatasetBundle, device: torch.device) -> Network:
    """The spec's architecture for `bundle`'s classes and channels, with the spec's head and
    starting weights (SyncBatchNorm with --sync-bn, stochastic depth with --drop-path), on
    `device` in its memory format.

    Where the starting weights come with their inputs' mean and std, `bundle` takes them, so
    that the source's features see inputs normalised as they know them.
    """
    small_stem = spec.small_stem if spec.small_stem is not None else bundle.image_size <= 64
    model = build_model(spec.arch, len(bundle.classes), bundle.channels, spec.width, small_stem)
    if spec.head != "linear" or spec.head_init != "default":
        replace_head(model, spec.head, spec.head_init)
    init_report = load_initial_weights(model, spec)
    if init_report.mean is not None and len(init_report.mean) == bundle.channels:
        bundle.mean, bundle.std = init_report.mean, init_report.std
    if spec.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if spec.drop_path > 0:  # after the conversion, which drops a torchvision block's hooks
        add_stochastic_depth(model, spec.drop_path)
    model = model.to(device)
    channels_last = spec.channels_last if spec.channels_last is not None else device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    return Network(model, init_report, small_stem, channels_last, memory_format)
