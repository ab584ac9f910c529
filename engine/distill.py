"""Knowledge distillation (Hinton et al. 2015): teacher runs, and the loss that moves their
knowledge into a student of any architecture."""

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import RunError
from engine.weights import InputAdapter, RunModel, load_run_model


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
    soft_student = F.log_softmax(student / temperature, dim=1)
    soft_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kd = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    kd = kd * temperature**2
    return (1 - alpha) * cross_entropy + alpha * kd, cross_entropy, kd


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
