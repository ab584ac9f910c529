"""Using a trained run in the app (issue 25): its mistakes (worst images, confused pairs,
per-class scores, Grad-CAM by the engine) and predicting on image files, with the world
changing under the screens: files deleted, forged, a run not finished."""

import json
import shutil

import pytest
from textual.widgets import Input, Static

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.mistakes import MistakesScreen
from resnet_tui.app.screens.predict import PathSuggester, PredictScreen
from resnet_tui.app.widgets.tables import Table
from resnet_tui.runs.store import RunStore
from tests.app.made_predictions import CLASSES, SAMPLES, draw, write_predictions
from tests.app.pilot import app_store, wait_for


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def row(table: Table, index: int) -> list[str]:
    return [str(cell) for cell in table.get_row_at(index)]


async def opened(pilot, screen_class) -> None:
    """Wait until a screen of `screen_class` is in view, its widgets mounted."""

    def shown() -> bool:
        screen = pilot.app.screen
        return isinstance(screen, screen_class) and bool(screen.query(Table))

    await wait_for(pilot, shown, what=screen_class.__name__)


async def mistakes_listed(pilot, run_id: int) -> tuple[MistakesScreen, Table]:
    """Open the run's mistakes and wait for the worst list: the screen and that table."""
    pilot.app.open_mistakes(run_id)
    await opened(pilot, MistakesScreen)
    worst = pilot.app.screen.query_one("#worst-table", Table)
    await wait_for(pilot, lambda: worst.row_count == len(SAMPLES), what="the worst list")
    return pilot.app.screen, worst


def completed_run(store: RunStore, **options) -> int:
    run_id = store.create_run(RunSpec(**options), status="completed")
    store.run(run_id).folder.mkdir(parents=True, exist_ok=True)
    return run_id


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_TUI_IMAGES", "halfblocks")
    return app_store(tmp_path, monkeypatch)


async def test_mistakes_list_the_worst_narrow_to_a_pair_and_come_back(store):
    run_id = completed_run(store)
    write_predictions(store.run(run_id).folder)
    app = ResnetApp(store)
    async with app.run_test(size=(120, 36)) as pilot:
        screen, worst = await mistakes_listed(pilot, run_id)
        assert "5 of 9 test images wrong" in text_of(screen, "#mistakes-title")
        # the highest loss first: image 5, a triangle taken for a square at 99 %
        assert row(worst, 0)[:3] == ["5", "triangle", "square"]
        assert "test image 5: triangle, predicted square" in text_of(screen, "#picture-caption")
        await pilot.press("t")
        pairs = screen.query_one("#pairs-table", Table)
        assert pairs.has_focus
        assert row(pairs, 0) == ["circle", "square", "2"]  # images 1 and 6
        await pilot.press("enter")
        await pilot.pause()
        assert [row(worst, i)[0] for i in range(worst.row_count)] == ["1", "6"]
        await pilot.press("escape")  # all images again
        await pilot.pause()
        assert worst.row_count == len(SAMPLES) and app.screen is screen
        await pilot.press("t", "t")
        classes = screen.query_one("#classes-table", Table)
        rows = [row(classes, i) for i in range(classes.row_count)]
        assert [row[0] for row in rows] == CLASSES
        # squares: 5 predicted, 2 of them right (precision 40 %); 3 true, 2 found (66.7 %)
        assert rows[1][1:] == ["40.0%", "66.7%", "50.0%", "3"]
        await pilot.press("escape")
        assert not isinstance(app.screen, MistakesScreen)


