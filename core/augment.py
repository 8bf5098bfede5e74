"""Random, label-preserving changes to each training batch, so that a network trained on a few
thousand captchas learns the characters rather than the images.

    augment = build_augment(cfg.augment)    # None when cfg.augment.enabled is false
    loss = codec.loss(model(augment(images)), targets)

Geometry (a small shift, rotation, scaling and slant of the whole image, edges repeated
outward), photometry (brightness, contrast, a slight colour cast) and the wear of a scan (a
slight blur on some images, sensor-like noise), drawn per image from the
torch random generator of the batch's device: seeded runs repeat, on CPU and on CUDA alike, and
nothing depends on the number of DataLoader workers. It works on whole batches where the model
is, so it costs one pass over the batch and no per-image Python. The magnitudes are small on
purpose: a captcha's characters must stay inside the image and keep their shapes (an O
stretched too far is a 0), and nothing is ever mirrored (a mirrored text is another text).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .config import AugmentConfig


@dataclass
class Draw:
    """One batch's random choices, one value (or one per channel) per image."""
    angle: torch.Tensor        # radians
    scale: torch.Tensor        # > 1 enlarges
    shift: torch.Tensor        # (B, 2): x and y, in fractions of the width and height
    contrast: torch.Tensor     # (B, 1, 1, 1)
    gain: torch.Tensor         # (B, C, 1, 1)
    brightness: torch.Tensor   # (B, 1, 1, 1), on the 0-255 scale
    shear: torch.Tensor        # x moves by shear * y (y in -1..1 of the height): a slant
    blurred: torch.Tensor      # (B, 1, 1, 1): 1 where the image is blurred, else 0
    noise: torch.Tensor        # (B, 1, 1, 1): standard deviation, on the 0-255 scale

    def select(self, rows: torch.Tensor) -> Draw:
        """The choices for the images at `rows` only."""
        return Draw(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


class Augment(nn.Module):
    def __init__(self, cfg: AugmentConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 -> float32 on the same 0-255 scale (what the models accept).
        With cfg.share below 1, each image is changed with that probability; the others are
        passed exactly as they are (the change resamples the image, which blurs it a little)
        and cost nothing."""
        draw = self.draw(images.shape[0], images.shape[1], images.device)
        if self.cfg.share >= 1:
            return apply(images, draw)
        out = images.to(torch.float32)
        rows = (torch.rand(images.shape[0], device=images.device) < self.cfg.share).nonzero()[:, 0]
        if rows.numel():
            out[rows] = apply(images[rows], draw.select(rows))
        return out

    def draw(self, b: int, c: int, device: torch.device) -> Draw:
        cfg = self.cfg

        def uniform(size, limit: float) -> torch.Tensor:
            return (torch.rand(size, device=device) * 2 - 1) * limit

        return Draw(angle=uniform(b, math.radians(cfg.rotate_degrees)),
                    scale=1 + uniform(b, cfg.scale),
                    shift=torch.stack([uniform(b, cfg.shift_x), uniform(b, cfg.shift_y)], 1),
                    contrast=1 + uniform((b, 1, 1, 1), cfg.contrast),
                    gain=1 + uniform((b, c, 1, 1), cfg.colour),
                    brightness=uniform((b, 1, 1, 1), cfg.brightness * 255),
                    shear=uniform(b, cfg.shear),
                    blurred=(torch.rand((b, 1, 1, 1), device=device) < cfg.blur).float(),
                    noise=torch.rand((b, 1, 1, 1), device=device) * cfg.noise * 255)


def apply(images: torch.Tensor, d: Draw) -> torch.Tensor:
    """The changes `d` describes, applied to a (B, C, H, W) batch: each image turned by
    d.angle, scaled by d.scale and slanted by d.shear about its centre and moved by d.shift,
    then ((x - mean) * contrast + mean) * gain + brightness, blurred by a [1 2 1] / 4 kernel each
    way where d.blurred, with Gaussian noise of d.noise added, clamped to 0-255."""
    b, c, h, w = images.shape
    x = images.to(torch.float32)
    # affine_grid maps each output pixel to where it samples the input, in coordinates
    # normalised to [-1, 1] on each axis. Turning the content by `angle` in pixels is, there,
    # the inverse rotation with the aspect ratio in its off-diagonal terms (without them a wide
    # captcha would be sheared, not turned).
    cos, sin = torch.cos(d.angle) / d.scale, torch.sin(d.angle) / d.scale
    theta = torch.stack([
        torch.stack([cos, sin * h / w + d.shear * h / w, -2 * d.shift[:, 0]], 1),
        torch.stack([-sin * w / h, cos, -2 * d.shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # One multiply-add per value; the mean from every fourth pixel each way is as good and
    # 16 times cheaper.
    mean = x[:, :, ::4, ::4].mean(dim=(1, 2, 3), keepdim=True)
    factor = d.contrast * d.gain
    x = torch.addcmul(mean * (1 - d.contrast) * d.gain + d.brightness, x, factor)
    if bool(d.blurred.any()):
        x = torch.lerp(x, _blur121(x), d.blurred)
    if bool(d.noise.any()):
        x = torch.addcmul(x, torch.randn_like(x), d.noise)
    return x.clamp_(0, 255)


def _blur121(x: torch.Tensor) -> torch.Tensor:
    """Each channel smoothed by [1 2 1] / 4 across and down (a Gaussian of about 0.7 px)."""
    c = x.shape[1]
    k = x.new_tensor([0.25, 0.5, 0.25])
    x = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), k.view(1, 1, 1, 3).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), k.view(1, 1, 3, 1).repeat(c, 1, 1, 1),
                    groups=c)


def build_augment(cfg: AugmentConfig) -> Augment | None:
    return Augment(cfg) if cfg.enabled else None
