"""Each spec field's declaration (kind, help, panel, check) and the one validator that runs it:
every declared check refuses its bad values with its own line, and no input does worse."""

import dataclasses
import json
import math
import types
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.contract.options import KINDS, Bounds, Choice, Normalised, declared_checks, option
from engine.contract.run_options import MODEL, PANELS
from engine.contract.spec import FusionSpec, RunSpec, SpecError, spec_fields

# The panels `resnet-tui run --help` shows each option under.
HELP_PANELS = {
    "Model": ["name", "arch", "width", "small_stem"],
    "Data": [
        *("dataset", "data_root", "download", "classes", "train_per_class", "val_fraction"),
        *("folds", "limit", "image_size", "augment"),
    ],
    "Weights": [
        *("init", "keep_head", "head", "head_init", "freeze", "unfreeze_every", "probe"),
        "probe_epochs",
        *("ft_lr_scale", "backbone_lr_scale", "layer_decay", "l2sp", "bn", "lwf"),
    ],
    "Training": [
        *("optimizer", "lr", "momentum", "nesterov"),
        *("weight_decay", "schedule", "warmup_epochs", "lr_gamma"),
        *("grad_clip", "epochs", "batch_size", "eval_batch_size", "seed"),
        *("early_stop_patience", "early_stop_min_delta", "early_stop_metric"),
    ],
    "Regularisation": [
        *("label_smoothing", "mixup", "cutmix", "mix_prob", "mix_switch_prob", "auto_augment"),
        *("augment_magnitude", "random_erasing", "ema_decay", "best_from", "drop_path"),
    ],
    "Distillation": ["teacher", "kd_alpha", "kd_temperature"],
    "Pruning (sweeps)": ["prune", "prune_after", "prune_factor"],
    "Device": ["device", "amp", "channels_last", "compile", "workers"],
    "Several devices (DDP)": ["devices", "nproc", "sync_bn", "nnodes", "rdzv_endpoint"],
}

