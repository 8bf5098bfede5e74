"""Two ways of running a checkpoint on the same images: do they read them the same?

    python benchmarks/parity.py --model M.pt --input DIR [--limit 2000] [--against onnx|bfloat16]
                                [--onnx M.onnx]

Both run the model as the runner prepares it (calibrated; core.inference), on every batch of
the folder's images decoded once with the runner's dataset, one torch thread:
- onnx (the default): PyTorch against ONNX Runtime. --model is exported to ONNX (into a
  temporary file, unless --onnx names one exported already);
- bfloat16: float32 against CPU autocast to bfloat16 (runtime.cpu_precision), whatever this
  CPU has (software bfloat16 where it has no AMX: the same numbers, only slower).
Prints one Markdown row: images, readings that differ, the largest logit and confidence
differences, and each way's whole-captcha accuracy where the names carry labels.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import load_checkpoint, with_model_settings  # noqa: E402
from core.config import load_config  # noqa: E402
from core.data import CaptchaDataset, make_loader, scan_folder  # noqa: E402
from core.inference import for_inference  # noqa: E402
from core.onnx_model import export_onnx, load_onnx, paired_logits  # noqa: E402
from core.runtime import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint (.pt)")
    parser.add_argument("--input", required=True, help="folder of captchas (recursive)")
    parser.add_argument("--limit", type=int, default=None, help="the first N files only")
    parser.add_argument("--against", choices=("onnx", "bfloat16"), default="onnx")
    parser.add_argument("--onnx", default=None, help="--model already exported (default: "
                                                     "export it now)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.model)
    cfg = with_model_settings(load_config(), ckpt)
    with tempfile.TemporaryDirectory() as work:
        if args.against == "onnx":
            path = args.onnx or str(Path(work) / "m.onnx")
            if not args.onnx:
                export_onnx(ckpt, path)
            onnx = load_onnx(path)
            engines = ("PyTorch", "ONNX Runtime")

            def both(images):
                return paired_logits(ckpt, onnx, images)
        else:
            engines = ("float32", "bfloat16")
            models = [for_inference(ckpt.model, ckpt.temperature, p) for p in engines]

            def both(images):
                return tuple(m(images) for m in models)
        items = scan_folder(args.input, cfg.labels)[:args.limit]
        loader = make_loader(CaptchaDataset(args.input, items, ckpt.codec, ckpt.image), 64, -1,
                             torch.device("cpu"))
        read = differ = 0
        logit_diff = confidence_diff = 0.0
        right = {name: 0 for name in engines}
        labelled = 0
        with torch.inference_mode():
            for batch in loader:
                ok = torch.tensor([not e for e in batch["error"]])
                if not ok.any():
                    continue
                images = batch["image"][ok]
                logits = dict(zip(engines, both(images)))
                decoded = {name: ckpt.codec.decode(x) for name, x in logits.items()}
                a, b = decoded.values()
                read += len(images)
                differ += sum(x != y for x, y in zip(a.texts, b.texts))
                first, second = logits.values()
                logit_diff = max(logit_diff, (first - second).abs().max().item())
                confidence_diff = max(confidence_diff,
                                      (a.confidence - b.confidence).abs().max().item())
                labels = [ckpt.codec.label_of(t) for t in batch["target"][ok].tolist()]
                labelled += sum(label is not None for label in labels)
                for name, d in decoded.items():
                    right[name] += sum(label == text for label, text in zip(labels, d.texts))
    print(f"machine: {cpu_name()}; model {args.model} ({ckpt.arch}); input {args.input}")
    print(f"| model | images read | readings that differ | largest logit difference | largest "
          f"confidence difference | read whole, {engines[0]} | read whole, {engines[1]} |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    accuracy = {name: f"{n / labelled:.2%}" if labelled else "-" for name, n in right.items()}
    print(f"| {ckpt.arch} | {read:,} | {differ} | {logit_diff:.2g} | {confidence_diff:.2g} | "
          f"{accuracy[engines[0]]} | {accuracy[engines[1]]} |")


if __name__ == "__main__":
    main()
