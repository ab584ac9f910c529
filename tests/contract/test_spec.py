"""The run spec: defaults, JSON round trip, names, and one-line messages for bad values."""

import json
import math

import pytest

from engine.contract import catalog
from engine.contract.spec import RunSpec, SpecError, spec_fields


def spec(**values) -> RunSpec:
    return RunSpec.from_dict(values)


def test_the_defaults_validate():
    default = RunSpec()
    default.validate()
    assert default == spec()
    assert default.arch == "resnet8" and default.dataset == "shapes" and default.device == "auto"
    assert default.optimizer == "adamw" and default.schedule == "onecycle"
    assert default.peak_lr == catalog.DEFAULT_LR["adamw"]
    assert default.decay == catalog.DEFAULT_WEIGHT_DECAY["adamw"]
    assert default.display_name == "resnet8 on shapes"


def test_specs_round_trip_through_json():
    default = spec()
    assert RunSpec.from_json(default.to_json()) == default
    custom = spec(arch="resnet20", classes="0,2", lr=0.05, epochs=3, name="x", small_stem=False)
    text = custom.to_json()
    assert json.loads(text)["classes"] == ["circle", "triangle"]
    assert RunSpec.from_json(text) == custom
    assert RunSpec.from_json(text).to_json() == text


def test_every_option_has_help_and_the_defaults_are_the_dataclass_defaults():
    options = spec_fields()
    assert [field.name for field in options][:2] == ["name", "arch"]
    assert all(field.help for field in options)
    defaults = json.loads(RunSpec().to_json())
    # Set by resnet-tui (from the store, or for one fold of --folds), not users' options:
    assert defaults.pop("init_checkpoint") is None and defaults.pop("teacher_checkpoints") is None
    assert defaults.pop("fold") is None
    assert defaults.pop("val_from_train") is True
    assert defaults.pop("decode_small_folders") is True
    assert {field.name: field.default for field in options} == defaults


def test_options_take_dashes_or_underscores_and_names_normalise():
    assert spec(**{"batch-size": 32}).batch_size == 32
    assert spec(batch_size=32).batch_size == 32
    assert spec(**{"val-fraction": "0.2"}).val_fraction == 0.2
    assert spec(arch="ResNet-20").arch == "resnet20"
    assert spec(arch="plain-20").arch == "plain20"
    assert spec(arch="PLAIN_110").arch == "plain110"
    assert spec(arch="wide-resnet50-2").arch == "wide_resnet50_2"
    assert spec(dataset="Fashion_MNIST").dataset == "fashion-mnist"
    assert spec(optimizer="SGD", schedule="Cosine").optimizer == "sgd"
    assert spec(device="CUDA:1").device == "cuda:1"
    assert spec(device=" cpu ").device == "cpu"


def test_values_from_the_command_line_are_coerced_to_the_option_types():
    coerced = spec(epochs="3", lr="0.01", augment="no", download="yes", classes=[0, 1], seed=2.0)
    assert coerced.epochs == 3 and coerced.lr == 0.01 and coerced.seed == 2
    assert coerced.augment is False and coerced.download is True
    assert coerced.classes == ["circle", "square"]
    assert spec(lr=None).lr is None  # None means the default


def test_classes_by_index_and_name_become_names():
    assert spec(classes="0,star").classes == ["circle", "star"]
    assert spec(classes=["ring", "9"]).classes == ["ring", "ell"]
    assert spec(classes=" 3 , 1 ").classes == ["star", "square"]
    assert spec(dataset="mnist", classes="3,7").classes == ["3", "7"]  # digits are names there


def test_an_unknown_class_lists_the_classes():
    with pytest.raises(SpecError) as caught:
        spec(classes="circle,hexagon")
    message = str(caught.value)
    assert "hexagon" in message and "0=circle" in message and "9=ell" in message
    assert "\n" not in message


def test_an_unknown_architecture_names_the_nearest():
    with pytest.raises(SpecError) as caught:
        spec(arch="resnet21")
    message = str(caught.value)
    assert "resnet21" in message and "resnet20" in message and "\n" not in message


