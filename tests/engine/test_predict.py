"""`python -m engine predict`: the run's own evaluation for image files, bad files reported
and skipped, grey and colour files alike, the exported ONNX model, and real MNIST digits."""

import argparse
import json
import os
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from engine.contract.errors import RunError
from engine.contract.stopping import StopRequest
from engine.data.batches import make_batches
from engine.data.datasets import load_dataset
from engine.use.image_files import image_files
from engine.use.predict import run_predict
from engine.use.trained import load_trained_model, sidecar_path
from tests.engine.tiny_runs import trained_run

SHAPES_TEST_IMAGES = 40


def run(capsys, paths: tuple[Path, ...], stop: StopRequest | None, **options):
    """Run `predict` in this process: its exit code, JSON lines and stderr."""
    args = argparse.Namespace(
        **{
            "checkpoint": None,
            "model": None,
            "run": None,
            "top_k": 3,
            "device": "cpu",
            "batch_size": 16,
            "workers": None,
            **options,
            "paths": list(paths),
        }
    )
    capsys.readouterr()
    code = run_predict(args, stop or StopRequest())
    said = capsys.readouterr()
    return code, [json.loads(line) for line in said.out.splitlines()], said.err


def predict(capsys, *paths: Path, stop: StopRequest | None = None, **options) -> tuple[int, list]:
    """Run `predict` in this process: its exit code and its JSON lines."""
    code, lines, _ = run(capsys, paths, stop, **options)
    return code, lines


def of_kind(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["kind"] == kind]


def write_split(images: torch.Tensor, labels: torch.Tensor, classes: list[str], folder: Path):
    """Write uint8 (N, C, H, W) images as PNG files at their own size, in class folders."""
    paths = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / classes[int(label)] / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = image.permute(1, 2, 0).numpy()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
        paths.append(path)
    return paths


