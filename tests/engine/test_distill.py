"""Distillation: the loss against a hand computation, teachers, and a distilled run."""

import math

import pytest
import torch
from torch.nn import functional as F

from engine.contract import events as ev
from engine.contract.spec import RunSpec, SpecError
from engine.train.run import run
from engine.transfer.distill import Teachers, distillation_loss
from engine.transfer.weights import load_run_model
from tests.engine.tiny_runs import TINY, trained_run
from tests.event_log import logged


def test_the_loss_is_the_weighted_sum_of_cross_entropy_and_the_tempered_kl():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(5, 4, generator=generator)
    teacher = torch.randn(5, 4, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 1])
    alpha, temperature = 0.7, 3.0

    loss, cross_entropy, kd = distillation_loss(student, teacher, labels, alpha, temperature)

    by_hand_ce = (
        -sum(
            math.log(math.exp(student[i, labels[i]]) / sum(math.exp(v) for v in student[i]))
            for i in range(5)
        )
        / 5
    )
    by_hand_kl = 0.0
    for i in range(5):
        p = [math.exp(v / temperature) for v in teacher[i].tolist()]
        q = [math.exp(v / temperature) for v in student[i].tolist()]
        p = [v / sum(p) for v in p]
        q = [v / sum(q) for v in q]
        by_hand_kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    by_hand_kd = temperature**2 * by_hand_kl / 5
    assert cross_entropy.item() == pytest.approx(by_hand_ce, rel=1e-5)
    assert kd.item() == pytest.approx(by_hand_kd, rel=1e-5)
    assert loss.item() == pytest.approx((1 - alpha) * by_hand_ce + alpha * by_hand_kd, rel=1e-5)


def test_at_alpha_zero_the_loss_is_cross_entropy_and_a_copied_teacher_adds_no_kd():
    student = torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    loss, _, _ = distillation_loss(student, torch.randn(8, 10), labels, 0.0, 4.0, 0.1)
    assert torch.equal(loss, F.cross_entropy(student, labels, label_smoothing=0.1))
    _, _, kd = distillation_loss(student, student.clone(), labels, 0.9, 4.0)
    assert kd.item() == pytest.approx(0.0, abs=1e-6)


def test_a_teacher_answers_in_the_students_classes_and_order(tmp_path):
    trained_run(tmp_path / "teacher", classes=["circle", "square", "triangle", "star"])
    checkpoint = str(tmp_path / "teacher" / "checkpoints" / "best.pt")
    args = (3, 16, (0.5,) * 3, (0.25,) * 3, torch.device("cpu"), torch.contiguous_format)
    whole = Teachers([checkpoint], ["run:1"], ["circle", "square", "triangle", "star"], *args)
    picked = Teachers([checkpoint], ["run:1"], ["star", "circle"], *args)
    images = torch.randn(6, 3, 16, 16)
    assert torch.equal(picked.logits(images), whole.logits(images)[:, [3, 0]])
    assert not any(p.requires_grad for model, _, _ in whole.members for p in model.parameters())

    with pytest.raises(Exception, match="not trained on this run's classes ring"):
        Teachers([checkpoint], ["run:1"], ["circle", "ring"], *args)
    with pytest.raises(Exception, match="saw 16 px images, this run 32 px"):
        Teachers([checkpoint], ["run:1"], ["circle"], 3, 32, *args[2:])


def test_a_distilled_run_reports_both_parts_and_at_alpha_zero_trains_as_without_a_teacher(
    tmp_path,
):
    trained_run(tmp_path / "teacher")
    teacher = [str(tmp_path / "teacher" / "checkpoints" / "best.pt")]
    options = {**TINY, "arch": "cnn", "epochs": 2}

    plain = trained_run(tmp_path / "plain", **options)
    distilled = trained_run(
        tmp_path / "alpha0",
        **options,
        teacher=["run:1"],
        teacher_checkpoints=teacher,
        kd_alpha=0.0,
    )
    assert distilled.teacher == ["run:1"] and plain.teacher is None
    weights = [
        torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"]
        for name in ("plain", "alpha0")
    ]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])

    events = logged(tmp_path / "alpha0" / "events.jsonl")
    started = events[0]
    assert started["distillation"] == {"teachers": ["run:1"], "alpha": 0.0, "temperature": 4.0}
    ended = [e for e in events if e["type"] == ev.EPOCH_ENDED]
    assert all(e["train_kd_loss"] > 0 and e["train_ce_loss"] > 0 for e in ended)
    assert all(e["train_loss"] == pytest.approx(e["train_ce_loss"]) for e in ended)
    assert all("kd_loss" in e for e in events if e["type"] == ev.PROGRESS)


