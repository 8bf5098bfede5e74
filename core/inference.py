"""Prediction-only rewrites of a trained model: the same outputs (up to float rounding), less
work per batch. The model in the checkpoint stays as trained; the runner predicts with

    model = for_inference(ckpt.model, ckpt.temperature)

What each rewrite saves is measured by benchmarks/inference_rewrites.py (docs/performance.md).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def for_inference(model: nn.Module, temperature: float = 1.0) -> nn.Module:
    """A copy of `model` for prediction only, in eval mode and channels-last: the calibration
    temperature folded into the heads, each batch normalisation into the convolution before it.
    The original stays trainable. An ONNX model (core.onnx_model) gets only the temperature:
    ONNX Runtime fuses the rest itself."""
    if hasattr(model, "with_temperature"):
        return model.with_temperature(temperature)
    model = copy.deepcopy(model).eval()
    fold_temperature(model, temperature)
    fold_batchnorm(model)
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