def evaluation_probabilities(checkpoint: Path, spec, count: int) -> torch.Tensor:
    """The run's own evaluation of the first `count` test images: softmax of its logits."""
    bundle = load_dataset(spec)
    test = bundle.test.subset(torch.arange(count))
    model = load_trained_model(checkpoint).model
    batches = make_batches(test, bundle, 16, torch.device("cpu"), False, spec)
    with torch.no_grad():
        logits = torch.cat([model(images) for images, _ in batches.epoch(0)])
    return F.softmax(logits, dim=1)


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A tiny shapes run (16 px from 32 px images), and its first test images as PNG files."""
    folder = tmp_path_factory.mktemp("predict")
    spec = trained_run(folder / "run", dataset="shapes", seed=0)
    bundle = load_dataset(spec)
    count = SHAPES_TEST_IMAGES
    write_split(
        bundle.test.images[:count], bundle.test.labels[:count], bundle.classes, folder / "png"
    )
    return spec, folder / "run" / "checkpoints" / "best.pt", folder / "png", bundle.classes


def test_predictions_are_the_runs_own_evaluation(shapes_run, capsys):
    spec, checkpoint, images, classes = shapes_run
    code, lines = predict(capsys, images, checkpoint=checkpoint, top_k=len(classes) + 5)
    assert code == 0
    started, finished = lines[0], lines[-1]
    assert started == {
        "kind": "started",
        "total": 40,
        "classes": classes,
        "device": "cpu",
        "skipped": 0,
        "skipped_examples": [],
    }
    predictions = of_kind(lines, "prediction")
    assert [p["path"] for p in predictions] == [str(p) for p in sorted(images.rglob("*.png"))]
    expected = evaluation_probabilities(checkpoint, spec, SHAPES_TEST_IMAGES)
    for prediction in predictions:
        index = int(Path(prediction["path"]).stem)
        top = prediction["top"]
        assert len(top) == len(classes)  # --top-k above the classes gives them all
        assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
        got = torch.tensor([dict(top)[name] for name in classes])
        assert torch.allclose(got, expected[index], atol=1e-5), prediction["path"]
        assert prediction["label"] == Path(prediction["path"]).parent.name
    right = sum(p["top"][0][0] == p["label"] for p in predictions)
    assert finished["kind"] == "finished" and finished["stopped"] is False
    assert finished["predicted"] == 40 and finished["bad"] == 0 and finished["labelled"] == 40
    assert finished["accuracy"] == pytest.approx(right / 40)
    assert of_kind(lines, "progress")[-1] == {"kind": "progress", "done": 40, "total": 40}


def test_bad_files_are_reported_and_the_others_predicted(shapes_run, capsys, tmp_path):
    _, checkpoint, images, _ = shapes_run
    good = next(images.rglob("*.png"))
    (tmp_path / "good.png").write_bytes(good.read_bytes())
    (tmp_path / "notes.jpg").write_text("not a picture")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    (tmp_path / "notes.txt").write_text("not an image name: not looked at")
    (tmp_path / ".hidden.png").write_bytes(good.read_bytes())
    code, lines = predict(capsys, tmp_path, checkpoint=checkpoint, workers=2, batch_size=1)
    assert code == 0
    assert lines[0]["total"] == 3
    assert lines[0]["skipped"] == 1  # notes.txt; a hidden file is not counted
    assert lines[0]["skipped_examples"] == [str(tmp_path / "notes.txt")]
    bad = {Path(line["path"]).name: line["reason"] for line in of_kind(lines, "bad_image")}
    assert set(bad) == {"notes.jpg", "cut.png"}
    assert all(reason and "\n" not in reason for reason in bad.values())
    assert [Path(p["path"]).name for p in of_kind(lines, "prediction")] == ["good.png"]
    assert of_kind(lines, "prediction")[0]["label"] is None  # its folder names no class
    assert lines[-1]["predicted"] == 1 and lines[-1]["bad"] == 2
    assert lines[-1]["accuracy"] is None and lines[-1]["labelled"] == 0


def test_a_grey_file_for_a_colour_run_is_read_in_colour(shapes_run, capsys, tmp_path):
    _, checkpoint, images, _ = shapes_run
    colour = next(images.rglob("*.png"))
    Image.open(colour).convert("L").save(tmp_path / "grey.png")
    Image.open(colour).convert("L").convert("RGB").save(tmp_path / "grey-in-rgb.png")
    code, lines = predict(capsys, tmp_path, checkpoint=checkpoint)
    grey, as_rgb = of_kind(lines, "prediction")[::-1]
    assert code == 0 and grey["path"].endswith("grey.png")
    assert grey["top"] == as_rgb["top"]


def test_a_stop_request_ends_it_after_the_batch(shapes_run, capsys):
    _, checkpoint, images, _ = shapes_run
    stop = StopRequest()
    stop.requested = True
    code, lines = predict(capsys, images, checkpoint=checkpoint, batch_size=8, stop=stop)
    assert code == 130
    assert len(of_kind(lines, "prediction")) == 8
    assert lines[-1]["kind"] == "finished" and lines[-1]["stopped"] is True


@pytest.fixture
def onnx_model(shapes_run, tmp_path):
    """The shapes run exported as ONNX (batches of any size), its sidecar beside it."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    trained = load_trained_model(shapes_run[1], 1)
    model_file = tmp_path / "model.onnx"
    size = trained.preprocessing.size
    torch.onnx.export(
        trained.model,
        (torch.zeros(2, 3, size, size),),
        model_file,
        dynamo=True,
        external_data=False,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    sidecar_path(model_file).write_text(json.dumps(trained.sidecar(model_file.name, "onnx")))
    return model_file


def test_the_exported_onnx_model_predicts_as_the_checkpoint(shapes_run, onnx_model, capsys):
    _, checkpoint, images, _ = shapes_run
    model_file = onnx_model
    _, own = predict(capsys, images, checkpoint=checkpoint)
    code, exported = predict(capsys, images, model=model_file, batch_size=7)
    assert code == 0 and exported[0]["device"] == "cpu"
    own, exported = of_kind(own, "prediction"), of_kind(exported, "prediction")
    assert [p["path"] for p in exported] == [p["path"] for p in own]
    for mine, theirs in zip(own, exported, strict=True):
        assert mine["top"][0][0] == theirs["top"][0][0]
        assert [name for name, _ in mine["top"]] == [name for name, _ in theirs["top"]]
        for (_, p), (_, q) in zip(mine["top"], theirs["top"], strict=True):
            assert abs(p - q) < 1e-4

    sidecar_path(model_file).unlink()
    assert "has no sidecar model.onnx.json" in mistake(capsys, images, model=model_file)


def mistake(capsys, *paths: Path, **options) -> str:
    """The one line a mistake gives, checked to be one line with exit code 2."""
    code, lines, said = run(capsys, paths, None, **options)
    assert code == 2 and lines == []
    assert said.startswith("error: ") and said.count("\n") == 1, said
    return said


def test_mistakes_are_one_line_and_exit_2(shapes_run, capsys, tmp_path):
    _, checkpoint, images, _ = shapes_run
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("a file that is not ours")
    (tmp_path / "fake.onnx").write_text("not onnx")
    (tmp_path / "fake.onnx.json").write_text("{}")
    assert "is not there" in mistake(capsys, tmp_path / "nope.png", checkpoint=checkpoint)
    assert "no files match" in mistake(capsys, tmp_path / "*.jpeg", checkpoint=checkpoint)
    assert "no image files in" in mistake(capsys, tmp_path / "empty", checkpoint=checkpoint)
    assert "--top-k 0" in mistake(capsys, images, checkpoint=checkpoint, top_k=0)
    assert "--batch-size 0" in mistake(capsys, images, checkpoint=checkpoint, batch_size=0)
    said = mistake(capsys, images, checkpoint=tmp_path / "notes.txt")
    assert "cannot be read as weights" in said
    said = mistake(capsys, images, checkpoint=checkpoint, device="quantum")
    assert "--device quantum" in said
    assert "not a resnet-tui model sidecar" in mistake(capsys, images, model=tmp_path / "fake.onnx")
    assert "is not there" in mistake(capsys, images, model=tmp_path / "gone.onnx")
    said = mistake(capsys, images, checkpoint=checkpoint, batch_size=65_537)
    assert "--batch-size 65537 is more than 65,536" in said
    assert "--workers 257 is more than 256" in mistake(
        capsys, images, checkpoint=checkpoint, workers=257
    )


def test_an_onnx_model_whose_input_is_not_its_sidecars_is_refused_before_decoding(
    shapes_run, onnx_model, capsys
):
    images = shapes_run[2]
    sidecar = sidecar_path(onnx_model)
    fields = json.loads(sidecar.read_text())
    for changed, made in (({"size": 4096}, "3 x 4096 x 4096"), ({"channels": 1}, "1 x 16 x 16")):
        given = {**fields["input"], **changed}
        if "channels" in changed:
            given |= {"mean": given["mean"][:1], "std": given["std"][:1]}
        sidecar.write_text(json.dumps({**fields, "input": given}))
        said = mistake(capsys, images, model=onnx_model)  # no `started`: nothing decoded
        assert "takes inputs of batch x 3 x 16 x 16" in said and f"makes images {made}" in said


@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        ({"mean": [float("nan")] * 3}, "its mean has NaN, not a finite number"),
        ({"std": [1.0, float("inf"), 1.0]}, "its std has Infinity, not a finite number"),
        ({"std": [1.0, True, 1.0]}, "its std has true, not a number"),
        ({"size": 28.7}, "its size 28.7 is not a whole number"),
        ({"size": True}, "its size true is not a number"),
        ({"size": "16"}, 'its size "16" is not a number'),
        ({"channels": True}, "its channels true is not a number"),
        ({"size": 4097}, "its input size, mean or std do not fit its channels"),
    ],
)
def test_a_forged_sidecar_input_is_refused_in_one_line(
    shapes_run, capsys, tmp_path, changed, reason
):
    trained = load_trained_model(shapes_run[1], 1)
    model_file = tmp_path / "model.onnx"
    model_file.write_text("not read: the sidecar is refused first")
    sidecar = trained.sidecar(model_file.name, "onnx")
    sidecar["input"] |= changed
    sidecar_path(model_file).write_text(json.dumps(sidecar))  # NaN and Infinity as Python writes
    said = mistake(capsys, shapes_run[2], model=model_file)
    assert reason in said, said


