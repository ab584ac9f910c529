"""An image file read as a picture, and framed as evaluation frames it: the one way the
trainer, prediction, Grad-CAM and the decoded-folder cache see an image file."""

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from engine.contract.errors import UnreadableImage

# An image claiming more pixels than PIL's limit is refused, not decoded: a decompression
# bomb would take the computer's memory. PIL refuses one of more than twice the limit itself
# and only warns below that; read_image checks the limit itself, so the warning is not needed
# (turning it into an error with catch_warnings would not be safe across decoding threads).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def read_image(path: Path, mode: str) -> Image.Image:
    """The image file at `path` decoded in PIL's `mode` ("RGB", "L"); an UnreadableImage
    saying why, in one line, for a file that is not an image, is damaged or too large."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:
                raise _too_large(path, f"its header claims {image.width * image.height} pixels")
            return _eight_bits(image).convert(mode)
    except Image.DecompressionBombError as error:
        raise _too_large(path, _claimed_size(error)) from None
    except (OSError, UnidentifiedImageError, ValueError) as error:
        reason = " ".join(str(error).split())  # one line, so train.py can find it
        raise UnreadableImage(f"cannot read image {path}: {reason}") from None


def _too_large(path: Path, claimed: str) -> UnreadableImage:
    return UnreadableImage(
        f"cannot read image {path}: {claimed}, more than the {Image.MAX_IMAGE_PIXELS} pixels "
        "an image may have (a decompression bomb?)"
    )


def evaluation_transform(
    size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Callable[[Image.Image], torch.Tensor]:
    """How an image file is made a model's input at evaluation: its shorter side resized to
    1.14 times the size (its longer side to at most 16 times the size), the centre cropped,
    scaled to 0-1 and normalised."""
    from torchvision import transforms  # loaded only where used: see engine/__init__.py

    steps = [*evaluation_framing(size), transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def evaluation_framing(size: int) -> list[Callable[[Image.Image], Image.Image]]:
    """How evaluation frames an image file: its shorter side resized, the centre cropped."""
    from torchvision import transforms

    return [
        ShorterSideResize(int(size * 1.14), LONGEST_SIDE_TIMES_SIZE * size),
        transforms.CenterCrop(size),
    ]


# The longer side of an image resized at evaluation is at most this many times the input
# size: a very thin image (100000 x 1 pixels) would otherwise grow to millions of pixels.
LONGEST_SIDE_TIMES_SIZE = 16


class ShorterSideResize:
    """torchvision's `Resize(shorter, max_size=longest)`, except that a very thin image keeps
    at least one pixel across (torchvision's would have none, and fail)."""

    def __init__(self, shorter: int, longest: int) -> None:
        if longest <= shorter:
            raise ValueError(f"the longest side {longest} must exceed the shorter {shorter}")
        self.shorter = shorter
        self.longest = longest

    def __call__(self, image: Image.Image) -> Image.Image:
        from torchvision.transforms import functional

        width, height = image.size
        short, long = sorted((width, height))
        new_short, new_long = self.shorter, int(self.shorter * long / short)
        if new_long > self.longest:
            new_short, new_long = max(1, int(self.longest * new_short / new_long)), self.longest
        new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
        return functional.resize(image, [new_height, new_width], antialias=True)


def _eight_bits(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image ("I;16", "I;16B", or "I" of 0-65535) as 8 bits ("L"), its
    values scaled (PIL's own conversion clips: 1000 of 65535, near black, became white)."""
    if image.mode != "I" and not image.mode.startswith("I;16"):
        return image
    pixels = np.asarray(image)
    if pixels.dtype.kind == "i":  # "I" holds 32-bit signed values: those of 16 bits are read
        pixels = pixels.clip(0, 65535)
    return Image.fromarray((pixels >> 8).astype(np.uint8))


def _claimed_size(error: Exception) -> str:
    """The pixels PIL's message says a refused image claims."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return f"its header claims {found.group(1)} pixels" if found else "it is too large"
