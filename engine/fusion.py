"""Fusing finished runs: ensembles (averaged probabilities), model soups (averaged weights,
uniform or greedy; Wortsman et al. 2022) and WiSE-FT (a fine-tuned run's backbone mixed
with its starting weights; Wortsman et al. 2022)."""

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.contract import events as ev
from engine.contract.errors import RunError
from engine.contract.events import EventWriter
from engine.contract.spec import FusionSpec
from engine.contract.stopping import StopRequest
from engine.data.datasets import DatasetBundle, load_dataset, make_batches
from engine.models import count_parameters
from engine.train.checkpoints import save_checkpoint, share_file
from engine.train.loop import (
    amp_dtype,
    autocast,
    pick_device,
    process_facts,
    report_failures,
    use_all_cores,
)
from engine.train.metrics import classification_report
from engine.transfer.weights import InputAdapter, RunModel, head_prefixes, load_run_model, source_of

# BatchNorm statistics of averaged weights are measured again on this many training images
# (or all of them, if fewer): enough for stable means and variances, a few seconds at most.
BATCHNORM_IMAGES = 4096
# The WiSE-FT mixing weights `--with-init auto` tries on the validation data.
WISE_ALPHAS = tuple(step / 10 for step in range(11))


def run_fusion(
    fusion: FusionSpec, events_path: Path, run_dir: Path, stop: StopRequest | None = None
) -> int:
    """Make the fused run `fusion` describes, reporting it as events; returns the exit code."""
    writer = EventWriter(events_path)
    own = StopRequest().install() if stop is None else None

    def fuse() -> int:
        started = time.time()
        job = Fusion(fusion, writer, run_dir, stop or own)
        val_acc, outcome = job.fuse()
        if job.stop.requested:
            writer.emit(ev.FINISHED, status="stopped", best_val_acc=None, test=None)
            return 3
        test = job.test()
        writer.emit(
            ev.FINISHED,
            status="completed",
            best_val_acc=val_acc,
            best_epoch=0,
            test=test,
            seconds=time.time() - started,
            fusion=outcome,
        )
        return 0

    try:
        return report_failures(writer, fuse, batch_size=None)
    finally:
        if own is not None:
            own.restore()


