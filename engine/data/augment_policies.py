"""RandAugment, TrivialAugmentWide and random erasing, per image: on whole batches on the device
(in-memory data) and by torchvision in the DataLoader's workers (image folders).

On a batch each image draws its own operations, strengths and signs, as torchvision's
transforms do for one image, from the batches' generator on the device, so nothing waits on
the host. On the CPU the batch is grouped by operation, each group through its own (the
geometric ones share one affine resampling, each image its own matrix); on an accelerator,
where taking out a group would wait for the device to count it, every operation runs on
the whole batch and masks keep each image's own. The operations and their strengths are
torchvision's (transforms.v2, 31 magnitude bins): RandAugment applies two at the chosen
magnitude, TrivialAugmentWide one at a random strength from its wider ranges.
"""

import math
from typing import Any

import torch
from torch.nn import functional as F

from engine.contract.spec import RunSpec

BINS = 31  # torchvision's magnitude bins, 0 to 30
RANDAUGMENT_OPERATIONS = 2
OPERATIONS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
)
(
    IDENTITY,
    SHEAR_X,
    SHEAR_Y,
    TRANSLATE_X,
    TRANSLATE_Y,
    ROTATE,
    BRIGHTNESS,
    COLOR,
    CONTRAST,
    SHARPNESS,
    POSTERIZE,
    SOLARIZE,
    AUTO_CONTRAST,
    EQUALIZE,
) = range(len(OPERATIONS))
# torchvision's RandomErasing: the box's share of the image and its aspect ratio, and the
# tries at a box that fits before an image is left as it is.
ERASED_SHARE, ERASED_RATIO, ERASING_TRIES = (0.02, 0.33), (0.3, 3.3), 10
# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
LUMA = (0.2989, 0.587, 0.114)


