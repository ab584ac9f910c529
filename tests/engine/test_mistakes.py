"""The test predictions a run keeps at its end (engine/use/mistakes.py): one per test image in
the split's order, agreeing with the `finished` event's test report, thumbnails that open,
image folders' original files, and a folder that cannot be written only a warning."""

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.contract.events import read_events
from engine.contract.spec import FusionSpec, RunSpec
from engine.data.datasets import load_dataset
from engine.fusion.run import run_fusion
from engine.train.run import run
from engine.use.mistakes import PREDICTIONS_FORMAT, pictured, prediction_table
from resnet_tui.runs.mistakes import confusion_matrix, per_class, read_test_predictions
from tests.engine.tiny_runs import TINY, trained_run


def finished_report(folder: Path) -> dict:
    events = read_events(folder / "events.jsonl").events
    [finished] = [event for event in events if event.type == "finished"]
    return finished.test


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shapes") / "run"
    trained_run(folder)
    return folder


def test_a_finished_run_keeps_a_prediction_per_test_image_agreeing_with_its_report(shapes_run):
    report = finished_report(shapes_run)
    assert report["predictions"] == "test-predictions.json"
    kept = json.loads((shapes_run / "test-predictions.json").read_text())
    assert kept["format"] == PREDICTIONS_FORMAT
    assert kept["classes"] == report["classes"]
    for name in ("labels", "predicted", "probability", "true_probability", "loss"):
        assert len(kept[name]) == report["samples"], name
    predictions = read_test_predictions(shapes_run)
    assert confusion_matrix(predictions) == report["confusion"]
    assert math.isclose(sum(predictions.loss) / len(predictions), report["loss"], rel_tol=1e-5)
    f1s = [scores.f1 for scores in per_class(predictions)]
    assert math.isclose(sum(f1s) / len(f1s), report["macro_f1"], rel_tol=1e-9)
    pairs = zip(predictions.probability, predictions.true_probability, strict=True)
    assert all(p >= t for p, t in pairs)  # the predicted class is the most probable one
    assert not list(shapes_run.glob(".*partial")) and not list(shapes_run.glob("mistakes/.*"))


def test_thumbnails_are_the_test_images_in_order_and_open(shapes_run):
    predictions = read_test_predictions(shapes_run)
    by_loss = sorted(range(len(predictions)), key=lambda i: -predictions.loss[i])
    assert set(by_loss[:64]) <= set(predictions.images)
    assert len(predictions.images) <= 64 + 10 * 8
    assert not predictions.sources  # shapes are drawn in memory
    test_images = load_dataset(RunSpec.from_dict({**TINY, "epochs": 1})).test.images
    for index, path in predictions.images.items():
        with Image.open(path) as picture:
            pixels = torch.tensor(list(picture.tobytes()), dtype=torch.uint8)
        expected = test_images[index].permute(1, 2, 0).reshape(pixels.shape)
        assert torch.equal(pixels, expected), index


def test_an_image_folder_run_keeps_each_images_file_and_shrinks_its_thumbnails(tmp_path):
    colours = {"blue": (20, 40, 230), "green": (30, 200, 40), "red": (220, 30, 30)}
    for name, colour in colours.items():
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(8):
            size = (600, 300) if i % 2 else (40, 50)
            Image.new("RGB", size, colour).save(tmp_path / "data" / name / f"{i}.png")
    trained_run(tmp_path / "run", dataset=f"imagefolder:{tmp_path / 'data'}", workers=0)
    predictions = read_test_predictions(tmp_path / "run")
    assert (
        len(predictions.sources) == len(predictions) == finished_report(tmp_path / "run")["samples"]
    )
    for index, source in predictions.sources.items():
        assert Path(source).parent.name == predictions.classes[predictions.labels[index]]
    assert predictions.images
    for index, path in predictions.images.items():
        with Image.open(path) as picture, Image.open(predictions.sources[index]) as original:
            assert max(picture.size) == min(256, max(original.size))
            assert picture.getpixel((0, 0)) == original.convert("RGB").getpixel((0, 0))


def test_an_ensemble_keeps_its_test_predictions_too(shapes_run, tmp_path):
    trained_run(tmp_path / "other", seed=1)
    members = [
        {"run": i, "name": folder.name, "checkpoint": str(folder / "checkpoints" / "best.pt")}
        for i, folder in enumerate((shapes_run, tmp_path / "other"), start=1)
    ]
    fused = tmp_path / "fused"
    fused.mkdir()
    assert run_fusion(FusionSpec("ensemble", members), fused / "events.jsonl", fused) == 0
    report = finished_report(fused)
    predictions = read_test_predictions(fused)
    assert report["predictions"] == "test-predictions.json"
    assert confusion_matrix(predictions) == report["confusion"]
    assert math.isclose(sum(predictions.loss) / len(predictions), report["loss"], rel_tol=1e-5)
    assert all(path.is_file() for path in predictions.images.values())


def test_a_folder_that_cannot_take_the_files_is_a_warning_and_the_run_completes(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "test-predictions.json").mkdir()  # nothing can be renamed onto it
    (folder / "mistakes").write_text("a file where the thumbnails' folder would be")
    spec = RunSpec.from_dict({**TINY, "epochs": 1})
    assert run(spec, folder / "events.jsonl", folder) == 0
    assert "predictions" not in finished_report(folder)
    events = read_events(folder / "events.jsonl").events
    warnings = [e.message for e in events if e.type == "log" and e.level == "warning"]
    assert any("could not write the thumbnails" in line for line in warnings), warnings
    assert any("could not write test-predictions.json" in line for line in warnings), warnings
    assert not list(folder.glob(".*partial"))


def test_ten_thousand_predictions_take_a_few_hundred_kilobytes():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(10_000, 10, generator=generator) * 3
    labels = torch.randint(0, 10, (10_000,), generator=generator)
    table = prediction_table(logits, labels, [f"class {i}" for i in range(10)])
    size = len(json.dumps(table, separators=(",", ":")))
    assert 200_000 < size < 600_000, size
    assert len(pictured(table)) <= 64 + 10 * 8
