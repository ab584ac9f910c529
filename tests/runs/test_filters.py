"""The history's filter: terms combined with AND, `key:value` and accuracy terms, quoted
phrases; any text typed is a query of its own arguments, never SQL, and never an error."""

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.contract.spec import RunSpec
from resnet_tui.runs import queries
from resnet_tui.runs.store import RunStore
from tests.cli.command import invoke


@pytest.fixture
def store(tmp_path) -> RunStore:
    """Four runs: two architectures, two datasets, tags, accuracies."""
    store = RunStore(tmp_path / "runs.db")
    made = [
        ("baseline", "resnet8", "shapes", "completed", 0.95, "lab, first"),
        ("deeper", "resnet20", "shapes", "completed", 0.99, "lab"),
        ("deeper shift", "resnet20", "shapes-shift", "failed", None, ""),
        ("plain", "plain20", "shapes", "running", None, "twin"),
    ]
    for name, arch, dataset, status, accuracy, tags in made:
        run_id = store.create_run(RunSpec(name=name, arch=arch, dataset=dataset), status=status)
        store.update(run_id, test_acc=accuracy, tags=tags)
    return store


def _names(store: RunStore, text: str) -> list[str]:
    found = sorted(run.name for run in store.list_runs(text=text))
    assert store.count_runs(text=text) == len(found)
    return found


@pytest.mark.parametrize(
    "text, names",
    [
        ("deeper", ["deeper", "deeper shift"]),
        ("deeper shift", ["deeper shift"]),  # two words: both, not the phrase
        ("shift deeper", ["deeper shift"]),
        ('"deeper shift"', ["deeper shift"]),  # a quoted phrase
        ("arch:resnet20", ["deeper", "deeper shift"]),
        ("arch:resnet20 status:completed", ["deeper"]),
        ("status:running", ["plain"]),
        ("dataset:shapes-shift", ["deeper shift"]),
        ("tag:lab", ["baseline", "deeper"]),
        ("tag:twin arch:plain20", ["plain"]),
        ("acc>96", ["deeper"]),
        ("acc>=95", ["baseline", "deeper"]),
        ("acc<96 tag:lab", ["baseline"]),
        ("val>0", []),  # no run has a best val accuracy
        ("name:plain", ["plain"]),
        ("tag:", []),  # a key without a value is looked for as a word
        ('"unclosed deeper', []),
        ("   ", ["baseline", "deeper", "deeper shift", "plain"]),
    ],
)
def test_filter_terms_are_combined_with_and(store, text, names):
    assert _names(store, text) == names


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=40))
def test_any_text_typed_in_the_filter_is_a_query_never_an_error(store, text):
    try:
        found = store.list_runs(text=text)
    except sqlite3.Error as error:  # pragma: no cover - the property's failure
        pytest.fail(f"{text!r}: {error}")
    assert len(found) == store.count_runs(text=text) <= 4
    assert [run.name for run in store.list_runs(sort="id", descending=False)][0] == "baseline"


def test_runs_takes_the_same_filter_on_the_command_line(store, tmp_path):
    listed = invoke("runs", "--filter", "tag:lab acc>96", "--json", cwd=tmp_path)
    assert [run["name"] for run in json.loads(listed.stdout)] == ["deeper"]
    nothing = invoke("runs", "--filter", "arch:resnet56", cwd=tmp_path)
    assert "no runs matching 'arch:resnet56' in runs.db (4 runs in all)" in nothing.stdout


@pytest.mark.parametrize(
    "text, names",
    [
        ("q " * 1001, []),  # 1,001 terms: deeper than SQLite's expression limit
        ("deeper " * 1001, ["deeper", "deeper shift"]),
        ("x" * 100_000, []),  # one word longer than SQLite's LIKE pattern limit
        ("deeper " + "x" * 100_000, []),
    ],
    ids=["many terms", "many matching terms", "a long word", "a word and a long word"],
)
def test_a_pasted_page_is_a_filter_of_its_first_terms_never_an_error(store, text, names):
    assert _names(store, text) == names


@pytest.mark.parametrize(
    "text, unknown",
    [
        ("stauts:completed", ["stauts:"]),
        ("status:completed arch:resnet20 tag:lab", []),
        ("acc>90 sweep:3 from:2 plain", []),
        ('"a:b c" [x]:y', ["a:", "[x]:"]),
        ("http://host", ["http:"]),
        (":colon only:", []),
    ],
)
def test_keys_a_filter_does_not_know_are_named(text, unknown):
    assert queries.unknown_keys(text) == unknown
