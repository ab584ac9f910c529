"""The built-in datasets: ten kinds of shape drawn procedurally, deterministic for a seed.

`shapes` puts saturated shapes on noisy plain backgrounds; `shapes-shift` draws the same
classes in pastel palettes, smaller, on striped and checked backgrounds, so a network trained
on one is a transfer source for the other without any file or download.
"""

import math

import torch

SHAPE_NAMES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "ellipse",
    "crescent",
    "half-disc",
    "ell",
)

IMAGE_SIZE = 32


def _regular_polygon(u: torch.Tensor, v: torch.Tensor, sides: int) -> torch.Tensor:
    """Signed distance (approximately) to a regular polygon with circumradius 1."""
    sector = 2 * math.pi / sides
    angle = torch.atan2(v, u) + math.pi / 2
    folded = torch.remainder(angle, sector) - sector / 2
    apothem = math.cos(math.pi / sides)
    return torch.hypot(u, v) * torch.cos(folded) - apothem


def _box(u: torch.Tensor, v: torch.Tensor, half_w: float, half_h: float) -> torch.Tensor:
    return torch.maximum(u.abs() - half_w, v.abs() - half_h)


def _shape_distance(kind: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance of each point (in the shape's own unit frame) to shape `kind`."""
    r = torch.hypot(u, v)
    if kind == 0:
        return r - 0.9
    if kind == 1:
        return _box(u, v, 0.75, 0.75)
    if kind == 2:
        return _regular_polygon(u, v, 3)
    if kind == 3:
        theta = torch.atan2(v, u)
        return r - (0.6 + 0.4 * torch.cos(5 * theta))
    if kind == 4:
        return torch.minimum(_box(u, v, 0.28, 0.95), _box(u, v, 0.95, 0.28))
    if kind == 5:
        return (r - 0.7).abs() - 0.22
    if kind == 6:
        return torch.hypot(u, 2.2 * v) / 1.6 - 0.6
    if kind == 7:
        return torch.maximum(r - 0.95, 0.75 - torch.hypot(u - 0.45, v))
    if kind == 8:
        return torch.maximum(r - 0.95, -v - 0.05)
    return torch.minimum(_box(u + 0.45, v, 0.25, 0.9), _box(u, v - 0.65, 0.7, 0.25))


def _palette(count: int, shifted: bool, generator: torch.Generator) -> torch.Tensor:
    """Random foreground colours: saturated for `shapes`, pastel for `shapes-shift`."""
    hue = torch.rand(count, generator=generator)
    channel = torch.arange(3).float() / 3
    wave = 0.5 + 0.5 * torch.cos(2 * math.pi * (hue[:, None] - channel[None, :]))
    if shifted:
        return 0.55 + 0.45 * wave
    return wave


def _backgrounds(count: int, shifted: bool, generator: torch.Generator) -> torch.Tensor:
    """Plain noisy backgrounds, or (shifted) striped and checked textures."""
    size = IMAGE_SIZE
    base = torch.rand(count, 3, 1, 1, generator=generator) * 0.5
    if not shifted:
        noise = torch.randn(count, 3, size, size, generator=generator)
        return noise.mul_(0.08).add_(base)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    period = torch.randint(3, 8, (count, 1, 1), generator=generator).float()
    phase = torch.rand(count, 1, 1, generator=generator) * math.pi
    stripes = torch.sin(2 * math.pi * (xs + ys * 0.5) / period + phase)
    checks = torch.sign(torch.sin(math.pi * xs / period) * torch.sin(math.pi * ys / period))
    use_checks = torch.rand(count, 1, 1, generator=generator) < 0.5
    texture = torch.where(use_checks, checks, stripes)[:, None]
    noise = torch.randn(count, 3, size, size, generator=generator)
    return noise.mul_(0.06).add_(base * 0.6).add_(0.15 * texture)


def generate_shapes(
    count: int, seed: int, shifted: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `count` RGB 32x32 images as uint8 (N, 3, 32, 32) and their labels (N,).

    The same `count`, `seed` and `shifted` always give the same images.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(SHAPE_NAMES), (count,), generator=generator)
    scale_low, scale_high = (0.25, 0.4) if shifted else (0.35, 0.6)
    scale = scale_low + (scale_high - scale_low) * torch.rand(count, generator=generator)
    margin = scale + 0.05
    centre = (torch.rand(count, 2, generator=generator) * 2 - 1) * (1 - margin[:, None])
    rotation = torch.rand(count, generator=generator) * 2 * math.pi
    colour = _palette(count, shifted, generator)
    images = _backgrounds(count, shifted, generator)

    axis = (torch.arange(IMAGE_SIZE).float() + 0.5) / IMAGE_SIZE * 2 - 1
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    dx = (xs[None] - centre[:, 0, None, None]) / scale[:, None, None]
    dy = (ys[None] - centre[:, 1, None, None]) / scale[:, None, None]
    cos, sin = torch.cos(rotation)[:, None, None], torch.sin(rotation)[:, None, None]
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy

    distance = torch.empty_like(u)
    for kind in range(len(SHAPE_NAMES)):
        chosen = labels == kind
        if chosen.any():
            distance[chosen] = _shape_distance(kind, u[chosen], v[chosen])
    pixel = 2 / IMAGE_SIZE / scale[:, None, None]
    coverage = torch.clamp(0.5 - distance / pixel, 0, 1)[:, None]
    images.lerp_(colour[:, :, None, None].expand_as(images), coverage)
    return images.clamp_(0, 1).mul_(255).round_().to(torch.uint8), labels
