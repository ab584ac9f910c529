"""The built-in datasets: ten kinds of shape drawn procedurally, deterministic for a seed.

`shapes` puts saturated shapes on noisy plain backgrounds; `shapes-shift` draws the same
classes in pastel palettes, smaller, on striped and checked backgrounds, so a network trained
on one is a transfer source for the other without any file or download.
"""

import math
from dataclasses import dataclass

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


def _palette(hue: torch.Tensor, shifted: bool) -> torch.Tensor:
    """Foreground colours from hues: saturated for `shapes`, pastel for `shapes-shift`."""
    channel = torch.arange(3).float() / 3
    wave = 0.5 + 0.5 * torch.cos(2 * math.pi * (hue[:, None] - channel[None, :]))
    if shifted:
        return 0.55 + 0.45 * wave
    return wave


@dataclass
class ShapeDraws:
    """Everything random about a set of shapes images, a row per image: cheap to draw for
    a whole set, while turning rows into pixels (`pixels`) is most of the work, done only
    for the images a run keeps. Any rows give the pixels they give in the whole set."""

    kinds: torch.Tensor  # (N,) the class of each image, an index into SHAPE_NAMES
    scale: torch.Tensor  # (N,)
    centre: torch.Tensor  # (N, 2)
    rotation: torch.Tensor  # (N,)
    colour: torch.Tensor  # (N, 3)
    base: torch.Tensor  # (N, 3, 1, 1) the background's colour
    noise: torch.Tensor  # (N, 3, IMAGE_SIZE, IMAGE_SIZE)
    stripes: torch.Tensor | None  # (N, 3) period, phase and whether checked, if shifted

    def __len__(self) -> int:
        return len(self.kinds)

    def subset(self, index: torch.Tensor) -> "ShapeDraws":
        return ShapeDraws(
            **{name: None if value is None else value[index] for name, value in vars(self).items()}
        )

    def pixels(self) -> torch.Tensor:
        """The images as uint8 (N, 3, 32, 32)."""
        images = self._backgrounds()
        axis = (torch.arange(IMAGE_SIZE).float() + 0.5) / IMAGE_SIZE * 2 - 1
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        scale = self.scale[:, None, None]
        dx = (xs[None] - self.centre[:, 0, None, None]) / scale
        dy = (ys[None] - self.centre[:, 1, None, None]) / scale
        cos, sin = torch.cos(self.rotation)[:, None, None], torch.sin(self.rotation)[:, None, None]
        u = cos * dx + sin * dy
        v = -sin * dx + cos * dy
        distance = torch.empty_like(u)
        for kind in range(len(SHAPE_NAMES)):
            chosen = self.kinds == kind
            if chosen.any():
                distance[chosen] = _shape_distance(kind, u[chosen], v[chosen])
        pixel = 2 / IMAGE_SIZE / scale
        coverage = torch.clamp(0.5 - distance / pixel, 0, 1)[:, None]
        images.lerp_(self.colour[:, :, None, None].expand_as(images), coverage)
        return images.clamp_(0, 1).mul_(255).round_().to(torch.uint8)

    def _backgrounds(self) -> torch.Tensor:
        """Plain noisy backgrounds, or (shifted) striped and checked textures."""
        if self.stripes is None:
            return self.noise.mul(0.08).add_(self.base)
        grid = torch.arange(IMAGE_SIZE).float()
        ys, xs = torch.meshgrid(grid, grid, indexing="ij")
        period, phase = self.stripes[:, 0, None, None], self.stripes[:, 1, None, None]
        use_checks = self.stripes[:, 2, None, None] > 0
        stripes = torch.sin(2 * math.pi * (xs + ys * 0.5) / period + phase)
        checks = torch.sign(torch.sin(math.pi * xs / period) * torch.sin(math.pi * ys / period))
        texture = torch.where(use_checks, checks, stripes)[:, None]
        return self.noise.mul(0.06).add_(self.base * 0.6).add_(0.15 * texture)


def draw_shapes(count: int, seed: int, shifted: bool = False) -> ShapeDraws:
    """The random draws of `count` images; the same `count`, `seed` and `shifted` always
    give the same draws."""
    generator = torch.Generator().manual_seed(seed)
    kinds = torch.randint(0, len(SHAPE_NAMES), (count,), generator=generator)
    scale_low, scale_high = (0.25, 0.4) if shifted else (0.35, 0.6)
    scale = scale_low + (scale_high - scale_low) * torch.rand(count, generator=generator)
    margin = scale + 0.05
    centre = (torch.rand(count, 2, generator=generator) * 2 - 1) * (1 - margin[:, None])
    rotation = torch.rand(count, generator=generator) * 2 * math.pi
    colour = _palette(torch.rand(count, generator=generator), shifted)
    base = torch.rand(count, 3, 1, 1, generator=generator) * 0.5
    stripes = None
    if shifted:
        period = torch.randint(3, 8, (count,), generator=generator).float()
        phase = torch.rand(count, generator=generator) * math.pi
        use_checks = torch.rand(count, generator=generator) < 0.5
        stripes = torch.stack([period, phase, use_checks.float()], dim=1)
    noise = torch.randn(count, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return ShapeDraws(kinds, scale, centre, rotation, colour, base, noise, stripes)


def generate_shapes(
    count: int, seed: int, shifted: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `count` RGB 32x32 images as uint8 (N, 3, 32, 32) and their labels (N,).

    The same `count`, `seed` and `shifted` always give the same images.
    """
    draws = draw_shapes(count, seed, shifted)
    return draws.pixels(), draws.kinds
