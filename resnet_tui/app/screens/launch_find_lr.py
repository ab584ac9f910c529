"""The launch form's Find LR: the range test of the form's spec as an engine job in the
background (the form stays usable), its progress beside the Launch button, then its curve
in a dialog that can put the suggested rate into the Learning rate field."""

import copy
from collections.abc import Callable
from functools import partial
from typing import Any

from textual.screen import Screen
from textual.widgets import Static

from engine.contract.lr_range import DEFAULT_STEPS
from engine.contract.spec import RunSpec, SpecError
from resnet_tui.app.screens.launch_fields import in_form_words
from resnet_tui.app.screens.launch_lr_dialog import LrCurveDialog
from resnet_tui.display import markup_safe
from resnet_tui.runs import range_test
from resnet_tui.runs.engine_jobs import EngineJobError, EngineJobStopped
from resnet_tui.runs.range_test import RangeTest

WORKER_GROUP = "find-lr"


class LrFinder:
    """One range test at a time for a launch form: `start` it with the form's spec, `stop`
    it (Escape, leaving the form). `use` is called with the rate the user takes from the
    dialog; the form's `#find-lr-status` shows the progress."""

    def __init__(self, form: Screen, use: Callable[[float], None]) -> None:
        self.form = form
        self.use = use
        self.steps = DEFAULT_STEPS
        self.test: RangeTest | None = None
        self.waiting: dict[str, Any] | None = None  # a finished test whose curve is not shown

    @property
    def running(self) -> bool:
        """Whether a range test is under way."""
        return self.test is not None

    def start(self, spec: RunSpec) -> None:
        """Settle a copy of `spec` as `resnet-tui lr-find` does (one line where that fails)
        and start its range test on a worker thread."""
        settled = copy.deepcopy(spec)
        try:
            range_test.settle(settled, self.form.app.store)
        except SpecError as error:
            self.form.app.tell(f"Find LR: {in_form_words(str(error))}", severity="error")
            return
        self.waiting = None
        test = self.test = RangeTest(settled, steps=self.steps)
        self._show("Find LR: starting the engine…")
        self.form.run_worker(
            partial(self._run, test), name="find LR", group=WORKER_GROUP, thread=True
        )

    def stop(self) -> bool:
        """Stop the test under way and wait for its engine to end; whether one was."""
        test, self.test = self.test, None
        if test is None:
            return False
        test.stop()
        self._show("")
        return True

    def _run(self, test: RangeTest) -> None:
        """The test, on a worker thread; its end handed to the app's thread."""
        call = self.form.app.call_from_thread
        try:
            finished = test.run(lambda message: call(self._progress, test, message))
        except EngineJobStopped:
            return
        except EngineJobError as error:
            call(self._failed, test, error.message)
            return
        except OSError as error:  # no temporary folder, no process to spare
            call(self._failed, test, f"the range test could not start: {error}")
            return
        call(self._finished, test, finished)

    def _progress(self, test: RangeTest, message: dict[str, Any]) -> None:
        if test is not self.test:
            return
        step, lr, loss = message.get("step", 0), message.get("lr"), message.get("smoothed")
        said = f"Find LR: step {step} of {test.steps}"
        if isinstance(lr, float):
            said += f", lr {lr:.1e}"
        said += f", loss {loss:.3g}" if isinstance(loss, float) else ", loss not finite"
        self._show(said)

    def _failed(self, test: RangeTest, message: str) -> None:
        if test is not self.test:
            return
        self.test = None
        self._show("")
        self.form.app.tell(f"Find LR: {message}", severity="error", timeout=15)

    def _finished(self, test: RangeTest, finished: dict[str, Any]) -> None:
        if test is not self.test:
            return
        self.test = None
        self._show("")
        if finished.get("valley") is None:
            reason = f" ({finished['reason']})" if finished.get("reason") else ""
            self.form.app.tell(
                f"Find LR: {range_test.NO_SUGGESTION}{reason}; check the data and the model, "
                "or start from other weights",
                severity="error",
                timeout=15,
            )
            return
        self.waiting = finished
        self.show_the_curve()

    def show_the_curve(self) -> None:
        """The finished test's curve, once the form is the screen in view (not while the
        user looks at the queue or picks a run, say)."""
        if self.waiting is None or self.form.app.screen is not self.form:
            return
        finished, self.waiting = self.waiting, None
        self.form.app.push_screen(LrCurveDialog(finished), self._answered)

    def _answered(self, lr: float | None) -> None:
        if lr is not None and self.form.is_attached:
            self.use(lr)

    def _show(self, line: str) -> None:
        """The line beside the Launch button (none once the form is gone)."""
        for status in self.form.query("#find-lr-status").results(Static):
            status.update(f"{markup_safe(line)} [dim]· esc stops[/]" if line else "")
            status.display = bool(line)
