"""Running a search: up to `parallel` of its trials queued or running at once, the next one
asked for as each ends, until it has made all its trials and they have ended; a worker of its
own trains them here, and workers elsewhere may take them from the queue too.

What happens is told as events (dicts, the lines of `search --json`): `queued`, `refused`
(a combination the spec's rules refuse, asked again), `ended` and `deleted` (a trial's run
taken out of the store meanwhile). The store is read when it changed, every READ_EVERY_S at
most, or at once when the worker saw a run end.
"""

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from engine.contract.spec import RunSpec
from resnet_tui.runs.follower import catch_up
from resnet_tui.runs.launcher import settle_image_size
from resnet_tui.runs.ownership import supervised
from resnet_tui.runs.search import Search, Trial, queue_trial, trials_of
from resnet_tui.runs.search_study import ask, best_summary, best_trial
from resnet_tui.runs.sources import resolve_init, resolve_teachers
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.worker import POLL_INTERVAL_S, Worker

READ_EVERY_S = 2.0
# How often runs of this machine that no supervisor owns any more are marked crashed.
CATCH_UP_EVERY_S = 10.0


class SearchDriver:
    """Drives one search (a new one has sweep 0 until its first trial is queued)."""

    def __init__(
        self,
        store: RunStore,
        search: Search,
        parallel: int,
        worker: Worker | None,
        tell: Callable[[dict[str, Any]], None],
    ) -> None:
        self.store, self.search, self.parallel = store, search, parallel
        self.worker, self.tell = worker, tell
        self.stopping = False
        self.trials: list[Trial] = []
        self.made, self.last_number = 0, 0
        self.revision = -1
        self.read_at = self.caught_up_at = time.monotonic()
        self.seen_finished = 0
        # A trial ended but not yet told: its supervisor may still change how it ended.
        self.unsettled = False
        # While a trial is being asked for and made, an interrupt waits (as a worker's does
        # while it starts a run): raised then, it could leave a run half made.
        self.asking = False
        self.interrupted_while_asking = False
        self.read(telling=False)
        # The runs of the trials told as ended (on a resume, those that had are not told).
        self.told = {trial.run.id for trial in self.trials if not trial.live}
        if worker is not None:
            worker.among = [trial.run.id for trial in self.trials]

    def run(self) -> None:
        while self.step():
            time.sleep(POLL_INTERVAL_S)

    def step(self) -> bool:
        """Read the store where due, tell the trials that ended, queue trials up to
        `parallel`, let the worker start and end runs; False once nothing is left to do
        (while stopping: once the worker's own runs have ended)."""
        now = time.monotonic()
        if now - self.caught_up_at >= CATCH_UP_EVERY_S:
            catch_up(self.store)
            self.caught_up_at = now
        finished = len(self.worker.finished) if self.worker else 0
        if finished != self.seen_finished or now - self.read_at >= READ_EVERY_S:
            self.seen_finished = finished
            self.read()
        live = sum(trial.live for trial in self.trials)
        while not self.stopping and live < self.parallel and self.made < self.search.trials:
            if not self._queue_next():
                break
            live += 1
        busy = False
        if self.worker is not None:
            busy = self.worker.step()
            # A trial stopped by hand is a failed trial; the search goes on with the others.
            self.worker.stopping = self.stopping
        if self.stopping:
            return busy
        return live > 0 or self.unsettled or self.made < self.search.trials

    def stop_asking(self) -> None:
        """Ask for no more trials; the worker takes no more and waits for its running ones."""
        self.stopping = True
        if self.worker is not None:
            self.worker.stopping = True

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: raise KeyboardInterrupt now, or once the trial being made (or
        the run being started) is."""
        if self.asking:
            self.interrupted_while_asking = True
        elif self.worker is not None:
            self.worker.interrupt()
        else:
            raise KeyboardInterrupt

    def read(self, telling: bool = True) -> None:
        """The search's trials as the store has them now (where it changed), telling those
        that ended, and those whose runs were deleted, since the last look."""
        self.read_at = time.monotonic()
        revision = self.store.revision()
        if not self.search.sweep or (revision == self.revision and not self.unsettled):
            return
        self.revision = revision
        before = {trial.run.id: trial for trial in self.trials if trial.live}
        self.trials = trials_of(self.store, self.search)
        row = self.store.connection.execute(
            "SELECT count(*), coalesce(max(number), 0) FROM search_trials WHERE sweep = ?",
            [self.search.sweep],
        ).fetchone()
        self.made, self.last_number = row
        if not telling:
            return
        present = {trial.run.id for trial in self.trials}
        for run_id, trial in before.items():
            if run_id not in present:
                self.tell(self._event("deleted", trial))
        self.unsettled = False
        for trial in self.trials:
            if trial.live or trial.run.id in self.told:
                continue
            if _finishing(trial):
                self.unsettled = True
            else:
                self.told.add(trial.run.id)
                ended = [other for other in self.trials if other.run.id in self.told]
                self.tell(self._ended(trial, best_trial(ended)))

    def _queue_next(self) -> bool:
        """Ask for the next trial and queue it; False where another process made it first."""
        number = self.last_number + 1
        self.asking = True
        try:
            params, spec, refused = ask(self.search, self.trials, number, self._check)
            for reason in refused:
                self.tell(
                    {
                        "event": "refused",
                        "search": self.search.sweep,
                        "trial": number,
                        "reason": reason,
                    }
                )
            made = queue_trial(self.store, self.search, number, params, spec)
        finally:
            self.asking = False
            if self.interrupted_while_asking:
                self.interrupted_while_asking = False
                raise KeyboardInterrupt
        self.revision = -1
        if made is None:
            self.read()
            return False
        run_id, sweep = made
        self.search = replace(self.search, sweep=sweep)
        if self.worker is not None and self.worker.among is not None:
            self.worker.among.append(run_id)
        self.read()
        self.tell(
            {
                "event": "queued",
                "search": sweep,
                "trial": number,
                "trials": self.search.trials,
                "run": run_id,
                "params": params,
            }
        )
        return True

    def _check(self, spec: RunSpec) -> None:
        check_in_store(self.store, spec)

    def _event(self, event: str, trial: Trial) -> dict[str, Any]:
        return {
            "event": event,
            "search": self.search.sweep,
            "trial": trial.number,
            "trials": self.search.trials,
            "run": trial.run.id,
            "params": trial.params,
        }

    def _ended(self, trial: Trial, best: Trial | None) -> dict[str, Any]:
        """A trial that ended, with the best so far."""
        run = trial.run
        told = self._event("ended", trial) | {"status": run.status, "value": trial.value}
        if trial.epoch is not None:
            told["epoch"] = trial.epoch
        if run.error is not None and run.status in ("failed", "crashed"):
            told["error"] = run.error.message
        told["best"] = best_summary(best)
        return told


def check_in_store(store: RunStore, spec: RunSpec) -> None:
    """What `launch` checks of a spec against the store: its image size chosen, the runs it
    starts from or learns from there (SpecError where not)."""
    settle_image_size(store, spec)
    resolve_init(store, spec)
    resolve_teachers(store, spec)


def _finishing(trial: Trial) -> bool:
    """A trial stopped whose supervisor is still at work: it may yet say the stop was its
    sweep's pruning (then the trial ends `pruned`), so it is told once that is settled."""
    return trial.run.status == "stopped" and supervised(trial.run.folder)
