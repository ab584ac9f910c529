"""`python -m engine export`: each format loads back in its own runtime and computes the run's
logits (to 1e-4) and top-1, at any batch size; the sidecar says how to use the file; a file
that fails its check, a stop or a bad input leaves nothing behind."""

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from engine.contract import catalog
from engine.contract.errors import RunError
from engine.transfer.weights import load_run_model
from engine.use import parity
from engine.use.export import export
from engine.use.trained import load_trained_model, read_sidecar, sidecar_path
from tests.engine.tiny_runs import trained_run

ROOT = Path(__file__).resolve().parents[2]
SHAPES = list(catalog.DATASETS["shapes"].classes)
# Loading the TorchScript file back, as its users do, is what is tested; torch.jit's notice
# that it is deprecated is not.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


def _checkpoint(tmp_path_factory, name: str, **options) -> Path:
    folder = tmp_path_factory.mktemp(name) / "run"
    trained_run(folder, **options)
    return folder / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory, "rgb")


@pytest.fixture(scope="module")
def resnet20_run(tmp_path_factory) -> Path:
    """ResNet-20 (width 8, 32 px): its shortcuts slice with a stride, which ONNX's older
    exporter got wrong."""
    return _checkpoint(tmp_path_factory, "resnet20", arch="resnet20", width=8, image_size=32)


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory, shared_mnist_root) -> Path:
    return _checkpoint(tmp_path_factory, "grey", dataset="mnist", data_root=str(shared_mnist_root))


def _load_back(path: Path, model_format: str, checkpoint: Path):
    """The exported file as a user elsewhere would load it: a function from a batch to logits."""
    if model_format == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda batch: torch.from_numpy(session.run(None, {"images": batch.numpy()})[0])
    if model_format == "torchscript":
        loaded = torch.jit.load(str(path))
        return lambda batch: loaded(batch).detach()
    fresh = load_run_model(checkpoint, "test").model.eval()
    for parameter in fresh.parameters():
        torch.nn.init.zeros_(parameter)  # nothing of the checkpoint's weights left in it
    fresh.load_state_dict(load_file(str(path)))
    return lambda batch: fresh(batch).detach()


def _assert_parity(run, model, inputs: torch.Tensor) -> None:
    for size in (1, 5, len(inputs)):
        batch = inputs[:size]
        with torch.no_grad():
            expected = model(batch)
        got = run(batch)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-4, size
        assert torch.equal(got.argmax(1), expected.argmax(1)), size


def _test_images(checkpoint: Path, data_root: str | None = None) -> parity.Inputs:
    trained = load_trained_model(checkpoint)
    spec = load_run_model(checkpoint, "test").spec
    return parity.check_inputs(spec, data_root, trained.preprocessing)


def _embedded(path: Path, model_format: str) -> dict:
    """The sidecar the file carries inside it."""
    if model_format == "onnx":
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return json.loads(props["resnet_tui"])
    if model_format == "torchscript":
        extra = {"resnet_tui.json": ""}
        torch.jit.load(str(path), _extra_files=extra)
        return json.loads(extra["resnet_tui.json"])
    with safe_open(str(path), "pt") as file:
        return json.loads(file.metadata()["resnet_tui"])


@pytest.mark.parametrize("model_format", ["onnx", "torchscript", "safetensors"])
def test_each_format_round_trips_with_its_sidecar(rgb_run, tmp_path, model_format):
    out = tmp_path / "models" / f"tiny.{model_format}"
    done = export(rgb_run, 7, model_format, out, None)
    assert done["max_abs_diff"] <= 1e-4 and done["top1_identical"]
    assert done["checked_on"] == "64 test images" and done["batch_sizes"] == [64, 3]
    assert done["bytes"] == out.stat().st_size > 0
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".json"]

    trained = load_trained_model(rgb_run)
    inputs = _test_images(rgb_run).images
    _assert_parity(_load_back(out, model_format, rgb_run), trained.model, inputs)

    sidecar = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert sidecar["classes"] == SHAPES and sidecar["arch"] == "resnet8" and sidecar["run"] == 7
    assert sidecar["model_file"] == out.name and sidecar["model_format"] == model_format
    assert sidecar["input"]["size"] == 16 and sidecar["input"]["colour_mode"] == "RGB"
    assert sidecar["input"]["mean"] == [0.5] * 3 and sidecar["input"]["std"] == [0.25] * 3
    assert sidecar["checkpoint"]["epoch"] == 1 and sidecar["torch_version"] == torch.__version__
    assert sidecar["check"]["max_abs_diff"] == done["max_abs_diff"]
    classes, preprocessing, _ = read_sidecar(out)
    assert classes == SHAPES and preprocessing == trained.preprocessing
    inside = _embedded(out, model_format)
    assert inside == {key: value for key, value in sidecar.items() if key != "check"}


