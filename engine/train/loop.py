"""The training loop: device, optimiser and schedule, evaluation, checkpoints, signals, events."""

import math
import os
import platform
import resource
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from engine.contract import events as ev
from engine.contract.errors import RunError, UnreadableImage
from engine.contract.events import EventWriter
from engine.contract.locate import DatasetMissing
from engine.contract.spec import RunSpec, SpecError
from engine.contract.stopping import StopRequest
from engine.data.datasets import DatasetBundle, load_dataset, make_batches
from engine.distributed import (
    RANK_LAUNCHER_PID,
    STOP_CHECK_STEPS,
    NoEvents,
    RankFailures,
    Ranks,
    any_rank,
    gathered,
    total,
)
from engine.models import build_model, count_parameters
from engine.train.checkpoints import keep_sources, save_checkpoint, share_file
from engine.train.metrics import classification_report
from engine.transfer.distill import OldTask, Teachers, distillation_loss
from engine.transfer.freeze import (
    apply_freeze,
    parse_policy,
    parts_of,
    policy_summary,
    set_batchnorm_modes,
    trainable_parts,
)
from engine.transfer.weights import load_initial_weights, replace_head

PROGRESS_INTERVAL_S = 0.25
# A stage that `gradual` thaws trains at this share of the backbone's learning rate, as
# Lightning's BackboneFinetuning does, so fresh gradients do not wreck its features.
GRADUAL_THAW_LR_SCALE = 0.1
ONECYCLE_WARMUP_SHARE = 0.25


