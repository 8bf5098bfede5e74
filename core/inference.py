"""Prediction-only rewrites of a trained model: the same outputs (up to float rounding), less
work per batch. The model in the checkpoint stays as trained; the runner predicts with

    model = for_inference(ckpt.model, ckpt.temperature)

What each rewrite saves is measured by benchmarks/inference_rewrites.py (docs/performance.md).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .models import INPUT_SCALE, INPUT_SHIFT, CaptchaNet


def for_inference(model: nn.Module, temperature: float = 1.0) -> nn.Module:
    """A copy of `model` for prediction only, in eval mode and channels-last: the calibration
    temperature folded into the heads, each batch normalisation into the convolution before it,
    the input normalisation into the first convolution. The original stays trainable."""
    model = copy.deepcopy(model).eval()
    fold_temperature(model, temperature)
    fold_batchnorm(model)
    fold_input_normalisation(model)
    return model.to(memory_format=torch.channels_last)


def fold_temperature(model: nn.Module, temperature: float) -> None:
    """The heads' logits divided by `temperature`, by dividing their weights and biases."""
    if temperature != 1.0:
        with torch.no_grad():
            for head in model.heads:
                head.weight /= temperature
                head.bias /= temperature


def fold_batchnorm(model: nn.Module) -> None:
    """Each batch normalisation (eval mode) folded into the convolution before it: one pass over
    the activations fewer per layer."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, norm = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    module[i] = nn.utils.fusion.fuse_conv_bn_eval(conv, norm)
                    module[i + 1] = nn.Identity()


def fold_input_normalisation(model: nn.Module) -> None:
    """The first layer replaced by a RawInputConv when it is a plain convolution, and the model
    no longer normalising its input (one pass over the input instead of three); anything else
    is left as it is."""
    if not isinstance(model, CaptchaNet) or not model.normalise_input:
        return
    parent, first = None, model.features
    while isinstance(first, nn.Sequential) and len(first):
        parent, first = first, first[0]
    if parent is None or type(first) is not nn.Conv2d or first.padding_mode != "zeros":
        return
    parent[0] = RawInputConv(first, model.input_size)
    model.normalise_input = False


class RawInputConv(nn.Module):
    """A first convolution that takes the raw 0-255 pixel values instead of normalised ones:
    `normalise` folded into its weights (divided by the scale) and bias (less the shift's share),
    so that one pass over the input (uint8 to float) is left of three. Where the kernel overlaps
    the zero padding the fold alone would be wrong (the padding stands for normalised zeros, raw
    INPUT_SHIFT), so a fixed correction is added along those edges, computed once for the
    model's input size (and on the fly for any other). Outputs equal conv(normalise(x)) up to
    float rounding."""

    def __init__(self, conv: nn.Conv2d, input_size: tuple[int, int]):
        super().__init__()
        self.conv = copy.deepcopy(conv)
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
        with torch.no_grad():
            self.conv.weight.copy_(weight / INPUT_SCALE)
            self.conv.bias = nn.Parameter(
                bias - weight.sum((1, 2, 3)) * (INPUT_SHIFT / INPUT_SCALE), requires_grad=False)
        self.register_buffer("plain_bias", bias.clone(), persistent=False)
        correction, self.regions = self._correction(input_size)
        self.register_buffer("correction", correction, persistent=False)

    def _correction(self, size: tuple[int, int]) -> tuple[torch.Tensor, list[tuple[slice, slice]]]:
        """What the folded convolution misses for inputs of `size`, and the edge bands outside
        which that is exactly zero: top and bottom rows, then left and right columns between
        them. Found by feeding a raw image of INPUT_SHIFT everywhere, normalised all zeros, for
        which the original convolution gives its bias."""
        conv, device = self.conv, self.plain_bias.device
        blank = torch.full((1, conv.in_channels, *size), INPUT_SHIFT, device=device)
        with torch.no_grad():
            missing = self.plain_bias.view(1, -1, 1, 1) - conv(blank)
        rows, cols = (_padded_outputs(size[d], conv.kernel_size[d], conv.stride[d],
                                      conv.padding[d], conv.dilation[d]) for d in (0, 1))
        height, width = len(rows), len(cols)
        top, left = _run(rows), _run(cols)
        bottom, right = min(_run(rows[::-1]), height - top), min(_run(cols[::-1]), width - left)
        middle = slice(top, height - bottom)
        regions = [(r, c) for r, c, n in ((slice(0, top), slice(None), top),
                                          (slice(height - bottom, height), slice(None), bottom),
                                          (middle, slice(0, left), left),
                                          (middle, slice(width - right, width), right)) if n]
        correction = torch.zeros_like(missing)
        for r, c in regions:
            correction[..., r, c] = missing[..., r, c]
        return correction.contiguous(memory_format=torch.channels_last), regions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        correction, regions = self.correction, self.regions
        if correction.shape[-2:] != y.shape[-2:]:
            correction, regions = self._correction((x.shape[-2], x.shape[-1]))
        # The edge bands only: adding the whole correction map costs a pass over the output.
        for r, c in regions:
            y[..., r, c] += correction[..., r, c]
        return y


def _padded_outputs(size: int, kernel: int, stride: int, padding: int, dilation: int) -> list[bool]:
    """For each output position along one axis, whether its kernel window reaches the padding."""
    taps = range(0, dilation * (kernel - 1) + 1, dilation)
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return [any(not 0 <= i * stride - padding + t < size for t in taps) for i in range(out)]


def _run(flags: list[bool]) -> int:
    """How many leading flags are true."""
    n = 0
    while n < len(flags) and flags[n]:
        n += 1
    return n
