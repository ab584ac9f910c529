"""The training loop: a run's epochs and steps, its policy's changes, checkpoints and events."""

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.contract import events as ev
from engine.contract.errors import RunError
from engine.contract.events import EventWriter
from engine.contract.spec import RunSpec
from engine.contract.stopping import StopRequest
from engine.data.batches import make_batches
from engine.data.datasets import DatasetBundle, load_dataset
from engine.distributed import STOP_CHECK_STEPS, Ranks, any_rank, total
from engine.train.checkpoints import (
    damaged_checkpoint,
    last_checkpoint,
    read_checkpoint,
    restore_random_state,
    save_epoch,
)
from engine.train.devices import (
    amp_dtype,
    autocast,
    peak_memory_mb,
    pick_device,
    use_all_cores,
)
from engine.train.early_stopping import EarlyStopping
from engine.train.ema import average_of, epoch_scores, restore_average
from engine.train.evaluation import loss_and_accuracy, predict, test_report
from engine.train.mixing import Labels, hits, mixed_batches
from engine.train.network import build_network
from engine.train.objective import make_objective
from engine.train.optimisation import (
    StartingPoint,
    lr_factor,
    make_optimizer,
    parameter_groups,
    take_step,
)
from engine.train.records import best_payload, checkpoint_payload
from engine.transfer.freeze import freeze_schedule, policy_summary
from engine.transfer.probe import fit_head, probe_applies
from engine.use.mistakes import keep_test_predictions

