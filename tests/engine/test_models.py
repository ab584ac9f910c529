"""Every architecture builds, has the catalog's parameter count, and names its stages."""

import pytest
import torch
from torch.nn import functional as F

from engine.contract.catalog import ARCHITECTURES
from engine.contract.freezing import stage_names
from engine.models import BasicBlock, build_model, count_parameters, model_stages

SMALL_FAMILIES = ("cifar", "cnn")

# One architecture of each kind, and how many stages each has between stem and head (the
# small CNN has no stem).
STAGE_COUNTS = {"resnet8": 3, "plain20": 3, "cnn": 3, "resnet18": 4, "resnet50": 4}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_gives_one_logit_per_class(name):
    arch = ARCHITECTURES[name]
    torch.manual_seed(0)
    if arch.family in SMALL_FAMILIES:
        model, size = build_model(name, 7, in_channels=3, width=4), 16
    else:
        model, size = build_model(name, 7, in_channels=3, small_stem=True), 32
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


@pytest.mark.parametrize("channels", [3, 1])
def test_the_imagenet_stem_takes_larger_images_in_colour_or_grey(channels):
    model = build_model("resnet18", 3, in_channels=channels, small_stem=False).eval()
    assert model.conv1.kernel_size == (7, 7) and model.conv1.in_channels == channels
    with torch.no_grad():
        assert model(torch.randn(2, channels, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize("name", ["resnet8", "plain20", "cnn", "resnet18"])
def test_grey_input_works_for_every_family(name):
    width = None if ARCHITECTURES[name].family == "torchvision" else 4
    model = build_model(name, 5, in_channels=1, width=width).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 16, 16)).shape == (2, 5)


def test_width_sets_the_channels_of_the_three_cifar_stages():
    model = build_model("resnet20", 10, width=4)
    assert model.conv1.out_channels == 4
    stages = (model.layer1, model.layer2, model.layer3)
    assert [stage[-1].conv2.out_channels for stage in stages] == [4, 8, 16]
    assert model.fc.in_features == 16 and model.fc.out_features == 10
    assert build_model("resnet8", 10).conv1.out_channels == 8  # resnet8's narrow default


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_catalog_parameter_counts_match_the_built_models(name):
    total, trainable = count_parameters(build_model(name, 10, in_channels=3, small_stem=True))
    assert total == ARCHITECTURES[name].parameters
    assert trainable == total


def test_trainable_parameters_leave_out_frozen_ones():
    model = build_model("resnet8", 10, width=4)
    total, _ = count_parameters(model)
    for parameter in model.fc.parameters():
        parameter.requires_grad_(False)
    head = sum(p.numel() for p in model.fc.parameters())
    assert count_parameters(model) == (total, total - head)


def test_cifar_resnets_have_the_papers_depth_and_size():
    # He et al. 2016, table 6: ResNet-20 has 0.27M parameters, ResNet-110 1.7M.
    assert round(ARCHITECTURES["resnet20"].parameters / 1e6, 2) == 0.27
    assert round(ARCHITECTURES["resnet110"].parameters / 1e6, 1) == 1.7
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in build_model("resnet56", 10).modules())
    assert convs + 1 == 56  # 55 convolutions and the classifier


def silenced_twins(in_channels: int, out_channels: int, stride: int):
    """A residual block and a plain block with the same weights and a silent residual branch."""
    torch.manual_seed(0)
    residual = BasicBlock(in_channels, out_channels, stride, shortcut=True).eval()
    plain = BasicBlock(in_channels, out_channels, stride, shortcut=False).eval()
    plain.load_state_dict(residual.state_dict())
    for block in (residual, plain):
        torch.nn.init.zeros_(block.bn2.weight)
        torch.nn.init.zeros_(block.bn2.bias)
    return residual, plain


def test_a_plain_block_really_has_no_shortcut():
    residual, plain = silenced_twins(8, 8, 1)
    x = torch.rand(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(residual(x), x)  # the residual branch is silent: x passes through
        assert torch.count_nonzero(plain(x)) == 0  # nothing passes without a shortcut
        signed = torch.randn(2, 8, 6, 6)
        assert torch.equal(residual(signed), F.relu(signed))
        assert torch.count_nonzero(plain(signed)) == 0


def test_a_downsampling_shortcut_subsamples_and_zero_pads_the_channels():
    residual, plain = silenced_twins(4, 8, 2)
    x = torch.rand(2, 4, 6, 6)
    with torch.no_grad():
        out = residual(x)
        assert out.shape == (2, 8, 3, 3)
        assert torch.equal(out[:, :4], x[:, :, ::2, ::2])  # option A: subsampled input
        assert torch.count_nonzero(out[:, 4:]) == 0  # and zeros for the new channels
        assert torch.count_nonzero(plain(x)) == 0
    assert sum(p.numel() for p in residual.parameters()) == sum(
        p.numel() for p in plain.parameters()
    )  # the shortcut adds no parameters


def test_plain_and_residual_twins_share_weights_but_not_outputs():
    torch.manual_seed(0)
    resnet = build_model("resnet20", 10, width=4).eval()
    plain = build_model("plain20", 10, width=4).eval()
    assert resnet.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(resnet.state_dict())
    for a, b in zip(resnet.state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(resnet(x), plain(x))
    assert ARCHITECTURES["plain20"].parameters == ARCHITECTURES["resnet20"].parameters
    assert not ARCHITECTURES["plain20"].shortcuts and ARCHITECTURES["resnet20"].shortcuts


@pytest.mark.parametrize("name", list(STAGE_COUNTS))
def test_stages_name_every_parameter_exactly_once(name):
    width = None if ARCHITECTURES[name].family == "torchvision" else 4
    model = build_model(name, 10, width=width)
    stages = model_stages(model)
    stem = [] if name == "cnn" else ["stem"]
    expected = stem + [f"stage{i}" for i in range(1, STAGE_COUNTS[name] + 1)] + ["head"]
    assert list(stages) == expected
    owners: dict[int, str] = {}
    for stage, modules in stages.items():
        for module in modules:
            for parameter in module.parameters():
                already = owners.get(id(parameter))
                assert already is None, f"{stage} repeats a parameter of {already}"
                owners[id(parameter)] = stage
    assert set(owners) == {id(p) for p in model.parameters()}
    assert stages["head"] == [model.fc]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_catalog_names_the_stages_every_built_model_has(name):
    width = None if ARCHITECTURES[name].family == "torchvision" else 4
    model = build_model(name, 10, width=width)
    assert list(model_stages(model)) == stage_names(name)


def test_the_old_head_of_learning_without_forgetting_is_part_of_the_head():
    model = build_model("resnet8", 10, width=4)
    model.old_fc = torch.nn.Linear(16, 5)
    assert model_stages(model)["head"] == [model.fc, model.old_fc]
