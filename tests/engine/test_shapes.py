"""The built-in datasets: deterministic, balanced enough, shifted, and learnable."""

import time

import torch
from torch.nn import functional as F

from engine.models import build_model
from engine.shapes import SHAPE_NAMES, generate_shapes


def test_the_same_seed_draws_the_same_images():
    first_images, first_labels = generate_shapes(300, seed=5)
    again_images, again_labels = generate_shapes(300, seed=5)
    assert torch.equal(first_images, again_images) and torch.equal(first_labels, again_labels)
    other, _ = generate_shapes(300, seed=6)
    assert not torch.equal(first_images, other)


def test_images_are_rgb_32_pixel_bytes_of_all_ten_classes():
    images, labels = generate_shapes(1000, seed=0)
    assert images.shape == (1000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert sorted(labels.unique().tolist()) == list(range(len(SHAPE_NAMES)))
    assert images.float().std() > 20  # not blank


def test_the_shifted_domain_looks_different():
    plain, _ = generate_shapes(500, seed=0)
    shifted, _ = generate_shapes(500, seed=0, shifted=True)
    assert not torch.equal(plain, shifted)
    # pastel shapes on textures: a clearly different colour distribution
    assert (
        abs(plain.float().mean() - shifted.float().mean()) > 3
        or abs(plain.float().std() - shifted.float().std()) > 3
    )


def test_twelve_thousand_images_generate_quickly():
    start = time.perf_counter()
    generate_shapes(12_000, seed=1)
    assert time.perf_counter() - start < 10  # the goal is 2 s; generous for a loaded CI box


def test_a_tiny_resnet_learns_shapes_well_above_chance():
    torch.manual_seed(0)
    images, labels = generate_shapes(2500, seed=3)
    x = (images.float() / 255 - 0.5) / 0.25
    train_x, train_y, test_x, test_y = x[:2000], labels[:2000], x[2000:], labels[2000:]
    model = build_model("resnet8", 10, width=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 5e-3, total_steps=5 * 32)
    model.train()
    for _ in range(5):
        order = torch.randperm(2000)
        for start in range(0, 2000, 64):
            index = order[start : start + 64]
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy > 0.3  # chance is 0.1; the default run reaches 95% (test_train.py)
