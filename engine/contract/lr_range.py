"""The learning-rate range test's settings (`lr-find`), checked alike by the CLI and the engine."""

import math

from engine.contract.spec import SpecError

DEFAULT_START_LR = 1e-7
DEFAULT_END_LR = 10.0
DEFAULT_STEPS = 100
# The fewest steps that leave points to suggest from, and the most the finished record
# carries in one line of JSON.
FEWEST_STEPS, MOST_STEPS = 10, 5000


def check_lr_range(start_lr: float, end_lr: float, steps: int) -> None:
    """Raise SpecError, one line saying what to give, for a range the test cannot sweep."""
    for flag, value in (("--start-lr", start_lr), ("--end-lr", end_lr)):
        if not (math.isfinite(value) and value > 0):
            raise SpecError(f"{flag} {value}: give a learning rate above 0, such as 1e-7")
    if end_lr <= start_lr:
        raise SpecError(
            f"--end-lr {end_lr} is not above --start-lr {start_lr}; the test sweeps the rate "
            "upwards, so give an --end-lr above the --start-lr"
        )
    if not FEWEST_STEPS <= steps <= MOST_STEPS:
        raise SpecError(
            f"--steps {steps}: give {FEWEST_STEPS} to {MOST_STEPS} steps "
            f"({DEFAULT_STEPS} is usually enough)"
        )
