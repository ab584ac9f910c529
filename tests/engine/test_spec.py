"""The run spec: defaults, JSON round trip, names, and one-line messages for bad values."""

import pytest

from engine.spec import RunSpec, SpecError


def spec(**values) -> RunSpec:
    return RunSpec.from_dict(values)


def test_the_defaults_validate_and_round_trip_through_json():
    default = spec()
    assert default.arch == "resnet8" and default.dataset == "shapes"
    assert RunSpec.from_json(default.to_json()) == default
    custom = spec(arch="resnet20", classes="0,2", lr=0.05, epochs=3, name="x")
    assert RunSpec.from_json(custom.to_json()) == custom


def test_options_take_dashes_or_underscores_and_names_normalise():
    assert spec(**{"batch-size": 32}).batch_size == 32
    assert spec(batch_size=32).batch_size == 32
    assert spec(arch="ResNet-20").arch == "resnet20"
    assert spec(arch="plain-20").arch == "plain20"
    assert spec(arch="wide-resnet50-2").arch == "wide_resnet50_2"
    assert spec(dataset="Fashion_MNIST").dataset == "fashion-mnist"
    assert spec(device="CUDA:1").device == "cuda:1"


def test_classes_by_index_and_name_become_names():
    assert spec(classes="0,star").classes == ["circle", "star"]
    assert spec(classes=["ring", "9"]).classes == ["ring", "ell"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"arch": "resnet21"}, "did you mean"),
        ({"dataset": "cifar11"}, "did you mean cifar10"),
        ({"optimizer": "adamm"}, "did you mean adam"),
        ({"lr": 0}, "--lr must be a positive number"),
        ({"lr": -1}, "--lr must be a positive number"),
        ({"epochs": 0}, "--epochs must be a positive number"),
        ({"batch_size": -2}, "--batch-size must be a positive number"),
        ({"epochs": "abc"}, "--epochs must be a whole number"),
        ({"epochs": 2.5}, "--epochs must be a whole number"),
        ({"lr": "fast"}, "--lr must be a number"),
        ({"augment": "maybe"}, "--augment must be true or false"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"device": "cuda:x"}, "unknown device"),
        ({"classes": "0,42"}, "no class '42'"),
        ({"classes": "0"}, "at least two classes"),
        ({"classes": "1,1"}, "names a class twice"),
        ({"val_fraction": 1}, "--val-fraction"),
        ({"warmup_epochs": 10, "epochs": 5}, "--warmup-epochs"),
        ({"width": 8, "arch": "resnet18"}, "--width applies to"),
        ({"dataset": "imagefolder"}, "imagefolder needs a path"),
        ({"learning_rate": 0.1}, "unknown option"),
    ],
)
def test_bad_values_are_refused_with_one_line(values, message):
    with pytest.raises(SpecError) as caught:
        spec(**values)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_unknown_options_suggest_the_nearest():
    assert spec(BatchSize=3).batch_size == 3  # the same name, however it is spelled
    with pytest.raises(SpecError, match="did you mean batch-size"):
        spec(batch_sise=3)


def test_broken_json_is_one_clear_line():
    with pytest.raises(SpecError, match="not valid JSON"):
        RunSpec.from_json("{nope")
    with pytest.raises(SpecError, match="JSON object"):
        RunSpec.from_json("[1, 2]")