def magnitudes(wide: bool, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Each operation's strength at each bin (OPERATIONS by BINS), as torchvision's
    RandAugment has them for images of this size, or with `wide` TrivialAugmentWide's."""

    def ramp(top: float) -> torch.Tensor:
        return torch.linspace(0.0, top, BINS, device=device)

    most = 0.99 if wide else 0.9
    bins = torch.arange(BINS, device=device, dtype=torch.float32)
    table = torch.zeros(len(OPERATIONS), BINS, device=device)
    table[SHEAR_X] = table[SHEAR_Y] = ramp(0.99 if wide else 0.3)
    table[TRANSLATE_X] = ramp(32.0 if wide else 150 / 331 * width)
    table[TRANSLATE_Y] = ramp(32.0 if wide else 150 / 331 * height)
    table[ROTATE] = ramp(135.0 if wide else 30.0)
    table[BRIGHTNESS] = table[COLOR] = table[CONTRAST] = table[SHARPNESS] = ramp(most)
    table[POSTERIZE] = 8 - (bins / ((BINS - 1) / (6 if wide else 4))).round()
    table[SOLARIZE] = torch.linspace(255.0, 0.0, BINS, device=device)
    return table


class AugmentPolicy:
    """The spec's augmentation policy (`off`, `randaugment` or `trivialaugment`, with its
    magnitude) and its chance of random erasing, for training batches."""

    def __init__(self, policy: str, magnitude: int, erasing: float) -> None:
        self.policy = policy
        self.magnitude = magnitude
        self.erasing = erasing
        self._tables: dict[tuple[Any, ...], torch.Tensor] = {}

    @classmethod
    def for_spec(cls, spec: RunSpec) -> "AugmentPolicy | None":
        """The spec's policy; None where it has neither a policy nor random erasing."""
        if spec.auto_augment == "off" and spec.random_erasing == 0:
            return None
        return cls(spec.auto_augment, spec.augment_magnitude, spec.random_erasing)

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A batch of float images (0-255, not yet normalised) through the policy, each
        image its own operations."""
        if self.policy == "off":
            return images
        count, _, height, width = images.shape
        wide = self.policy == "trivialaugment"
        key = (wide, height, width, images.device)
        if key not in self._tables:
            self._tables[key] = magnitudes(wide, height, width, images.device)
        table = self._tables[key]
        for _ in range(1 if wide else RANDAUGMENT_OPERATIONS):
            draw = {"generator": generator, "device": images.device}
            operations = torch.randint(len(OPERATIONS), (count,), **draw)
            if wide:
                bins = torch.randint(BINS, (count,), **draw)
            else:
                bins = torch.full((count,), self.magnitude, device=images.device)
            negative = (torch.rand(count, **draw) < 0.5) & _signed(operations)
            strength = table[operations, bins] * torch.where(negative, -1.0, 1.0)
            images = apply_operations(images, operations, strength)
        return images

    def erase(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random erasing of normalised images, torchvision's per image: with the chance
        given, a box (2-33% of the image, aspect ratio 0.3 to 3.3) filled with noise drawn
        from N(0, 1)."""
        if self.erasing == 0:
            return images
        return erase_boxes(images, self.erasing, generator)

    def file_transforms(self) -> tuple[list[Any], list[Any]]:
        """torchvision's transforms of the policy for one image file: those for the picture
        (after crop and flip) and those for its normalised tensor."""
        from torchvision.transforms import v2  # loaded only where used: see engine/__init__.py

        picture: list[Any] = []
        if self.policy == "randaugment":
            picture = [v2.RandAugment(RANDAUGMENT_OPERATIONS, self.magnitude, BINS)]
        elif self.policy == "trivialaugment":
            picture = [v2.TrivialAugmentWide(BINS)]
        tensor = [v2.RandomErasing(self.erasing, value="random")] if self.erasing else []
        return picture, tensor


def _signed(operations: torch.Tensor) -> torch.Tensor:
    """Whether each operation's strength takes a random sign: the geometric and the blends."""
    return (operations >= SHEAR_X) & (operations <= SHARPNESS)


def apply_operations(
    images: torch.Tensor,
    operations: torch.Tensor,
    strength: torch.Tensor,
    grouped: bool | None = None,
) -> torch.Tensor:
    """Each image of a float batch (0-255) through its operation (an index of OPERATIONS)
    at its signed strength, as torchvision's RandAugment applies it to one image.

    `grouped` (the default on the CPU): each family of operations runs on its own images
    alone. Otherwise (the default on an accelerator, where taking out a family's images
    would wait for the device to count them) each runs on the whole batch and a mask keeps
    its images' results. Both give the same images.
    """
    if grouped is None:
        grouped = images.device.type == "cpu"
    result = images.clone() if grouped else images
    for first, last, family in FAMILIES:
        chosen = (operations >= first) & (operations <= last)
        if grouped:
            index = chosen.nonzero().squeeze(1)
            if len(index):
                made = family(images[index], operations[index], strength[index])
                result.index_copy_(0, index, made)
        else:
            made = family(images, operations, strength)
            result = torch.where(chosen.view(-1, 1, 1, 1), made, result)
    return result


def _posterize(images: torch.Tensor, _: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Each image kept to its number of bits a value (0-255 floats: the lower bits floored)."""
    step = 2.0 ** (8 - bits.view(-1, 1, 1, 1))
    return torch.floor(images / step) * step


def _solarize(images: torch.Tensor, _: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Each image's values at or above its threshold inverted."""
    return torch.where(images >= threshold.view(-1, 1, 1, 1), 255 - images, images)


def _geometric(
    images: torch.Tensor, operations: torch.Tensor, strength: torch.Tensor
) -> torch.Tensor:
    """Shears (about the top left corner), translations (whole pixels) and rotations (about
    the centre), nearest pixel, filled with black: torchvision's. Every image is resampled;
    the identity grid gives an image back unchanged."""
    count, _, height, width = images.shape

    def where(operation: int, value: torch.Tensor, otherwise: float = 0.0) -> torch.Tensor:
        return torch.where(operations == operation, value, otherwise)

    angle = torch.deg2rad(where(ROTATE, strength))
    cos, sin = torch.cos(angle), torch.sin(angle)
    shift = torch.trunc(strength)
    half_x, half_y = width / 2, height / 2
    # Where each output point (x, y in pixels from the top left corner) reads the input:
    # (xx x + xy y + x0, yx x + yy y + y0).
    xx, yy = cos, cos
    xy = where(SHEAR_X, strength) - sin
    yx = where(SHEAR_Y, strength) + sin
    x0 = -where(TRANSLATE_X, shift) + half_x - (cos * half_x - sin * half_y)
    y0 = -where(TRANSLATE_Y, shift) + half_y - (sin * half_x + cos * half_y)
    # The same map in affine_grid's coordinates, -1 to 1 across the image (x = half_x (u + 1)).
    theta = torch.stack(
        [
            torch.stack([xx, xy * half_y / half_x, (xx * half_x + xy * half_y + x0) / half_x - 1]),
            torch.stack([yx * half_x / half_y, yy, (yx * half_x + yy * half_y + y0) / half_y - 1]),
        ]
    ).permute(2, 0, 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """The luma of RGB images; a grey image is its own."""
    if images.shape[1] != 3:
        return images
    red, green, blue = LUMA
    return images[:, :1] * red + images[:, 1:2] * green + images[:, 2:] * blue


def _blend(images: torch.Tensor, degenerate: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """torchvision's blend of each image with its degenerate image by a factor of 1 + strength:
    the image moved away from the degenerate one by its strength (towards it where negative)."""
    return (images + strength.view(-1, 1, 1, 1) * (images - degenerate)).clamp(0, 255)


def _brightness(images: torch.Tensor, _: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Blended with black: scaled by 1 + strength."""
    return (images * (1 + strength.view(-1, 1, 1, 1))).clamp(0, 255)


def _color(images: torch.Tensor, _: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Saturation: blended with its grey; a grey image unchanged, as torchvision leaves it."""
    return _blend(images, _grey(images), strength)


def _contrast(images: torch.Tensor, _: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Blended with its mean grey."""
    return _blend(images, _grey(images).mean((1, 2, 3), keepdim=True), strength)


def _sharpness(images: torch.Tensor, _: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Blended with its blurred image."""
    return _blend(images, _blurred(images), strength)


def _blurred(images: torch.Tensor) -> torch.Tensor:
    """torchvision's blurred image for sharpness: a 3x3 smoothing inside, the border kept."""
    height, width = images.shape[-2:]
    if height <= 2 or width <= 2:
        return images
    # Its kernel is 1 around a centre of 5, over 13: the 3x3 box sum (by rows, then by
    # columns: a grouped convolution is several times slower on CPU) and 4 more of the centre.
    rows = images[..., :-2] + images[..., 1:-1] + images[..., 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    blurred = images.clone()
    blurred[..., 1:-1, 1:-1] = (box + 4 * images[..., 1:-1, 1:-1]) / 13
    return blurred


def _auto_contrast(images: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
    """Each channel of each image stretched to 0-255; a flat channel kept."""
    low = images.amin((2, 3), keepdim=True)
    high = images.amax((2, 3), keepdim=True)
    flat = high == low
    scale = torch.where(flat, 1.0, 255 / (high - low).clamp(min=1e-6))
    return ((images - torch.where(flat, 0.0, low)) * scale).clamp(0, 255)


def _equalize(images: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each channel of each image on its 256 levels (the values
    rounded), PIL's and torchvision's: a channel of one level, or nearly, kept."""
    count, channels, height, width = images.shape
    levels = images.round().clamp(0, 255).long().reshape(count * channels, -1)
    histogram = torch.zeros(count * channels, 256, device=images.device)
    histogram.scatter_add_(1, levels, torch.ones_like(levels, dtype=histogram.dtype))
    brightest = histogram.gather(1, levels.amax(1, keepdim=True))
    step = torch.div(height * width - brightest, 255, rounding_mode="floor")
    cumulative = histogram.cumsum(1)[:, :-1] + torch.div(step, 2, rounding_mode="floor")
    table = torch.div(cumulative, step.clamp(min=1), rounding_mode="floor").clamp(0, 255)
    table = F.pad(table, (1, 0))
    equalized = table.gather(1, levels).view_as(images)
    return torch.where((step == 0).view(count, channels, 1, 1), images, equalized)


def erase_boxes(images: torch.Tensor, chance: float, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomErasing (value "random") per image of a batch: with `chance`, a
    box of the first of ERASING_TRIES draws that fits, filled with noise from N(0, 1)."""
    count, _, height, width = images.shape
    draw = {"generator": generator, "device": images.device}
    erased = torch.rand(count, **draw) < chance
    low, high = ERASED_SHARE
    area = height * width * (low + (high - low) * torch.rand(count, ERASING_TRIES, **draw))
    low, high = math.log(ERASED_RATIO[0]), math.log(ERASED_RATIO[1])
    ratio = torch.exp(low + (high - low) * torch.rand(count, ERASING_TRIES, **draw))
    tall = torch.sqrt(area * ratio).round()
    wide = torch.sqrt(area / ratio).round()
    fits = (tall < height) & (wide < width)
    first = fits.int().argmax(1, keepdim=True)  # the first that fits (0 where none does)
    tall, wide = tall.gather(1, first), wide.gather(1, first)
    top = torch.floor(torch.rand(count, 1, **draw) * (height - tall + 1))
    left = torch.floor(torch.rand(count, 1, **draw) * (width - wide + 1))
    rows = torch.arange(height, device=images.device).view(1, -1)
    columns = torch.arange(width, device=images.device).view(1, -1)
    inside_rows = (rows >= top) & (rows < top + tall)
    inside_columns = (columns >= left) & (columns < left + wide)
    box = inside_rows.unsqueeze(2) & inside_columns.unsqueeze(1)
    box &= (erased & fits.any(1)).view(-1, 1, 1)
    noise = torch.randn(images.shape, **draw, dtype=images.dtype)
    return torch.where(box.unsqueeze(1), noise, images)


# The operations' families, each a range of OPERATIONS run by one function of the images,
# their operations and their strengths: the geometric ones share one resampling.
FAMILIES = (
    (SHEAR_X, ROTATE, _geometric),
    (BRIGHTNESS, BRIGHTNESS, _brightness),
    (COLOR, COLOR, _color),
    (CONTRAST, CONTRAST, _contrast),
    (SHARPNESS, SHARPNESS, _sharpness),
    (POSTERIZE, POSTERIZE, _posterize),
    (SOLARIZE, SOLARIZE, _solarize),
    (AUTO_CONTRAST, AUTO_CONTRAST, _auto_contrast),
    (EQUALIZE, EQUALIZE, _equalize),
)
