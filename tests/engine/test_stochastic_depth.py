"""Stochastic depth (--drop-path): the linear rule's rate per block, nothing changed in eval,
each sample's residual branch dropped or scaled in training with its expected value kept, on
the CIFAR ResNets and torchvision's; and tiny real runs that train with it."""

import pytest
import torch

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from engine.models import DropPath, add_stochastic_depth, build_model, residual_blocks
from engine.train.run import run
from tests.engine.test_data import write_images
from tests.event_log import logged


@pytest.mark.parametrize("arch, blocks", [("resnet20", 9), ("resnet50", 16), ("resnet18", 8)])
def test_block_i_of_l_gets_the_rate_times_i_over_l(arch, blocks):
    width = 4 if arch == "resnet20" else None
    model = build_model(arch, 3, 3, width)
    rates = add_stochastic_depth(model, 0.2)
    expected = [0.2 * i / blocks for i in range(1, blocks + 1)]
    assert rates == pytest.approx(expected)
    assert [block.drop_path.rate for block in residual_blocks(model)] == pytest.approx(expected)
    # the state dict keeps its keys: checkpoints and ImageNet weights load as before
    assert model.state_dict().keys() == build_model(arch, 3, 3, width).state_dict().keys()


@pytest.mark.parametrize("arch", ["resnet8", "resnet18", "resnet50"])
def test_eval_output_is_unchanged_by_the_rate(arch):
    width = 4 if arch == "resnet8" else None
    torch.manual_seed(0)
    plain = build_model(arch, 3, 3, width)
    dropping = build_model(arch, 3, 3, width)
    dropping.load_state_dict(plain.state_dict())
    add_stochastic_depth(dropping, 0.9)
    images = torch.randn(4, 3, 16, 16)
    plain.eval(), dropping.eval()
    with torch.no_grad():
        assert torch.equal(plain(images), dropping(images))
    dropping.train()
    with torch.no_grad():  # in training the branches are dropped: the output changes
        plain.train()
        assert not torch.equal(plain(images), dropping(images))


def test_drop_path_keeps_the_expected_value_and_drops_each_sample_alone():
    torch.manual_seed(1)
    drop = DropPath(0.3).train()
    samples = 100_000
    branch = torch.full((samples, 2, 1, 1), 3.0)
    out = drop(branch)
    kept = out[:, 0, 0, 0] != 0
    # each sample is either dropped whole or kept whole, scaled by 1 / (1 - 0.3)
    assert torch.equal(out[:, 0], out[:, 1])
    assert torch.allclose(out[kept], torch.full_like(out[kept], 3.0 / 0.7))
    # the share dropped and the mean: within 4 standard errors of 0.3 and of 3.0
    share_dropped = 1 - kept.float().mean().item()
    assert abs(share_dropped - 0.3) < 4 * (0.3 * 0.7 / samples) ** 0.5
    spread = 3.0 * (0.3 / 0.7) ** 0.5 / samples**0.5
    assert abs(out.mean().item() - 3.0) < 4 * spread
    assert torch.equal(drop.eval()(branch), branch)
    assert torch.equal(DropPath(0.0).train()(branch), branch)


@pytest.mark.parametrize("arch", ["resnet20", "resnet50"])
def test_in_training_each_sample_is_its_branch_dropped_or_scaled(arch):
    torch.manual_seed(2)
    model = build_model(arch, 3, 3, 4 if arch == "resnet20" else None)
    first = residual_blocks(model)[1]  # a block whose shortcut is its input
    last_bn = first.bn3 if hasattr(first, "bn3") else first.bn2
    channels = last_bn.num_features
    # the branch as it is, seen before stochastic depth's hook (which comes after)
    seen = []
    last_bn.register_forward_hook(lambda module, inputs, output: seen.append(output.clone()))
    add_stochastic_depth(model, 1.0)  # the rate of this block is 1.0 * 2 / L
    rate = first.drop_path.rate
    first.eval()  # BatchNorm as in eval, so the branch is the same whatever is dropped
    first.drop_path.train()
    images = torch.randn(64, channels, 8, 8)
    with torch.no_grad():
        out = first(images)
    branch = seen[-1]
    dropped = torch.relu(images)
    kept = torch.relu(branch / (1 - rate) + images)
    is_dropped = [torch.allclose(o, d) for o, d in zip(out, dropped, strict=True)]
    is_kept = [torch.allclose(o, k, atol=1e-5) for o, k in zip(out, kept, strict=True)]
    assert all(a != b for a, b in zip(is_dropped, is_kept, strict=True))  # one or the other
    assert any(is_dropped) and any(is_kept)


@pytest.mark.slow
@pytest.mark.parametrize("arch, width", [("resnet8", 4), ("resnet18", None)])
def test_tiny_runs_train_with_drop_path_and_an_average(tmp_path, arch, width):
    """On a folder of 40 small images: torchvision's ResNet-18 evaluates quickly on it."""
    write_images(tmp_path / "colours", 20)
    options = {"arch": arch, "dataset": f"imagefolder:{tmp_path / 'colours'}", "epochs": 2}
    options |= {"image_size": 16, "device": "cpu", "workers": 0, "batch_size": 8}
    options |= {"width": width, "drop_path": 0.1, "ema_decay": 0.9}
    spec = RunSpec.from_dict(options)
    assert run(spec, tmp_path / "events.jsonl", tmp_path) == 0
    events = logged(tmp_path / "events.jsonl")
    epochs = [e for e in events if e["type"] == ev.EPOCH_ENDED]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(e["ema_val_acc"] is not None for e in epochs)
    assert events[-1]["status"] == "completed"
