"""Freeze policies in training: what stays bit-identical, what moves, and when parts thaw."""

import pytest
import torch

from engine.contract.events import EventWriter
from engine.contract.freezing import parse_freeze, trainable_parts
from engine.contract.spec import RunSpec
from engine.contract.stopping import StopRequest
from engine.models import build_model, model_stages
from engine.train.loop import Trainer
from engine.transfer.freeze import GRADUAL_THAW_LR_SCALE
from tests.event_log import logged

PARTS = ["stem", "stage1", "stage2", "stage3", "head"]
TINY = {"arch": "resnet8", "width": 4, "limit": 128, "image_size": 16, "device": "cpu"}


def trainer(tmp_path, **options) -> Trainer:
    spec = RunSpec.from_dict({**TINY, **options})
    writer = EventWriter(tmp_path / "events.jsonl")
    return Trainer(spec, writer, tmp_path, StopRequest())


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm running statistics included), copied."""
    state = dict(module.named_parameters())
    state.update(module.named_buffers())
    return {name: tensor.detach().clone() for name, tensor in state.items()}


@pytest.mark.parametrize(
    "policy, training",
    [
        ("full", PARTS),
        ("head", ["head"]),
        ("last-1", ["stage3", "head"]),
        ("last-2", ["stage2", "stage3", "head"]),
        ("gradual", ["head"]),
        ("lp-ft", ["head"]),
    ],
)
def test_frozen_parts_stay_bit_identical_and_trainable_ones_move(tmp_path, policy, training):
    run = trainer(tmp_path, freeze=policy, epochs=3, probe_epochs=1, probe="sgd")
    run.update_policy(1)
    parts = model_stages(run.model)
    before = {name: snapshot(torch.nn.ModuleList(parts[name])) for name in parts}
    run.train_epoch(1)
    for name in parts:
        after = snapshot(torch.nn.ModuleList(parts[name]))
        same = [key for key in after if torch.equal(after[key], before[name][key])]
        if name in training:
            assert len(same) < len(after), f"{name} should have trained"
        else:
            assert len(same) == len(after), f"{name} moved: {set(after) - set(same)}"
    expected = sum(
        p.numel() for name in training for module in parts[name] for p in module.parameters()
    )
    assert sum(p.numel() for p in run.model.parameters() if p.requires_grad) == expected
    events = logged(tmp_path / "events.jsonl")
    policy_event = next(e for e in events if e["type"] == "policy")
    assert policy_event["training"] == training
    assert policy_event["trainable_parameters"] == expected


def test_batchnorm_train_mode_lets_frozen_statistics_follow_the_data(tmp_path):
    run = trainer(tmp_path, freeze="head", bn="train")
    run.update_policy(1)
    stem_bn = run.model.bn1
    mean, weight = stem_bn.running_mean.clone(), stem_bn.weight.detach().clone()
    run.train_epoch(1)
    assert not torch.equal(stem_bn.running_mean, mean)
    assert torch.equal(stem_bn.weight, weight)


def test_batchnorm_eval_mode_trains_only_the_affine_of_frozen_parts(tmp_path):
    run = trainer(tmp_path, freeze="head", bn="eval")
    run.update_policy(1)
    stem_bn, conv = run.model.bn1, run.model.conv1
    mean, weight, kernel = (
        stem_bn.running_mean.clone(),
        stem_bn.weight.detach().clone(),
        conv.weight.detach().clone(),
    )
    run.train_epoch(1)
    assert torch.equal(stem_bn.running_mean, mean) and torch.equal(conv.weight, kernel)
    assert not torch.equal(stem_bn.weight, weight)


def test_gradual_thaws_one_part_every_n_epochs_from_the_top():
    policy = parse_freeze("gradual")
    schedule = [trainable_parts(policy, PARTS, epoch, unfreeze_every=2) for epoch in range(1, 12)]
    assert schedule[:8] == [
        ["head"],
        ["head"],
        ["stage3", "head"],
        ["stage3", "head"],
        ["stage2", "stage3", "head"],
        ["stage2", "stage3", "head"],
        ["stage1", "stage2", "stage3", "head"],
        ["stage1", "stage2", "stage3", "head"],
    ]
    assert schedule[8] == schedule[10] == PARTS


def test_lp_ft_probes_then_fine_tunes_everything_at_the_scaled_rate(tmp_path):
    run = trainer(tmp_path, freeze="lp-ft", epochs=4, probe_epochs=2, ft_lr_scale=0.5, probe="sgd")
    base = list(run.scheduler.base_lrs)
    for epoch in (1, 2):
        run.update_policy(epoch)
        assert run.freeze.trainable == ["head"]
    run.update_policy(3)
    assert run.freeze.trainable == PARTS
    assert run.scheduler.base_lrs == pytest.approx([lr * 0.5 for lr in base])


def test_a_gradually_thawed_stage_joins_at_a_reduced_rate(tmp_path):
    run = trainer(tmp_path, freeze="gradual", epochs=3, backbone_lr_scale=0.5)
    groups = run.optimizer.param_groups
    base = {g["name"]: lr for g, lr in zip(groups, run.scheduler.base_lrs, strict=True)}
    assert base["stage3"] == pytest.approx(0.5 * base["head"])
    run.update_policy(1)
    run.update_policy(2)
    now = {g["name"]: lr for g, lr in zip(groups, run.scheduler.base_lrs, strict=True)}
    assert now["stage3"] == pytest.approx(GRADUAL_THAW_LR_SCALE * base["stage3"])
    assert now["head"] == pytest.approx(base["head"]) and now["stage2"] == base["stage2"]


@pytest.mark.parametrize("arch", ["resnet8", "cnn", "resnet18"])
def test_every_parameter_belongs_to_exactly_one_part(arch):
    model = build_model(arch, 3, 3, None if arch == "resnet18" else 4)
    owners: dict[int, int] = {}
    for modules in model_stages(model).values():
        for module in modules:
            for parameter in module.parameters():
                owners[id(parameter)] = owners.get(id(parameter), 0) + 1
    assert set(owners.values()) == {1}
    assert len(owners) == len(list(model.parameters()))


def test_layer_decay_scales_each_stage_geometrically_below_the_head(tmp_path):
    run = trainer(tmp_path, layer_decay=0.5, backbone_lr_scale=0.8, lr=0.1)
    groups = run.optimizer.param_groups
    rates = {g["name"]: lr for g, lr in zip(groups, run.scheduler.base_lrs, strict=True)}
    assert rates["head"] == pytest.approx(0.1)
    for depth, part in enumerate(["stage3", "stage2", "stage1", "stem"], start=1):
        assert rates[part] == pytest.approx(0.1 * 0.8 * 0.5**depth), part


def starting_weights_file(tmp_path) -> str:
    """A state-dict file of the tiny model, to start L2-SP runs from."""
    (tmp_path / "source").mkdir()
    source = trainer(tmp_path / "source")
    path = tmp_path / "start.pt"
    torch.save(source.model.state_dict(), path)
    return f"file:{path}"


def test_l2sp_penalty_is_half_alpha_times_the_squared_distance_from_the_start(tmp_path):
    run = trainer(tmp_path, init=starting_weights_file(tmp_path), l2sp=0.3)
    assert float(run.starting_point.penalty().detach()) == 0.0
    with torch.no_grad():
        run.model.conv1.weight.add_(0.5)
        run.model.fc.weight.add_(7.0)  # the head is not pulled back: it is new
    expected = 0.5 * 0.3 * 0.25 * run.model.conv1.weight.numel()
    assert float(run.starting_point.penalty().detach()) == pytest.approx(expected, rel=1e-5)
    groups = run.optimizer.param_groups
    decays = {g["name"]: g["weight_decay"] for g in groups if g["params"][0].ndim > 1}
    assert decays["stage2"] == 0.0 and decays["head"] == pytest.approx(run.spec.decay)


def test_l2sp_keeps_the_backbone_nearer_its_starting_weights(tmp_path):
    init = starting_weights_file(tmp_path)
    distances = {}
    for alpha in (0.0, 5.0):
        (tmp_path / str(alpha)).mkdir()
        run = trainer(
            tmp_path / str(alpha),
            init=init,
            l2sp=alpha,
            weight_decay=0.0,
            optimizer="sgd",
            lr=0.1,
            batch_size=16,
        )
        start = [p.detach().clone() for p in run.model.layer1.parameters()]
        for epoch in (1, 2):
            run.train_epoch(epoch)
        after = [p.detach() for p in run.model.layer1.parameters()]
        moves = [float((a - b).pow(2).sum()) for a, b in zip(after, start, strict=True)]
        distances[alpha] = sum(moves)
    assert 0 < distances[5.0] < 0.8 * distances[0.0]
