"""Freeze policies in the contract: every spelling read, every refusal's one line, the parts each
policy trains, and the line a form shows."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.contract import catalog
from engine.contract.freezing import (
    FreezePolicy,
    parse_freeze,
    stage_names,
    trainable_parts,
    what_trains,
)
from engine.contract.spec import SpecError, normalise_freeze

PARTS = ["stem", "stage1", "stage2", "stage3", "head"]


@pytest.mark.parametrize(
    "written, policy",
    [
        ("full", FreezePolicy("full")),
        ("FULL", FreezePolicy("full")),
        ("  full ", FreezePolicy("full")),
        ("head", FreezePolicy("head")),
        ("Head", FreezePolicy("head")),
        ("gradual", FreezePolicy("gradual")),
        ("GRADUAL", FreezePolicy("gradual")),
        ("lp-ft", FreezePolicy("lp-ft")),
        ("LP-FT", FreezePolicy("lp-ft")),
        ("lp_ft", FreezePolicy("lp-ft")),
        ("lpft", FreezePolicy("lp-ft")),
        ("lp ft", FreezePolicy("lp-ft")),
        ("last-1", FreezePolicy("last", 1)),
        ("last-2", FreezePolicy("last", 2)),
        ("last2", FreezePolicy("last", 2)),
        ("last_2", FreezePolicy("last", 2)),
        ("LAST-3", FreezePolicy("last", 3)),
        ("last--4", FreezePolicy("last", 4)),
        ("last-02", FreezePolicy("last", 2)),
        ("last-12", FreezePolicy("last", 12)),
    ],
)
def test_every_usual_spelling_reads_as_its_policy(written, policy):
    assert parse_freeze(written) == policy
    assert normalise_freeze(written) == policy.text


@pytest.mark.parametrize(
    "policy, text",
    [
        (FreezePolicy("full"), "full"),
        (FreezePolicy("head"), "head"),
        (FreezePolicy("gradual"), "gradual"),
        (FreezePolicy("lp-ft"), "lp-ft"),
        (FreezePolicy("last", 2), "last-2"),
    ],
)
def test_a_policy_is_written_one_way(policy, text):
    assert policy.text == text
    assert parse_freeze(text) == policy


@pytest.mark.parametrize(
    "written, message",
    [
        ("last-0", "--freeze last-0: write last-K with K a stage count, e.g. last-1"),
        ("last", "--freeze last: write last-K with K a stage count, e.g. last-1"),
        ("last-", "--freeze last-: write last-K with K a stage count, e.g. last-1"),
        ("lastly", "--freeze lastly: write last-K with K a stage count, e.g. last-1"),
        ("last-1.5", "--freeze last-1.5: write last-K with K a stage count, e.g. last-1"),
        ("last-²", "--freeze last-²: write last-K with K a stage count, e.g. last-1"),
        ("Last-X", "--freeze Last-X: write last-K with K a stage count, e.g. last-1"),
        ("last-0\n", "--freeze 'last-0\\n': write last-K with K a stage count, e.g. last-1"),
        ("heads", "unknown freeze policy 'heads'; did you mean head?"),
        ("gradul", "unknown freeze policy 'gradul'; did you mean gradual?"),
        (
            "sometimes",
            "unknown freeze policy 'sometimes'; choose one of full, head, last-K, gradual, lp-ft",
        ),
        ("", "unknown freeze policy ''; choose one of full, head, last-K, gradual, lp-ft"),
        (
            "fu\nll",
            "unknown freeze policy 'fu\\nll'; choose one of full, head, last-K, gradual, lp-ft",
        ),
    ],
)
def test_every_refusal_says_what_to_write_in_one_line(written, message):
    with pytest.raises(ValueError) as parsed:
        parse_freeze(written)
    assert str(parsed.value) == message
    with pytest.raises(SpecError) as checked:
        normalise_freeze(written)
    assert str(checked.value) == message


def test_a_count_too_long_to_read_is_refused_like_any_other():
    with pytest.raises(ValueError, match="write last-K with K a stage count"):
        parse_freeze("last-" + "9" * 5000)


@given(st.text())
def test_any_text_gives_a_policy_or_a_one_line_error(text):
    try:
        policy = parse_freeze(text)
    except ValueError as error:
        assert type(error) is ValueError
        assert len(str(error).splitlines()) == 1
    else:
        assert parse_freeze(policy.text) == policy
        assert policy.name in ("full", "head", "last", "gradual", "lp-ft")


@given(st.lists(st.sampled_from(["last", "LP", "ft", "-", "_", " ", "0", "2", "full", "x"])))
def test_any_near_spelling_gives_a_policy_or_a_spec_error(pieces):
    text = "".join(pieces)
    try:
        normalise_freeze(text)
    except SpecError as error:
        assert len(str(error).splitlines()) == 1


@pytest.mark.parametrize(
    "freeze, training",
    [
        ("full", PARTS),
        ("head", ["head"]),
        ("last-1", ["stage3", "head"]),
        ("last-3", ["stage1", "stage2", "stage3", "head"]),
        ("last-4", PARTS),
        ("last-9", PARTS),
    ],
)
def test_fixed_policies_train_the_same_parts_every_epoch(freeze, training):
    policy = parse_freeze(freeze)
    assert [trainable_parts(policy, PARTS, epoch) for epoch in (1, 5)] == [training] * 2


def test_lp_ft_trains_the_head_for_the_probe_then_everything():
    policy = parse_freeze("lp-ft")
    schedule = [trainable_parts(policy, PARTS, epoch, probe_epochs=2) for epoch in (1, 2, 3, 9)]
    assert schedule == [["head"], ["head"], PARTS, PARTS]


def test_a_network_without_a_stem_thaws_its_stages_alone():
    parts = stage_names("cnn")
    assert parts == ["stage1", "stage2", "stage3", "head"]
    assert trainable_parts(parse_freeze("last-3"), parts, 1) == parts
    assert trainable_parts(parse_freeze("gradual"), parts, 9) == parts


@pytest.mark.parametrize("arch", list(catalog.ARCHITECTURES))
def test_every_architecture_has_a_stem_stages_and_a_head_in_order(arch):
    names = stage_names(arch)
    count = 4 if catalog.ARCHITECTURES[arch].family == "torchvision" else 3
    stem = [] if arch == "cnn" else ["stem"]
    assert names == stem + [f"stage{index}" for index in range(1, count + 1)] + ["head"]


@pytest.mark.parametrize(
    "arch, freeze, epochs, options, line",
    [
        (
            "resnet20",
            "last-2",
            10,
            {},
            "resnet20, last-2: stage2, stage3 and the head train; the stem and stage1 stay frozen",
        ),
        (
            "resnet20",
            "last-3",
            10,
            {},
            "resnet20, last-3: stage1, stage2, stage3 and the head train; the stem stays frozen",
        ),
        (
            "resnet20",
            "full",
            10,
            {},
            "resnet20, full: everything trains: the stem, stage1, stage2, stage3 and the head",
        ),
        (
            "resnet20",
            "last-4",
            10,
            {},
            "resnet20, last-4: everything trains: the stem, stage1, stage2, stage3 and the head",
        ),
        (
            "cnn",
            "head",
            10,
            {"probe": "sgd"},
            "cnn, head: only the head trains; stage1, stage2 and stage3 stay frozen",
        ),
        (
            "cnn",
            "head",
            10,
            {},
            "cnn, head: only the head trains, fitted to convergence (L-BFGS) in one epoch; "
            "stage1, stage2 and stage3 stay frozen",
        ),
        (
            "resnet20",
            "lp-ft",
            10,
            {"probe_epochs": 2},
            "resnet20, lp-ft: the head first, a linear probe fitted to convergence (L-BFGS), "
            "then everything fine-tunes for 10 epochs at --ft-lr-scale times the rate",
        ),
        (
            "resnet18",
            "last_1",
            10,
            {},
            "resnet18, last-1: stage4 and the head train; "
            "the stem, stage1, stage2 and stage3 stay frozen",
        ),
        (
            "resnet20",
            "gradual",
            10,
            {},
            "resnet20, gradual: the head for 1 epoch, then one more part every epoch, top down "
            "(stage3, stage2, stage1 and the stem); everything trains from epoch 5",
        ),
        (
            "resnet20",
            "gradual",
            4,
            {"unfreeze_every": 2},
            "resnet20, gradual: the head for 2 epochs, then one more part every 2 epochs, "
            "top down (stage3, stage2, stage1 and the stem); "
            "the stem, stage1 and stage2 stay frozen to the end (epoch 4)",
        ),
        (
            "resnet20",
            "LP-FT",
            10,
            {"probe_epochs": 2, "probe": "sgd"},
            "resnet20, lp-ft: only the head trains for 2 epochs (a linear probe), then "
            "everything fine-tunes for 8 epochs at --ft-lr-scale times the rate",
        ),
        (
            "resnet20",
            "lp-ft",
            1,
            {"probe": "sgd"},
            "resnet20, lp-ft: only the head trains for 1 epoch (a linear probe), "
            "and a run of 1 epoch has none left to fine-tune",
        ),
    ],
)
def test_what_trains_says_it_in_one_line(arch, freeze, epochs, options, line):
    assert what_trains(arch, freeze, epochs, **options) == line


@pytest.mark.parametrize("arch", list(catalog.ARCHITECTURES))
@pytest.mark.parametrize("freeze", ["full", "head", "last-1", "last-2", "gradual", "lp-ft"])
def test_what_trains_has_a_line_for_every_architecture_and_policy(arch, freeze):
    line = what_trains(arch, freeze, 10)
    assert line.startswith(f"{arch}, {freeze}: ") and len(line.splitlines()) == 1
    assert "the head" in line


def test_what_trains_refuses_what_there_is_not():
    with pytest.raises(ValueError, match="unknown architecture 'resnet21'; did you mean"):
        what_trains("resnet21", "full", 10)
    with pytest.raises(ValueError, match="unknown freeze policy 'heads'; did you mean head"):
        what_trains("resnet20", "heads", 10)
