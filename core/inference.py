"""Prediction-only rewrites of a trained model: the same outputs (up to float rounding), less
work per batch. The model in the checkpoint stays as trained; the runner predicts with

    model, precision = prepare(ckpt, device, cfg.runtime.cpu_precision)

What each rewrite saves is measured by benchmarks/inference_rewrites.py (docs/performance.md).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .engine import cpu_autocast
from .runtime import resolve_precision


def prepare(ckpt, device: torch.device, cpu_precision: str) -> tuple[nn.Module, str]:
    """The checkpoint's model as the runner predicts with it on `device` (for_inference), and
    the precision it computes in there (core.runtime.resolve_precision; ONNX Runtime's models:
    float32)."""
    onnx = hasattr(ckpt.model, "with_temperature")
    precision = "float32" if onnx else resolve_precision(cpu_precision, device)
    return for_inference(ckpt.model, ckpt.temperature, precision), precision


def for_inference(model: nn.Module, temperature: float = 1.0,
                  precision: str = "float32") -> nn.Module:
    """A copy of `model` for prediction only, in eval mode and channels-last: the calibration
    temperature folded into the heads, each batch normalisation into the convolution before it;
    with precision "bfloat16", run under CPU autocast to it (BFloat16Autocast). The original
    stays trainable. An ONNX model (core.onnx_model) gets only the temperature: ONNX Runtime
    fuses the rest itself."""
    if hasattr(model, "with_temperature"):
        return model.with_temperature(temperature)
    model = copy.deepcopy(model).eval()
    fold_temperature(model, temperature)
    fold_batchnorm(model)
    model = model.to(memory_format=torch.channels_last)
    return BFloat16Autocast(model) if precision == "bfloat16" else model


class BFloat16Autocast(nn.Module):
    """`model` run under CPU autocast to bfloat16: convolutions, matrix products and the LSTM
    take bfloat16 inputs (8 bits of mantissa) and the rest stays float32; float32 logits out.
    On CPUs with AMX 1.3-1.6x the runner's images per second; confidences within 0.07 of
    float32's, so only readings near a tie can change (docs/performance.md, *bfloat16 on a CPU
    with AMX*; benchmarks/parity.py --against bfloat16)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with cpu_autocast("bfloat16"):
            return self.model(images).float()


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
