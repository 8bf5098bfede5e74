"""The networks, chosen by name from a registry and built from a narrow ModelSpec.

    codec = build_codec(cfg.labels, codec_kind("crnn"))
    spec = ModelSpec.from_config(cfg.image, codec)
    model = build_model("crnn", spec)
    logits = model(images)          # images: (B, 3, H, W) uint8 RGB -> (B, steps, classes)

Two families: per-position readers (`seed`, `seed-gap`, `seed-pos`, `wide-pos`: one classifier
per character, a fixed number of characters) and the sequence reader `crnn` (a column of
frames read with CTC, labels of any length). Each architecture names the codec it needs
(codec_kind). Every model takes uint8 images and normalises them itself, so no caller can feed
it differently from how it was trained. Layer sizes are computed from the spec, never written
in: with the seed's settings, `seed` and `seed-gap` have the seed post's 162,252 and 116,960
parameters.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ImageConfig


@dataclass(frozen=True)
class ModelSpec:
    """What a network needs to know: its input size and its output shape."""
    height: int
    width: int
    steps: int          # output positions (characters, or time steps for a CTC model)
    classes: int        # classes per position
    channels: int = 3

    @classmethod
    def from_config(cls, image: ImageConfig, codec) -> "ModelSpec":
        return cls(height=image.height, width=image.width,
                   steps=codec.output_steps, classes=codec.output_classes)


_REGISTRY: dict[str, Callable[[ModelSpec], nn.Module]] = {}
_CODECS: dict[str, str] = {}


def register(name: str, codec: str = "fixed-length"):
    def add(builder):
        _REGISTRY[name] = builder
        _CODECS[name] = codec
        return builder
    return add


def codec_kind(name: str) -> str:
    """The label codec architecture `name` reads with: "fixed-length" or "ctc"."""
    if name not in _CODECS:
        raise ValueError(f"unknown model architecture {name!r}; "
                         f"available: {', '.join(available_models())}")
    return _CODECS[name]


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model architecture {name!r}; "
                         f"available: {', '.join(available_models())}") from None
    return builder(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# uint8 pixels -> about zero mean and unit variance.
INPUT_SHIFT, INPUT_SCALE = 127.5, 64.0


def network_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, 3, H, W) -> float32 channels-last in the network's input range. A batch
    that is channels-last already (core.data's are) converts without a transposing copy."""
    x = images.to(torch.float32, memory_format=torch.channels_last)
    return x.sub_(INPUT_SHIFT).div_(INPUT_SCALE)


class CaptchaNet(nn.Module):
    """Base: uint8 in, normalised inside, one linear head per output position, logits stacked as
    (B, steps, classes)."""

    def __init__(self, spec: ModelSpec, features: nn.Module, feature_dim: int):
        super().__init__()
        self.features = features
        self.heads = nn.ModuleList(nn.Linear(feature_dim, spec.classes) for _ in range(spec.steps))
        self.input_size = (spec.height, spec.width)
        self._init_weights()
        # Channels-last convolutions run about twice as fast on CPU (docs/performance.md) and
        # suit CUDA tensor cores too.
        self.to(memory_format=torch.channels_last)

    def _init_weights(self) -> None:
        # He initialisation for the ReLU layers (as torchvision's classifiers do). With PyTorch's
        # default init these plain stacks shrink the signal layer by layer: on our captchas both
        # seed networks sat at chance-level loss for 14 epochs before we changed this.
        for module in self.features.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Centred inputs start training much faster than the seed's plain /255 (its [0, 1]
        # inputs all push the same way).
        x = self.features(network_input(images))
        return torch.stack([head(x) for head in self.heads], dim=1)