def test_a_whole_number_written_as_a_float_is_still_a_size(shapes_run, onnx_model, capsys):
    sidecar = sidecar_path(onnx_model)
    fields = json.loads(sidecar.read_text())
    fields["input"]["size"] = 16.0
    sidecar.write_text(json.dumps(fields))
    code, lines = predict(capsys, shapes_run[2], model=onnx_model)
    assert code == 0 and lines[-1]["predicted"] == SHAPES_TEST_IMAGES


def test_image_files_expands_folders_globs_and_repeats(tmp_path):
    for name in ("b/2.png", "b/1.JPG", "b/deep/3.webp", "b/.secret/4.png", "a.bmp", "b/x.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = image_files(
        [tmp_path / "b", tmp_path / "b" / "2.png", Path(f"{tmp_path}/*.bmp"), tmp_path / "b"]
    )
    names = [path.relative_to(tmp_path).as_posix() for path in found.files]
    assert names == ["a.bmp", "b/1.JPG", "b/2.png", "b/deep/3.webp"]
    assert found.skipped == 1 and found.skipped_examples == [tmp_path / "b" / "x.txt"]
    with pytest.raises(RunError, match="is not there"):
        image_files([tmp_path / "c"])
    os.mkfifo(tmp_path / "b" / "pipe.png")  # reading it would wait for ever
    again = image_files([tmp_path / "b"])
    assert again.files == found.files[1:]
    assert again.skipped_examples == [tmp_path / "b" / "pipe.png", tmp_path / "b" / "x.txt"]
    with pytest.raises(RunError, match="neither a file nor a folder"):
        image_files([tmp_path / "b" / "pipe.png"])


