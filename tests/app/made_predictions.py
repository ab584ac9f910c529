"""A run's test predictions file and thumbnails, made by hand as the engine writes them
(engine/use/mistakes.py), for the tests of the mistakes screen."""

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ["circle", "square", "triangle"]
# (true, predicted, probability of the predicted class) of each test image
SAMPLES = [
    (0, 0, 0.9),
    (0, 1, 0.8),
    (1, 1, 0.95),
    (1, 2, 0.6),
    (2, 2, 0.7),
    (2, 1, 0.99),
    (0, 1, 0.55),
    (2, 0, 0.51),
    (1, 1, 0.66),
]


def draw(kind: int) -> Image.Image:
    """A 32x32 picture of a shape: the same pixels on every machine."""
    picture = Image.new("RGB", (32, 32), (20, 24, 40))
    pen = ImageDraw.Draw(picture)
    colour = [(230, 80, 60), (70, 200, 120), (240, 210, 60)][kind]
    if kind == 0:
        pen.ellipse((6, 6, 26, 26), fill=colour)
    elif kind == 1:
        pen.rectangle((7, 7, 25, 25), fill=colour)
    else:
        pen.polygon([(16, 4), (28, 27), (4, 27)], fill=colour)
    return picture


def write_predictions(folder: Path, pictured: int = 6) -> None:
    """The file for SAMPLES in `folder`, with thumbnails of the first `pictured` images."""
    (folder / "mistakes").mkdir(parents=True, exist_ok=True)
    images = {}
    for index, (true, _, _) in enumerate(SAMPLES[:pictured]):
        draw(true).save(folder / "mistakes" / f"{index}.png")
        images[str(index)] = f"mistakes/{index}.png"
    true_probability = [p if t == g else (1 - p) / 2 for t, g, p in SAMPLES]
    table = {
        "format": "resnet-tui-test-predictions/1",
        "classes": CLASSES,
        "labels": [t for t, _, _ in SAMPLES],
        "predicted": [g for _, g, _ in SAMPLES],
        "probability": [p for _, _, p in SAMPLES],
        "true_probability": true_probability,
        "loss": [round(-math.log(p), 6) for p in true_probability],
        "images": images,
    }
    (folder / "test-predictions.json").write_text(json.dumps(table), encoding="utf-8")
