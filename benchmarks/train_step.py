"""Training throughput (images/s) per family at paper resolution and batch (SPEC §2.1-2.4).

Usage: python benchmarks/train_step.py [--device cpu|cuda] [--steps N] [--amp] [--compile]
       [--families shape,texture,...]. Random inputs; VGG terms off (no weights needed).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import emit  # noqa: E402
from lesion_studio.models.config import default_config  # noqa: E402
from lesion_studio.models.trainer import STRATEGIES  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--families", default="shape,texture,cascade,pix2pix")
    args = p.parse_args()
    device = torch.device(args.device)
    for family in args.families.split(","):
        model = default_config(family).model
        for attr in ("perceptual_weights", "content_weights"):
            if hasattr(model, attr):
                setattr(model, attr, "disabled")
        if family == "cascade":
            model.stage1_steps = 0  # time stage 2 (adversarial + L1), the dearer one
        autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.amp else contextlib.nullcontext
        strategy = STRATEGIES[family](model, 1000, device, autocast)
        strategy.wrap(compile_=args.compile, ddp=False, device_ids=None)
        n, b = model.patch_px, model.batch_size
        images = torch.rand(b, 1, n, n, device=device) * 2 - 1
        masks = torch.zeros(b, 1, n, n, device=device)
        masks[..., n // 3 : n // 2, n // 3 : n // 2] = 1
        strategy.optimize_parameters(images, masks, 0)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for step in range(1, args.steps + 1):
            strategy.optimize_parameters(images, masks, step)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / args.steps
        emit({"bench": "train_step", "family": family, "device": str(device), "patch_px": n, "batch": b,
              "amp_bf16": args.amp, "compile": args.compile, "s_per_step": round(dt, 3),
              "images_per_s": round(b / dt, 2), "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
