"""Random, label-preserving changes to each training batch, so that a network trained on a few
thousand captchas learns the characters rather than the images.

    augment = build_augment(cfg.augment)    # None when cfg.augment.enabled is false
    loss = codec.loss(model(augment(images)), targets)

Geometry (a small shift, rotation, scaling and slant of the whole image, and optionally a
smooth warp along it that stretches, squeezes and lifts each character differently; edges
repeated outward), photometry (brightness, contrast, a slight colour cast) and the wear of a
scan (a slight blur on some images, grey sensor-like noise), drawn per image from the
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
    # (B, 2, K): x and y displacements of K points spread evenly along the width, in fractions
    # of the height; between them linear. None: no warp.
    warp: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> Draw:
        """The choices for the images at `rows` only."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Draw(**{name: None if v is None else v[rows] for name, v in values.items()})


class Augment(nn.Module):
    def __init__(self, cfg: AugmentConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 -> float32 on the same 0-255 scale (what the models accept).
        With cfg.share below 1, each image is changed with that probability; the others are
        passed exactly as they are (the change resamples the image, which blurs it a little)
        and cost nothing."""
        b, c, h, w = images.shape
        draw = self.draw(b, c, images.device, aspect=w / h)
        if self.cfg.share >= 1:
            return apply(images, draw)
        out = images.to(torch.float32)
        rows = (torch.rand(images.shape[0], device=images.device) < self.cfg.share).nonzero()[:, 0]
        if rows.numel():
            out[rows] = apply(images[rows], draw.select(rows))
        return out

    def draw(self, b: int, c: int, device: torch.device, aspect: float = 1.0) -> Draw:
        """Choices for b images of c channels, `aspect` times as wide as high (the warp's
        points: one per half a height of width, about two per character)."""
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
                    noise=torch.rand((b, 1, 1, 1), device=device) * cfg.noise * 255,
                    warp=uniform((b, 2, max(2, round(2 * aspect) + 1)), cfg.warp)
                    if cfg.warp else None)


def apply(images: torch.Tensor, d: Draw) -> torch.Tensor:
    """The changes `d` describes, applied to a (B, C, H, W) batch: each image turned by
    d.angle, scaled by d.scale and slanted by d.shear about its centre and moved by d.shift,
    then ((x - mean) * contrast + mean) * gain + brightness, blurred by a [1 2 1] / 4 kernel each
    way where d.blurred, with Gaussian noise of d.noise added, clamped to 0-255."""
    b, c, h, w = images.shape
    x = images.to(torch.float32)
    # The sampling grid maps each output pixel to where it samples the input, in coordinates
    # normalised to [-1, 1] on each axis. Turning the content by `angle` in pixels is, there,
    # the inverse rotation with the aspect ratio in its off-diagonal terms (without them a wide
    # captcha would be sheared, not turned).
    cos, sin = torch.cos(d.angle) / d.scale, torch.sin(d.angle) / d.scale
    grid = _sampling_grid(cos, sin * h / w + d.shear * h / w, -2 * d.shift[:, 0],
                          -sin * w / h, cos, -2 * d.shift[:, 1], h, w)
    if d.warp is not None:
        grid = grid + _warp_field(d.warp, h, w)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # One multiply-add per value; the mean from every fourth pixel each way is as good and
    # 16 times cheaper.
    mean = x[:, :, ::4, ::4].mean(dim=(1, 2, 3), keepdim=True)
    factor = d.contrast * d.gain
    x = torch.addcmul(mean * (1 - d.contrast) * d.gain + d.brightness, x, factor)
    rows = d.blurred.view(-1).nonzero()[:, 0]
    if rows.numel():
        x[rows] = _blur121(x[rows])
    if bool(d.noise.any()):
        # Grey noise, one draw per pixel shared by the channels: a third of the random numbers
        # (torch draws them at a few ns each, a large share of a CPU batch's augmentation).
        x = torch.addcmul(x, torch.randn((b, 1, h, w), device=x.device), d.noise)
    return x.clamp_(0, 255)


def _sampling_grid(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
                   e: torch.Tensor, f: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """F.affine_grid for the per-image rows [a b c; d e f] (each of shape (B,)), align_corners
    False, built by broadcasting: (B, H, W, 2) sampling coordinates in [-1, 1]."""
    xs = (torch.arange(w, device=a.device, dtype=torch.float32) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=a.device, dtype=torch.float32) * 2 + 1) / h - 1
    xs, ys = xs.view(1, 1, w), ys.view(1, h, 1)

    def plane(p, q, r):
        return p.view(-1, 1, 1) * xs + (q.view(-1, 1, 1) * ys + r.view(-1, 1, 1))

    return torch.stack([plane(a, b, c), plane(d, e, f)], dim=3)


def _warp_field(warp: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 1, W, 2): the displacement of every column, in the grid's normalised coordinates,
    from (B, 2, K) displacements of K points along the width in fractions of the height.
    Where neighbouring points move apart or together, the text between them is stretched or
    squeezed; where they move up and down, its baseline bends: each character gets a shape and
    a place of its own, as in another font."""
    field = F.interpolate(warp, size=w, mode="linear", align_corners=True)   # (B, 2, W)
    scale = torch.tensor([2.0 * h / w, 2.0], device=warp.device).view(1, 2, 1)  # height -> [-1, 1]
    return (field * scale).transpose(1, 2).unsqueeze(1)


def _blur121(x: torch.Tensor) -> torch.Tensor:
    """Each channel smoothed by [1 2 1] / 4 across and down (a Gaussian of about 0.7 px), the
    edges repeated; shifted slices, which cost a fraction of a grouped convolution on CPU."""
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    x = (x[..., :-2] + x[..., 2:]).mul_(0.25).add_(x[..., 1:-1], alpha=0.5)
    return (x[..., :-2, :] + x[..., 2:, :]).mul_(0.25).add_(x[..., 1:-1, :], alpha=0.5)


def build_augment(cfg: AugmentConfig) -> Augment | None:
    return Augment(cfg) if cfg.enabled else None
