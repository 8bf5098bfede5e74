"""ONNX files: a checkpoint exported for ONNX Runtime, and read back as a Checkpoint.

    export_onnx(ckpt, "models/mine.onnx")       # the checkpoint's network, self-described
    ckpt = load_onnx("models/mine.onnx", labels=cfg.labels, image=cfg.image)
    logits = ckpt.model(images)                 # an OnnxModel: uint8 (B, 3, H, W) -> logits

The file holds the network as trained (uint8 RGB images in, raw logits out: the calibration
temperature is not folded in) and, as metadata, everything the checkpoint says about what it
reads: architecture, codec, alphabet (class order), label lengths, naming, input size, crop,
colour order, temperature and the format version (METADATA_KEYS, docs/onnx.md). Everything
after the network — decoding, confidences, every output of a night — is the same code as for a
`.pt` checkpoint: OnnxModel is a torch module whose forward runs ONNX Runtime.

`onnxruntime` (and `onnx`, to export) come from requirements-onnx.txt; without them a `.onnx`
model is refused with a line naming that file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import Checkpoint, CheckpointError, check_expected
from .config import ImageConfig, LabelConfig
from .files import atomic_write
from .inference import for_inference
from .labels import build_codec
from .models import codec_kind, torch_pooling

FORMAT = "captcha-reader-onnx"
FORMAT_VERSION = 1
PREFIX = "captcha."          # every metadata key of ours starts with it
INPUT, OUTPUT = "images", "logits"
OPSET = 17
REQUIREMENTS = "requirements-onnx.txt"

# what the metadata holds, each a string (JSON where it is structured)
METADATA_KEYS = ("format", "format_version", "arch", "codec", "labels", "image", "temperature",
                 "colour_order", "input", "blank", "source_sha256", "summary")


def _import(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise CheckpointError(f"ONNX models need the {module} package: pip install -r "
                              f"{REQUIREMENTS}") from None


def is_onnx_path(path: str | Path) -> bool:
    return str(path).lower().endswith(".onnx")


def export_onnx(ckpt: Checkpoint, path: str | Path) -> dict[str, str]:
    """Write `ckpt`'s network to `path` as ONNX (dynamic batch; dynamic width too for the
    sequence models, which read any width), with its description as metadata; checked with
    onnx.checker before it replaces `path`. Returns the metadata written."""
    onnx = _import("onnx")
    model = _exportable(ckpt.model)
    sequence = ckpt.codec.kind == "ctc"
    dynamic = {INPUT: {0: "batch", **({3: "width"} if sequence else {})},
               OUTPUT: {0: "batch", **({1: "frames"} if sequence else {})}}
    example = torch.zeros(2, 3, ckpt.image.height, ckpt.image.width, dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the LSTM's initial state is made from the batch's size in the graph, so any batch
        # size reads (tests/test_onnx.py reads batches of 1, 3 and 12)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*LSTM")
        # the TorchScript-based exporter: the torch.export-based one needs onnxscript, one more
        # dependency for the same graph; its deprecation notice is torch's, not the user's
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.onnx")
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*(legacy TorchScript-based ONNX|feature will be removed)")
        # the LSTM's checks of its input's size: constants of the graph, as they are of the model
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), buffer, input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_axes=dynamic, opset_version=OPSET,
                          dynamo=False)
    proto = onnx.load_model_from_string(buffer.getvalue())
    metadata = describe(ckpt)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = PREFIX + key, value
    proto.producer_name = "captcha-reader"
    proto.doc_string = (f"{ckpt.arch} captcha reader: uint8 RGB images (batch, 3, "
                        f"{ckpt.image.height}, width) in, logits out; see the captcha.* metadata")
    onnx.checker.check_model(proto, full_check=True)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return metadata


def _exportable(model: nn.Module) -> nn.Module:
    """The model as the runner predicts with it (core.inference.for_inference, batch norm
    folded; the temperature left to the metadata), on the CPU in the standard memory format
    (ONNX has no other), with PyTorch's pooling in place of StridedMaxPool (the same values; its
    strided views do not trace)."""
    return torch_pooling(for_inference(model).cpu().to(memory_format=torch.contiguous_format))


def describe(ckpt: Checkpoint) -> dict[str, str]:
    """The metadata of an ONNX file made from `ckpt` (values are strings, keys without
    PREFIX)."""
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "arch": ckpt.arch,
        "codec": ckpt.codec.kind,
        "labels": json.dumps(dataclasses.asdict(ckpt.labels), ensure_ascii=False),
        "image": json.dumps(dataclasses.asdict(ckpt.image)),
        "temperature": repr(float(ckpt.temperature)),
        "colour_order": "RGB",
        "input": ("uint8, (batch, 3, height, width), RGB: each image scaled to the height "
                  "keeping its aspect ratio, then padded on the right with its last column or "
                  "squeezed to the width (core.images.fit_size)"),
        "blank": "0" if ckpt.codec.kind == "ctc" else "none",
        "source_sha256": ckpt.sha256,
        "summary": json.dumps(ckpt.summary, default=str, ensure_ascii=False),
    }


class OnnxModel(nn.Module):
    """An ONNX network as a torch module: uint8 images (B, 3, H, W) in, float32 logits out,
    divided by `temperature`, on the device the images came from. The ONNX Runtime session
    is made in the process that first predicts, with as many threads as torch has there (a
    loader worker: one): one made before the DataLoader forks would be copied, thread pool
    and all, into every worker. Copies made by with_temperature share the sessions."""

    def __init__(self, data: bytes, temperature: float = 1.0,
                 providers: tuple = ("CPUExecutionProvider",), sessions: dict | None = None):
        super().__init__()
        self.data, self.temperature, self.providers = data, float(temperature), providers
        self._sessions = {} if sessions is None else sessions    # by process id

    def with_temperature(self, temperature: float) -> "OnnxModel":
        return OnnxModel(self.data, temperature, self.providers, self._sessions)

    def session(self):
        pid = os.getpid()
        if pid not in self._sessions:
            self._sessions[pid] = make_session(self.data, self.providers)
        return self._sessions[pid]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.detach().to("cpu", torch.uint8).contiguous().numpy()
        logits = torch.from_numpy(self.session().run([OUTPUT], {INPUT: pixels})[0])
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return logits.to(images.device)

    def __getstate__(self) -> dict[str, Any]:   # pickled into spawned workers: no session
        return {**self.__dict__, "_sessions": {}}


def paired_logits(ckpt: Checkpoint, onnx_ckpt: Checkpoint,
                  images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both models' logits for the same uint8 images, each model prepared as the runner
    prepares it (core.inference.for_inference: calibrated)."""
    with torch.inference_mode():
        return tuple(for_inference(c.model, c.temperature)(images).float()
                     for c in (ckpt, onnx_ckpt))