def pick_device(name: str) -> torch.device:
    """The torch device for a spec's device name; a device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError(
                "device_missing",
                f"device {name} is not available: this machine has no usable CUDA GPU",
                "use --device cpu, or --device auto to take the best device there is",
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise RunError(
                "device_missing",
                f"device {name} is not available: there are {torch.cuda.device_count()} CUDA GPUs",
                "`resnet-tui devices` lists them",
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise RunError(
            "device_missing",
            "device mps is not available on this machine",
            "use --device cpu, or --device auto",
        )
    return torch.device(name)


def use_all_cores(device: torch.device, processes: int = 1) -> None:
    """On the CPU, compute with every core this process may use (its share of them when
    `processes` train on this machine at once)."""
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        torch.set_num_threads(max(1, (cores or os.cpu_count() or 1) // processes))


def lr_factor(schedule: str, step: int, total: int, warmup: int, gamma: float) -> float:
    """The multiple of the peak learning rate at optimiser step `step` of `total`."""
    if schedule == "onecycle":
        warmup = max(1, int(total * ONECYCLE_WARMUP_SHARE))
        if step < warmup:
            return 0.04 + 0.96 * step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress)) * (1 - 1e-4) + 1e-4
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        return gamma ** sum(step >= total * milestone for milestone in (0.5, 0.75))
    return 1.0


def parameter_groups(model: nn.Module, spec: RunSpec) -> list[dict[str, Any]]:
    """Two groups a part, head first: weights that decay, norms and biases that do not.

    Every part is in the optimiser from the start, so a part that thaws later simply gets
    gradients; frozen parameters have none and are skipped. A backbone part learns at
    `--backbone-lr-scale` times the head's rate, times `--layer-decay` to the power of its
    depth below the head (timm's layer-wise decay: the last stage once, the stem most).
    With `--l2sp` the backbone's weights do not decay: the L2-SP penalty takes its place.
    """
    parts = parts_of(model)
    names = list(parts)
    groups = []
    for name in ["head", *reversed(names[:-1])]:
        depth = len(names) - 1 - names.index(name)
        scale = 1.0 if name == "head" else spec.backbone_lr_scale * spec.layer_decay**depth
        weight_decay = 0.0 if spec.l2sp > 0 and name != "head" else spec.decay
        decay, no_decay = [], []
        for module in parts[name]:
            for parameter in module.parameters():
                (no_decay if parameter.ndim <= 1 else decay).append(parameter)
        for params, group_decay in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                groups.append(
                    {
                        "name": name,
                        "params": params,
                        "weight_decay": group_decay,
                        "lr": spec.peak_lr * scale,
                    }
                )
    return groups


class StartingPoint:
    """L2-SP (Li et al. 2018): alpha/2 times the squared distance of the backbone's weights
    from where they started, added to the loss in place of weight decay on the backbone."""

    def __init__(self, model: nn.Module, alpha: float) -> None:
        self.alpha = alpha
        backbone = [
            module
            for name, modules in parts_of(model).items()
            if name != "head"
            for module in modules
        ]
        self.pairs = [
            (parameter, parameter.detach().clone())
            for module in backbone
            for parameter in module.parameters()
        ]

    def penalty(self) -> torch.Tensor:
        """The penalty over the parameters that train now (frozen ones cannot move)."""
        moving = [(p, start) for p, start in self.pairs if p.requires_grad]
        if not moving:
            return torch.zeros((), device=self.pairs[0][0].device)
        distance = torch.stack([(p.float() - start.float()).pow(2).sum() for p, start in moving])
        return 0.5 * self.alpha * distance.sum()


def make_optimizer(
    groups: list[dict[str, Any]], spec: RunSpec, device: torch.device | None = None
) -> torch.optim.Optimizer:
    """The spec's optimiser; on CUDA and CPU its fused form, one kernel for all parameters.

    On CPU the fused AdamW step of a ResNet-20 takes half the time of the default one, and
    the fused SGD step a fifth (measured with torch 2.14 on two cores).
    """
    fused = device is not None and device.type in ("cuda", "cpu")
    if spec.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=spec.peak_lr,
            momentum=spec.momentum,
            nesterov=spec.nesterov and spec.momentum > 0,
            fused=fused,
        )
    optimizer_class = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(groups, lr=spec.peak_lr, fused=fused)


def amp_dtype(spec: RunSpec, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision."""
    if spec.amp == "off" or (spec.amp == "auto" and device.type != "cuda"):
        return None
    if spec.amp == "fp16":
        if device.type != "cuda":
            raise RunError("bad_input", "--amp fp16 needs a CUDA device", "use --amp bf16 or off")
        return torch.float16
    if spec.amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Mixed precision in `dtype` on `device`, or nothing for full precision."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    scale = 1 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_uuid(device: torch.device) -> str | None:
    """A CUDA device's UUID, which names it to NVML whatever CUDA_VISIBLE_DEVICES says."""
    if device.type != "cuda":
        return None
    return str(torch.cuda.get_device_properties(device).uuid)


def process_facts(device: torch.device) -> dict[str, Any]:
    """What every `started` event says of where it runs: device, versions, threads, pid (of
    the process to signal: under torchrun, the rank launcher)."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "device_uuid": device_uuid(device),
        "torch_version": torch.__version__,
        "torchvision_version": metadata.version("torchvision"),
        "threads": torch.get_num_threads(),
        "pid": int(os.environ.get(RANK_LAUNCHER_PID, os.getpid())),
    }


class Trainer:
    """One run: everything it holds between epochs, and the steps of an epoch."""

    def __init__(
        self,
        spec: RunSpec,
        writer: EventWriter,
        run_dir: Path,
        stop: StopRequest,
        bundle: DatasetBundle | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        """Set up the run; `bundle` stands in for the spec's dataset (benchmarks use it).
        With `ranks` this process is one rank of a run on several (DDP)."""
        self.spec = spec
        self.writer = writer
        self.checkpoints = run_dir / "checkpoints"
        self.stop = stop
        self.stopping = False
        self.ranks = ranks
        self.device = pick_device(ranks.device_name(spec) if ranks else spec.device)
        use_all_cores(self.device, ranks.local_world if ranks else 1)
        if ranks:
            ranks.join(self.device)
        shard = (ranks.rank, ranks.world) if ranks else (0, 1)
        torch.manual_seed(spec.seed)
        self.bundle: DatasetBundle = bundle or load_dataset(spec)
        small_stem = (
            spec.small_stem if spec.small_stem is not None else self.bundle.image_size <= 64
        )
        self.model = build_model(
            spec.arch, len(self.bundle.classes), self.bundle.channels, spec.width, small_stem
        )
        if spec.head != "linear" or spec.head_init != "default":
            replace_head(self.model, spec.head, spec.head_init)
        self.init_report = load_initial_weights(self.model, spec)
        source_mean = self.init_report.mean
        if source_mean is not None and len(source_mean) == self.bundle.channels:
            # Inputs are normalised as the source's were, so its features see what they know.
            self.bundle.mean, self.bundle.std = self.init_report.mean, self.init_report.std
        if spec.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model = self.model.to(self.device)
        self.channels_last = (
            spec.channels_last if spec.channels_last is not None else self.device.type == "cuda"
        )
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        # The compiled module shares its parameters with `self.model`, so checkpoints and
        # state dicts stay those of the plain model.
        self.forward = torch.compile(self.model) if spec.compile else self.model
        self.amp = amp_dtype(spec, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.old_task = (
            OldTask(self.model, self._source_checkpoint(), spec, self.device, self.memory_format)
            if spec.lwf > 0
            else None
        )
        self.policy = parse_policy(spec.freeze)
        self.part_names = list(parts_of(self.model))
        self.trainable = self.trainable_in(1)
        apply_freeze(self.model, self.trainable)
        self._wrap_for_ranks()
        self.optimizer = make_optimizer(parameter_groups(self.model, spec), spec, self.device)
        self.starting_point = StartingPoint(self.model, spec.l2sp) if spec.l2sp > 0 else None
        self.teachers = self._load_teachers() if spec.teacher else None
        eval_batch = spec.eval_batch_size or 2 * spec.batch_size
        self.train_batches = make_batches(
            self.bundle.train, self.bundle, spec.batch_size, self.device, True, spec, shard
        )
        self.val_batches = make_batches(
            self.bundle.val, self.bundle, eval_batch, self.device, False, spec, shard
        )
        self.test_batches = make_batches(
            self.bundle.test, self.bundle, eval_batch, self.device, False, spec, shard
        )
        self.steps_per_epoch = len(self.train_batches)
        self.total_steps = spec.epochs * self.steps_per_epoch
        warmup = int(spec.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(spec.schedule, step, self.total_steps, warmup, spec.lr_gamma),
        )
        self.small_stem = small_stem
        self.best_val_acc = -1.0
        self.best_epoch = 0
        self.step = 0
        self.first_epoch = 1
        self.elapsed_before = 0.0  # training seconds of the processes before a resume

    def _wrap_for_ranks(self) -> None:
        """On several ranks, train through DDP over the parameters that train now: frozen
        ones are left out, so they trip no unused-parameter check, and a policy that thaws
        more wraps the model again."""
        if self.ranks is None:
            return
        ddp = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device] if self.device.type == "cuda" else None
        )
        self.forward = torch.compile(ddp) if self.spec.compile else ddp

    @property
    def processes(self) -> int:
        """How many processes train this run: 1, or its ranks."""
        return self.ranks.world if self.ranks else 1

    @property
    def writes(self) -> bool:
        """Whether this process reports: the only one, or its machine's first rank."""
        return self.ranks is None or self.ranks.writes

    def agreed_stop(self) -> bool:
        """Whether to stop now: asked of this process, or on several ranks of any of them."""
        if self.ranks is None:
            return self.stop.requested
        return any_rank(self.stop.requested, self.device)

    def _source_checkpoint(self) -> Path:
        """The checkpoint file `--init run:ID` or `file:PATH` stands for."""
        spec = self.spec
        return Path(spec.init_checkpoint or spec.init.removeprefix("file:"))

    def _load_teachers(self) -> Teachers:
        spec = self.spec
        if not spec.teacher_checkpoints or len(spec.teacher_checkpoints) != len(spec.teacher or []):
            raise RunError(
                "bad_input",
                "--teacher was not resolved to checkpoints",
                "launch it with resnet-tui, which finds the teachers' checkpoints in the store",
            )
        return Teachers(
            spec.teacher_checkpoints,
            spec.teacher or [],
            self.bundle.classes,
            self.bundle.channels,
            self.bundle.image_size,
            self.bundle.mean,
            self.bundle.std,
            self.device,
            self.memory_format,
        )

    def trainable_in(self, epoch: int) -> list[str]:
        spec = self.spec
        return trainable_parts(
            self.policy, self.part_names, epoch, spec.unfreeze_every, spec.probe_epochs
        )

    def update_policy(self, epoch: int) -> None:
        """Thaw what the policy thaws at `epoch`, set the learning rates, and say so.

        A stage that `gradual` thaws joins at `GRADUAL_THAW_LR_SCALE` times the backbone's
        rate; when `lp-ft` ends its probe, every part fine-tunes at `--ft-lr-scale` times
        its rate.
        """
        trainable = self.trainable_in(epoch)
        if epoch > 1 and trainable == self.trainable:
            return
        if self.policy.name == "gradual" and epoch > 1:
            scale = {
                part: GRADUAL_THAW_LR_SCALE for part in trainable if part not in self.trainable
            }
        elif self.policy.name == "lp-ft" and epoch > 1:
            scale = dict.fromkeys(self.part_names, self.spec.ft_lr_scale)
        else:
            scale = {}
        for index, group in enumerate(self.optimizer.param_groups):
            factor = scale.get(group["name"], 1.0)
            self.scheduler.base_lrs[index] *= factor
            group["lr"] *= factor
        self.trainable = trainable
        apply_freeze(self.model, trainable)
        set_batchnorm_modes(self.model, trainable, self.spec.bn)
        if epoch > 1:
            self._wrap_for_ranks()
        self.writer.emit(
            ev.POLICY,
            epoch=epoch,
            policy=self.spec.freeze,
            lr={g["name"]: g["lr"] for g in self.optimizer.param_groups if g["name"] in trainable},
            **policy_summary(self.model, trainable),
        )

    def resume(self) -> None:
        """Continue from checkpoints/last.pt: weights, optimiser, schedule, gradient scaler,
        the freeze policy's state, the random number generators and the epoch counter.

        The policy's state is the parts that trained in the checkpoint's epoch; the learning
        rates it changed are in the optimiser's and the schedule's states. A run stopped in
        the middle of an epoch goes on with the next one.
        """
        path = self.checkpoints / "last.pt"
        if not path.is_file():
            raise RunError(
                "bad_input",
                f"there is no checkpoint to resume from ({path} is missing)",
                "the run ended before its first epoch; launch it again instead",
            )
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.best_val_acc = state["step"], state["best_val_acc"]
        self.best_epoch, self.elapsed_before = state["best_epoch"], state["elapsed"]
        self.first_epoch = state["epoch"] + 1
        self.trainable = self.trainable_in(state["epoch"])
        apply_freeze(self.model, self.trainable)
        self._wrap_for_ranks()
        torch.set_rng_state(state["rng"]["cpu"].cpu())
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)

    def started_event(self) -> None:
        """The run's first event, then the dataset's notes as `log` events."""
        total, trainable = count_parameters(self.model)
        self.writer.emit(
            ev.STARTED,
            **process_facts(self.device),
            parameters=total,
            trainable_parameters=trainable,
            sizes=self.bundle.sizes(),
            classes=self.bundle.classes,
            image_size=self.bundle.image_size,
            amp=str(self.amp).replace("torch.", "") if self.amp else "off",
            channels_last=self.channels_last,
            steps_per_epoch=self.steps_per_epoch,
            epochs=self.spec.epochs,
            init=self.init_report.as_event(),
            processes=self.processes,
            nodes=self.ranks.nodes if self.ranks else 1,
            resumed_from_epoch=self.first_epoch - 1,
            best_val_acc=self.best_val_acc if self.best_val_acc >= 0 else None,
            distillation=self._distillation_info(),
        )
        for note in self.bundle.notes:
            self.writer.emit(ev.LOG, level="info", message=note)

    def _distillation_info(self) -> dict[str, Any] | None:
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

    def _autocast(self) -> Any:
        return autocast(self.device, self.amp)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the model's memory format (a cropped batch comes in neither)."""
        return images.contiguous(memory_format=self.memory_format)

    def _loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The logits of a batch and its loss; when distilling (from teachers, or from the
        source's old task with --lwf) also the loss's CE and KD parts."""
        spec = self.spec
        with self._autocast():
            logits = self.forward(images)
            if self.old_task is not None:
                new = F.cross_entropy(logits, labels, label_smoothing=spec.label_smoothing)
                old = self.old_task.loss(images)
                loss = spec.lwf * old + (1 - spec.lwf) * new
                return logits, loss, torch.stack([new.detach().float(), old.detach()])
            if self.teachers is None:
                loss = F.cross_entropy(logits, labels, label_smoothing=spec.label_smoothing)
                return logits, loss, None
            loss, cross_entropy, kd = distillation_loss(
                logits,
                self.teachers.logits(images),
                labels,
                spec.kd_alpha,
                spec.kd_temperature,
                spec.label_smoothing,
            )
        return logits, loss, torch.stack([cross_entropy.detach(), kd.detach()])

    def train_epoch(self, epoch: int) -> tuple[float, float, dict[str, float]]:
        """One pass over the training data; returns mean loss, accuracy and, when
        distilling, the means of the loss's parts (`ce_loss`, `kd_loss`)."""
        self.model.train()
        set_batchnorm_modes(self.model, self.trainable, self.spec.bn)
        loss_sum = torch.zeros((), device=self.device)
        parts_sum = torch.zeros(2, device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        window_start, window_seen, last_report = time.perf_counter(), 0, time.perf_counter()
        for index, (images, labels) in enumerate(self.train_batches.epoch(epoch)):
            logits, loss, parts = self._loss(self._prepare(images), labels)
            objective = loss
            if self.starting_point is not None:
                objective = loss + self.starting_point.penalty()
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(objective).backward()
            if self.spec.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            batch = len(labels)
            seen += batch
            window_seen += batch
            loss_sum += loss.detach().float() * batch
            if parts is not None:
                parts_sum += parts * batch
            correct += (logits.argmax(1) == labels).sum()
            now = time.perf_counter()
            last_step = index + 1 == self.steps_per_epoch
            if self.ranks is None:
                self.stopping = self.stop.requested
            elif (index + 1) % STOP_CHECK_STEPS == 0 or last_step:
                self.stopping = self.agreed_stop()
            report = now - last_report >= PROGRESS_INTERVAL_S or last_step or self.stopping
            if report and self.writes:
                running_loss = float(loss_sum) / seen
                self._check_finite(running_loss)
                self.writer.emit(
                    ev.PROGRESS,
                    epoch=epoch,
                    step=index + 1,
                    steps=self.steps_per_epoch,
                    global_step=self.step,
                    loss=running_loss,
                    samples_per_s=window_seen * self.processes / max(now - window_start, 1e-9),
                    lr=self.optimizer.param_groups[0]["lr"],
                    **self._loss_parts(parts_sum, seen),
                )
                window_start, window_seen, last_report = now, 0, now
            if self.stopping:
                break
        if self.ranks is not None:
            sums = total(torch.stack([loss_sum, correct.float(), loss_sum.new_tensor(seen)]))
            loss_sum, correct, seen = sums[0], sums[1], int(sums[2])
            parts_sum = total(parts_sum)
        mean_loss = float(loss_sum) / max(seen, 1)
        self._check_finite(mean_loss)
        return mean_loss, float(correct) / max(seen, 1), self._loss_parts(parts_sum, seen)

    def _loss_parts(self, parts_sum: torch.Tensor, seen: int) -> dict[str, float]:
        """The means of a distilled loss's parts: cross-entropy on the labels, and the KD
        term (against the teachers, or with --lwf against the source on its old task)."""
        if self.teachers is None and self.old_task is None:
            return {}
        cross_entropy, kd = (parts_sum / max(seen, 1)).tolist()
        return {"ce_loss": cross_entropy, "kd_loss": kd}

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise RunError(
                "diverged",
                f"the loss became {loss} by step {self.step}",
                "try a lower --lr, --grad-clip 1.0 or --amp off",
            )

    @torch.no_grad()
    def evaluate(self, batches: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's logits and the labels over a whole split, in order."""
        self.model.eval()
        all_logits, all_labels = [], []
        for images, labels in batches.epoch(0):
            with self._autocast():
                all_logits.append(self.forward(self._prepare(images)).float())
            all_labels.append(labels)
            self.writer.heartbeat()
        logits, labels = torch.cat(all_logits), torch.cat(all_labels)
        if self.ranks is not None:
            return gathered(logits), gathered(labels)
        return logits, labels

    def checkpoint_payload(self, epoch: int, elapsed: float) -> dict[str, Any]:
        return {
            "format": 1,
            "arch": self.spec.arch,
            "classes": self.bundle.classes,
            "in_channels": self.bundle.channels,
            "width": self.spec.width,
            "small_stem": self.small_stem,
            "image_size": self.bundle.image_size,
            "mean": list(self.bundle.mean),
            "std": list(self.bundle.std),
            "epoch": epoch,
            "step": self.step,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "elapsed": elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device)
                if self.device.type == "cuda"
                else None,
            },
            "spec": self.spec.to_json(),
        }

    def save(self, epoch: int, improved: bool, elapsed: float) -> None:
        """Write last.pt; when the epoch improved, best.pt becomes the same file. On several
        ranks, each machine's first rank writes (their weights are the same)."""
        if not self.writes:
            return
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        last = self.checkpoints / "last.pt"
        save_checkpoint(last, self.checkpoint_payload(epoch, elapsed))
        self.writer.emit(ev.CHECKPOINT, path=str(last), name="last", epoch=epoch, best=False)
        if improved:
            best = self.checkpoints / "best.pt"
            share_file(last, best)
            self.writer.emit(ev.CHECKPOINT, path=str(best), name="best", epoch=epoch, best=True)

    def fit(self) -> str:
        """Train for the spec's epochs; returns `completed` or `stopped`."""
        started = time.perf_counter() - self.elapsed_before
        for epoch in range(self.first_epoch, self.spec.epochs + 1):
            self.writer.emit(ev.EPOCH_STARTED, epoch=epoch, epochs=self.spec.epochs)
            self.update_policy(epoch)
            epoch_start = time.perf_counter()
            train_loss, train_acc, loss_parts = self.train_epoch(epoch)
            logits, labels = self.evaluate(self.val_batches)
            val_loss = float(F.cross_entropy(logits, labels))
            val_acc = float((logits.argmax(1) == labels).float().mean())
            improved = val_acc > self.best_val_acc
            if improved:
                self.best_val_acc, self.best_epoch = val_acc, epoch
            self.writer.emit(
                ev.EPOCH_ENDED,
                epoch=epoch,
                epochs=self.spec.epochs,
                train_loss=train_loss,
                train_acc=train_acc,
                val_loss=val_loss,
                val_acc=val_acc,
                lr={g["name"]: g["lr"] for g in self.optimizer.param_groups},
                seconds=time.perf_counter() - epoch_start,
                elapsed=time.perf_counter() - started,
                peak_memory_mb=peak_memory_mb(self.device),
                partial=self.stopping,
                **{f"train_{name}": value for name, value in loss_parts.items()},
            )
            self.save(epoch, improved, time.perf_counter() - started)
            self.writer.sync()
            self.stopping = self.agreed_stop()
            if self.stopping:
                return "stopped"
        return "completed"

    def test(self) -> dict[str, Any]:
        """Test metrics of the best checkpoint."""
        if self.ranks is not None:
            torch.distributed.barrier()  # this machine's first rank has written best.pt
        best = torch.load(self.checkpoints / "best.pt", map_location=self.device, weights_only=True)
        self.model.load_state_dict(best["model"])
        logits, labels = self.evaluate(self.test_batches)
        report = classification_report(logits, labels, self.bundle.classes)
        report["epoch"] = self.best_epoch
        if self.old_task is not None:
            report["old_task"] = self.old_task.report(self._autocast)
        return report


def run(
    spec: RunSpec,
    events_path: Path,
    run_dir: Path,
    stop: StopRequest | None = None,
    resume: bool = False,
) -> int:
    """Run one spec to its end, reporting everything as events; returns the exit code.

    `stop` is the engine's installed stop flag; without one, SIGINT and SIGTERM are caught
    while the run lasts and the handlers found are put back when it returns. With `resume`
    the run continues from its last checkpoint (`Trainer.resume`).
    """
    if stop is not None:
        return _run(spec, events_path, run_dir, stop, resume)
    own = StopRequest().install()
    try:
        return _run(spec, events_path, run_dir, own, resume)
    finally:
        own.restore()


def _run(spec: RunSpec, events_path: Path, run_dir: Path, stop: StopRequest, resume: bool) -> int:
    ranks = Ranks.from_environment()
    writer: EventWriter | NoEvents = (
        EventWriter(events_path) if ranks is None or ranks.writes else NoEvents()
    )

    def train() -> int:
        started = time.time()
        if ranks is None or ranks.writes:
            keep_sources(spec, run_dir, resume)
        trainer = Trainer(spec, writer, run_dir, stop, ranks=ranks)
        if resume:
            trainer.resume()
        trainer.started_event()
        status = trainer.fit()
        test = trainer.test() if status == "completed" else None
        writer.emit(
            ev.FINISHED,
            status=status,
            best_val_acc=trainer.best_val_acc,
            best_epoch=trainer.best_epoch,
            test=test,
            seconds=trainer.elapsed_before + time.time() - started,
        )
        return 0 if status == "completed" else 3

    if ranks is None:
        return report_failures(writer, train, spec.batch_size)
    try:
        failures = RankFailures(ranks.failure_file(run_dir), writer)
        return report_failures(failures, train, spec.batch_size)
    finally:
        ranks.leave()


def report_failures(
    writer: EventWriter | NoEvents | RankFailures,
    work: Callable[[], int],
    batch_size: int | None,
) -> int:
    """Do `work`, turning any failure into an `error` event; close the log. Returns the exit
    code: `work`'s own, or 1 after a failure."""
    try:
        return work()
    except RunError as error:
        writer.emit(ev.ERROR, kind=error.kind, message=error.message, hint=error.hint)
    except SpecError as error:
        kind = "dataset_missing" if isinstance(error, DatasetMissing) else "bad_input"
        writer.emit(ev.ERROR, kind=kind, message=str(error), hint="")
    except UnreadableImage as error:
        writer.emit(
            ev.ERROR,
            kind="bad_data",
            message=_unreadable_image_message(error),
            hint="remove or replace the file",
        )
    except torch.OutOfMemoryError:
        if batch_size is None:
            message, hint = "out of memory", "fuse fewer runs at once, or use --device cpu"
        else:
            message = f"out of memory at batch size {batch_size}"
            hint = f"try --batch-size {max(1, batch_size // 2)} or --amp bf16"
        writer.emit(ev.ERROR, kind="out_of_memory", message=message, hint=hint)
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        lost = device_lost(error)
        if lost is not None:
            writer.emit(ev.ERROR, kind="device_lost", message=lost, hint=DEVICE_LOST_HINT)
            return 1
        # an engine bug: report it, with the traceback in engine.log
        writer.emit(
            ev.ERROR,
            kind="internal",
            message=f"{type(error).__name__}: {error}",
            hint="see engine.log in the run folder",
        )
    finally:
        writer.close()
    return 1


DEVICE_LOST_HINT = (
    "the last checkpoint is kept: check the GPU with nvidia-smi, then resume the run "
    "(resnet-tui resume --device moves it to another device)"
)


CUDA_ERROR_PREFIXES = ("CUDA error", "CUDA driver error", "CUDA-capable device")


def device_lost(error: Exception) -> str | None:
    """What happened, where `error` is the device failing under a run (gone, reset, an ECC
    error, a failed launch); None for anything else. A device-side assert is a bug, not a
    lost device."""
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    from_device = isinstance(error, torch.AcceleratorError) or (
        isinstance(error, RuntimeError) and first_line.startswith(CUDA_ERROR_PREFIXES)
    )
    if not from_device or "device-side assert" in text:
        return None
    return f"the device failed during the run: {first_line}"


def _unreadable_image_message(error: UnreadableImage) -> str:
    """The data module's one line, naming the file. Raised in a DataLoader worker, the error
    comes back with the worker's traceback as its text, that line last after the type name."""
    last_line = str(error).strip().splitlines()[-1]
    return last_line.removeprefix(f"{UnreadableImage.__module__}.{UnreadableImage.__name__}: ")
