"""An image folder of small images trains at their own size when no --image-size is given:
`run` says so in one line, the size is written into the run's stored spec, an explicit size
wins, and an old run stored without a size is resumed without one.

Runs train on the fake engine (the size chosen is the point, not the training); the launcher
is also called directly where no process needs to start.
"""

import json
from pathlib import Path

from PIL import Image

from engine.contract.spec import RunSpec
from resnet_tui.runs import launcher
from resnet_tui.runs.store import RunStore
from tests.cli.command import invoke, runs_json

QUICK = ["--arch", "resnet8", "--width", "4", "--epochs", "1", "--device", "cpu"]


def pictures(root: Path, side: int) -> Path:
    """An image folder of two classes of four `side`-px squares in train/ and val/."""
    for split in ("train", "val"):
        for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            (root / split / name).mkdir(parents=True)
            for index in range(4):
                Image.new("RGB", (side, side), colour).save(root / split / name / f"{index}.png")
    return root


def stored(tmp_path: Path, run_id: int) -> tuple[object, object]:
    """The run's image size as the store and its spec.json hold it."""
    [run] = [run for run in runs_json(tmp_path) if run["id"] == run_id]
    on_disk = json.loads((tmp_path / "runs" / str(run_id) / "spec.json").read_text())
    return run["spec"].get("image_size"), on_disk.get("image_size")


def test_a_folder_of_small_images_trains_at_their_size_and_says_so(tmp_path, fake_engine):
    folder = pictures(tmp_path / "small", 32)
    result = invoke("run", "--dataset", f"imagefolder:{folder}", *QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "px" in line]
    assert said == [
        f"images in {folder} are about 32 px: training at 32 px (give --image-size to choose)"
    ]
    assert stored(tmp_path, 1) == (32, 32)


def test_an_explicit_size_wins_and_large_images_keep_224(tmp_path, fake_engine):
    small = pictures(tmp_path / "small", 32)
    large = pictures(tmp_path / "large", 300)
    given = invoke(
        "run", "--dataset", f"imagefolder:{small}", *QUICK, "--image-size", "48", cwd=tmp_path
    )
    assert given.returncode == 0, given.stderr
    assert "training at" not in given.stderr
    assert stored(tmp_path, 1) == (48, 48)
    photos = invoke("run", "--dataset", f"imagefolder:{large}", *QUICK, cwd=tmp_path)
    assert photos.returncode == 0, photos.stderr
    assert "training at" not in photos.stderr
    assert stored(tmp_path, 2) == (224, 224)  # written, so a later default never changes it


def test_a_user_error_after_the_choice_is_still_one_line(tmp_path):
    folder = pictures(tmp_path / "small", 32)
    result = invoke("run", "--dataset", f"imagefolder:{folder}", "--init", "run:7", cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: --init run:7: there is no run 7")


def test_the_launcher_writes_the_size_into_runs_and_follows_a_teacher(tmp_path, fake_engine):
    folder = pictures(tmp_path / "small", 24)
    store = RunStore(tmp_path / "runs.db")
    specs = [
        RunSpec.from_dict(
            {"dataset": f"imagefolder:{folder}", "arch": "resnet8", "seed": seed, "epochs": 1}
        )
        for seed in (0, 1, 2)
    ]
    launched, supervisor = launcher.launch(store, specs[0])  # as the app launches
    assert supervisor.wait(timeout=60) == 0
    run_ids, _ = launcher.queue(store, specs[1:])  # as sweeps and --folds queue
    for run_id in [launched, *run_ids]:
        assert store.run(run_id).spec.image_size == 24
        on_disk = RunSpec.from_json((store.folder_of(run_id) / "spec.json").read_text())
        assert on_disk.image_size == 24

    old = RunSpec.from_dict({"dataset": f"imagefolder:{folder}", "arch": "resnet8"})
    old_id = store.create_run(old, status="completed")  # made before sizes were chosen
    (store.folder_of(old_id) / "checkpoints").mkdir()
    (store.folder_of(old_id) / "checkpoints" / "best.pt").write_text("{}")
    student = RunSpec.from_dict(
        {"dataset": f"imagefolder:{folder}", "arch": "resnet8", "teacher": [f"run:{old_id}"]}
    )
    said = launcher.settle_image_size(store, student)
    assert student.image_size == 224 and said is None  # as its teacher saw them
    store.close()


def test_an_old_run_without_a_size_resumes_without_one(tmp_path, fake_engine):
    folder = pictures(tmp_path / "small", 32)  # detection would choose 32: it must not run
    store = RunStore(tmp_path / "runs.db")
    spec = RunSpec.from_dict(
        {"dataset": f"imagefolder:{folder}", "arch": "resnet8", "epochs": 2, "device": "cpu"}
    )
    run_id = store.create_run(spec, status="stopped")
    folder_of_run = store.folder_of(run_id)
    (folder_of_run / "spec.json").write_text(spec.to_json())
    (folder_of_run / "checkpoints").mkdir()
    last = {"epoch": 1, "best_val_acc": 0.5, "best_epoch": 1}
    (folder_of_run / "checkpoints" / "last.pt").write_text(json.dumps(last))
    store.close()

    result = invoke("resume", str(run_id), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "training at" not in result.stderr
    assert stored(tmp_path, run_id) == (None, None)
    [run] = runs_json(tmp_path)
    assert run["status"] == "completed"
