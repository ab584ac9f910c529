"""The launch form with an image folder: scanned off the UI thread (the form answers
meanwhile), once per folder typed, its classes, image counts and image size shown, a hostile
path refused in one line; and what each freeze policy will train said before the run starts."""

import threading

from textual.widgets import Input, Select

from engine.contract import image_sizes, locate
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.launch import LaunchScreen
from tests.app.pilot import app_store, wait_for
from tests.conftest import record_fault

SIZE = (140, 40)
HOSTILE_FOLDER = "hostile image folder path: refused in one line, no crash"


def image_folder(root, classes=("ants", "bees"), images=3):
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(images):
            (root / name / f"{index}.png").write_bytes(b"")
    return root


def problem_of(form: LaunchScreen) -> str:
    return str(form.query_one("#problem").render())


async def test_an_image_folder_is_scanned_off_the_ui_thread_once_per_folder(
    tmp_path, monkeypatch, fake_devices
):
    folder = image_folder(tmp_path / "pets")
    scans: list[tuple[str, bool]] = []
    real_scan = locate.scan_image_folder

    def scan(root):
        scans.append((str(root), threading.current_thread() is threading.main_thread()))
        return real_scan(root)

    monkeypatch.setattr(locate, "scan_image_folder", scan)
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        assert isinstance(form, LaunchScreen)
        form.query_one("#dataset", Select).value = "imagefolder"
        path = form.query_one("#folder", Input)
        for typed in range(1, len(str(folder)) + 1):  # typed a key at a time
            path.value = str(folder)[:typed]
        await pilot.pause()
        assert "checking" in problem_of(form) and form.query_one("#launch").disabled
        await wait_for(pilot, lambda: "✓" in problem_of(form), 10, "the folder's scan")
        assert scans == [(str(folder), False)]  # the whole path, once, on a worker thread
        form.query_one("#epochs", Input).value = "3"  # another field: no new scan
        await pilot.pause()
        assert "✓" in problem_of(form) and len(scans) == 1
        assert not form.query_one("#launch").disabled


async def test_a_folder_that_cannot_be_used_says_why_and_holds_the_launch(
    tmp_path, monkeypatch, fake_devices
):
    image_folder(tmp_path / "one", classes=("ants",))
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        form.query_one("#dataset", Select).value = "imagefolder"
        form.query_one("#folder", Input).value = str(tmp_path / "missing")
        await wait_for(pilot, lambda: "✗" in problem_of(form), 10, "the refusal")
        assert "does not exist" in problem_of(form)
        form.query_one("#folder", Input).value = str(tmp_path / "one")
        await wait_for(pilot, lambda: "only one class" in problem_of(form), 10, "the refusal")
        assert form.query_one("#launch").disabled


async def test_the_form_says_what_each_freeze_policy_will_train(
    tmp_path, monkeypatch, fake_devices
):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        form.query_one("#arch", Select).value = "resnet20"
        form.query_one("#freeze", Select).value = "head"
        await pilot.pause()
        assert (
            "only the head trains, fitted to convergence (L-BFGS) in one epoch; "
            "the stem, stage1, stage2 and stage3 stay frozen"
        ) in " ".join(problem_of(form).split())
        form.query_one("#arch", Select).value = "resnet18"
        await pilot.pause()
        assert "stage4" in problem_of(form)


def facts_of(form: LaunchScreen) -> str:
    return str(form.query_one("#folder-facts").render())


def png_folder(root, counts=(("ants", 3), ("bees", 2)), side=32):
    """A folder of class folders of real `side`x`side` PNGs."""
    from PIL import Image

    for name, images in counts:
        (root / name).mkdir(parents=True)
        for index in range(images):
            Image.new("RGB", (side, side), (index * 40, 90, 160)).save(root / name / f"{index}.png")
    return root