def test_unknown_options_suggest_the_nearest():
    assert spec(BatchSize=3).batch_size == 3  # the same name, however it is spelled
    with pytest.raises(SpecError, match="did you mean batch-size"):
        spec(batch_sise=3)
    with pytest.raises(SpecError, match="did you mean epochs"):
        spec(epoch=3)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"arch": "resnet21"}, "did you mean"),
        ({"arch": "transformer"}, "unknown architecture 'transformer'"),
        ({"dataset": "cifar11"}, "did you mean cifar10"),
        ({"optimizer": "adamm"}, "did you mean adam"),
        ({"schedule": "linear"}, "unknown schedule"),
        ({"amp": "fp8"}, "unknown amp mode"),
        ({"init": "imagenet21k"}, "unknown --init"),
        ({"freeze": "sometimes"}, "policy 'sometimes'; choose one of full, head, last-K, gradual"),
        ({"lr": 0}, "--lr must be a positive number"),
        ({"lr": -1}, "--lr must be a positive number"),
        ({"lr": math.inf}, "--lr must be a finite number, not inf"),
        ({"lr": math.nan}, "--lr must be a finite number, not nan"),
        ({"epochs": 0}, "--epochs must be a positive number"),
        ({"epochs": -3}, "--epochs must be a positive number"),
        ({"batch_size": 0}, "--batch-size must be a positive number"),
        ({"batch_size": -2}, "--batch-size must be a positive number"),
        ({"eval_batch_size": 0}, "--eval-batch-size must be a positive number"),
        ({"width": 0}, "--width must be a positive number"),
        ({"limit": 0}, "--limit must be a positive number"),
        ({"train_per_class": -1}, "--train-per-class must be a positive number"),
        ({"image_size": 0}, "--image-size must be a positive number"),
        ({"grad_clip": 0}, "--grad-clip must be a positive number"),
        ({"weight_decay": -0.1}, "--weight-decay must be 0 or more"),
        ({"workers": -1}, "--workers must be 0 or more"),
        ({"layer_decay": 0}, "--layer-decay must be above 0 and at most 1"),
        ({"layer_decay": 1.5}, "--layer-decay must be above 0 and at most 1"),
        ({"l2sp": -1}, "--l2sp must be 0 (off) or more"),
        ({"l2sp": 0.1}, "--l2sp pulls toward the starting weights"),
        ({"epochs": "abc"}, "--epochs must be a whole number, not 'abc'"),
        ({"epochs": 2.5}, "--epochs must be a whole number"),
        ({"epochs": True}, "--epochs must be a whole number"),
        ({"lr": "fast"}, "--lr must be a number"),
        ({"augment": "maybe"}, "--augment must be true or false"),
        ({"classes": 3}, "--classes must be a comma-separated list"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"device": "cuda:x"}, "unknown device"),
        ({"device": "cuda:"}, "unknown device"),
        ({"classes": "0,42"}, "no class '42'"),
        ({"classes": "0"}, "at least two classes"),
        ({"classes": "1,1"}, "names a class twice"),
        ({"val_fraction": 1}, "--val-fraction"),
        ({"val_fraction": -0.1}, "--val-fraction"),
        ({"label_smoothing": 1}, "--label-smoothing"),
        ({"momentum": 1}, "--momentum"),
        ({"lr_gamma": 0}, "--lr-gamma"),
        ({"lr_gamma": 2}, "--lr-gamma"),
        ({"warmup_epochs": 10, "epochs": 5}, "--warmup-epochs"),
        ({"warmup_epochs": -1}, "--warmup-epochs"),
        ({"width": 8, "arch": "resnet18"}, "--width applies to"),
        ({"dataset": "imagefolder"}, "imagefolder needs a path"),
        ({"dataset": "imagefolder:"}, "imagefolder needs a path"),
        ({"learning_rate": 0.1}, "unknown option 'learning_rate'"),
    ],
)
def test_bad_values_are_refused_with_one_line(values, message):
    with pytest.raises(SpecError) as caught:
        spec(**values)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text and text.strip() == text


def test_broken_json_is_one_clear_line():
    with pytest.raises(SpecError, match="not valid JSON") as caught:
        RunSpec.from_json("{nope")
    assert "\n" not in str(caught.value)
    with pytest.raises(SpecError, match="JSON object"):
        RunSpec.from_json("[1, 2]")
    with pytest.raises(SpecError, match="--epochs must be a whole number"):
        RunSpec.from_json('{"epochs": "many"}')


def test_an_imagefolder_path_is_made_absolute(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    assert spec(dataset="imagefolder:pets").dataset == f"imagefolder:{tmp_path / 'pets'}"
    assert spec(dataset="folder:pets").dataset == f"imagefolder:{tmp_path / 'pets'}"


def test_a_class_named_twice_by_index_and_name_is_refused():
    with pytest.raises(SpecError, match=r"names a class twice \(circle\)"):
        spec(classes="0,circle")
    with pytest.raises(SpecError, match=r"names a class twice \(star\)"):
        spec(classes="star,1,3")
    with pytest.raises(SpecError, match="names a class twice"):
        spec(dataset="imagefolder:/pets", classes="cat,dog,cat")  # before the folder is read


FLOAT_OPTIONS = [field.name for field in spec_fields() if field.kind is float]


def test_the_float_options_are_all_checked_below():
    assert set(FLOAT_OPTIONS) == {
        "val_fraction",
        "lr",
        "momentum",
        "weight_decay",
        "warmup_epochs",
        "lr_gamma",
        "label_smoothing",
        "grad_clip",
        "ft_lr_scale",
        "backbone_lr_scale",
        "layer_decay",
        "l2sp",
        "kd_alpha",
        "kd_temperature",
        "lwf",
        "early_stop_min_delta",
        *("mixup", "cutmix", "mix_prob", "mix_switch_prob", "random_erasing"),
        *("ema_decay", "drop_path"),
    }


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf"])
@pytest.mark.parametrize("name", FLOAT_OPTIONS)
def test_nan_and_infinity_are_refused_for_every_number(name, value):
    with pytest.raises(SpecError) as caught:
        spec(**{name: value})
    flag = "--" + name.replace("_", "-")
    assert str(caught.value).startswith(f"{flag} must be a finite number, not ")
    assert "\n" not in str(caught.value)


def test_nan_from_a_spec_file_is_refused():
    with pytest.raises(SpecError, match="--weight-decay must be a finite number, not nan"):
        RunSpec.from_json('{"weight_decay": NaN}')
    built = RunSpec(warmup_epochs=math.nan)
    with pytest.raises(SpecError, match="--warmup-epochs must be a finite number"):
        built.validate()


def test_an_unknown_option_keeps_the_users_spelling_and_suggests_a_flag():
    with pytest.raises(SpecError) as caught:
        spec(batch_sise=3)
    assert str(caught.value).startswith("unknown option 'batch_sise'; did you mean batch-size ")
