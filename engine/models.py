"""The networks: CIFAR-style ResNets and their plain twins, torchvision ResNets, a small CNN.

Every model is built by `build_model`, which marks it with its architecture's name, and
`model_stages` finds its parts (stem, stage 1..n, head) by its family's stage table in the
catalog: the one description of an architecture's parts that freeze policies use.
`add_stochastic_depth` gives a ResNet's residual blocks their chance of being skipped.
"""

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from engine.contract.catalog import ARCHITECTURES, Architecture, stage_table_of


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016) on a residual branch: in training, each sample's
    branch is dropped with chance `rate` and kept ones are scaled by 1/(1 - rate), so its
    expected value is unchanged; in eval, the branch as it is. No state of its own."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return branch
        keep = 1 - self.rate
        shape = (branch.shape[0],) + (1,) * (branch.dim() - 1)
        return branch * branch.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; with `shortcut`, the input is added back (He et al. 2016, option A).

    The shortcut of a block that halves the resolution and doubles the channels is the input
    subsampled and zero-padded, so it adds no parameters, as in the paper's CIFAR networks.
    A plain block (`shortcut=False`) is the same block without the addition.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels
        self.shortcut = shortcut
        self.drop_path = DropPath()  # its rate set by add_stochastic_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut:
            identity = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.extra_channels:
                identity = F.pad(identity, (0, 0, 0, 0, 0, self.extra_channels))
            out = self.drop_path(out) + identity
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: a 3x3 stem, three stages of n blocks, pooling, a head.

    Stage widths are `width`, 2x and 4x `width` (16/32/64 in the paper); the second and third
    stages halve the resolution.
    """

    def __init__(
        self, depth: int, num_classes: int, in_channels: int, width: int, shortcut: bool
    ) -> None:
        super().__init__()
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        stages = []
        for index, stage_width in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, stage_width, stride, shortcut))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class SmallCNN(nn.Module):
    """A plain convolutional baseline: three conv-BN-ReLU stages with pooling, then a head."""

    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.layer1 = stage(in_channels, width)
        self.layer2 = stage(width, 2 * width)
        self.layer3 = stage(2 * width, 4 * width)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _torchvision_resnet(
    arch: Architecture, num_classes: int, in_channels: int, small_stem: bool
) -> nn.Module:
    import torchvision  # loaded only where used: see engine/__init__.py

    model = torchvision.models.get_model(arch.name, weights=None, num_classes=num_classes)
    if small_stem:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    if small_stem or in_channels != 3:
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def build_model(
    arch_name: str,
    num_classes: int,
    in_channels: int = 3,
    width: int | None = None,
    small_stem: bool = True,
) -> nn.Module:
    """Build architecture `arch_name` for `num_classes` outputs and `in_channels` inputs.

    `width` sets the first stage's channels of CIFAR ResNets and the CNN (their default when
    None); `small_stem` gives torchvision ResNets a 3x3 stride-1 stem without max-pooling.
    """
    arch = ARCHITECTURES[arch_name]
    model: nn.Module
    if arch.family == "cifar":
        model = CifarResNet(
            arch.depth, num_classes, in_channels, width or arch.default_width, arch.shortcuts
        )
    elif arch.family == "cnn":
        model = SmallCNN(num_classes, in_channels, width or arch.default_width)
    else:
        model = _torchvision_resnet(arch, num_classes, in_channels, small_stem)
    model.arch_name = arch_name  # for `model_stages`; not in the state dict
    return model


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's blocks with a shortcut, from the input up: those of the CIFAR ResNets, and
    the basic and bottleneck blocks of torchvision's."""
    if ARCHITECTURES[model.arch_name].family != "torchvision":
        return [m for m in model.modules() if isinstance(m, BasicBlock) and m.shortcut]
    from torchvision.models import resnet

    kinds = (resnet.BasicBlock, resnet.Bottleneck)
    return [module for module in model.modules() if isinstance(module, kinds)]


def add_stochastic_depth(model: nn.Module, rate: float) -> list[float]:
    """Let training skip the residual branch of each sample in each block, by the linear rule:
    block i of the L blocks (from 1, input up) with chance `rate` * i / L. Returns the rates.

    A torchvision block gets a `drop_path` module and a hook on its branch's last BatchNorm
    (bn2 of a basic block, bn3 of a bottleneck) that passes the branch through it, before the
    block adds its shortcut: torchvision's code stays as it is, and so do the state dict's
    keys. Call it on the model as it trains (after any SyncBatchNorm conversion, which makes
    new BatchNorm modules without the hooks).
    """
    blocks = residual_blocks(model)
    rates = [rate * index / len(blocks) for index in range(1, len(blocks) + 1)]
    for block, block_rate in zip(blocks, rates, strict=True):
        if isinstance(block, BasicBlock):
            block.drop_path.rate = block_rate
            continue
        block.drop_path = DropPath(block_rate)
        branch_end = block.bn3 if hasattr(block, "bn3") else block.bn2
        branch_end.register_forward_hook(partial(_through, block.drop_path))
    return rates


def _through(
    drop_path: DropPath, module: nn.Module, inputs: tuple, output: torch.Tensor
) -> torch.Tensor:
    """A forward hook's answer: the branch's output as `drop_path` leaves it."""
    return drop_path(output)


def model_stages(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The parts of a model from `build_model`, in order: `stem` (where its architecture has
    one), `stage1`..`stageN`, `head` (with the old head of a run that learns without
    forgetting)."""
    table = stage_table_of(model.arch_name)
    parts = {
        part: [model.get_submodule(name) for name in names] for part, names in table.parts().items()
    }
    if hasattr(model, table.old_head):
        parts["head"].append(model.get_submodule(table.old_head))
    return parts


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """The model's parameter count: all of them, and those that train."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