async def test_images_deleted_under_the_screen_say_so(store):
    run_id = completed_run(store)
    folder = store.run(run_id).folder
    write_predictions(folder)
    app = ResnetApp(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await mistakes_listed(pilot, run_id)
        shutil.rmtree(folder / "mistakes")
        await pilot.press("j")
        await pilot.pause()
        frame = app.screen.query_one("#picture-frame")
        assert "is not there any more" in str(frame.query_one(Static).render())
        # image 7 (a triangle taken for a circle) has no thumbnail: said, not drawn
        await pilot.press("j", "j", "j")
        await pilot.pause()
        assert "no picture kept" in text_of(app.screen, "#picture-caption")


# (case, the file's text, what the screen says)
FORGED = [
    ("not JSON", "{{{", "is damaged"),
    (
        "lengths differ",
        json.dumps(
            {
                "format": "resnet-tui-test-predictions/1",
                "classes": ["a"],
                "labels": [0, 0],
                "predicted": [0],
                "probability": [1.0],
                "true_probability": [1.0],
                "loss": [0.0],
            }
        ),
        "is damaged",
    ),
]


@pytest.mark.parametrize(("case", "text", "says"), FORGED, ids=[f[0] for f in FORGED])
async def test_a_forged_predictions_file_is_one_line(store, case, text, says):
    run_id = completed_run(store)
    (store.run(run_id).folder / "test-predictions.json").write_text(text)
    app = ResnetApp(store)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_mistakes(run_id)
        await opened(pilot, MistakesScreen)
        screen = app.screen
        await wait_for(pilot, lambda: says in text_of(screen, "#mistakes-title"), what=case)
        assert screen.query_one("#worst-table", Table).row_count == 0


async def test_a_run_without_predictions_says_why(store):
    old = completed_run(store)  # trained before the file was kept
    running = store.create_run(RunSpec(), status="running")
    app = ResnetApp(store)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_mistakes(running)
        await pilot.pause()
        assert not isinstance(app.screen, MistakesScreen)
        assert any("known once it completes" in n.message for n in app._notifications)
        app.open_mistakes(old)
        await opened(pilot, MistakesScreen)
        screen = app.screen
        await wait_for(
            pilot,
            lambda: (
                "trained before test predictions were kept" in text_of(screen, "#mistakes-title")
            ),
            what="the reason",
        )


async def test_the_path_field_completes_folders_and_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pictures" / "cats").mkdir(parents=True)
    (tmp_path / "pictures" / "cats" / "tom.png").write_bytes(b"")
    (tmp_path / "pictures" / ".hidden").write_bytes(b"")
    (tmp_path / "pictures" / "cats" / "names.txt").write_bytes(b"")
    suggest = PathSuggester().get_suggestion
    assert await suggest("pic") == "pictures/"
    assert await suggest("pictures/") == "pictures/cats/"
    assert await suggest("pictures/cats/t") == "pictures/cats/tom.png"
    assert await suggest(f"{tmp_path}/pictures/c") == f"{tmp_path}/pictures/cats/"
    assert await suggest("nothing/x") is None
    assert await suggest("pictures/.h") is None  # hidden entries are not offered
    assert await suggest("pictures/cats/n") is None  # nor files that are not images


@pytest.fixture
def trained_store(tmp_path, monkeypatch, tiny_spec_options):
    """A store with one tiny completed run on shapes, trained by the real engine here."""
    from engine.train.run import run as train

    store = app_store(tmp_path, monkeypatch)
    monkeypatch.setenv("RESNET_TUI_IMAGES", "halfblocks")
    spec = RunSpec.from_dict({**tiny_spec_options, "epochs": 1})
    run_id = store.create_run(spec, status="completed")
    folder = store.run(run_id).folder
    folder.mkdir(parents=True, exist_ok=True)
    assert train(spec, folder / "events.jsonl", folder) == 0
    return store, run_id


async def test_predict_classifies_a_folder_and_shows_each_image(trained_store, tmp_path):
    store, run_id = trained_store
    for kind, name in enumerate(CLASSES):
        (tmp_path / "new" / name).mkdir(parents=True)
        draw(kind).save(tmp_path / "new" / name / f"{name}.png")
    (tmp_path / "new" / "circle" / "broken.png").write_bytes(b"\x89PNG not really")
    app = ResnetApp(store)
    async with app.run_test(size=(120, 36)) as pilot:
        app.open_predict(run_id)
        await opened(pilot, PredictScreen)
        screen = app.screen
        field = screen.query_one("#predict-path", Input)
        field.focus()
        field.value = "new"
        await pilot.press("enter")
        table = screen.query_one("#predict-table", Table)
        await wait_for(
            pilot, lambda: "3 images in" in text_of(screen, "#predict-status"), what="the end"
        )
        assert table.row_count == 3
        assert table.has_focus  # j and k move in the results, not type into the path
        assert "1 could not be read" in text_of(screen, "#predict-status")
        assert "labelled by their folder" in text_of(screen, "#predict-status")
        table.focus()
        await pilot.press("j")
        await pilot.pause()
        # the file from the folder typed (its class folder shows), and what it was taken for
        caption = text_of(screen, "#predict-caption")
        folder, _, rest = caption.partition("/")
        assert folder in CLASSES and rest.startswith(f"{folder}.png: ") and "%" in rest


async def test_grad_cam_comes_from_the_engine_and_toggles(trained_store):
    store, run_id = trained_store
    folder = store.run(run_id).folder
    write_predictions(folder)  # our own thumbnails, over the run's: classes fit shapes
    app = ResnetApp(store)
    async with app.run_test(size=(120, 36)) as pilot:
        screen, _ = await mistakes_listed(pilot, run_id)
        await pilot.press("g")
        await wait_for(
            pilot,
            lambda: "Grad-CAM of the prediction" in text_of(screen, "#picture-caption"),
            what="Grad-CAM",
        )
        assert screen.heat_maps[5].is_file()
        await pilot.press("g")
        await pilot.pause()
        assert "Grad-CAM" not in text_of(screen, "#picture-caption")
