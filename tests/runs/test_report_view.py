"""The test report as the CLI and the run screen show it: a top-k that cannot be below 100%
(k as many as the classes or more) is left out."""

import io

from rich.console import Console

from resnet_tui.display import test_report_view as report_view  # not a test of pytest's


def shown(report: dict) -> str:
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(report_view(report))
    return console.export_text()


def test_top_k_is_said_only_where_it_tells_something():
    two = {"top1": 0.6, "top5": 1.0, "top5_k": 2, "classes": ["ants", "bees"], "confusion": []}
    ten = {**two, "top5": 0.97, "top5_k": 5, "classes": [str(d) for d in range(10)]}
    assert "top-2" not in shown(two) and "top-1" in shown(two)
    assert "top-5" in shown(ten) and "97.0%" in shown(ten)
    assert "top-5" in shown({"top1": 0.5, "top5": 0.9})  # an old report without its classes
