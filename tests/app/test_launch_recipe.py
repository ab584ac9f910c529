"""The launch form's recipe (issue 27, item 2): regularisers and augmentation behind a
switch, each field said in the form's words and described when focused, values kept when
hidden, and a form made again from a run that used them opening with them."""

from textual.widgets import Checkbox, Input, Select, Static

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.launch import LaunchScreen
from tests.app.pilot import app_store
from tests.app.test_launch_form import problem_of

SIZE = (100, 40)
TYPED = {
    "label_smoothing": "0.1",
    "mixup": "0.2",
    "cutmix": "1.0",
    "random_erasing": "0.25",
    "ema_decay": "0.999",
    "drop_path": "0.1",
}


async def test_the_recipe_is_behind_a_switch_and_its_values_reach_the_spec(
    tmp_path, monkeypatch, fake_devices
):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        assert not form.query_one("#recipe").display  # the form as it was, one switch more
        form.query_one("#recipe-switch", Checkbox).value = True
        await pilot.pause()
        assert form.query_one("#recipe").display
        form.query_one("#auto_augment", Select).value = "randaugment"
        for key, value in TYPED.items():
            form.query_one(f"#{key}", Input).value = value
        await pilot.pause()
        spec = form.spec
        assert spec is not None and spec.auto_augment == "randaugment"
        assert [getattr(spec, key) for key in TYPED] == [float(v) for v in TYPED.values()]
        said = problem_of(form)
        assert "recipe: Auto augment randaugment, Label smoothing 0.1, Mixup alpha 0.2" in said
        assert "EMA decay 0.999, Stochastic depth 0.1" in said

        form.query_one("#recipe-switch", Checkbox).value = False  # hidden, still used
        await pilot.pause()
        assert not form.query_one("#recipe").display
        assert (
            form.spec is not None
            and form.spec.mixup == 0.2
            and "Mixup alpha 0.2" in (problem_of(form))
        )


async def test_recipe_values_are_refused_in_the_forms_words(tmp_path, monkeypatch, fake_devices):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        form.query_one("#recipe-switch", Checkbox).value = True
        refused = [
            ("label_smoothing", "1", "Label smoothing must be at least 0 and below 1"),
            ("ema_decay", "1", "EMA decay must be above 0 and below 1"),
            ("mixup", "lots", "Mixup alpha must be a number"),
        ]
        for key, value, words in refused:
            form.query_one(f"#{key}", Input).value = value
            await pilot.pause()
            said = problem_of(form)
            assert words in said and "--" not in said, said
            assert form.query_one("#launch").disabled
            form.query_one(f"#{key}", Input).value = ""
        form.query_one("#arch", Select).value = "cnn"
        form.query_one("#drop_path", Input).value = "0.1"
        await pilot.pause()
        said = problem_of(form)
        assert "Stochastic depth skips residual blocks, which cnn has none of" in said
        assert "Architecture resnet20" in said and "--" not in said


async def test_the_focused_fields_use_is_said_under_them(tmp_path, monkeypatch, fake_devices):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        form.query_one("#recipe-switch", Checkbox).value = True
        await pilot.pause()
        line = form.query_one("#recipe-help", Static)
        assert "when it has the focus" in str(line.render())
        form.query_one("#mixup", Input).focus()
        await pilot.pause()
        assert str(line.render()).startswith("Mixup: train on blends of two images")
        form.query_one("#auto_augment", Select).focus()
        await pilot.pause()
        assert "randaugment" in str(line.render()) and "--" not in str(line.render())


async def test_a_run_made_again_opens_with_its_recipe(tmp_path, monkeypatch, fake_devices):
    store = app_store(tmp_path, monkeypatch)
    spec = RunSpec(mixup=0.2, mix_prob=0.5, auto_augment="trivialaugment", ema_decay=0.99)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        form = LaunchScreen(spec)
        await pilot.app.push_screen(form)
        await pilot.pause()
        assert form.query_one("#recipe-switch", Checkbox).value
        assert form.query_one("#recipe").display
        assert form.query_one("#mixup", Input).value == "0.2"
        assert form.query_one("#ema_decay", Input).value == "0.99"
        assert form.query_one("#auto_augment", Select).value == "trivialaugment"
        assert form.spec is not None and form.spec.mix_prob == 0.5  # no field: kept
        assert "kept from the run it repeats: mix prob 0.5" in problem_of(form)