def compare_outputs(ckpt: Checkpoint, onnx_ckpt: Checkpoint,
                    images: torch.Tensor) -> tuple[float, int]:
    """The largest difference between the two models' logits (paired_logits) for `images`,
    and how many of them they read the same."""
    outputs = paired_logits(ckpt, onnx_ckpt, images)
    texts = [ckpt.codec.decode(logits).texts for logits in outputs]
    same = sum(a == b for a, b in zip(*texts))
    return (outputs[0] - outputs[1]).abs().max().item(), same


def make_session(data: bytes, providers: tuple):
    ort = _import("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # no busy-waiting between operators: the loader's other workers want the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=options, providers=list(providers))


def cuda_provider_available() -> bool:
    """Whether this onnxruntime can run on CUDA (onnxruntime-gpu's build)."""
    return "CUDAExecutionProvider" in _import("onnxruntime").get_available_providers()


def onnx_providers(device: torch.device) -> tuple:
    """ONNX Runtime's execution providers for `device`: CUDA's on a CUDA device (refused where
    this onnxruntime has none), the CPU's otherwise."""
    if device.type != "cuda":
        return ("CPUExecutionProvider",)
    if not cuda_provider_available():
        raise CheckpointError("--device cuda with an ONNX model needs onnxruntime's CUDA "
                              "execution provider: pip install onnxruntime-gpu (in place of "
                              "onnxruntime)")
    return (("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider")


def load_onnx(path: str | Path, labels: LabelConfig | None = None,
              image: ImageConfig | None = None,
              device: torch.device | str = "cpu") -> Checkpoint:
    """An ONNX file written by export_onnx, as a Checkpoint whose model runs ONNX Runtime. As
    load_checkpoint: refuses (CheckpointError, one line) a file that cannot be read, is not
    ours, or reads other labels or sizes than `labels` and `image` pin."""
    path, device = Path(path), torch.device(device)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read model {path}: {exc.strerror or exc}") from None
    _import("onnxruntime")
    providers = onnx_providers(device)
    try:
        session = make_session(data, ("CPUExecutionProvider",))
    except Exception as exc:   # onnxruntime raises its own types for a damaged file
        first = (str(exc).splitlines() or [""])[0][:160]
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(exc).__name__}: "
                              f"{first})") from None
    props = session.get_modelmeta().custom_metadata_map
    meta = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a captcha reader's ONNX file (no {PREFIX}format "
                              f"metadata: export it with python -m jobs.export)")
    try:
        version = int(meta["format_version"])
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{path} has ONNX format version {version}; this program "
                                  f"reads up to {FORMAT_VERSION}")
        arch = meta["arch"]
        kind = codec_kind(arch)
        ckpt_labels = LabelConfig(**json.loads(meta["labels"]))
        ckpt_image = ImageConfig(**json.loads(meta["image"]))
        codec = build_codec(ckpt_labels, kind)
        temperature = float(meta["temperature"])
        summary = json.loads(meta.get("summary", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has a damaged description ({exc})") from None
    if meta.get("codec") != kind or not temperature > 0:
        raise CheckpointError(f"{path} has a damaged description (codec {meta.get('codec')!r}, "
                              f"temperature {temperature!r})")
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [INPUT] or inputs[0].type != "tensor(uint8)":
        raise CheckpointError(f"{path} does not take {INPUT!r} as uint8 images")
    check_expected(path, ckpt_labels, ckpt_image, labels, image)
    del session   # each predicting process makes its own (OnnxModel.session)
    model = OnnxModel(data, 1.0, providers)
    return Checkpoint(model, arch, codec, ckpt_labels, ckpt_image, summary, str(path),
                      hashlib.sha256(data).hexdigest(), temperature, "ONNX Runtime")
