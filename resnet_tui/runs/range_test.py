"""The learning-rate range test as the CLI and the app run it: the spec settled as a run's
is, `python -m engine lr-find` started as an EngineJob, its progress handed on as it
comes, and what it found said in words."""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.contract.image_sizes import choose_image_size
from engine.contract.lr_range import DEFAULT_END_LR, DEFAULT_START_LR, DEFAULT_STEPS
from engine.contract.spec import RunSpec
from resnet_tui.runs.engine_jobs import EngineJob, EngineJobError, EngineJobStopped
from resnet_tui.runs.launcher import settle_image_size
from resnet_tui.runs.sources import resolve_init, resolve_teachers
from resnet_tui.runs.store import RunStore

NO_RESULT = "the engine ended the range test without its result"
NO_SUGGESTION = "no learning rate to suggest: the loss was not finite from the first step"


def needs_the_store(spec: RunSpec) -> bool:
    """Whether settling `spec` looks runs up: it starts from or learns from one."""
    return spec.init.startswith("run:") or bool(spec.teacher)


def settle(spec: RunSpec, store: RunStore | None) -> None:
    """What a run settles before it starts, written into `spec`: the image size where an
    image folder's run gives none, and the checkpoints of the runs it starts from or
    learns from, looked up in `store` (needed only where `needs_the_store`). Raises
    SpecError."""
    if store is None:
        assert not needs_the_store(spec), "a spec naming runs needs the store"
        choose_image_size(spec, [])
        return
    settle_image_size(store, spec)
    resolve_init(store, spec)
    resolve_teachers(store, spec)


class RangeTest:
    """One range test of a settled spec. `run` starts the engine, hands each `progress`
    message to its callback and returns the `finished` one; `stop` (from any thread) ends
    it, and `run` then raises EngineJobStopped. A failure raises EngineJobError with the
    engine's line. `shares_ctrl_c`: as EngineJob's (the command line's way)."""

    def __init__(
        self,
        spec: RunSpec,
        start_lr: float = DEFAULT_START_LR,
        end_lr: float = DEFAULT_END_LR,
        steps: int = DEFAULT_STEPS,
        *,
        shares_ctrl_c: bool = False,
    ) -> None:
        self.spec = spec
        self.start_lr, self.end_lr, self.steps = start_lr, end_lr, steps
        self.shares_ctrl_c = shares_ctrl_c
        self.job: EngineJob | None = None
        self.stopped = False

    def run(self, on_progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Run the test to its end: each `progress` message to `on_progress`, then the
        `finished` one returned."""
        finished = None
        with tempfile.TemporaryDirectory(prefix="resnet-tui-lr-find-") as folder:
            spec_file = Path(folder) / "spec.json"
            spec_file.write_text(self.spec.to_json(), encoding="utf-8")
            # each value joined to its option: one that starts with `-` is no option
            arguments = [
                f"--spec={spec_file}",
                f"--start-lr={self.start_lr!r}",
                f"--end-lr={self.end_lr!r}",
                f"--steps={self.steps}",
            ]
            with EngineJob("lr-find", arguments, shares_ctrl_c=self.shares_ctrl_c) as job:
                self.job = job
                if self.stopped:
                    raise EngineJobStopped()
                for message in job.lines():
                    if self.stopped:  # stopped before the engine had started
                        raise EngineJobStopped()
                    if message.get("kind") == "progress":
                        on_progress(message)
                    elif message.get("kind") == "finished":
                        finished = message
        if self.stopped:
            raise EngineJobStopped()
        if finished is None:
            raise EngineJobError(NO_RESULT, mistake=False)
        return finished

    def stop(self) -> None:
        """End the test; `run` raises EngineJobStopped once the engine has ended."""
        self.stopped = True
        if self.job is not None:
            self.job.stop()


def title(finished: dict[str, Any]) -> str:
    """What the chart shows and how the test ended: `loss against learning rate, 20 steps
    (completed, 2 s)`."""
    ended = "stopped early" if finished["stopped_early"] else "completed"
    ended += f": {finished['reason']}" if finished["reason"] else ""
    steps = len(finished["lrs"])
    return f"loss against learning rate, {steps} steps ({ended}, {finished['seconds']:.0f} s)"


def suggestion(finished: dict[str, Any], option: str = "lr") -> str:
    """The rate to give, and which it is: `suggested lr 0.0043 (valley; steepest descent at
    0.03)`; the `option` as the caller's user writes it (`--lr` on the command line)."""
    return (
        f"suggested {option} {finished['valley']:.3g} (valley; steepest descent at "
        f"{finished['steepest']:.3g})"
    )
