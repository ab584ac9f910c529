"""The training loop: schedules, events, checkpoints, reproducibility and reported failures."""

import json
import signal

import pytest
import torch
from PIL import Image

from engine.contract import events as ev
from engine.contract.events import USER_ERROR_KINDS, EventWriter
from engine.contract.spec import RunSpec
from engine.contract.stopping import StopRequest
from engine.data.batches import make_batches
from engine.data.datasets import load_dataset
from engine.models import build_model
from engine.train.optimisation import lr_factor, make_optimizer, parameter_groups
from engine.train.run import run


def events_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def train(tmp_path, name: str = "run", stop: StopRequest | None = None, **values):
    """Run a spec in this process; a stop flag of our own keeps pytest's Ctrl-C working."""
    folder = tmp_path / name
    folder.mkdir()
    code = run(RunSpec.from_dict(values), folder / "events.jsonl", folder, stop or StopRequest())
    return code, events_of(folder / "events.jsonl")


def of_type(events, kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def test_onecycle_starts_low_peaks_at_a_quarter_and_ends_near_zero():
    total = 100
    onecycle = [lr_factor("onecycle", s, total, 0, 0.1) for s in range(total + 1)]
    assert onecycle[0] == pytest.approx(0.04)
    assert max(onecycle) == pytest.approx(1.0) and onecycle.index(max(onecycle)) == 25
    assert all(a < b for a, b in zip(onecycle[:25], onecycle[1:26], strict=True))
    assert all(a > b for a, b in zip(onecycle[25:-1], onecycle[26:], strict=True))
    assert onecycle[total - 1] < 0.01 and onecycle[total] == pytest.approx(1e-4)
    assert lr_factor("onecycle", 0, 100, 40, 0.1) == onecycle[0]  # warm-up epochs: not its own


def test_cosine_warms_up_linearly_then_decays_to_zero():
    total, warmup = 100, 10
    cosine = [lr_factor("cosine", s, total, warmup, 0.1) for s in range(total + 1)]
    assert cosine[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert cosine[warmup] == pytest.approx(1.0)
    assert cosine[55] == pytest.approx(0.5)  # half way through the decay
    assert all(a >= b for a, b in zip(cosine[warmup:-1], cosine[warmup + 1 :], strict=True))
    assert cosine[total - 1] < 0.01 and cosine[total] == pytest.approx(0.0)
    assert lr_factor("cosine", 0, total, 0, 0.1) == pytest.approx(1.0)  # no warm-up


def test_step_decays_at_half_and_three_quarters():
    step = [lr_factor("step", s, 100, 0, 0.1) for s in range(100)]
    assert set(step[:50]) == {1.0}
    assert step[50:75] == pytest.approx([0.1] * 25)
    assert step[75:] == pytest.approx([0.01] * 25)
    assert lr_factor("step", 80, 100, 0, 0.5) == pytest.approx(0.25)
    assert lr_factor("step", 0, 100, 4, 0.1) == pytest.approx(0.25)  # warm-up first


def test_constant_stays_at_the_peak_after_any_warm_up():
    assert {lr_factor("constant", s, 100, 0, 0.1) for s in range(100)} == {1.0}
    warm = [lr_factor("constant", s, 100, 4, 0.1) for s in range(100)]
    assert warm[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and set(warm[4:]) == {1.0}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimiser_steps_fused_on_cpu(optimizer):
    """The fused step is several times faster on CPU than the default per-parameter loop."""
    spec = RunSpec.from_dict({"arch": "resnet8", "dataset": "shapes", "optimizer": optimizer})
    model = build_model("resnet8", 10, width=4)
    fused = make_optimizer(parameter_groups(model, spec), spec, torch.device("cpu"))
    assert fused.defaults["fused"] is True
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    fused.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_a_tiny_run_reports_everything_in_order(tmp_path, tiny_spec_options):
    code, events = train(tmp_path, **tiny_spec_options)
    assert code == 0
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] == 1
    types = [e["type"] for e in events]
    assert types[0] == "started" and types[-1] == "finished" and "error" not in types
    assert types.count("epoch_ended") == 2 and "progress" in types
    # each epoch: started, the freeze policy in the first, progress, ended, its checkpoints
    for epoch in (1, 2):
        of_epoch = [e["type"] for e in events if e.get("epoch") == epoch]
        if epoch == 1:
            assert of_epoch.pop(1) == "policy"
        assert of_epoch[0] == "epoch_started" and of_epoch[1] == "progress"
        ended = of_epoch.index("epoch_ended")
        assert set(of_epoch[1:ended]) == {"progress"}
        assert of_epoch[ended + 1] == "checkpoint" and set(of_epoch[ended + 1 :]) == {"checkpoint"}
    started = events[0]
    assert started["device"] == "cpu" and started["threads"] >= 1
    assert started["sizes"] == {"train": 256, "val": 1000, "test": 2000}
    assert started["classes"][0] == "circle" and started["image_size"] == 16
    assert started["parameters"] == started["trainable_parameters"] > 0
    ended = of_type(events, "epoch_ended")
    assert [e["epoch"] for e in ended] == [1, 2]
    assert set(ended[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    assert set(ended[0]["lr"]) == {"stem", "stage1", "stage2", "stage3", "head"}
    assert all(0 <= e["train_acc"] <= 1 and 0 <= e["val_acc"] <= 1 for e in ended)
    finished = events[-1]
    assert finished["status"] == "completed"
    assert finished["best_val_acc"] == max(e["val_acc"] for e in ended)
    test = finished["test"]
    assert set(test) >= {"top1", "top5", "macro_f1", "auroc", "per_class_accuracy", "confusion"}
    assert 0 <= test["top1"] <= test["top5"] <= 1 and 0 <= test["macro_f1"] <= 1
    assert 0 <= test["auroc"] <= 1
    assert len(test["confusion"]) == 10 and all(len(row) == 10 for row in test["confusion"])
    assert sum(map(sum, test["confusion"])) == test["samples"] == 2000
    assert test["epoch"] == finished["best_epoch"]


def test_checkpoints_load_safely_into_a_fresh_model(tmp_path, tiny_spec_options):
    code, events = train(tmp_path, **tiny_spec_options)
    assert code == 0
    saved = of_type(events, "checkpoint")
    assert [(e["name"], e["epoch"]) for e in saved][:2] == [("last", 1), ("best", 1)]
    folder = tmp_path / "run" / "checkpoints"
    assert {e["path"] for e in saved} == {str(folder / "last.pt"), str(folder / "best.pt")}
    assert all(e["best"] == (e["name"] == "best") for e in saved)
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # no temporaries
    for name in ("last", "best"):
        checkpoint = torch.load(folder / f"{name}.pt", weights_only=True)
        assert checkpoint["arch"] == "resnet8" and checkpoint["classes"][0] == "circle"
        model = build_model(
            checkpoint["arch"],
            len(checkpoint["classes"]),
            checkpoint["in_channels"],
            checkpoint["width"],
            checkpoint["small_stem"],
        )
        model.load_state_dict(checkpoint["model"])  # strict: every key, every shape
        assert RunSpec.from_json(checkpoint["spec"]) == RunSpec.from_dict(tiny_spec_options)
    last = torch.load(folder / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["step"] == 2 * 4
    # the test metrics are those of the best checkpoint
    best = torch.load(folder / "best.pt", weights_only=True)
    model = build_model("resnet8", 10, width=4)
    model.load_state_dict(best["model"])
    model.eval()
    spec = RunSpec.from_dict(tiny_spec_options)
    bundle = load_dataset(spec)
    batches = make_batches(bundle.test, bundle, 500, torch.device("cpu"), False, spec)
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches.epoch(0))
    assert correct / 2000 == pytest.approx(events[-1]["test"]["top1"], abs=1e-6)


def test_a_seeded_cpu_run_is_reproducible_bit_for_bit(tmp_path, tiny_spec_options):
    _, first = train(tmp_path, "first", **tiny_spec_options)
    _, second = train(tmp_path, "second", **tiny_spec_options)
    a = torch.load(tmp_path / "first" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "second" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def metrics(events):
        keys = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
        return [[e[k] for k in keys] for e in of_type(events, "epoch_ended")]

    assert metrics(first) == metrics(second)
    assert first[-1]["test"] == second[-1]["test"]
    _, other = train(tmp_path, "other", **{**tiny_spec_options, "seed": 1})
    assert metrics(other) != metrics(first)


def test_a_stop_request_saves_last_and_finishes_as_stopped(tmp_path, tiny_spec_options):
    stop = StopRequest()
    stop.requested = True  # as if SIGTERM came before the first step
    code, events = train(tmp_path, stop=stop, **tiny_spec_options)
    assert code == 3
    ended = of_type(events, "epoch_ended")
    assert len(ended) == 1 and ended[0]["partial"] is True
    assert of_type(events, "progress")[-1]["step"] == 1
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "stopped"
    assert events[-1]["test"] is None
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_device_that_is_not_there_is_an_error_not_a_fallback(tmp_path, tiny_spec_options, device):
    code, events = train(tmp_path, **{**tiny_spec_options, "device": device})
    assert code != 0
    assert [e["type"] for e in events] == ["error"]
    assert events[-1]["kind"] == "device_missing" and device in events[-1]["message"]
    assert "--device cpu" in events[-1]["hint"]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_diverging_loss_fails_the_run_and_says_what_to_try(tmp_path, tiny_spec_options):
    options = {**tiny_spec_options, "optimizer": "sgd", "lr": 100.0, "schedule": "constant"}
    code, events = train(tmp_path, **options)
    assert code != 0
    error = events[-1]
    assert error["type"] == "error" and error["kind"] == "diverged"
    assert "the loss became" in error["message"] and "--lr" in error["hint"]
    assert not of_type(events, "finished")


def test_a_missing_dataset_is_a_user_error_event(tmp_path, tiny_spec_options):
    options = {**tiny_spec_options, "dataset": "mnist", "data_root": str(tmp_path / "nothing")}
    code, events = train(tmp_path, **options)
    assert code == 1 and [e["type"] for e in events] == ["error"]
    assert events[0]["kind"] == "dataset_missing" and "dataset_missing" in USER_ERROR_KINDS
    assert "--download" in events[0]["message"]
    _, events = train(tmp_path, "folder", **{**options, "dataset": f"imagefolder:{tmp_path}/x"})
    assert events[0]["kind"] == "dataset_missing" and "does not exist" in events[0]["message"]


def test_a_folder_that_is_there_but_unusable_is_bad_input(tmp_path, tiny_spec_options):
    (tmp_path / "one" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "cats" / "0.png")
    options = {**tiny_spec_options, "dataset": f"imagefolder:{tmp_path / 'one'}"}
    code, events = train(tmp_path, **options)
    assert code == 1 and [e["type"] for e in events] == ["error"]
    assert events[0]["kind"] == "bad_input" and "only one class" in events[0]["message"]


def test_run_without_a_stop_flag_puts_the_signal_handlers_back(tmp_path, tiny_spec_options):
    def handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        for name, options in (
            ("ok", {**tiny_spec_options, "epochs": 1, "limit": 64}),
            ("failed", {**tiny_spec_options, "dataset": "mnist", "data_root": str(tmp_path)}),
        ):
            (tmp_path / name).mkdir()
            spec = RunSpec.from_dict(options)
            code = run(spec, tmp_path / name / "events.jsonl", tmp_path / name)
            assert code == (0 if name == "ok" else 1)
            after = {s: signal.getsignal(s) for s in before}
            assert after == before and after[signal.SIGTERM] is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_stop_flag_catches_the_signals_until_it_is_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stop = StopRequest().install()
    try:
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested
    finally:
        stop.restore()
    assert {s: signal.getsignal(s) for s in before} == before


def colour_folder(root, broken: str | None = None):
    """Two classes of tiny PNGs; `broken` names a cut-off file to add to the red class."""
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (20, 20), colour).save(root / name / f"{i}.png")
    if broken:
        (root / "red" / broken).write_bytes((root / "red" / "0.png").read_bytes()[:60])
    return root


def folder_options(tiny_spec_options, root) -> dict:
    return {**tiny_spec_options, "dataset": f"imagefolder:{root}", "batch_size": 4, "workers": 0}


def test_an_image_folder_trains_from_files(tmp_path, tiny_spec_options):
    root = colour_folder(tmp_path / "colours")
    code, events = train(tmp_path, **{**folder_options(tiny_spec_options, root), "epochs": 1})
    assert code == 0 and events[-1]["type"] == "finished"
    types = [e["type"] for e in events]
    # the first decode of the folder's small images says how it goes before `started`; the
    # dataset's notes come after it
    started = types.index("started")
    assert all("decod" in e["message"] for e in events[:started])
    assert types[started + 1] == "log"
    assert any("held out as test data" in e["message"] for e in of_type(events, "log"))
    assert events[-1]["test"]["classes"] == ["blue", "red"]


def test_an_unreadable_image_fails_the_run_as_bad_data(tmp_path, tiny_spec_options):
    root = colour_folder(tmp_path / "colours", broken="cut.png")
    code, events = train(tmp_path, **folder_options(tiny_spec_options, root))
    assert code == 1
    assert events[-1]["type"] == "error" and events[-1]["kind"] == "bad_data"
    assert "truncated" in events[-1]["message"]


@pytest.mark.parametrize("workers", [0, 1])  # read here, or in a worker process
def test_an_unreadable_image_is_named_in_the_error(tmp_path, tiny_spec_options, workers):
    root = colour_folder(tmp_path / "colours", broken="cut.png")
    options = {**folder_options(tiny_spec_options, root), "workers": workers}
    _, events = train(tmp_path, **options)
    message = events[-1]["message"]
    assert message.startswith(f"cannot read image {root / 'red' / 'cut.png'}: ")
    assert "truncated" in message and "\n" not in message and "Traceback" not in message


@pytest.mark.slow
def test_the_default_run_reaches_95_percent_on_shapes(tmp_path):
    code, events = train(tmp_path, device="cpu")
    assert code == 0
    assert events[-1]["test"]["top1"] >= 0.95


def test_a_heartbeat_is_written_only_after_silence(tmp_path):
    writer = EventWriter(tmp_path / "events.jsonl")
    writer.emit(ev.LOG, level="info", message="hello")
    writer.heartbeat(interval=3600)
    writer.heartbeat(interval=0)
    writer.close()
    assert [e["type"] for e in events_of(tmp_path / "events.jsonl")] == [ev.LOG, ev.HEARTBEAT]


def test_evaluation_beats_so_a_long_one_is_not_taken_for_a_hang(
    tmp_path, tiny_spec_options, monkeypatch
):
    monkeypatch.setattr(ev, "HEARTBEAT_S", 0.0)
    code, events = train(tmp_path, **tiny_spec_options)
    types = [e["type"] for e in events]
    assert code == 0 and ev.HEARTBEAT in types and types[-1] == ev.FINISHED
