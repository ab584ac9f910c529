"""Grad-CAM: where in an image a run's network looked for a class, drawn over the image.

Selvaraju et al. 2017: the last stage's activations, each channel weighed by the mean
gradient of the class's logit over it, summed and kept where positive, give a coarse map
of the evidence for the class; upsampled to the input and laid over the image the network
saw (after its resize and crop).
"""

import argparse
import json
import os
import sys

import torch
from PIL import Image
from torch.nn import functional as F

from engine.contract.errors import RunError, UnreadableImage
from engine.contract.stopping import StopRequest
from engine.data.image_files import read_image
from engine.models import model_stages
from engine.use.trained import TrainedModel, load_trained_model

# The picture written is at least this many pixels on a side, so a 28 or 32 px input can
# be seen; larger inputs keep their size.
SMALLEST_SIDE = 224
# How much of the heat map shows over the image.
OPACITY = 0.45


def class_activation_map(
    trained: TrainedModel, image: torch.Tensor, target: int | None
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """The Grad-CAM map (H, W of the input, values 0-1) of `image` (C, H, W, preprocessed)
    for class `target` (the predicted one when None), that class, and the probabilities."""
    model = trained.model
    stages = [part for part in model_stages(model) if part.startswith("stage")]
    last_stage = model_stages(model)[stages[-1]][-1]
    seen: dict[str, torch.Tensor] = {}

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        seen["activations"] = output

    hook = last_stage.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(image[None].requires_grad_(True))
            chosen = int(logits.argmax(1)) if target is None else target
            logits[0, chosen].backward()
    finally:
        hook.remove()
    activations = seen["activations"]
    weights = activations.grad.mean(dim=(2, 3), keepdim=True)
    heat = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    heat = F.interpolate(heat, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    top = float(heat.max())
    heat = heat / top if top > 0 else heat
    return heat, chosen, logits.detach().float().softmax(1)[0]


def heat_colours(heat: torch.Tensor) -> torch.Tensor:
    """A map of values 0-1 as RGB (3, H, W) on a blue-to-red scale through green and yellow."""
    red = (1.5 - (4 * heat - 3).abs()).clamp(0, 1)
    green = (1.5 - (4 * heat - 2).abs()).clamp(0, 1)
    blue = (1.5 - (4 * heat - 1).abs()).clamp(0, 1)
    return torch.stack([red, green, blue])


def overlay(trained: TrainedModel, image: torch.Tensor, heat: torch.Tensor) -> Image.Image:
    """The input as the network saw it (normalisation undone), the heat map laid over it."""
    preprocessing = trained.preprocessing
    mean = torch.tensor(preprocessing.mean).view(-1, 1, 1)
    std = torch.tensor(preprocessing.std).view(-1, 1, 1)
    pixels = (image * std + mean).clamp(0, 1).expand(3, -1, -1)
    mixed = (1 - OPACITY) * pixels + OPACITY * heat_colours(heat)
    picture = Image.fromarray((mixed * 255).round().byte().permute(1, 2, 0).numpy(), "RGB")
    scale = max(1, -(-SMALLEST_SIDE // max(picture.size)))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def run_gradcam(args: argparse.Namespace, stop: StopRequest) -> int:
    """`python -m engine gradcam`: write the overlay PNG and one JSON line saying what it shows
    (`{"kind": "gradcam", "path", "class", "probability", "predicted"}`); asked to stop
    before the picture is written, nothing is written (exit 130)."""
    try:
        trained = load_trained_model(args.checkpoint, args.run)
        classes = trained.classes
        if args.target is not None and args.target not in classes:
            shown = ", ".join(classes[:10]) + (" ..." if len(classes) > 10 else "")
            raise RunError(
                "bad_input", f"{args.target!r} is not a class of the run", f"choose one of {shown}"
            )
        target = None if args.target is None else classes.index(args.target)
        picture = read_image(args.image, trained.preprocessing.mode)
    except RunError as error:
        print(f"error: {error.message}; {error.hint}".rstrip("; "), file=sys.stderr)
        return 2
    except UnreadableImage as error:
        print(f"error: {error}; give a PNG or JPEG file", file=sys.stderr)
        return 2
    image = trained.preprocessing.transform()(picture)
    heat, chosen, probabilities = class_activation_map(trained, image, target)
    if stop.requested:
        return 130
    temporary = args.out.with_name(f".{args.out.name}.{os.getpid()}.partial")
    try:
        overlay(trained, image, heat).save(temporary, format="PNG")
        temporary.replace(args.out)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        print(f"error: cannot write {args.out} ({error.strerror or error})", file=sys.stderr)
        return 2
    answer = {
        "kind": "gradcam",
        "path": str(args.out),
        "class": classes[chosen],
        "probability": float(probabilities[chosen]),
        "predicted": classes[int(probabilities.argmax())],
    }
    print(json.dumps(answer), flush=True)
    return 0
