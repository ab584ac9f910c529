"""Every architecture builds, has the catalog's parameter count, and names its stages."""

import pytest
import torch

from engine.catalog import ARCHITECTURES
from engine.models import BasicBlock, build_model, count_parameters, model_stages

SMALL_FAMILIES = ("cifar", "cnn")


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


def test_grey_input_and_the_imagenet_stem_work_too():
    model = build_model("resnet18", 3, in_channels=1, small_stem=False).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    assert build_model("resnet20", 5, in_channels=1, width=4).eval()(
        torch.randn(2, 1, 28, 28)
    ).shape == (2, 5)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_catalog_parameter_counts_match_the_built_models(name):
    total, trainable = count_parameters(build_model(name, 10))
    assert total == ARCHITECTURES[name].parameters
    assert trainable == total


def test_cifar_resnets_have_the_papers_depth_and_size():
    # He et al. 2016, table 6: ResNet-20 has 0.27M parameters, ResNet-110 1.7M.
    assert round(ARCHITECTURES["resnet20"].parameters / 1e6, 2) == 0.27
    assert round(ARCHITECTURES["resnet110"].parameters / 1e6, 1) == 1.7
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in build_model("resnet56", 10).modules())
    assert convs + 1 == 56  # 55 convolutions and the classifier


def test_a_plain_block_really_has_no_shortcut():
    torch.manual_seed(0)
    residual = BasicBlock(8, 8, 1, shortcut=True).eval()
    plain = BasicBlock(8, 8, 1, shortcut=False).eval()
    plain.load_state_dict(residual.state_dict())
    for block in (residual, plain):
        torch.nn.init.zeros_(block.bn2.weight)
        torch.nn.init.zeros_(block.bn2.bias)
    x = torch.rand(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(residual(x), x)  # the residual branch is silent: x passes through
        assert torch.count_nonzero(plain(x)) == 0  # nothing passes without a shortcut


def test_plain_and_residual_twins_share_weights_but_not_outputs():
    torch.manual_seed(0)
    resnet = build_model("resnet20", 10, width=4).eval()
    plain = build_model("plain20", 10, width=4).eval()
    assert resnet.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(resnet.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(resnet(x), plain(x))


@pytest.mark.parametrize("name", ["resnet8", "plain20", "cnn", "resnet18", "resnet50"])
def test_stages_name_every_parameter_exactly_once(name):
    model = build_model(name, 10)
    stages = model_stages(model)
    assert list(stages)[0] == "stem" and list(stages)[-1] == "head"
    assert [k for k in stages if k.startswith("stage")] == [
        f"stage{i}" for i in range(1, len(stages) - 1)
    ]
    seen = [id(p) for modules in stages.values() for m in modules for p in m.parameters()]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in model.parameters()}
