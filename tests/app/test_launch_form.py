"""The launch form with an image folder: scanned off the UI thread, once per folder typed, and
what each freeze policy will train said before the run starts."""

import threading

from textual.widgets import Input, Select

from engine.contract import locate
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.launch import LaunchScreen
from tests.app.pilot import app_store, wait_for

SIZE = (140, 40)


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
        assert "only the head trains; the stem, stage1, stage2 and stage3 stay frozen" in (
            problem_of(form)
        )
        form.query_one("#arch", Select).value = "resnet18"
        await pilot.pause()
        assert "stage4" in problem_of(form)
