"""Starting weights: ImageNet from torchvision's cache, earlier checkpoints, files; heads."""

import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from engine.contract.errors import RunError
from engine.contract.spec import RunSpec
from engine.models import build_model
from engine.transfer.weights import (
    IMAGENET_MEAN,
    imagenet_file,
    load_initial_weights,
    read_state_dict,
    replace_head,
)


def spec(**options) -> RunSpec:
    return RunSpec.from_dict({"arch": "resnet8", "width": 4, **options})


def checkpoint(path, arch="resnet8", classes=10, width=4, **record):
    model = build_model(arch, classes, 3, width)
    torch.save({"arch": arch, "model": model.state_dict(), **record}, path)
    return model


def test_a_checkpoint_with_another_class_count_gets_a_new_head_and_says_so(tmp_path):
    source = checkpoint(tmp_path / "best.pt", classes=10, mean=[0.1] * 3, std=[0.2] * 3)
    model = build_model("resnet8", 3, 3, 4)
    report = load_initial_weights(model, spec(init=f"file:{tmp_path / 'best.pt'}"))
    assert report.head == "new" and report.missing == [] and report.mismatched == []
    assert report.loaded == len(source.state_dict()) - 2  # all but fc.weight and fc.bias
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer3[0].bn2.running_mean, source.layer3[0].bn2.running_mean)
    assert not torch.equal(model.fc.weight[:3], source.fc.weight[:3])
    assert report.mean == (0.1, 0.1, 0.1) and report.std == (0.2, 0.2, 0.2)


def test_keep_head_keeps_a_head_that_fits_and_ignores_one_that_does_not(tmp_path):
    source = checkpoint(tmp_path / "best.pt", classes=10)
    kept = build_model("resnet8", 10, 3, 4)
    report = load_initial_weights(kept, spec(init=f"file:{tmp_path}/best.pt", keep_head=True))
    assert report.head == "kept" and torch.equal(kept.fc.weight, source.fc.weight)
    other = build_model("resnet8", 5, 3, 4)
    report = load_initial_weights(other, spec(init=f"file:{tmp_path}/best.pt", keep_head=True))
    assert report.head == "new"


def test_weights_of_another_architecture_are_refused(tmp_path):
    checkpoint(tmp_path / "r20.pt", arch="resnet20", width=4)
    with pytest.raises(RunError, match="holds resnet20 weights; this run is a resnet8"):
        load_initial_weights(build_model("resnet8", 10, 3, 4), spec(init=f"file:{tmp_path}/r20.pt"))
    torch.save(build_model("resnet18", 10).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(RunError, match="does not fit a resnet8"):
        load_initial_weights(
            build_model("resnet8", 10, 3, 4), spec(init=f"file:{tmp_path}/plain.pt")
        )


def test_a_shape_that_differs_is_reported_not_hidden(tmp_path):
    checkpoint(tmp_path / "best.pt")
    model = build_model("resnet8", 10, 1, 4)  # one input channel: the stem's conv differs
    report = load_initial_weights(model, spec(init=f"file:{tmp_path}/best.pt"))
    assert report.mismatched == ["conv1.weight (4, 3, 3, 3) -> (4, 1, 3, 3)"]
    assert report.missing == ["conv1.weight"]


def test_imagenet_weights_load_from_torchvision_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = imagenet_file("resnet18", None)
    assert path == tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), path)
    model = build_model("resnet18", 5, 3, small_stem=False)
    report = load_initial_weights(
        model, RunSpec.from_dict({"arch": "resnet18", "init": "imagenet"})
    )
    assert report.source == "IMAGENET1K_V1" and report.mean == IMAGENET_MEAN
    assert report.missing == [] and report.head == "new"
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    small = build_model("resnet18", 5, 3, small_stem=True)
    report = load_initial_weights(
        small, RunSpec.from_dict({"arch": "resnet18", "init": "imagenet"})
    )
    assert report.mismatched == ["conv1.weight (64, 3, 7, 7) -> (64, 3, 3, 3)"]


def test_missing_imagenet_weights_name_the_file_and_the_way_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RunError) as caught:
        load_initial_weights(
            build_model("resnet50", 5), RunSpec.from_dict({"arch": "resnet50", "init": "imagenet"})
        )
    assert caught.value.kind == "dataset_missing"
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in caught.value.message
    assert "--download" in caught.value.hint


def test_safetensors_files_load(tmp_path):
    source = build_model("resnet8", 10, 3, 4)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = build_model("resnet8", 10, 3, 4)
    report = load_initial_weights(model, spec(init=f"file:{tmp_path}/w.safetensors"))
    assert report.loaded == len(source.state_dict()) - 2
    assert torch.equal(model.layer2[0].conv1.weight, source.layer2[0].conv1.weight)


class Exploit:
    """A pickle that would create a file when loaded without weights_only."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as file:
        pickle.dump({"model": Exploit(str(marker))}, file, protocol=2)
    with pytest.raises(RunError, match="cannot be read as weights"):
        read_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_a_new_head_can_be_an_mlp_with_normal_initialisation(kind):
    model = build_model("resnet8", 7, 3, 4)
    replace_head(model, kind, "normal")
    linears = [m for m in model.fc.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == (2 if kind == "mlp" else 1)
    assert linears[-1].out_features == 7
    assert all(float(m.bias.detach().abs().max()) == 0 for m in linears)
    assert all(float(m.weight.detach().std()) < 0.02 for m in linears)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 7)
