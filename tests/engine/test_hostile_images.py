"""Images made to hurt: one so thin its resize would take gigabytes, and 16-bit greyscale
files whose values PIL's own conversion to 8 bits clips to white."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from engine.data.image_files import LONGEST_SIDE_TIMES_SIZE, evaluation_transform, read_image
from engine.use.predict import ImageFiles
from engine.use.trained import RESIZE_CROP, Preprocessing

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("shape", [(100_000, 1), (1, 100_000), (50_000, 7)])
def test_a_very_thin_image_is_resized_to_a_bounded_size(tmp_path, shape):
    path = tmp_path / "thin.png"
    Image.new("RGB", shape, (200, 30, 30)).save(path)
    assert path.stat().st_size < 2000  # a small file on disk
    transform = evaluation_transform(32, MEAN, STD)  # unbounded, 36 x 3,600,000 px
    resized = transform.transforms[0](read_image(path, "RGB"))
    assert max(resized.size) <= LONGEST_SIDE_TIMES_SIZE * 32 and min(resized.size) >= 1
    assert transform(read_image(path, "RGB")).shape == (3, 32, 32)
    crop = Preprocessing(3, 16, RESIZE_CROP, MEAN, STD)
    index, image, reason = ImageFiles([path], crop)[0]
    assert index == 0 and reason == "" and image.shape == (3, 16, 16)


@pytest.mark.parametrize("size", [16, 32, 224])
@pytest.mark.parametrize("shape", [(640, 480), (480, 640), (333, 500), (17, 16), (16, 16)])
def test_ordinary_photos_are_preprocessed_as_before(size, shape):
    """Bit for bit torchvision's Resize of the shorter side, which runs evaluated with."""
    generator = torch.Generator().manual_seed(size)
    pixels = torch.randint(0, 256, (shape[1], shape[0], 3), generator=generator, dtype=torch.uint8)
    photo = Image.fromarray(pixels.numpy())
    before = transforms.Compose(
        [
            transforms.Resize(int(size * 1.14), antialias=True),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    assert torch.equal(evaluation_transform(size, MEAN, STD)(photo), before(photo))


VALUES = np.array([[1000, 65535, 0], [256, 255, 40000]], dtype=np.uint16)
EIGHT_BITS = np.array([[3, 255, 0], [1, 0, 156]], dtype=np.uint8)  # each value >> 8


@pytest.mark.parametrize(
    ("name", "mode"), [("grey.png", "I;16"), ("grey.tif", "I;16"), ("grey.pgm", "I")]
)
def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped(tmp_path, name, mode):
    path = tmp_path / name
    Image.fromarray(VALUES).save(path)
    with Image.open(path) as opened:
        assert opened.mode == mode  # what PIL reads each as
    assert np.array_equal(np.asarray(read_image(path, "L")), EIGHT_BITS)
    colour = np.asarray(read_image(path, "RGB"))
    assert colour.shape == (2, 3, 3) and all(
        np.array_equal(colour[..., channel], EIGHT_BITS) for channel in range(3)
    )


def test_a_big_endian_16_bit_image_is_scaled_too(tmp_path):
    path = tmp_path / "big-endian.tif"
    Image.frombytes("I;16B", (3, 2), VALUES.astype(">u2").tobytes()).save(path)
    assert np.array_equal(np.asarray(read_image(path, "L")), EIGHT_BITS)


def test_32_bit_values_outside_16_bits_are_clipped_to_its_range(tmp_path):
    path = tmp_path / "wide.tif"
    values = np.array([[-5, 70_000, 512]], dtype=np.int32)
    Image.fromarray(values).save(path)
    assert np.array_equal(np.asarray(read_image(path, "L")), [[0, 255, 2]])
