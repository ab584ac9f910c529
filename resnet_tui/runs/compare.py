"""Comparing runs: the settings that differ, their results side by side, smoothed curves."""

from typing import Any

from engine.contract.spec import spec_fields
from resnet_tui.display import duration, percent
from resnet_tui.runs.store import RunStore

RESULT_ROWS = (
    ("status", "status"),
    ("epochs_done", "epochs"),
    ("best_val_acc", "best val acc"),
    ("test_acc", "test acc"),
    ("test_top5", "test top-5"),
    ("seconds", "seconds"),
)

# Curves a user can overlay: label -> (split, metric name) in the store.
CURVES = {
    "val acc": ("val", "acc"),
    "val loss": ("val", "loss"),
    "train acc": ("train", "acc"),
    "train loss": ("train", "loss"),
    "step loss": ("step", "loss"),
}


def differing_settings(specs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The spec options whose values are not the same in every run, in spec order.

    Options the engine fills in for itself (the checkpoint an --init run:ID stands for) are
    left out: the option the user gave is already there.
    """
    public = {field.name for field in spec_fields()}
    keys = [key for key in dict.fromkeys(key for spec in specs for key in spec) if key in public]
    rows = []
    for key in keys:
        values = [spec.get(key) for spec in specs]
        if any(value != values[0] for value in values):
            rows.append((key, values))
    return rows


def comparison(store: RunStore, run_ids: list[int]) -> dict[str, Any]:
    """Everything a comparison shows: the runs, their differing settings and their results."""
    found = [store.run(run_id) for run_id in run_ids]
    missing = [str(run_id) for run_id, run in zip(run_ids, found, strict=True) if run is None]
    if missing:
        raise KeyError(f"no run {', '.join(missing)} in {store.path}")
    runs = [run for run in found if run is not None]
    return {
        "runs": [{"id": run.id, "name": run.name} for run in runs],
        "settings": dict(differing_settings([run.spec_values for run in runs])),
        "results": {
            **{label: [getattr(run, column) for run in runs] for column, label in RESULT_ROWS},
            "test macro-F1": [(run.test_report or {}).get("macro_f1") for run in runs],
        },
    }


def curve(store: RunStore, run_id: int, label: str) -> list[tuple[float, float]]:
    """A run's curve of CURVES[label] by epoch, as its run screen draws it: the loss of a
    step at its fractional epoch (global step / the steps of an epoch its engine started
    with), for a run that ended mid-epoch or trains on too; no steps where none started."""
    split, name = CURVES[label]
    points: list[tuple[float, float]] = list(store.metric_series(run_id, split, name))
    if split != "step":
        return points
    run = store.run(run_id)
    per_epoch = run.engine_info.steps_per_epoch if run and run.engine_info else 0
    return [(step / per_epoch, loss) for step, loss in points] if per_epoch else []


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average, as TensorBoard's smoothing slider (0 leaves them as they are)."""
    if not weight:
        return list(values)
    smoothed, last = [], None
    for value in values:
        # As a step towards the new value: a constant stays exactly itself.
        last = value if last is None else last + (1 - weight) * (value - last)
        smoothed.append(last)
    return smoothed


def _cell(label: str, value: Any) -> str:
    if value is None:
        return "-"
    if label == "seconds":
        return duration(value)
    if "F1" in label:
        return f"{value:.4f}"
    if label.startswith(("best", "test")):
        return percent(value)
    return str(value)


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """A comparison as rows of text: each differing setting, then each result."""
    rows = [
        [key.replace("_", "-"), *("-" if v is None else str(v) for v in values)]
        for key, values in result["settings"].items()
    ]
    rows += [
        [label, *(_cell(label, v) for v in values)] for label, values in result["results"].items()
    ]
    return rows