class StridedMaxPool(nn.Module):
    """nn.MaxPool2d(kernel) with the stride its kernel, each side 1 or 2 ((2, 2), or (2, 1):
    the rows only), the same values, computed as element-wise maxima over strided views: on
    channels-last CPU tensors, much faster than PyTorch's pooling kernel (2x2 on 32 channels at
    24x80, batches of 32: 22-25 against 51-78 us an image; (2, 1) 9-11 against 85-93;
    benchmarks/inference_rewrites.py, docs/performance.md). Its backward pass, though, is slow
    (masks and fills for each maximum: half of a seed-pos training step), so where a gradient is
    wanted PyTorch's kernel runs instead: training steps 1.65 times as fast, the same values."""

    def __init__(self, kernel: tuple[int, int] = (2, 2)):
        super().__init__()
        if not set(kernel) <= {1, 2}:
            raise ValueError(f"StridedMaxPool pools 1 or 2 pixels a side, got {kernel}")
        self.kernel = tuple(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return F.max_pool2d(x, self.kernel, self.kernel)
        if self.kernel[0] == 2:
            h = x.shape[-2] // 2 * 2
            x = torch.maximum(x[..., 0:h:2, :], x[..., 1:h:2, :])
        if self.kernel[1] == 2:
            w = x.shape[-1] // 2 * 2
            x = torch.maximum(x[..., 0:w:2], x[..., 1:w:2])
        return x

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"


def torch_pooling(model: nn.Module) -> nn.Module:
    """`model`, changed in place, with PyTorch's MaxPool2d for each StridedMaxPool (the same
    values): what the ONNX export traces (strided views do not), and the baseline
    benchmarks/inference_rewrites.py times the strided pooling against."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, StridedMaxPool):
                setattr(module, name, nn.MaxPool2d(child.kernel, child.kernel))
    return model


def _conv_pool_stack(channels: list[int], padding: int, batchnorm: bool = False) -> nn.Sequential:
    # Pooling before the ReLU gives the same result (both are monotone) on a quarter of the
    # values; the indices of the layers with weights are the seed's either way.
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:]):
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=padding, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers += [StridedMaxPool(), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _conv_pool_output(size: int, blocks: int, padding: int) -> int:
    for _ in range(blocks):
        size = (size + 2 * padding - 2) // 2
    return size


def _check_fits(spec: ModelSpec, name: str, blocks: int, padding: int) -> tuple[int, int]:
    h = _conv_pool_output(spec.height, blocks, padding)
    w = _conv_pool_output(spec.width, blocks, padding)
    if h < 1 or w < 1:
        raise ValueError(f"model {name!r} needs a larger input than {spec.height}x{spec.width} "
                         f"(height x width): {blocks} conv+pool blocks leave {h}x{w}")
    return h, w


@register("seed")
def seed_model(spec: ModelSpec) -> CaptchaNet:
    """The post's `Model`: 4 unpadded conv3x3+maxpool (8-16-32-64), dense 120 and 84."""
    channels = [spec.channels, 8, 16, 32, 64]
    h, w = _check_fits(spec, "seed", len(channels) - 1, padding=0)
    features = nn.Sequential(
        _conv_pool_stack(channels, padding=0), nn.Flatten(),
        nn.Linear(channels[-1] * h * w, 120), nn.ReLU(inplace=True),
        nn.Linear(120, 84), nn.ReLU(inplace=True))
    return CaptchaNet(spec, features, 84)


@register("seed-gap")
def seed_gap_model(spec: ModelSpec) -> CaptchaNet:
    """The post's `Model2`: 5 padded conv3x3+maxpool (8..128), global average pooling."""
    channels = [spec.channels, 8, 16, 32, 64, 128]
    _check_fits(spec, "seed-gap", len(channels) - 1, padding=1)
    features = nn.Sequential(
        _conv_pool_stack(channels, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return CaptchaNet(spec, features, channels[-1])


@register("seed-pos")
def seed_pos_model(spec: ModelSpec) -> CaptchaNet:
    """`seed-gap`'s convolutions with batch normalisation, and pooling that keeps where things
    are: the last feature map is averaged over its height and into two columns per output
    position, so each head sees the part of the image its character sits in instead of one
    global average. Same convolution cost as `seed-gap`."""
    channels = [spec.channels, 8, 16, 32, 64, 128]
    _check_fits(spec, "seed-pos", len(channels) - 1, padding=1)
    columns = 2 * spec.steps
    features = nn.Sequential(
        _conv_pool_stack(channels, padding=1, batchnorm=True),
        nn.AdaptiveAvgPool2d((1, columns)), nn.Flatten())
    return CaptchaNet(spec, features, channels[-1] * columns)


@register("wide-pos")
def wide_pos_model(spec: ModelSpec) -> CaptchaNet:
    """`seed-pos` made cheaper at the front and wider at the back. A stride-2 convolution
    replaces conv+pool at full size (a quarter of the multiply-adds there, no pooling pass over
    the largest map, and no batch normalisation of it, whose backward pass on 8 channels-last
    channels took a quarter of a seed-pos training step); the later blocks are wider
    (16-48-96-192 instead of 16-32-64-128), where the maps are small. Same per-position
    pooling. Against `seed-pos` on the 2-core CPU (benchmarks/train_step.py): about as cheap to
    run, 1.4 times as fast to train, and it learns faster per epoch (README, the bundled model)."""
    stem = 8
    channels = [stem, 16, 48, 96, 192]
    h, w = (spec.height - 1) // 2 + 1, (spec.width - 1) // 2 + 1   # after the stride-2 stem
    _check_fits(dataclasses.replace(spec, height=h, width=w), "wide-pos", len(channels) - 1,
                padding=1)
    columns = 2 * spec.steps
    features = nn.Sequential(
        nn.Conv2d(spec.channels, stem, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
        _conv_pool_stack(channels, padding=1, batchnorm=True),
        nn.AdaptiveAvgPool2d((1, columns)), nn.Flatten())
    return CaptchaNet(spec, features, channels[-1] * columns)


class SequenceNet(CaptchaNet):
    """A sequence reader (CRNN; Shi, Bai & Yao, 2016): convolutions that keep a column per
    frame, a bidirectional LSTM along the width, and one linear layer to the classes of every
    frame, for CTC. Output: (B, frames, classes), frames = width / 8."""

    def __init__(self, spec: ModelSpec, features: nn.Module, column_dim: int, hidden: int):
        super().__init__(dataclasses.replace(spec, steps=1), features, 2 * hidden)
        self.project = nn.Linear(column_dim, hidden)
        self.sequence = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(network_input(images))             # (B, channels, rows, frames)
        x = x.permute(0, 3, 1, 2).flatten(2)                  # (B, frames, channels * rows)
        x, _ = self.sequence(F.relu(self.project(x)))
        return self.heads[0](x)


@register("crnn", codec="ctc")
def crnn_model(spec: ModelSpec) -> SequenceNet:
    """The sequence reader: a stride-2 stem and conv+BN+pool blocks (16-32-64-128 channels),
    the first two pooling both ways, the last rows only, so that a frame is 8 pixels of the
    input's width (a sixth of the 48-pixel reading height); the remaining rows of each column
    feed a 128-unit projection and a bidirectional LSTM of 128 per direction. Needs an input at
    least 16 pixels high and 16 wide.

    Why 8 pixels a frame: CTC starts by reading every frame as the blank, and leaves that
    plateau later the more frames there are to align the characters to. With 4-pixel frames, at
    48 pixels high, a 4-character set sat on it for a quarter of its training and more (a
    throwaway script on Really Simple CAPTCHA's training split: still there after 800 steps
    for 2 of 2 seeds; with 8-pixel frames, gone after 300-400 for both), and 8-pixel frames
    make the LSTM's sequence and the last convolution half as long (about 25 % less time per
    training step). Half a character of 48 pixels high is still 2-3 frames, room for the blank
    between two of the same letters."""
    return _sequence_net(spec, "crnn", stem_pool=False)


@register("crnn-fast", codec="ctc")
def crnn_fast_model(spec: ModelSpec) -> SequenceNet:
    """`crnn` with its stem followed by a 2x2 max pool (as ResNet's stem is), and one pooling
    step fewer at the end: the same layers, weights and 8-pixel frames, but the two
    convolutions after the stem work on a quarter of `crnn`'s pixels, the last on half. About
    twice the images per second of `crnn` on one CPU thread (batches of 32 at 128x48 and
    160x48; benchmarks/sequence_speed.py), for coarser features of small and thin characters (less
    accurate where they are: docs/accuracy.md). Needs an input at least 16 pixels high and 16
    wide."""
    return _sequence_net(spec, "crnn-fast", stem_pool=True)


def _sequence_net(spec: ModelSpec, name: str, stem_pool: bool) -> SequenceNet:
    channels = [16, 32, 64, 128]
    pools = [(2, 2), (2, 1), (1, 1)] if stem_pool else [(2, 2), (2, 2), (2, 1)]
    rows, frames = (spec.height + 1) // 2, (spec.width + 1) // 2       # after the stem
    for ph, pw in ([(2, 2)] if stem_pool else []) + pools:
        rows, frames = rows // ph, frames // pw
    if rows < 1 or frames < 2:
        raise ValueError(f"model {name!r} needs an input of at least 16x16 pixels (height x "
                         f"width), got {spec.height}x{spec.width}")
    layers: list[nn.Module] = [nn.Conv2d(spec.channels, channels[0], 3, stride=2, padding=1,
                                         bias=False),
                               nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)]
    if stem_pool:
        layers.append(StridedMaxPool())
    for c_in, c_out, pool in zip(channels, channels[1:], pools):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
        layers += [StridedMaxPool(pool)] if pool != (1, 1) else []
        layers.append(nn.ReLU(inplace=True))
    return SequenceNet(spec, nn.Sequential(*layers), channels[-1] * rows, hidden=128)
