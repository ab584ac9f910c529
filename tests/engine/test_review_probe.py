"""Review of the converged probe: `lp-ft` of one epoch still fine-tunes after the probe, and
a run with no images held out (validation is the test data) does not choose the probe's
weight decay on the test images."""

import json

import torch

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from engine.train.optimisation import few_steps_note
from engine.train.run import run
from engine.transfer.probe import DECAY_WITHOUT_VALIDATION
from tests.engine.tiny_runs import TINY


def events_of(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def trained(folder, **options) -> list[dict]:
    folder.mkdir()
    spec = RunSpec.from_dict({**TINY, "epochs": 1, "lr": 0.1, **options})
    assert run(spec, folder / "events.jsonl", folder) == 0
    return events_of(folder)


def test_lp_ft_of_one_epoch_fine_tunes_after_the_probe(tmp_path):
    head = trained(tmp_path / "head", freeze="head")
    lp_ft = trained(tmp_path / "lpft", freeze="lp-ft", ft_lr_scale=1.0)
    assert any("L-BFGS" in e.get("message", "") for e in lp_ft)
    (probe_only,) = (e for e in head if e["type"] == ev.EPOCH_ENDED)
    (fine_tuned,) = (e for e in lp_ft if e["type"] == ev.EPOCH_ENDED)
    # the head run's one epoch is the probe's fit; lp-ft's trains everything by SGD after it
    assert fine_tuned["train_loss"] != probe_only["train_loss"]
    weights = [
        torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"]
        for name in ("head", "lpft")
    ]
    assert not torch.equal(weights[0]["conv1.weight"], weights[1]["conv1.weight"])


def test_the_probe_does_not_choose_its_decay_on_the_test_data(tmp_path):
    events = trained(tmp_path / "run", freeze="head", val_fraction=0.0)
    logs = [e["message"] for e in events if e["type"] == ev.LOG]
    assert "validation uses the test data (no images left to hold out)" in logs
    fitted = next(line for line in logs if line.startswith("linear probe fitted"))
    assert f"weight decay {DECAY_WITHOUT_VALIDATION:g} (no validation images" in fitted


def test_the_few_steps_warning_asks_for_no_batch_as_large_as_the_one_given():
    note = few_steps_note(steps=8, images=8, batch_size=1, epochs=1)
    assert note is not None and note.endswith("give more --epochs")
    halved = few_steps_note(steps=4, images=8, batch_size=2, epochs=1)
    assert halved is not None and halved.endswith("a smaller --batch-size (e.g. 1)")