# For each field checked by a function: a value it refuses, and the line the user then sees.
REFUSED_BY_FUNCTION = {
    (RunSpec, "dataset"): (
        "imagefolder",
        "imagefolder needs a path, e.g. --dataset imagefolder:~/data/pets",
    ),
    (RunSpec, "classes"): ("0", "--classes needs at least two classes, e.g. --classes 0,1"),
    (RunSpec, "init"): (
        "imagenet21k",
        "unknown --init 'imagenet21k'; use scratch, imagenet, imagenet:v1, imagenet:v2, "
        "run:ID, run:ID:last or file:PATH",
    ),
    (RunSpec, "freeze"): (
        "last-0",
        "--freeze last-0: write last-K with K a stage count, e.g. last-1",
    ),
    (RunSpec, "teacher"): (
        "file:t.pt",
        "--teacher file:t.pt: a teacher is a run in the store, e.g. run:12",
    ),
    (RunSpec, "device"): ("tpu", "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    (RunSpec, "devices"): (
        "cuda:0,cpu",
        "--devices takes CUDA devices or cpu, one kind, e.g. cuda:0,cuda:1 or cpu,cpu",
    ),
    (RunSpec, "rdzv_endpoint"): (
        "node0",
        "--rdzv-endpoint 'node0' is not HOST:PORT; write e.g. node0:29500",
    ),
    (FusionSpec, "weights"): ([0.0, 0.0], "--weights must be 0 or more, and not all 0, e.g. 2,1,1"),
    (FusionSpec, "device"): ("tpu", "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
}

CHECKS = [
    (spec_class, name, check)
    for spec_class in (RunSpec, FusionSpec)
    for name, check in declared_checks(spec_class).items()
]
CHECK_IDS = [f"{spec_class.__name__}.{name}" for spec_class, name, _ in CHECKS]


def declared_kind(spec_class: type, name: str) -> type:
    return next(f.metadata["kind"] for f in dataclasses.fields(spec_class) if f.name == name)


def flag(spec_class: type, name: str) -> str:
    declared = next(f.metadata["flag"] for f in dataclasses.fields(spec_class) if f.name == name)
    return declared or "--" + name.replace("_", "-")


def refusal(spec_class: type, name: str, value) -> str:
    """The line that setting field `name` alone to `value` is refused with."""
    with pytest.raises(SpecError) as caught:
        if spec_class is RunSpec:
            RunSpec.from_dict({name: value})
        else:  # a soup that passes every check of its own fields
            fusion = FusionSpec("soup", [{"run": 1}, {"run": 2}])
            setattr(fusion, name, value)
            fusion.validate()
    message = str(caught.value)
    assert "\n" not in message and message.strip() == message
    return message


def outside(bounds: Bounds, kind: type) -> list:
    """Values just outside each bound of `bounds`, as the field's kind."""
    values = []
    if bounds.above is not None:
        values.append(bounds.above)
    if bounds.at_least is not None:
        values.append(bounds.at_least - 1)
    if bounds.below is not None:
        values.append(bounds.below)
    if bounds.at_most is not None:
        values.append(bounds.at_most + 1)
    return [kind(value) for value in values]


def test_every_field_declares_the_kind_of_its_annotation():
    for spec_class in (RunSpec, FusionSpec):
        hints = typing.get_type_hints(spec_class)
        for item in dataclasses.fields(spec_class):
            kind = item.metadata["kind"]
            assert kind in KINDS, item.name
            annotated = hints[item.name]
            if typing.get_origin(annotated) in (typing.Union, types.UnionType):  # X | None
                (annotated,) = [a for a in typing.get_args(annotated) if a is not type(None)]
            if kind is list:
                assert typing.get_origin(annotated) is list, item.name
            else:
                assert annotated is kind, item.name
    for item in dataclasses.fields(RunSpec):  # a user's list is text: `--classes 0,1`
        if item.metadata["kind"] is list:
            assert typing.get_args(typing.get_args(item.type)[0]) == (str,), item.name


def test_every_option_users_set_has_help_and_the_panel_the_help_shows_it_in():
    options = spec_fields()
    assert all(field.help.strip() and field.panel in PANELS for field in options)
    shown = {panel: [f.name for f in options if f.panel == panel] for panel in PANELS}
    assert shown == HELP_PANELS
    assert options[1].flag == "--arch" and options[-1].name == "early_stop_metric"


def test_the_fields_users_never_set_are_not_options():
    internal = {f.name for f in dataclasses.fields(RunSpec)} - {f.name for f in spec_fields()}
    assert internal == {
        "fold",
        "init_checkpoint",
        "teacher_checkpoints",
        "val_from_train",
        "decode_small_folders",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec_fields()[0].help = "changed"


def test_a_field_of_a_kind_users_cannot_write_is_refused_when_declared():
    with pytest.raises(TypeError, match="kind"):
        option(MODEL, dict, None, "A mapping.")


def test_every_field_checked_by_a_function_has_a_refused_example_here():
    by_function = {
        (spec_class, name) for spec_class, name, check in CHECKS if isinstance(check, Normalised)
    }
    assert by_function == set(REFUSED_BY_FUNCTION)


@pytest.mark.parametrize(("spec_class", "name", "check"), CHECKS, ids=CHECK_IDS)
def test_each_declared_check_refuses_with_its_fields_line(spec_class, name, check):
    if isinstance(check, Bounds):
        values = outside(check, declared_kind(spec_class, name))
        assert values, f"{name} declares bounds without a bound"
        for value in values:
            expected = check.message.format(flag=flag(spec_class, name), value=value)
            assert refusal(spec_class, name, value) == expected
    elif isinstance(check, Choice):
        message = refusal(spec_class, name, "no-such-choice")
        assert message.startswith(f"unknown {check.what} 'no-such-choice'; ")
    else:
        value, expected = REFUSED_BY_FUNCTION[(spec_class, name)]
        assert refusal(spec_class, name, value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_fusions_alpha_is_finite_and_named_by_its_option(value):
    assert refusal(FusionSpec, "alpha", value).startswith("--with-init must be a finite number")


def test_a_line_break_in_a_value_is_shown_escaped_on_the_one_line():
    with pytest.raises(SpecError) as caught:
        RunSpec.from_dict({"arch": "resnet\n20x"})
    assert str(caught.value).startswith("unknown architecture 'resnet\\n20x'; ")
    with pytest.raises(SpecError, match="unknown option 'two\\\\u2028lines'"):
        RunSpec.from_dict({"two\u2028lines": 1})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"device": "cuda:²"}, "unknown device 'cuda:²'"),  # a digit Python cannot read as one
        ({"init": "run:²"}, "--init run:²: write run:ID"),
        ({"init": "run:" + "9" * 5000}, "write run:ID or run:ID:last"),
        ({"rdzv_endpoint": "n:²", "nnodes": 2}, "is not HOST:PORT"),
        ({"classes": "²,0"}, "--classes: no class '²'"),
        ({"init": "file:a\0b"}, "holds a NUL character"),
        ({"dataset": "imagefolder:a\0b"}, "holds a NUL character"),
        ({"lr": 10**400}, "--lr must be a number, not 1000"),
    ],
)
def test_odd_digits_paths_and_numbers_are_refused_with_one_line(values, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")) as caught:
        RunSpec.from_dict(values)
    assert "\n" not in str(caught.value)


def test_a_number_too_long_to_read_in_a_spec_file_is_one_line():
    with pytest.raises(SpecError, match="the spec is not valid JSON") as caught:
        RunSpec.from_json('{"epochs": ' + "1" * 5000 + "}")
    assert "\n" not in str(caught.value)


def test_digits_of_other_scripts_read_as_numbers_as_before():
    assert RunSpec.from_dict({"init": "run:٣"}).init == "run:3"
    assert RunSpec.from_dict({"teacher": "٣"}).teacher == ["run:3"]


NAMED = st.sampled_from(
    [
        *("resnet20", "resnet18", "cnn", "cifar10", "mnist", "imagefolder:pets", "0,1", "1,1"),
        *("circle,star", "run:1", "run:2:last", "1,2", "imagenet", "file:w.pt", "lp-ft"),
        *("last-2", "gradual", "cuda", "cuda:0", "cuda:0,cuda:1", "cpu,cpu", "mps", "cpu"),
        *("n:29500", "sgd", "cosine", "step", "bf16", "mlp", "normal", "eval", "yes", "off"),
    ]
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-3, max_value=70)
    | st.floats()
    | st.text(max_size=12)
    | NAMED
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)
FIELD_NAMES = [f.name for f in dataclasses.fields(RunSpec)]


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=6))
def test_any_json_values_give_a_spec_or_one_line_saying_what_is_wrong(values):
    try:
        spec = RunSpec.from_json(json.dumps(values))
    except SpecError as error:
        message = str(error)
        assert message and len(message.splitlines()) == 1 and message.strip() == message
        return
    assert RunSpec.from_json(spec.to_json()) == spec  # what a spec keeps reads back the same
