"""The runs being fused and what every way of fusing them shares: data, evaluation, checkpoint."""

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.contract import events as ev
from engine.contract.errors import RunError
from engine.contract.events import EventWriter
from engine.contract.spec import FusionSpec, dataset_kind
from engine.contract.stopping import StopRequest
from engine.data.batches import make_batches
from engine.data.datasets import DatasetBundle, load_dataset
from engine.models import count_parameters
from engine.train.checkpoints import save_checkpoint, share_file
from engine.train.devices import amp_dtype, autocast, pick_device, process_facts, use_all_cores
from engine.transfer.weights import InputAdapter, RunModel, load_run_model

# BatchNorm statistics of averaged weights are measured again on this many training images
# (or all of them, if fewer): enough for stable means and variances, a few seconds at most.
BATCHNORM_IMAGES = 4096


class Fusion:
    """One fused run: the members' networks, the data they share, measuring a network on it,
    and the fused network (`result`) written as the run's checkpoint."""

    def __init__(
        self, fusion: FusionSpec, writer: EventWriter, run_dir: Path, stop: StopRequest
    ) -> None:
        self.fusion = fusion
        self.writer = writer
        self.checkpoints = run_dir / "checkpoints"
        self.stop = stop
        self.device = pick_device(fusion.device)
        use_all_cores(self.device)
        self.members = [
            load_run_model(Path(member["checkpoint"]), f"run {member['run']}")
            for member in fusion.members
        ]
        self.ids = [member["run"] for member in fusion.members]
        first = self.members[0]
        # The data is the first member's: its dataset, classes, image size and val split.
        self.spec = dataclasses.replace(first.spec, device=fusion.device, download=False)
        if fusion.data_root:
            self.spec.data_root = fusion.data_root
        torch.manual_seed(self.spec.seed)
        self.bundle: DatasetBundle = load_dataset(self.spec)
        self.bundle.mean, self.bundle.std = first.mean, first.std
        for run_id, member in zip(self.ids, self.members, strict=True):
            self._check_member(run_id, member)
        self.notes = [
            f"run {run_id} held out {member.spec.val_fraction:g} of the training images for "
            f"validation, run {self.ids[0]} {first.spec.val_fraction:g}: some validation "
            "images here were its training images; compare the test accuracy"
            for run_id, member in zip(self.ids[1:], self.members[1:], strict=True)
            if member.spec.val_fraction != first.spec.val_fraction
        ]
        self.notes += [
            f"run {run_id} and run {self.ids[0]} validated by different rules (on val/, and on "
            "training images held out, which came later): the choices here may favour one of "
            "them; compare the test accuracy"
            for run_id, member in zip(self.ids[1:], self.members[1:], strict=True)
            if member.spec.val_from_train != first.spec.val_from_train
            and dataset_kind(first.spec.dataset) == "imagefolder"
        ]
        self.amp = amp_dtype(self.spec, self.device)
        self.memory_format = (
            torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        )
        for member in self.members:
            member.model.to(self.device, memory_format=self.memory_format).eval()
        self.adapters = [
            InputAdapter(self.bundle.mean, self.bundle.std, m.mean, m.std, self.device)
            for m in self.members
        ]
        eval_batch = self.spec.eval_batch_size or 2 * self.spec.batch_size
        self.val_batches = make_batches(
            self.bundle.val, self.bundle, eval_batch, self.device, False, self.spec
        )
        self.test_batches = make_batches(
            self.bundle.test, self.bundle, eval_batch, self.device, False, self.spec
        )
        # Training images, for measuring BatchNorm again after averaging (made once: an
        # in-memory split is copied to the device when its batches are made).
        self.train_batches = make_batches(
            self.bundle.train, self.bundle, self.spec.batch_size, self.device, True, self.spec
        )
        self.val_labels = torch.empty(0)  # the validation labels, once members are weighed
        self.result: nn.Module | None = None  # the fused network of a soup or WiSE-FT
        self.weights = self._normalised_weights()

    def _check_member(self, run_id: int, member: RunModel) -> None:
        if member.classes != self.bundle.classes:
            raise RunError(
                "bad_input",
                f"run {run_id} was trained on other classes than run {self.ids[0]}",
                "fuse runs of one dataset and one set of classes",
            )
        if member.image_size != self.bundle.image_size or member.channels != self.bundle.channels:
            raise RunError(
                "bad_input",
                f"run {run_id} saw other images ({member.image_size} px, {member.channels} "
                f"channels) than run {self.ids[0]}",
                "fuse runs trained on the same images",
            )

    def _normalised_weights(self) -> list[float]:
        weights = self.fusion.weights or [1.0] * len(self.members)
        return [w / sum(weights) for w in weights]

    def _autocast(self) -> Any:
        return autocast(self.device, self.amp)

    @torch.no_grad()
    def probabilities(
        self, model: nn.Module, adapter: InputAdapter, batches: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A network's class probabilities over a split, and the split's labels."""
        model.eval()
        all_probabilities, all_labels = [], []
        for images, labels in batches.epoch(0):
            images = adapter(images.contiguous(memory_format=self.memory_format))
            with self._autocast():
                logits = model(images)
            all_probabilities.append(logits.float().softmax(1))
            all_labels.append(labels)
            self.writer.heartbeat()
        return torch.cat(all_probabilities), torch.cat(all_labels)

    def accuracy(self, model: nn.Module, adapter: InputAdapter) -> float:
        probabilities, labels = self.probabilities(model, adapter, self.val_batches)
        return float((probabilities.argmax(1) == labels).float().mean())

    def weigh_members(self, steps: int) -> tuple[list[torch.Tensor], list[float]]:
        """Each member's validation probabilities and accuracy, the accuracy reported as a
        step of the fusion."""
        all_probabilities, accuracies = [], []
        for index, (run_id, member, adapter) in enumerate(
            zip(self.ids, self.members, self.adapters, strict=True), start=1
        ):
            probabilities, labels = self.probabilities(member.model, adapter, self.val_batches)
            accuracy = float((probabilities.argmax(1) == labels).float().mean())
            self.step(index, steps, f"run {run_id}", accuracy)
            all_probabilities.append(probabilities)
            accuracies.append(accuracy)
        self.val_labels = labels
        return all_probabilities, accuracies

    def started_event(self, steps: int) -> None:
        fusion = self.fusion
        total = sum(count_parameters(m.model)[0] for m in self.members)
        self.writer.emit(
            ev.STARTED,
            **process_facts(self.device),
            parameters=total if fusion.kind == "ensemble" else total // len(self.members),
            trainable_parameters=0,
            sizes=self.bundle.sizes(),
            classes=self.bundle.classes,
            image_size=self.bundle.image_size,
            amp=str(self.amp).replace("torch.", "") if self.amp else "off",
            channels_last=self.memory_format == torch.channels_last,
            steps_per_epoch=0,
            epochs=0,
            fusion={
                "kind": fusion.kind,
                "members": self.ids,
                "weights": fusion.weights,
                "greedy": fusion.greedy,
                "alpha": fusion.alpha,
                "steps": steps,
            },
        )
        for note in self.bundle.notes:
            self.writer.emit(ev.LOG, level="info", message=note)
        for note in self.notes:
            self.writer.emit(ev.LOG, level="warning", message=note)

    def step(
        self, step: int, steps: int, candidate: str, val_acc: float, kept: bool | None = None
    ) -> None:
        """Report one candidate the fusion weighed: a member, a soup or a mixing weight, and
        whether it was kept (None where there was no choice to make)."""
        self.writer.emit(
            ev.FUSION, step=step, steps=steps, candidate=candidate, val_acc=val_acc, kept=kept
        )

    # The fused network

    def network_with(self, state: dict[str, torch.Tensor], like: RunModel) -> nn.Module:
        """A copy of `like`'s network holding `state`, with BatchNorm measured again."""
        model = copy.deepcopy(like.model)
        model.load_state_dict(state)
        model.to(self.device, memory_format=self.memory_format)
        self.recompute_batchnorm(model, self.adapters[0])
        return model

    @torch.no_grad()
    def recompute_batchnorm(self, model: nn.Module, adapter: InputAdapter) -> None:
        """Measure every BatchNorm's mean and variance again, over training images.

        Averaged weights give features whose statistics are no average of the members'
        (Izmailov et al. 2018, for SWA); the training images, augmented as in training,
        give the right ones. Cumulative averages (momentum None) weigh every batch alike.
        """
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
        model.train()
        seen = 0
        for images, _ in self.train_batches.epoch(1):
            with self._autocast():
                model(adapter(images.contiguous(memory_format=self.memory_format)))
            seen += len(images)
            self.writer.heartbeat()
            if seen >= BATCHNORM_IMAGES:
                break
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()

    def save(self, val_acc: float) -> None:
        """Write the fused network as best.pt and last.pt, a checkpoint like any run's."""
        assert self.result is not None
        first = self.members[0]
        payload = {
            "format": 1,
            "arch": first.arch,
            "classes": self.bundle.classes,
            "in_channels": self.bundle.channels,
            "width": first.width,
            "small_stem": first.small_stem,
            "image_size": self.bundle.image_size,
            "mean": list(first.mean),
            "std": list(first.std),
            "epoch": 0,
            "best_val_acc": val_acc,
            "model": {k: v.cpu() for k, v in self.result.state_dict().items()},
            "spec": first.spec.to_json(),
        }
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        last, best = self.checkpoints / "last.pt", self.checkpoints / "best.pt"
        save_checkpoint(last, payload)
        share_file(last, best)
        self.writer.emit(ev.CHECKPOINT, path=str(best), name="best", epoch=0, best=True)
