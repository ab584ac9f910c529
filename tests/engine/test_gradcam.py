"""Grad-CAM: for a network whose head is pooling and a linear layer, the gradient-weighted
map is, by the chain rule, the class activation map of its last stage (Zhou et al. 2016),
computed here from the head's weights alone; the picture shows the image the network saw."""

import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from engine.use.gradcam import class_activation_map, overlay
from engine.use.trained import load_trained_model
from tests.engine.tiny_runs import trained_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gradcam") / "run"
    trained_run(folder, dataset="shapes", image_size=16, epochs=1)
    return load_trained_model(folder / "checkpoints" / "best.pt", run_id=1)


def class_activations(trained, image: torch.Tensor, target: int) -> torch.Tensor:
    """CAM from the head: relu(sum_k w_ck A_k), scaled to a top of 1, at the input's size."""
    model = trained.model
    with torch.no_grad():
        x = F.relu(model.bn1(model.conv1(image[None])))
        stage = model.layer3(model.layer2(model.layer1(x)))
        cam = F.relu(torch.einsum("k,nkhw->nhw", model.fc.weight[target], stage))[:, None]
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max() if cam.max() > 0 else cam


def test_grad_cam_is_the_class_activation_map_of_the_last_stage(trained):
    generator = torch.Generator().manual_seed(0)
    for index in range(4):
        image = torch.randn(3, 16, 16, generator=generator)
        for target in (None, index):
            heat, chosen, probabilities = class_activation_map(trained, image, target)
            assert chosen == (int(probabilities.argmax()) if target is None else target)
            assert heat.shape == (16, 16)
            assert float(heat.min()) >= 0 and float(heat.max()) <= 1 + 1e-6
            expected = class_activations(trained, image, chosen)
            assert torch.allclose(heat, expected, atol=1e-5)
            assert float(probabilities.sum()) == pytest.approx(1, abs=1e-5)


def test_the_picture_is_the_input_with_the_map_over_it(trained):
    image = torch.zeros(3, 16, 16)
    heat = torch.zeros(16, 16)
    heat[:8] = 1.0  # the upper half hot, the lower half cold
    picture = overlay(trained, image, heat)
    assert isinstance(picture, Image.Image) and picture.size == (224, 224)
    upper, lower = picture.getpixel((100, 40)), picture.getpixel((100, 180))
    assert upper[0] > upper[2] and lower[2] > lower[0]  # hot is red, cold is blue