def test_a_teacher_without_the_students_classes_fails_the_run_with_one_clear_error(tmp_path):
    trained_run(tmp_path / "teacher", classes=["circle", "square"])
    student = RunSpec.from_dict(
        {
            **TINY,
            "classes": ["circle", "star"],
            "teacher": ["run:1"],
            "teacher_checkpoints": [str(tmp_path / "teacher" / "checkpoints" / "best.pt")],
        }
    )
    (tmp_path / "student").mkdir()
    assert run(student, tmp_path / "student" / "events.jsonl", tmp_path / "student") == 1
    events = logged(tmp_path / "student" / "events.jsonl")
    assert events[-1]["type"] == ev.ERROR and events[-1]["kind"] == "bad_input"
    assert "not trained on this run's classes star" in events[-1]["message"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"teacher": ["run:1", "1"]}, "names run:1 twice"),
        ({"teacher": ["file:/x.pt"]}, "a teacher is a run in the store"),
        ({"teacher": ["run:1"], "kd_alpha": 1.5}, "--kd-alpha must be between 0 and 1"),
        ({"teacher": ["run:1"], "kd_temperature": 0}, "--kd-temperature must be a positive"),
    ],
)
def test_bad_distillation_options_are_refused_in_one_line(options, message):
    with pytest.raises(SpecError, match=message):
        RunSpec.from_dict({**TINY, **options})


def test_teachers_are_written_as_runs():
    spec = RunSpec.from_dict({**TINY, "teacher": "3, run:5:last"})
    assert spec.teacher == ["run:3", "run:5:last"]


def test_learning_without_forgetting_keeps_the_old_task_and_reports_it(tmp_path, mnist_root):
    digits = {"dataset": "mnist", "data_root": str(mnist_root), "limit": 512}
    trained_run(tmp_path / "source", **digits, classes=["0", "1", "2", "3", "4"])
    source = tmp_path / "source" / "checkpoints" / "best.pt"
    options = {**digits, "classes": ["5", "6", "7", "8", "9"], "init": f"file:{source}"}
    trained_run(tmp_path / "lwf", **options, lwf=0.9, epochs=2)

    events = logged(tmp_path / "lwf" / "events.jsonl")
    assert events[0]["distillation"]["old_classes"] == ["0", "1", "2", "3", "4"]
    assert all("train_kd_loss" in e for e in events if e["type"] == ev.EPOCH_ENDED)
    old_task = events[-1]["test"]["old_task"]
    own = logged(tmp_path / "source" / "events.jsonl")
    assert old_task["dataset"] == "mnist" and old_task["samples"] == own[-1]["test"]["samples"]
    assert old_task["source_top1"] == pytest.approx(own[-1]["test"]["top1"])
    assert old_task["top1"] >= 0.8 * old_task["source_top1"]  # the old task is kept
    assert events[-1]["test"]["top1"] > 0.5  # and the new one learnt

    best = tmp_path / "lwf" / "checkpoints" / "best.pt"
    assert torch.load(best, weights_only=True)["model"]["old_fc.weight"].shape == (5, 16)
    assert load_run_model(best, "lwf").classes == ["5", "6", "7", "8", "9"]  # its own head


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lwf": 0.5}, "give the source with --init run:ID"),
        ({"lwf": 0.5, "init": "run:1", "keep_head": True}, "leave --keep-head out"),
        ({"lwf": 0.5, "init": "run:1", "teacher": ["run:2"]}, "choose one"),
        ({"lwf": 1.0, "init": "run:1"}, "--lwf must be at least 0 and below 1"),
    ],
)
def test_bad_lwf_options_are_refused(options, message):
    with pytest.raises(SpecError, match=message):
        RunSpec.from_dict({**TINY, **options})
