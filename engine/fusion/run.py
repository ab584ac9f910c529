"""A fused run from start to end: the chosen way of fusing, then the test metrics, as events."""

import time
from pathlib import Path
from typing import Any

from engine.contract import events as ev
from engine.contract.events import EventWriter
from engine.contract.spec import FusionSpec
from engine.contract.stopping import StopRequest
from engine.fusion.ensemble import ensemble, ensemble_probabilities
from engine.fusion.members import Fusion
from engine.fusion.soups import greedy_soup, uniform_soup
from engine.fusion.wise_ft import wise_ft
from engine.train.failures import report_failures
from engine.train.metrics import classification_report
from engine.use.mistakes import keep_test_predictions


def run_fusion(
    fusion: FusionSpec, events_path: Path, run_dir: Path, stop: StopRequest | None = None
) -> int:
    """Make the fused run `fusion` describes, reporting it as events; returns the exit code."""
    writer = EventWriter(events_path)
    own = StopRequest().install() if stop is None else None

    def fuse() -> int:
        started = time.time()
        job = Fusion(fusion, writer, run_dir, stop or own)
        val_acc, outcome = _fuse(job)
        if job.stop.requested:
            writer.emit(ev.FINISHED, status="stopped", best_val_acc=None, test=None)
            return 3
        test = _test_metrics(job)
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


def _fuse(job: Fusion) -> tuple[float, dict[str, Any]]:
    """Fuse the members as asked; returns the validation accuracy and what was chosen."""
    kind = job.fusion.kind
    if kind == "ensemble":
        return ensemble(job)
    if kind == "wise-ft":
        return wise_ft(job)
    if job.fusion.greedy:
        return greedy_soup(job)
    return uniform_soup(job)


def _test_metrics(job: Fusion) -> dict[str, Any]:
    """Test metrics of the fused run (the ensemble's log-probabilities stand for logits)."""
    if job.result is None:
        probabilities, labels = ensemble_probabilities(job, job.test_batches)
    else:
        probabilities, labels = job.probabilities(job.result, job.adapters[0], job.test_batches)
    logits = probabilities.clamp_min(1e-12).log()
    report = classification_report(logits, labels, job.bundle.classes)
    report |= keep_test_predictions(job.checkpoints.parent, logits, labels, job.bundle, job.writer)
    report["epoch"] = 0
    return report