def test_onnx_computes_resnet20s_logits_at_any_batch_size(resnet20_run, tmp_path):
    out = tmp_path / "resnet20.onnx"
    done = export(resnet20_run, None, "onnx", out, None)
    assert done["max_abs_diff"] <= 1e-4 and done["top1_identical"], done
    inputs = _test_images(resnet20_run)
    assert inputs.description == "64 test images" and inputs.images.shape[-1] == 32
    trained = load_trained_model(resnet20_run)
    _assert_parity(_load_back(out, "onnx", resnet20_run), trained.model, inputs.images)
    graph_input = onnx.load(str(out)).graph.input[0]
    assert graph_input.name == "images"
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # a named, free batch size


def test_a_grey_run_exports_with_one_channel(grey_run, tmp_path):
    out = tmp_path / "digits.onnx"
    done = export(grey_run, 3, "onnx", out, None)
    assert done["checked_on"] == "64 test images" and done["max_abs_diff"] <= 1e-4
    classes, preprocessing, sidecar = read_sidecar(out)
    assert classes == [str(digit) for digit in range(10)] and sidecar["arch"] == "resnet8"
    assert (preprocessing.channels, preprocessing.mode, preprocessing.size) == (1, "L", 16)
    inputs = _test_images(grey_run).images
    assert inputs.shape[1] == 1
    _assert_parity(_load_back(out, "onnx", grey_run), load_trained_model(grey_run).model, inputs)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.zeros((2, 1, 16, 16), np.float32)})[0].shape == (2, 10)


def test_where_the_test_images_are_gone_the_check_runs_on_random_inputs(grey_run, tmp_path):
    out = tmp_path / "digits.pt"
    done = export(grey_run, 3, "torchscript", out, str(tmp_path / "moved away"))
    assert done["checked_on"] == "64 random inputs" and done["why_random"]
    assert done["max_abs_diff"] <= 1e-4 and done["top1_identical"]
    assert read_sidecar(out)[2]["check"]["why_random"] == done["why_random"]


def test_a_file_that_fails_its_check_is_not_kept(rgb_run, tmp_path, monkeypatch):
    monkeypatch.setattr(parity, "TOLERANCE", -1.0)  # no file can pass: the failure's path
    with pytest.raises(RunError) as failed:
        export(rgb_run, 1, "torchscript", tmp_path / "model.pt", None)
    assert failed.value.kind == "failed" and "was not kept" in failed.value.message
    assert list(tmp_path.iterdir()) == []


