"""What a run minimises on a batch: cross-entropy on its labels, or a distilled loss.

A run distils from teachers, or (learning without forgetting, --lwf) from its source on the
source's old task.
"""

from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from engine.contract.errors import RunError
from engine.contract.spec import RunSpec
from engine.data.datasets import DatasetBundle
from engine.train.mixing import Labels, mixture
from engine.transfer.distill import OldTask, Teachers, distillation_loss


def source_checkpoint(spec: RunSpec) -> Path:
    """The checkpoint file `--init run:ID` or `file:PATH` stands for."""
    return Path(spec.init_checkpoint or spec.init.removeprefix("file:"))


def load_teachers(
    spec: RunSpec,
    bundle: DatasetBundle,
    device: torch.device,
    memory_format: torch.memory_format,
) -> Teachers:
    """The spec's teachers, from the checkpoints the launcher resolved them to."""
    if not spec.teacher_checkpoints or len(spec.teacher_checkpoints) != len(spec.teacher or []):
        raise RunError(
            "bad_input",
            "--teacher was not resolved to checkpoints",
            "launch it with resnet-tui, which finds the teachers' checkpoints in the store",
        )
    return Teachers(
        spec.teacher_checkpoints,
        spec.teacher or [],
        bundle.classes,
        bundle.channels,
        bundle.image_size,
        bundle.mean,
        bundle.std,
        device,
        memory_format,
    )


def make_objective(
    spec: RunSpec,
    model: torch.nn.Module,
    bundle: DatasetBundle,
    device: torch.device,
    memory_format: torch.memory_format,
) -> "Objective":
    """The spec's loss for `model`: with --lwf the source's old head is added to the model
    (so call it before its parameters are grouped or frozen), with --teacher the teachers
    are loaded."""
    old_task = (
        OldTask(model, source_checkpoint(spec), spec, device, memory_format)
        if spec.lwf > 0
        else None
    )
    teachers = load_teachers(spec, bundle, device, memory_format) if spec.teacher else None
    return Objective(spec, old_task, teachers)


class Objective:
    """The loss of a batch, with its parts where the run distils (from `teachers`, or with
    --lwf from `old_task`)."""

    def __init__(self, spec: RunSpec, old_task: OldTask | None, teachers: Teachers | None) -> None:
        self.spec = spec
        self.old_task = old_task
        self.teachers = teachers

    @property
    def distils(self) -> bool:
        """Whether the run distils, so that its loss has parts."""
        return self.old_task is not None or self.teachers is not None

    def loss(
        self, logits: torch.Tensor, images: torch.Tensor, labels: Labels
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss of the model's `logits` for a batch and, when distilling, its cross-entropy
        and KD parts. Call it under the autocast of the forward pass that gave the logits.

        For a batch mixed by mixup or CutMix (`labels` MixedLabels), the part on the labels
        is the mixture of the two labels' losses (each with the label smoothing); the parts
        on the images (KD against the teachers or the old task) take the mixed images as
        they are.
        """
        spec = self.spec

        def cross_entropy(target: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, target, label_smoothing=spec.label_smoothing)

        if self.old_task is not None:
            new = mixture(labels, cross_entropy)
            old = self.old_task.loss(images)
            loss = spec.lwf * old + (1 - spec.lwf) * new
            return loss, torch.stack([new.detach().float(), old.detach()])
        if self.teachers is None:
            return mixture(labels, cross_entropy), None
        teacher_logits = self.teachers.logits(images)
        loss, cross_entropy_part, kd = mixture(
            labels,
            lambda target: distillation_loss(
                logits,
                teacher_logits,
                target,
                spec.kd_alpha,
                spec.kd_temperature,
                spec.label_smoothing,
            ),
        )
        return loss, torch.stack([cross_entropy_part.detach(), kd.detach()])

    def mean_parts(self, parts_sum: torch.Tensor, seen: int) -> dict[str, float]:
        """The means of a distilled loss's parts over `seen` images: `ce_loss` on the labels
        and `kd_loss` against the teachers or the old task; none where the run does not distil."""
        if not self.distils:
            return {}
        cross_entropy, kd = (parts_sum / max(seen, 1)).tolist()
        return {"ce_loss": cross_entropy, "kd_loss": kd}

    def started_info(self) -> dict[str, Any] | None:
        """What the `started` event says of the distillation; None without one."""
        spec = self.spec
        if self.old_task is not None:
            return {
                "lwf": spec.lwf,
                "old_dataset": self.old_task.spec.dataset,
                "old_classes": self.old_task.source.classes,
            }
        if self.teachers is None:
            return None
        return {
            "teachers": spec.teacher,
            "alpha": spec.kd_alpha,
            "temperature": spec.kd_temperature,
        }
