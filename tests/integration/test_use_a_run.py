"""The README's "use what you trained" walk, on real photos (ants and bees): train on an
image folder, predict on its held-out folder, export to ONNX and predict again through
onnxruntime with the same answers, then the mistakes and Grad-CAM, each as a user types it."""

import json

import pytest
from PIL import Image

from tests.cli.command import invoke

# A small ResNet at 32 px: enough to learn something in seconds on a CPU.
TRAIN = ["--arch", "resnet8", "--width", "8", "--image-size", "32", "--epochs", "3"]
TRAIN += ["--batch-size", "32", "--device", "cpu", "--name", "ants and bees"]


@pytest.mark.slow
def test_train_predict_export_predict_again_and_look_at_the_mistakes(tmp_path, hymenoptera):
    trained = invoke("run", "--dataset", f"imagefolder:{hymenoptera}", *TRAIN, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    shown = json.loads(invoke("show", "1", "--json", cwd=tmp_path).stdout)
    test_accuracy = shown["test_acc"]

    # val/ is the folder the run was tested on (it has no test/): the same images, prepared
    # the same way, give the same accuracy
    held_out = hymenoptera / "val"
    by_run = invoke("predict", "1", str(held_out), "--json", cwd=tmp_path)
    assert by_run.returncode == 0, by_run.stderr
    answers = json.loads(by_run.stdout)
    assert len(answers["predictions"]) == 153 and answers["bad"] == []
    assert answers["summary"]["accuracy"] == pytest.approx(test_accuracy, abs=1e-6)

    exported = invoke("export", "1", "--format", "onnx", "--out", "ants.onnx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "top-1 identical" in exported.stdout + exported.stderr
    sidecar = json.loads((tmp_path / "ants.onnx.json").read_text())
    assert sidecar["classes"] == ["ants", "bees"] and sidecar["input"]["size"] == 32

    by_onnx = invoke("predict", "--model", "ants.onnx", str(held_out), "--json", cwd=tmp_path)
    assert by_onnx.returncode == 0, by_onnx.stderr
    again = json.loads(by_onnx.stdout)
    first = {p["path"]: p["top"] for p in answers["predictions"]}
    second = {p["path"]: p["top"] for p in again["predictions"]}
    assert first.keys() == second.keys()
    for path, top in first.items():
        assert second[path][0]["class"] == top[0]["class"], path  # the same class first
        assert second[path][0]["probability"] == pytest.approx(top[0]["probability"], abs=1e-4)

    mistakes = invoke("mistakes", "1", "--json", cwd=tmp_path)
    assert mistakes.returncode == 0, mistakes.stderr
    kept = json.loads(mistakes.stdout)
    right = sum(1 for p in answers["predictions"] if p["top"][0]["class"] == p["label"])
    assert (kept["samples"], kept["correct"]) == (153, right)
    worst = kept["top_losses"][0]
    with Image.open(worst["image"]) as thumbnail:
        assert max(thumbnail.size) <= 256

    cam = invoke("gradcam", "1", worst["source"], "--out", "worst.png", cwd=tmp_path)
    assert cam.returncode == 0, cam.stderr
    with Image.open(tmp_path / "worst.png") as picture:
        assert min(picture.size) >= 224