def _engine(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "export", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_the_command_says_its_stages_and_what_it_wrote_as_json_lines(rgb_run, tmp_path):
    engine = _engine(
        "--checkpoint", str(rgb_run), "--format", "safetensors", "--out", "m.st", cwd=tmp_path
    )
    said, complained = engine.communicate(timeout=300)
    assert engine.returncode == 0 and complained == ""
    lines = [json.loads(line) for line in said.splitlines()]
    assert [line.get("stage") for line in lines[:-1]] == ["loading", "exporting", "checking"]
    assert lines[-1]["kind"] == "exported" and lines[-1]["path"] == "m.st"
    assert lines[-1]["bytes"] == (tmp_path / "m.st").stat().st_size and lines[-1]["seconds"] > 0


def test_bad_inputs_are_one_line_and_leave_nothing(rgb_run, tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(rgb_run.read_bytes()[:4000])
    (tmp_path / "a file").write_text("mine")
    (tmp_path / "a folder").mkdir()
    cases = [
        ("a damaged checkpoint", damaged, "out.onnx", "damaged.pt cannot be read"),
        ("no checkpoint", tmp_path / "gone.pt", "out.onnx", "gone.pt is not there"),
        ("out under a file", rgb_run, "a file/out.onnx", "a file is a file, not a folder"),
        ("out a folder", rgb_run, "a folder", "a folder is a folder"),
    ]
    for case, checkpoint, out, says in cases:
        engine = _engine(
            "--checkpoint", str(checkpoint), "--format", "onnx", "--out", out, cwd=tmp_path
        )
        _, complained = engine.communicate(timeout=300)
        assert engine.returncode == 2, case
        assert complained.count("\n") == 1 and complained.startswith("error: "), complained
        assert says in complained, (case, complained)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "a folder", "damaged.pt"]
    assert list((tmp_path / "a folder").iterdir()) == []


def test_a_stop_during_the_export_leaves_no_file(rgb_run, tmp_path):
    engine = _engine(
        "--checkpoint", str(rgb_run), "--format", "onnx", "--out", "m.onnx", cwd=tmp_path
    )
    assert engine.stdout is not None
    for line in engine.stdout:
        if json.loads(line).get("stage") == "exporting":
            break
    engine.send_signal(signal.SIGINT)
    _, complained = engine.communicate(timeout=60)
    assert engine.returncode == 130 and "Traceback" not in complained
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_appears_while_exporting_is_not_replaced(rgb_run, tmp_path, monkeypatch):
    """Two exports racing for one place: without force the later one replaces nothing that
    appeared there meanwhile (the file, or its sidecar) and takes back what it put in."""
    from engine.use import export as exporting

    checked = exporting._check

    def meanwhile(place: Path):
        def check(*args):
            done = checked(*args)
            place.write_text("theirs")  # the other export, between the look and the rename
            return done

        return check

    out = tmp_path / "model.pt"
    for appears in (out, tmp_path / "model.pt.json"):
        monkeypatch.setattr(exporting, "_check", meanwhile(appears))
        with pytest.raises(RunError) as refused:
            export(rgb_run, 1, "torchscript", out, None)
        assert refused.value.kind == "bad_input"
        assert refused.value.message == f"{appears} appeared while exporting"
        assert refused.value.hint.startswith("nothing replaced; ")
        assert list(tmp_path.iterdir()) == [appears] and appears.read_text() == "theirs"
        appears.unlink()
    monkeypatch.setattr(exporting, "_check", meanwhile(out))
    done = export(rgb_run, 1, "torchscript", out, None, force=True)
    assert done["bytes"] == out.stat().st_size and out.read_bytes() != b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]


def test_where_links_cannot_be_made_the_file_is_renamed_in(rgb_run, tmp_path, monkeypatch):
    def no_links(*_args):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # as on file systems without hard links
    done = export(rgb_run, 1, "safetensors", tmp_path / "m.st", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.st", "m.st.json"]
    assert done["bytes"] == (tmp_path / "m.st").stat().st_size


def test_the_command_replaces_a_file_there_only_with_force(rgb_run, tmp_path):
    (tmp_path / "m.st").write_text("theirs")
    arguments = ["--checkpoint", str(rgb_run), "--format", "safetensors", "--out=m.st"]
    engine = _engine(*arguments, cwd=tmp_path)
    _, complained = engine.communicate(timeout=300)
    assert engine.returncode == 2, complained
    assert complained.startswith("error: m.st appeared while exporting; nothing replaced; ")
    assert complained.count("\n") == 1 and "Traceback" not in complained
    assert [p.name for p in tmp_path.iterdir()] == ["m.st"]
    assert (tmp_path / "m.st").read_text() == "theirs"
    engine = _engine(*arguments, "--force", cwd=tmp_path)
    _, complained = engine.communicate(timeout=300)
    assert engine.returncode == 0, complained
    assert (tmp_path / "m.st").read_bytes() != b"theirs" and (tmp_path / "m.st.json").is_file()
