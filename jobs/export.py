"""Export a trained model to ONNX, for ONNX Runtime (run_batch.py --model FILE.onnx) or any
other program: the file describes itself (alphabet, lengths, input size, temperature) in its
metadata.

    python -m jobs.export --model models/mine.pt --output models/mine.onnx
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from core.checkpoint import CheckpointError, load_checkpoint
from core.onnx_model import compare_outputs, export_onnx, is_onnx_path, load_onnx
from jobs.common import fail


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--model", required=True, help="checkpoint to export (a .pt file)")
    parser.add_argument("--output", required=True, help="ONNX file to write (FILE.onnx)")
    args = parser.parse_args(argv)
    if not is_onnx_path(args.output):
        fail(f"--output must end in .onnx (run_batch.py reads a model by its suffix): "
             f"{args.output}")
    if Path(args.output).resolve() == Path(args.model).resolve():
        fail("--output must not be the checkpoint itself")
    torch.set_num_threads(1)
    try:
        ckpt = load_checkpoint(args.model)
        metadata = export_onnx(ckpt, args.output)
        onnx = load_onnx(args.output)
    except (CheckpointError, OSError, ValueError) as exc:
        fail(str(exc))
    images = torch.randint(0, 256, (8, 3, ckpt.image.height, ckpt.image.width),
                           generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    diff, same = compare_outputs(ckpt, onnx, images)
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output} ({size / 1024:,.0f} KiB, {ckpt.arch}: labels of "
          f"{ckpt.labels.length} characters of {ckpt.labels.alphabet!r} at "
          f"{ckpt.image.height}x{ckpt.image.width}, temperature {ckpt.temperature:.4f}; "
          f"{len(metadata)} metadata entries)")
    print(f"ONNX Runtime against PyTorch on {len(images)} random images: largest logit "
          f"difference {diff:.2g}, {same} of {len(images)} readings the same")


if __name__ == "__main__":
    main()
