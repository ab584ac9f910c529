"""Fixtures of the engine's tests, which train in the test process."""

import pytest
import torch

from engine.data import datasets as data

_drawn: dict[tuple, object] = {}


@pytest.fixture(autouse=True)
def draw_shapes_once(monkeypatch):
    """Make each shapes split's random draws once per session for the runs trained in the
    test process (the noise of 10,000 images takes a quarter of a second); each run gets
    its own copy."""
    original = data.draw_shapes

    def cached(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in _drawn:
            _drawn[key] = original(*args, **kwargs)
        return _drawn[key].subset(torch.arange(len(_drawn[key])))

    monkeypatch.setattr(data, "draw_shapes", cached)