PROGRESS_INTERVAL_S = 0.25


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
        self.bundle: DatasetBundle = bundle or load_dataset(
            spec, lambda line: writer.emit(ev.LOG, level="info", message=line)
        )
        network = build_network(spec, self.bundle, self.device)
        self.model, self.init_report = network.model, network.init_report
        self.small_stem, self.channels_last = network.small_stem, network.channels_last
        self.memory_format = network.memory_format
        # The compiled module shares its parameters with `self.model`, so checkpoints and
        # state dicts stay those of the plain model.
        self.forward = torch.compile(self.model) if spec.compile else self.model
        self.amp = amp_dtype(spec, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        # Learning without forgetting adds the old head, so before the parts are read.
        self.objective = make_objective(
            spec, self.model, self.bundle, self.device, self.memory_format
        )
        # the head fitted by the converged probe (`head`, `lp-ft`) before the first epoch
        self.probe_images = len(self.bundle.train) + len(self.bundle.val)
        self.probe = probe_applies(spec, self.model, self.probe_images)
        self.freeze = freeze_schedule(self.model, spec, self.probe)
        self.freeze.apply_at(self.model, 1)
        self._wrap_for_ranks()
        self.ema = average_of(spec, self.model)  # None without --ema-decay
        self.optimizer = make_optimizer(parameter_groups(self.model, spec), spec, self.device)
        self.starting_point = StartingPoint(self.model, spec.l2sp) if spec.l2sp > 0 else None
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
        self.best_val_acc = -1.0
        self.best_epoch = 0
        self.best_weights = "raw"  # or "ema": which weights best.pt holds
        self.early_stopping = EarlyStopping.for_spec(spec)
        # `head` fitted by the converged probe is trained by it alone: one epoch.
        self.epochs = 1 if self.probe and spec.freeze == "head" else spec.epochs
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

    def agreed(self, flag: bool) -> bool:
        """Whether `flag` is set in this process, or on several ranks in any of them: how
        they agree to stop (asked to, or by early stopping) at the same step."""
        return flag if self.ranks is None else any_rank(flag, self.device)

    def update_policy(self, epoch: int) -> None:
        """Let the freeze policy thaw what it thaws at `epoch` and set the learning rates it
        changes; where that changed what trains, train through DDP again and say so."""
        trainable = self.freeze.at_epoch_start(self.model, self.optimizer, self.scheduler, epoch)
        if trainable is None:
            return
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
        state = last_checkpoint(self.checkpoints, self.device)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.step, self.best_val_acc = state["step"], state["best_val_acc"]
            self.best_epoch, self.elapsed_before = state["best_epoch"], state["elapsed"]
            self.first_epoch = state["epoch"] + 1
            self.early_stopping.restore(state.get("early_stopping"))
            restore_average(self, state)
            self.freeze.apply_at(self.model, state["epoch"])
            restore_random_state(state["rng"], self.device)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            # a file that loads but is not this run's: keys missing, shapes that differ
            reason = f"no {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
            raise damaged_checkpoint(self.checkpoints / "last.pt", reason) from None
        self._wrap_for_ranks()

    def _autocast(self) -> Any:
        return autocast(self.device, self.amp)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the model's memory format (a cropped batch comes in neither)."""
        return images.contiguous(memory_format=self.memory_format)

    def _loss(
        self, images: torch.Tensor, labels: Labels
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The logits of a batch, its loss and, when distilling, the loss's parts."""
        with self._autocast():
            logits = self.forward(images)
            loss, parts = self.objective.loss(logits, images, labels)
        return logits, loss, parts

    def train_epoch(self, epoch: int) -> tuple[float, float, dict[str, float]]:
        """One pass over the training data, mixed where the spec says (mixup, CutMix);
        returns mean loss, accuracy (of a mixed image, against its label of larger weight)
        and, when distilling, the means of the loss's parts (`ce_loss`, `kd_loss`)."""
        self.model.train()
        self.freeze.after_train_mode(self.model)
        loss_sum = torch.zeros((), device=self.device)
        parts_sum = torch.zeros(2, device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        window_start, window_seen, last_report = time.perf_counter(), 0, time.perf_counter()
        batches = mixed_batches(self.train_batches, self.spec, epoch)
        for index, (images, labels) in enumerate(batches):
            logits, loss, parts = self._loss(self._prepare(images), labels)
            objective = loss
            if self.starting_point is not None:
                objective = loss + self.starting_point.penalty()
            take_step(objective, self.optimizer, self.scaler, self.model, self.spec.grad_clip)
            if self.ema is not None:
                self.ema.update()
            self.scheduler.step()
            self.step += 1
            batch = len(labels)
            seen += batch
            window_seen += batch
            loss_sum += loss.detach().float() * batch
            if parts is not None:
                parts_sum += parts * batch
            correct += hits(logits, labels)
            now = time.perf_counter()
            last_step = index + 1 == self.steps_per_epoch
            if self.ranks is None:
                self.stopping = self.stop.requested
            elif (index + 1) % STOP_CHECK_STEPS == 0 or last_step:
                self.stopping = self.agreed(self.stop.requested)
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
                    **self.objective.mean_parts(parts_sum, seen),
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
        return mean_loss, float(correct) / max(seen, 1), self.objective.mean_parts(parts_sum, seen)

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise RunError(
                "diverged",
                f"the loss became {loss} by step {self.step}",
                "try a lower --lr, --grad-clip 1.0 or --amp off",
            )

    def evaluate(self, batches: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's logits and the labels over a whole split, in order."""
        self.model.eval()
        return predict(self.predict_batch, batches, self.ranks, self.writer.heartbeat)

    def predict_batch(self, images: torch.Tensor) -> torch.Tensor:
        """The logits of a batch of images, in eval mode as the model is set."""
        with self._autocast():
            return self.forward(self._prepare(images))

    def save(self, epoch: int, improved: bool, elapsed: float) -> None:
        """Write the epoch's checkpoints. On several ranks, each machine's first rank writes
        (their weights are the same)."""
        if self.writes:
            payload = checkpoint_payload(self, epoch, elapsed)
            best = best_payload(self, payload)  # None: best.pt is a copy of last.pt
            save_epoch(self.checkpoints, payload, epoch, improved, self.writer, best)

    def fit(self) -> str:
        """Train for the spec's epochs or until early stopping ends it: `completed`, or
        `stopped` where a stop was asked for."""
        started = time.perf_counter() - self.elapsed_before
        for epoch in range(self.first_epoch, self.epochs + 1):
            self.writer.emit(ev.EPOCH_STARTED, epoch=epoch, epochs=self.epochs)
            self.update_policy(epoch)
            epoch_start = time.perf_counter()
            probe = fit_head(self) if self.probe and epoch == 1 else None
            if probe is not None and self.ema is not None:
                self.ema.restore(None)  # the average starts from the fitted head
            if probe is not None and self.spec.freeze == "head":  # lp-ft fine-tunes on
                train_loss, train_acc, loss_parts = probe.train_loss, probe.train_acc, {}
            else:
                train_loss, train_acc, loss_parts = self.train_epoch(epoch)
            val_loss, val_acc = loss_and_accuracy(*self.evaluate(self.val_batches))
            self._check_finite(val_loss)  # weights gone to inf can still give a finite train loss
            scores = epoch_scores(self, val_loss, val_acc)  # and the average's, with one
            improved = scores.acc > self.best_val_acc
            if improved:
                self.best_val_acc, self.best_epoch = scores.acc, epoch
                self.best_weights = scores.weights
            early = self.early_stopping.update(epoch, scores.loss, scores.acc)
            self.writer.emit(
                ev.EPOCH_ENDED,
                epoch=epoch,
                epochs=self.epochs,
                train_loss=train_loss,
                train_acc=train_acc,
                **scores.fields(),
                lr={g["name"]: g["lr"] for g in self.optimizer.param_groups},
                seconds=time.perf_counter() - epoch_start,
                elapsed=time.perf_counter() - started,
                peak_memory_mb=peak_memory_mb(self.device),
                partial=self.stopping,
                **{f"train_{name}": value for name, value in loss_parts.items()},
            )
            self.save(epoch, improved, time.perf_counter() - started)
            self.writer.sync()
            self.stopping = self.agreed(self.stop.requested)
            if self.stopping:
                return "stopped"
            if epoch < self.epochs and self.agreed(early is not None):
                self.writer.emit(ev.LOG, level="info", message=self.early_stopping.stop_at(epoch))
                return "completed"
        return "completed"

    def test(self) -> dict[str, Any]:
        """Test metrics of the best checkpoint."""
        if self.ranks is not None:
            torch.distributed.barrier()  # this machine's first rank has written best.pt
        best = read_checkpoint(self.checkpoints / "best.pt", self.device)
        self.model.load_state_dict(best["model"])
        logits, labels = self.evaluate(self.test_batches)
        report = test_report(
            logits,
            labels,
            self.bundle.classes,
            self.best_epoch,
            self.objective.old_task,
            self._autocast,
        )
        if "weights" in best:  # a run with an average of its weights: which were tested
            report["weights"] = best["weights"]
        if self.writes:  # the report names the file of each test image's prediction
            run_dir = self.checkpoints.parent
            report.update(keep_test_predictions(run_dir, logits, labels, self.bundle, self.writer))
        return report
