"""The built-in shapes datasets: deterministic, all ten classes, a shifted domain, learnable."""

import time

import torch
from torch.nn import functional as F

from engine.contract.catalog import DATASETS
from engine.data.shapes import SHAPE_NAMES, draw_shapes, generate_shapes
from engine.models import build_model


def test_the_same_seed_draws_the_same_images():
    first_images, first_labels = generate_shapes(300, seed=5)
    again_images, again_labels = generate_shapes(300, seed=5)
    assert torch.equal(first_images, again_images) and torch.equal(first_labels, again_labels)
    shifted_images, _ = generate_shapes(300, seed=5, shifted=True)
    assert torch.equal(shifted_images, generate_shapes(300, seed=5, shifted=True)[0])


def test_any_images_of_a_set_are_drawn_alone_as_they_are_in_the_whole_set():
    for shifted in (False, True):
        draws = draw_shapes(400, seed=5, shifted=shifted)
        whole = draws.pixels()
        assert torch.equal(whole, generate_shapes(400, seed=5, shifted=shifted)[0])
        some = torch.tensor([399, 0, 17, 17, 250])
        assert torch.equal(draws.subset(some).pixels(), whole[some])
        assert torch.equal(draws.subset(some).kinds, draws.kinds[some])


def test_different_seeds_draw_different_images_and_labels():
    first_images, first_labels = generate_shapes(300, seed=5)
    other_images, other_labels = generate_shapes(300, seed=6)
    assert not torch.equal(first_images, other_images)
    assert not torch.equal(first_labels, other_labels)


def test_images_are_rgb_32_pixel_bytes_of_all_ten_classes():
    images, labels = generate_shapes(1000, seed=0)
    assert images.shape == (1000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (1000,) and labels.dtype == torch.int64
    assert sorted(labels.unique().tolist()) == list(range(len(SHAPE_NAMES)))
    assert torch.bincount(labels).min() > 50  # roughly balanced: 100 expected per class
    assert images.float().std() > 20  # not blank
    assert list(SHAPE_NAMES) == list(DATASETS["shapes"].classes)


def test_the_shifted_domain_looks_different():
    plain, _ = generate_shapes(500, seed=0)
    shifted, labels = generate_shapes(500, seed=0, shifted=True)
    assert shifted.shape == plain.shape and shifted.dtype == torch.uint8
    assert sorted(labels.unique().tolist()) == list(range(len(SHAPE_NAMES)))
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
    x = F.avg_pool2d((images.float() / 255 - 0.5) / 0.25, 2)  # 16x16, as the tests' runs
    train_x, train_y, test_x, test_y = x[:2000], labels[:2000], x[2000:], labels[2000:]
    model = build_model("resnet8", 10, width=8)
    epochs, batch = 10, 32
    steps = epochs * -(-len(train_y) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_y))
        for start in range(0, len(train_y), batch):
            index = order[start : start + batch]
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1; about 0.8 here, 0.99 for the default run
