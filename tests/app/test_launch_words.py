"""The launch form speaks in its own words: a refused value is named by its field's label,
never by the CLI's flag, for every option the form has a field for."""

import pytest
from textual.widgets import Input, Select

from engine.contract.options import SpecField
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.launch_fields import LABELS, TEXT_FIELDS, in_form_words
from tests.app.pilot import app_store
from tests.app.test_launch_form import problem_of
from tests.conftest import record_fault

SIZE = (140, 40)
IN_FORM_WORDS = "bad value in a form field: said with the field's label, no flag"

# A text field, a value it refuses, and the words of the refusal. The name is free text:
# no value of it is refused.
REFUSED = [
    ("devices", "gpu:x", "unknown device 'gpu:x'"),
    ("nproc", "0", "must be a positive number"),
    ("epochs", "0", "must be a positive number"),
    ("batch_size", "-1", "must be a positive number"),
    ("lr", "0", "must be a positive number"),
    ("seed", "-3", "must be 0 or more"),
    ("classes", "0,nine", "no class 'nine'"),
    ("limit", "0", "must be a positive number"),
    ("image_size", "0", "must be a positive number"),
    ("teacher", "x", "a teacher is a run in the store"),
    ("kd_alpha", "2", "must be between 0 and 1"),
    ("kd_temperature", "0", "must be a positive number"),
    ("lwf", "0.5", "keeps the source run's head"),
    ("folds", "1", "must be from 2 to 20"),
    ("unfreeze_every", "0", "must be a positive number"),
    ("probe_epochs", "0", "must be a positive number"),
    ("early_stop_patience", "0", "must be a positive number"),
    ("early_stop_min_delta", "-1", "must be 0 or more"),
]


@pytest.mark.parametrize("option", sorted(LABELS))
def test_each_option_with_a_field_is_said_with_its_label(option):
    flag = SpecField(option, str, None, "", "").flag
    assert in_form_words(f"{flag} is wrong; give {flag} 3") == (
        f"{LABELS[option]} is wrong; give {LABELS[option]} 3"
    )


def test_a_flag_in_a_path_or_of_no_option_is_left_alone():
    assert (
        in_form_words("no file /tmp/a--lr/x; try --lr") == "no file /tmp/a--lr/x; try Learning rate"
    )
    assert in_form_words("--nonsense stays") == "--nonsense stays"
    assert "[b]Learning rate[/b]" in in_form_words("--lr [x]", markup=True)
    assert "\\[x]" in in_form_words("--lr [x]", markup=True)  # user text is never markup


def test_every_text_field_is_covered():
    assert {key for key, _, _ in REFUSED} == {key for key, _ in TEXT_FIELDS} - {"name"}


async def test_refused_values_are_named_by_the_fields_label(tmp_path, monkeypatch, fake_devices):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        for key, value, words in REFUSED:
            form.query_one(f"#{key}", Input).value = value
            await pilot.pause()
            said = problem_of(form)
            ok = (
                words in said
                and LABELS[key] in said
                and "--" not in said
                and form.query_one("#launch").disabled
            )
            record_fault(IN_FORM_WORDS, ok)
            assert ok, (key, said)
            form.query_one(f"#{key}", Input).value = ""
        await pilot.pause()
        assert "✓" in problem_of(form)

        # Fields refused together are said together.
        form.query_one("#devices", Input).value = "cpu,cpu"
        form.query_one("#nproc", Input).value = "3"
        await pilot.pause()
        assert "DDP processes says 3 and Devices (DDP) names 2; give one" in problem_of(form)
        form.query_one("#devices", Input).value = form.query_one("#nproc", Input).value = ""

        # Choices refused together name the lists they come from.
        form.query_one("#init", Select).value = "imagenet"
        await pilot.pause()
        said = problem_of(form)
        assert "Weights start imagenet needs a torchvision ResNet" in said
        assert "Architecture resnet18" in said and "--" not in said
        form.query_one("#init", Select).value = "run"
        form.query_one("#init-source", Input).value = "4"
        await pilot.pause()
        assert "Weights start run:4: there is no run 4" in problem_of(form)
        assert "ctrl+o picks one" in problem_of(form)

        # A dataset that is not there names the data root and the download switch.
        form.query_one("#init", Select).value = "scratch"
        form.query_one("#dataset", Select).value = "mnist"
        await pilot.pause()
        said = problem_of(form)
        assert "mnist is not in" in said and "switch Download on" in said
        assert "Data root" in said and "about 11 MB" in said and "--" not in said