class Fusion:
    """One fused run: the members' networks, the data they share, and the ways to fuse them."""

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

    def fuse(self) -> tuple[float, dict[str, Any]]:
        """Fuse the members as asked; returns the validation accuracy and what was chosen."""
        kind = self.fusion.kind
        if kind == "ensemble":
            return self.ensemble()
        if kind == "wise-ft":
            return self.wise_ft()
        if self.fusion.greedy:
            return self.greedy_soup()
        return self.uniform_soup()

    # Ensembles

    def ensemble_probabilities(self, batches: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted mean of the members' probabilities over a split, and its labels."""
        total, labels = None, None
        for member, adapter, weight in zip(self.members, self.adapters, self.weights, strict=True):
            probabilities, labels = self.probabilities(member.model, adapter, batches)
            total = weight * probabilities if total is None else total + weight * probabilities
        assert total is not None and labels is not None
        return total, labels

    def ensemble(self) -> tuple[float, dict[str, Any]]:
        steps = len(self.members) + 1
        self.started_event(steps)
        members, _ = self.weigh_members(steps)
        probabilities = sum(w * p for w, p in zip(self.weights, members, strict=True))
        val_acc = float((probabilities.argmax(1) == self.val_labels).float().mean())
        self.step(steps, steps, "ensemble", val_acc)
        return val_acc, {"members": self.ids, "weights": self.weights}

    # Weight averaging

    def _same_network(self) -> None:
        first = self.members[0].model.state_dict()
        for run_id, member in zip(self.ids[1:], self.members[1:], strict=True):
            other = member.model.state_dict()
            if other.keys() != first.keys() or any(other[k].shape != first[k].shape for k in first):
                raise RunError(
                    "bad_input",
                    f"run {run_id} is not the same network as run {self.ids[0]} "
                    f"({member.arch} vs {self.members[0].arch}, or another width or head)",
                    "average runs of one architecture, width and head",
                )

    def average(self, chosen: list[int], weights: list[float] | None = None) -> nn.Module:
        """The first chosen member's network holding the (weighted) mean of the chosen
        members' weights, its BatchNorm statistics measured again on training data."""
        weights = weights or [1 / len(chosen)] * len(chosen)
        states = [self.members[i].model.state_dict() for i in chosen]
        mean = {}
        for key, tensor in states[0].items():
            if tensor.is_floating_point():
                mean[key] = sum(w * s[key].float() for w, s in zip(weights, states, strict=True))
                mean[key] = mean[key].to(tensor.dtype)
            else:  # counters such as num_batches_tracked
                mean[key] = tensor
        return self.network_with(mean, self.members[chosen[0]])

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

    def uniform_soup(self) -> tuple[float, dict[str, Any]]:
        self._same_network()
        steps = len(self.members) + 1
        self.started_event(steps)
        self.weigh_members(steps)
        self.result = self.average(list(range(len(self.members))), self.weights)
        val_acc = self.accuracy(self.result, self.adapters[0])
        self.step(steps, steps, "soup", val_acc)
        self.save(val_acc)
        return val_acc, {"kept": self.ids, "weights": self.weights}

    def greedy_soup(self) -> tuple[float, dict[str, Any]]:
        """Wortsman et al.'s greedy soup: members in order of validation accuracy, each kept
        only if the soup's validation accuracy does not drop with it."""
        self._same_network()
        count = len(self.members)
        steps = 2 * count - 1
        self.started_event(steps)
        _, accuracies = self.weigh_members(steps)
        order = sorted(range(count), key=lambda i: -accuracies[i])
        kept, best_acc = [order[0]], accuracies[order[0]]
        self.result = self.members[order[0]].model
        for index, candidate in enumerate(order[1:], start=count + 1):
            if self.stop.requested:
                break
            soup = self.average([*kept, candidate])
            val_acc = self.accuracy(soup, self.adapters[0])
            keep = val_acc >= best_acc
            self.step(index, steps, f"+ run {self.ids[candidate]}", val_acc, keep)
            if keep:
                kept.append(candidate)
                best_acc, self.result = val_acc, soup
        self.save(best_acc)
        return best_acc, {"kept": [self.ids[i] for i in kept]}

    # WiSE-FT

    def wise_ft(self) -> tuple[float, dict[str, Any]]:
        """(1 - alpha)·start + alpha·fine-tuned over the backbone; the fine-tuned head stays."""
        member, run_id = self.members[0], self.ids[0]
        if member.spec.init == "scratch":
            raise RunError(
                "bad_input",
                f"run {run_id} started from scratch, so there are no starting weights to mix",
                "use --with-init on a run fine-tuned from imagenet, run:ID or file:PATH",
            )
        start, _, _ = source_of(member.spec)
        assert start is not None
        tuned = member.model.state_dict()
        heads = head_prefixes(member.model)
        shared = [
            key
            for key, tensor in tuned.items()
            if not key.startswith(heads)
            and tensor.is_floating_point()
            and key in start
            and start[key].shape == tensor.shape
        ]

        def mix(alpha: float) -> nn.Module:
            if alpha == 1:  # the fine-tuned run itself, its BatchNorm statistics as trained
                return member.model
            state = dict(tuned)
            for key in shared:
                mixed = (1 - alpha) * start[key].float().to(self.device) + alpha * tuned[key]
                state[key] = mixed.to(tuned[key].dtype)
            return self.network_with(state, member)

        alphas = [self.fusion.alpha] if self.fusion.alpha is not None else list(WISE_ALPHAS)
        steps = len(alphas)
        self.started_event(steps)
        best_alpha, best_acc = alphas[-1], -1.0
        # From the fine-tuned end down, so a tie keeps more of the fine-tuned weights.
        for index, alpha in enumerate(sorted(alphas, reverse=True), start=1):
            if self.stop.requested:
                break
            candidate = mix(alpha)
            val_acc = self.accuracy(candidate, self.adapters[0])
            self.step(index, steps, f"alpha {alpha:g}", val_acc)
            if val_acc > best_acc:
                best_alpha, best_acc, self.result = alpha, val_acc, candidate
        if len(alphas) > 1:
            self.writer.emit(
                ev.LOG,
                level="info",
                message=f"alpha {best_alpha:g} chosen: the best validation accuracy",
            )
        self.save(best_acc)
        return best_acc, {"alpha": best_alpha, "mixed_tensors": len(shared)}

    # Results

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

    def test(self) -> dict[str, Any]:
        """Test metrics of the fused run (the ensemble's log-probabilities stand for logits)."""
        if self.result is None:
            probabilities, labels = self.ensemble_probabilities(self.test_batches)
        else:
            probabilities, labels = self.probabilities(
                self.result, self.adapters[0], self.test_batches
            )
        report = classification_report(
            probabilities.clamp_min(1e-12).log(), labels, self.bundle.classes
        )
        report["epoch"] = 0
        return report
