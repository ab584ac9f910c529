"""One training run from its spec to its last event: `finished`, or the `error` it became."""

import time
from pathlib import Path

from engine.contract import events as ev
from engine.contract.events import EventWriter
from engine.contract.spec import RunSpec
from engine.contract.stopping import StopRequest
from engine.distributed import NoEvents, RankFailures, Ranks
from engine.train.checkpoints import keep_sources
from engine.train.failures import report_failures
from engine.train.loop import Trainer
from engine.train.records import emit_started


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
        emit_started(trainer)
        status = trainer.fit()
        test = trainer.test() if status == "completed" else None
        writer.emit(
            ev.FINISHED,
            status=status,
            best_val_acc=trainer.best_val_acc,
            best_epoch=trainer.best_epoch,
            test=test,
            seconds=trainer.elapsed_before + time.time() - started,
            early_stop=trainer.early_stopping.stopped,
        )
        return 0 if status == "completed" else 3

    if ranks is None:
        return report_failures(writer, train, spec.batch_size)
    try:
        failures = RankFailures(ranks.failure_file(run_dir), writer)
        return report_failures(failures, train, spec.batch_size)
    finally:
        ranks.leave()
