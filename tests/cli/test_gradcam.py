"""`resnet-tui gradcam RUN IMAGE`: a PNG of where the run's network looked, made by the
engine in a process of its own; mistakes in one line, exit 2, no file overwritten."""

import shutil

import pytest
from PIL import Image

from tests.cli.command import TINY, invoke
from tests.cli.stops import ctrl_c_after_the_engine, ctrl_c_at_once, start


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gradcam")
    made = invoke("run", *TINY, "--dataset", "shapes", cwd=folder)
    assert made.returncode == 0, made.stderr
    Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / "red.png")
    (folder / "notes.png").write_text("not an image")
    return folder


def test_it_writes_the_picture_and_says_what_it_shows(trained_folder):
    done = invoke("gradcam", "1", "red.png", "--class", "star", cwd=trained_folder)
    assert done.returncode == 0, done.stderr
    out = trained_folder / "gradcam-1-red.png"
    with Image.open(out) as picture:
        assert picture.format == "PNG" and min(picture.size) >= 224
    assert "wrote gradcam-1-red.png: where run 1 saw 'star'" in done.stdout


# (case, arguments, what the one line says)
MISTAKES = [
    ("no such run", ["7", "red.png"], "no run 7"),
    ("no such image", ["1", "gone.png"], "gone.png is not a file"),
    ("not an image", ["1", "notes.png", "--out", "n.png"], "cannot read image"),
    ("no such class", ["1", "red.png", "--class", "dragon", "--out", "d.png"], "'dragon'"),
    ("not a png", ["1", "red.png", "--out", "x.jpg"], "ending in .png"),
    ("a picture there", ["1", "red.png", "--out", "red.png"], "red.png exists"),
    ("no such folder", ["1", "red.png", "--out", "nowhere/x.png"], "does not exist"),
    ("which weights", ["1", "red.png", "--checkpoint", "first"], "choose best or last"),
]


@pytest.mark.parametrize(("case", "arguments", "says"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistakes_are_one_line_and_keep_files(trained_folder, case, arguments, says):
    before = (trained_folder / "red.png").read_bytes()
    done = invoke("gradcam", *arguments, cwd=trained_folder)
    assert done.returncode == 2, (case, done.stdout, done.stderr)
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (trained_folder / "red.png").read_bytes() == before


def test_values_that_start_with_a_dash_are_values(trained_folder):
    shutil.copy(trained_folder / "red.png", trained_folder / "-leading.png")
    done = invoke("gradcam", "1", "--out=-g.png", "red.png", cwd=trained_folder)
    assert done.returncode == 0, done.stderr
    assert (trained_folder / "-g.png").is_file()
    done = invoke("gradcam", "--out", "lead.png", "1", "--", "-leading.png", cwd=trained_folder)
    assert done.returncode == 0, done.stderr
    assert (trained_folder / "lead.png").is_file()
    done = invoke(
        "gradcam", "1", "red.png", "--class", "-foo", "--out", "f.png", cwd=trained_folder
    )
    assert done.returncode == 2 and "'-foo' is not a class of the run" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (trained_folder / "f.png").exists()


def test_the_stores_files_are_refused_even_with_force(trained_folder):
    run_folder = trained_folder / "runs" / "1"
    for out in (run_folder / "g.png", trained_folder / "runs" / "g.png"):
        done = invoke("gradcam", "1", "red.png", "--out", str(out), "--force", cwd=trained_folder)
        assert done.returncode == 2, done.stderr
        assert "is in the runs' folder" in done.stderr and done.stderr.count("\n") == 1
    assert not (run_folder / "g.png").exists()


def test_a_stop_after_the_picture_was_written_says_so(trained_folder):
    command = start("gradcam", "1", "red.png", "--out", "late.png", cwd=trained_folder)
    _, complained = ctrl_c_after_the_engine(command)
    assert command.returncode == 130, complained
    assert complained == "error: gradcam stopped after it had written late.png\n"
    assert (trained_folder / "late.png").is_file()
    command = start("gradcam", "1", "red.png", "--out", "early.png", cwd=trained_folder)
    _, complained = ctrl_c_at_once(command)
    assert command.returncode == 130, complained
    assert complained == "error: gradcam stopped; nothing was written\n"
    assert not (trained_folder / "early.png").exists()