async def form_on_folder(pilot, folder) -> LaunchScreen:
    """The launch form, opened with an image folder typed in as its dataset."""
    await pilot.press("n")
    form = pilot.app.screen
    form.query_one("#dataset", Select).value = "imagefolder"
    form.query_one("#folder", Input).value = str(folder)
    return form


async def test_a_folder_shows_its_classes_counts_and_the_size_its_images_train_at(
    tmp_path, monkeypatch, fake_devices
):
    folder = png_folder(tmp_path / "pets")
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        form = await form_on_folder(pilot, folder)
        await wait_for(pilot, lambda: "classes" in facts_of(form), 10, "the folder's scan")
        assert "✓" in problem_of(form)
        facts = facts_of(form)
        assert "2 classes: ants 3, bees 2" in facts and "(all 5 images)" in facts
        assert "images are about 32 px: image size 32 (224 would be slow)" in facts
        image_size = form.query_one("#image_size", Input)
        assert image_size.value == "" and image_size.placeholder.startswith("32 ")
        assert form.spec is not None and form.spec.image_size == 32  # written into the spec
        image_size.value = "64"
        await pilot.pause()
        assert form.spec is not None and form.spec.image_size == 64
        assert "image size 64" in facts_of(form)
        form.query_one("#classes", Input).value = "bees,ants"
        await pilot.pause()
        assert form.spec is not None and form.spec.classes == ["bees", "ants"]


async def test_the_form_answers_while_a_slow_folder_is_scanned(tmp_path, monkeypatch, fake_devices):
    folder = png_folder(tmp_path / "pets")
    release = threading.Event()
    threads: list[str] = []
    real_scan, real_size = locate.scan_image_folder, image_sizes.typical_image_size

    def slow_scan(root):
        threads.append(threading.current_thread().name)
        assert release.wait(10), "the test never let the scan finish"
        return real_scan(root)

    def measured(root):
        threads.append(threading.current_thread().name)
        return real_size(root)

    monkeypatch.setattr(locate, "scan_image_folder", slow_scan)
    monkeypatch.setattr(image_sizes, "typical_image_size", measured)
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        form = await form_on_folder(pilot, folder)
        await wait_for(pilot, lambda: threads, 10, "the scan to start")
        assert "scanning" in facts_of(form)
        form.query_one("#epochs", Input).focus()
        await pilot.press("3")  # typed and shown while the scan still runs
        assert form.query_one("#epochs", Input).value == "3"
        assert "checking" in problem_of(form) and not release.is_set()
        release.set()
        await wait_for(pilot, lambda: "✓" in problem_of(form), 10, "the folder's scan")
        assert len(threads) == 2 and threading.main_thread().name not in threads
        assert form.spec is not None and form.spec.epochs == 3 and form.spec.image_size == 32


async def test_hostile_folder_paths_are_refused_in_one_line_without_a_crash(
    tmp_path, monkeypatch, fake_devices
):
    (tmp_path / "a file").write_text("not a folder")
    rows = [  # (the path typed, what the form says)
        ("x" * 5000, "File name too long"),
        (str(tmp_path / "nul\x00here"), "holds a NUL character"),
        (str(tmp_path / "a file"), "does not exist"),
        (str(tmp_path / "missing"), "does not exist"),
        (str(tmp_path / "[red]markup[/]"), "[red]markup[/] does not exist"),
    ]
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        form.query_one("#dataset", Select).value = "imagefolder"
        for path, words in rows:
            form.query_one("#folder", Input).value = ""
            await wait_for(pilot, lambda: "needs a path" in problem_of(form), 10, "no path")
            form.query_one("#folder", Input).value = path
            await wait_for(pilot, lambda: "needs a path" not in problem_of(form), 10, "the path")
            await wait_for(pilot, lambda: "✗" in problem_of(form), 10, "the refusal")
            said = problem_of(form)
            survived = words in said and "\n" not in said and form.query_one("#launch").disabled
            record_fault(HOSTILE_FOLDER, survived)
            assert survived, (path[:40], said)
        assert pilot.app.is_running
