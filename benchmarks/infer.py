"""Inference latency: ms per 256² generator pass at batch 1 and 16, per image family.

Usage: python benchmarks/infer.py [--device cpu|cuda] [--repeats N] [--amp] [--compile]
Random weights (speed does not depend on them); generator forward only, as the synthesizer runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import emit, summarize_ms  # noqa: E402
from lesion_studio.models.config import default_config  # noqa: E402
from lesion_studio.models.networks import build_generator  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--families", default="texture,cascade,pix2pix")
    p.add_argument("--batches", default="1,16")
    args = p.parse_args()
    device = torch.device(args.device)
    for family in args.families.split(","):
        model = default_config(family).model
        g = build_generator(model).to(device).eval()
        if args.compile:
            g = torch.compile(g)
        for batch in [int(b) for b in args.batches.split(",")]:
            x = torch.rand(batch, 1, 256, 256, device=device) * 2 - 1
            m = torch.zeros_like(x)
            m[..., 96:160, 96:160] = 1
            ctx = torch.autocast(device.type, dtype=torch.bfloat16) if args.amp else contextlib.nullcontext()

            def run():
                with torch.no_grad(), ctx:
                    g(m * 2 - 1) if family == "pix2pix" else g(x, m)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            run()
            samples = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                run()
                samples.append(time.perf_counter() - t)
            emit({"bench": "infer_256", "family": family, "device": str(device), "batch": batch,
                  "amp_bf16": args.amp, "compile": args.compile, **summarize_ms(samples),
                  "ms_per_image": round(min(samples) * 1000 / batch, 2)})


if __name__ == "__main__":
    main()
