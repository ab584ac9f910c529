"""Knowledge distillation: teacher runs and their loss, and learning without forgetting.

Distillation (Hinton et al. 2015) moves teachers' knowledge into a student of any
architecture; learning without forgetting (Li and Hoiem 2016) distils a network's old task
into itself while it learns a new one."""

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from engine.contract import locate
from engine.contract.errors import RunError
from engine.contract.spec import RunSpec
from engine.data.batches import make_batches
from engine.data.datasets import load_dataset
from engine.transfer.weights import InputAdapter, RunModel, load_run_model

# Li and Hoiem's temperature for the old task's soft targets.
LWF_TEMPERATURE = 2.0


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1 - alpha)·CE + alpha·T²·KL(softmax(teacher/T) || softmax(student/T)).

    Returns the loss and its two parts, the cross-entropy and the KD term (before their
    weights). The T² keeps the soft targets' gradients on the scale of the hard ones'
    whatever the temperature. Computed in float32 whatever the autocast dtype.
    """
    student = student_logits.float()
    cross_entropy = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    kd = soft_target_loss(student, teacher_logits, temperature)
    return (1 - alpha) * cross_entropy + alpha * kd, cross_entropy, kd


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) || softmax(student/T)), the batch's mean, in float32."""
    soft_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    soft_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kd = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    return kd * temperature**2


class Teachers:
    """One or more teacher runs whose logits, averaged, are the student's soft targets.

    Each teacher is in eval mode with no gradients, sees the student's own (augmented) batch
    re-normalised its way, and answers in the student's classes: a teacher trained on more
    classes gives the logits of the student's ones, in the student's order.
    """

    def __init__(
        self,
        checkpoints: list[str],
        names: list[str],
        classes: list[str],
        channels: int,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        memory_format: torch.memory_format,
    ) -> None:
        self.members: list[tuple[nn.Module, InputAdapter, torch.Tensor]] = []
        for checkpoint, name in zip(checkpoints, names, strict=True):
            teacher = load_run_model(Path(checkpoint), f"teacher {name}")
            check_teacher(teacher, name, classes, channels, image_size)
            model = teacher.model.to(device, memory_format=memory_format).eval()
            model.requires_grad_(False)
            adapter = InputAdapter(mean, std, teacher.mean, teacher.std, device)
            index = torch.tensor([teacher.classes.index(c) for c in classes], device=device)
            self.members.append((model, adapter, index))

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teachers' mean logits for a batch, in the student's classes."""
        total = None
        for model, adapter, index in self.members:
            logits = model(adapter(images)).float().index_select(1, index)
            total = logits if total is None else total + logits
        assert total is not None
        return total / len(self.members)


def check_teacher(
    teacher: RunModel, name: str, classes: list[str], channels: int, image_size: int
) -> None:
    """Refuse a teacher that cannot judge the student's images: other classes or inputs."""
    missing = [c for c in classes if c not in teacher.classes]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise RunError(
            "bad_input",
            f"teacher {name} was not trained on this run's classes {shown}",
            "distil from a teacher trained on the student's classes (or on more)",
        )
    if teacher.channels != channels:
        raise RunError(
            "bad_input",
            f"teacher {name} takes {teacher.channels}-channel images, this run has {channels}",
            "distil from a teacher trained on the same kind of images",
        )
    if teacher.image_size != image_size:
        raise RunError(
            "bad_input",
            f"teacher {name} saw {teacher.image_size} px images, this run {image_size} px",
            f"add --image-size {teacher.image_size} so student and teacher see the same images",
        )


class OldTask:
    """Learning without forgetting (Li and Hoiem 2016): the source run's head stays beside
    the new one (as `model.old_fc`, training with it), and learns to answer the new images
    as the unchanged source network does, so the shared network keeps its old task.
    """

    def __init__(
        self,
        model: nn.Module,
        checkpoint: Path,
        spec: RunSpec,
        device: torch.device,
        memory_format: torch.memory_format,
    ) -> None:
        self.source: RunModel = load_run_model(
            checkpoint, f"the --init source of --lwf ({spec.init})"
        )
        self.original = self.source.model.to(device, memory_format=memory_format).eval()
        self.original.requires_grad_(False)
        model.old_fc = copy.deepcopy(self.original.fc).requires_grad_(True)
        self.model = model
        self.features: torch.Tensor | None = None
        model.fc.register_forward_pre_hook(self._keep_features)
        # The old task's own test data, checked now so a missing dataset fails at the start.
        self.spec = dataclasses.replace(
            self.source.spec,
            device=spec.device,
            download=False,
            data_root=spec.data_root or self.source.spec.data_root,
        )
        locate.check_dataset(self.spec)
        self.device = device
        self.memory_format = memory_format

    def _keep_features(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.features = inputs[0]

    def old_logits(self) -> torch.Tensor:
        """The old head's answer to the batch the model has just seen."""
        assert self.features is not None
        return self.model.old_fc(self.features)

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """The old task's loss on a batch the model has just seen: its old head against the
        unchanged source network, at Li and Hoiem's temperature."""
        with torch.no_grad():
            targets = self.original(images)
        return soft_target_loss(self.old_logits(), targets, LWF_TEMPERATURE)

    @torch.no_grad()
    def report(self, autocast: Any) -> dict[str, Any]:
        """Top-1 on the old task's test data: the model through its old head, and the source
        before any of this training."""
        bundle = load_dataset(self.spec)
        bundle.mean, bundle.std = self.source.mean, self.source.std
        batches = make_batches(bundle.test, bundle, 256, self.device, False, self.spec)
        self.model.eval()
        correct = source_correct = seen = 0
        for images, labels in batches.epoch(0):
            images = images.contiguous(memory_format=self.memory_format)
            with autocast():
                self.model(images)
                correct += int((self.old_logits().argmax(1) == labels).sum())
                source_correct += int((self.original(images).argmax(1) == labels).sum())
            seen += len(labels)
        return {
            "dataset": self.spec.dataset,
            "classes": self.source.classes,
            "top1": correct / max(seen, 1),
            "source_top1": source_correct / max(seen, 1),
            "samples": seen,
        }