@pytest.fixture(scope="module")
def mnist_run(shared_mnist_root, tmp_path_factory):
    """A small MNIST run (a few seconds on a CPU) and the events it wrote."""
    folder = tmp_path_factory.mktemp("mnist") / "run"
    spec = trained_run(
        folder,
        dataset="mnist",
        data_root=str(shared_mnist_root),
        width=8,
        image_size=28,
        limit=4000,
        lr=0.2,
        epochs=2,
        batch_size=64,
        seed=0,
    )
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    return spec, folder / "checkpoints" / "best.pt", events


@pytest.mark.slow
def test_mnist_digits_never_seen_are_classified_as_its_test_accuracy(mnist_run, capsys, tmp_path):
    spec, checkpoint, events = mnist_run
    test = load_dataset(spec).test
    write_split(test.images[:500], test.labels[:500], [str(d) for d in range(10)], tmp_path)
    started = time.perf_counter()
    code, lines = predict(capsys, tmp_path, checkpoint=checkpoint, batch_size=64, workers=2)
    assert code == 0 and time.perf_counter() - started < 20
    finished = lines[-1]
    assert finished["predicted"] == 500 and finished["labelled"] == 500
    test_accuracy = next(e for e in events if e["type"] == "finished")["test"]["top1"]
    assert test_accuracy > 0.8  # it learnt: the comparison means something
    assert abs(finished["accuracy"] - test_accuracy) <= 0.02


@pytest.mark.slow  # its run trains for several seconds
def test_a_colour_file_for_a_grey_run_is_read_in_grey(mnist_run, capsys, tmp_path):
    spec, checkpoint, _ = mnist_run
    test = load_dataset(spec).test
    (grey,) = write_split(test.images[:1], test.labels[:1], [str(d) for d in range(10)], tmp_path)
    Image.open(grey).convert("RGB").save(tmp_path / "colour.png")
    code, lines = predict(capsys, grey, tmp_path / "colour.png", checkpoint=checkpoint)
    own, colour = of_kind(lines, "prediction")
    assert code == 0 and colour["path"].endswith("colour.png")
    assert colour["top"] == own["top"]
    assert own["top"][0][0] == own["label"] == str(int(test.labels[0]))


def test_what_folders_hold_besides_images_is_counted_as_skipped(shapes_run, capsys, tmp_path):
    _, checkpoint, images, _ = shapes_run
    good = next(images.rglob("*.png"))
    Image.open(good).save(tmp_path / "moving.gif")  # a GIF PIL reads, as training skips it
    (tmp_path / "good.png").write_bytes(good.read_bytes())
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "device.png").symlink_to("/dev/zero")
    (tmp_path / "nowhere.jpg").symlink_to(tmp_path / "gone.jpg")
    for index in range(4):
        (tmp_path / "notes" / f"{index}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "notes" / f"{index}.txt").write_text("not an image")
    code, lines = predict(capsys, tmp_path, checkpoint=checkpoint)
    assert code == 0 and lines[0]["total"] == 1 and lines[-1]["predicted"] == 1
    assert lines[0]["skipped"] == 8
    examples = [
        Path(path).relative_to(tmp_path).as_posix() for path in lines[0]["skipped_examples"]
    ]
    assert examples == ["device.png", "moving.gif", "nowhere.jpg", "pipe.png", "notes/0.txt"]
    code, lines = predict(capsys, tmp_path / "moving.gif", checkpoint=checkpoint)
    assert code == 0 and lines[0]["skipped"] == 0  # named, it is read whatever its name
    assert [p["path"] for p in of_kind(lines, "prediction")] == [str(tmp_path / "moving.gif")]
