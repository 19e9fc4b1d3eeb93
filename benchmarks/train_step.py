"""Training throughput (images/s) per family at paper resolution and batch (SPEC §2.1-2.4).

Usage: python benchmarks/train_step.py [--device cpu|cuda] [--steps N] [--amp] [--compile]
       [--families shape,texture,...] [--stylegan2 cpu-64,cpu-128,p4|none]
       [--batch N] [--warmup N] [--threads auto|N] [--bf16 auto|on|off]. Random inputs;
       VGG terms off (no weights needed).

texture, cascade and pix2pix run as groups (`_groups.py`): each texture preset, the cascade
(default and P0's literal dilations) and pix2pix, next to a reference generator of the same
task trained by the same step (same discriminator, losses and optimizers): a DeepFill v2-style
gated inpainter with contextual attention, or junyanz's `unet_256`. One JSON line per network
and precision: params, GFLOP per step (FlopCounterMode: G and D forward and backward), median
s/step over `--steps` interleaved steps after `--warmup`, images/s, `gflop_ratio`, `time_ratio`,
threads, 1-minute load average before and after, commit. `--bf16 auto` adds bf16-autocast rows
where `models.runtime.bf16_native` says bf16 is native (`--amp`: bf16 rows as well).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import emit  # noqa: E402
from benchmarks._groups import build_group, example_batch, gflop, load_1m, params_m  # noqa: E402
from lesion_studio.models.config import default_config  # noqa: E402
from lesion_studio.models.runtime import bf16_native, free_cores  # noqa: E402
from lesion_studio.models.trainer import STRATEGIES  # noqa: E402

#: Families timed as a group next to a reference network (`_groups.py`).
GROUP_FAMILIES = ("texture", "cascade", "pix2pix")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def group_rows(family: str, device: torch.device, args: argparse.Namespace, bf16: bool) -> list[dict]:
    """One record per network of `family`'s group, trained by the family's own step strategy."""
    import statistics

    group = build_group(family)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    model = default_config(family).model
    for attr in ("perceptual_weights", "content_weights"):
        if hasattr(model, attr):
            setattr(model, attr, "disabled")
    if family == "cascade":
        model.stage1_steps = 0  # time stage 2 (adversarial + L1), the dearer one
    batch = args.batch or model.batch_size
    images, masks = example_batch(group.patch_px, batch, device)
    strategies = {}
    for entry in group.entries:  # every network trained by the same step: same D, losses, optimizers
        strategy = STRATEGIES[family](model, 1000, device, autocast)
        net = entry.net.to(device).train()
        strategy.generator = strategy.g = net
        strategy.optimizers["generator"] = torch.optim.Adam(net.parameters(), lr=model.lr_g, betas=tuple(model.betas))
        strategy.wrap(compile_=args.compile, ddp=False, device_ids=None)
        strategies[entry.name] = strategy

    def step(name: str, i: int) -> None:
        strategies[name].optimize_parameters(images, masks, i)
        _sync(device)

    load_before = load_1m()
    flops = {e.name: gflop(lambda e=e: step(e.name, 0)) for e in group.entries}  # also the first warm-up
    for i in range(1, args.warmup):
        for e in group.entries:
            step(e.name, i)
    samples: dict[str, list[float]] = {e.name: [] for e in group.entries}
    for i in range(args.steps):  # interleaved: every network sees the same load
        for e in group.entries:
            t = time.perf_counter()
            step(e.name, args.warmup + i)
            samples[e.name].append(time.perf_counter() - t)
    load_after = load_1m()
    ref = group.reference
    ref_s = statistics.median(samples[ref.name])
    rows = []
    for e in group.entries:
        dt = statistics.median(samples[e.name])
        rows.append({
            "bench": "train_step", "group": family, "network": e.name, "reference": ref.name,
            "patch_px": group.patch_px, "batch": batch, "precision": "bf16-autocast" if bf16 else "fp32",
            "g_params_m": params_m(e.net), "gflop_per_step": round(flops[e.name], 2),
            "s_per_step": round(dt, 3), "images_per_s": round(batch / dt, 3),
            "gflop_ratio": round(flops[e.name] / flops[ref.name], 3), "time_ratio": round(dt / ref_s, 3),
            "n": args.steps, "warmup": args.warmup, "device": str(device), "threads": torch.get_num_threads(),
            "compile": args.compile, "load_1m_before": load_before, "load_1m_after": load_after,
        })
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--families", default="shape,texture,cascade,pix2pix")
    p.add_argument("--stylegan2", default="cpu-64,cpu-128",
                   help="StyleGAN2 presets to time for B-SG/M-SG/C-SG (p4, cpu-128, cpu-64), or 'none'")
    p.add_argument("--batch", type=int, default=0, help="batch of the grouped families (0: the paper's)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per network of a group (>= 1)")
    p.add_argument("--threads", default="auto", help="torch threads: auto (the free cores) or a number")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto", help="bf16 rows for the groups")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(free_cores() if args.threads == "auto" else int(args.threads))
    precisions = [False]
    if args.amp or args.bf16 == "on" or (args.bf16 == "auto" and bf16_native(device)):
        precisions.append(True)
    for family in args.families.split(","):
        if family in GROUP_FAMILIES:
            for bf16 in precisions:
                for row in group_rows(family, device, args, bf16):
                    emit(row)
            continue
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
    if args.stylegan2 != "none":
        stylegan2_rows(device, args.steps, args.stylegan2.split(","), amp=args.amp)


#: The CT runs' recipe (scripts/train_default_models.py --task ct-stylegan2): DiffAugment and
#: signed-distance masks; timed as `recipe = "ct"` rows beside the plain StyleGAN2 step.
CT_RECIPE = {"stylegan2-joint": dict(diffaugment=["translation", "cutout"], mask_sigma_px=4.0),
             "stylegan2-mask": dict(diffaugment=["translation"], mask_sigma_px=4.0),
             "stylegan2-cond": dict(diffaugment=["translation", "cutout"], mask_sigma_px=4.0)}


def stylegan2_rows(device: torch.device, steps: int, presets: list[str], *, amp: bool = False) -> None:
    """One row per StyleGAN2 family (P4 §3), size preset and recipe (`plain`: StyleGAN2 as
    published; `ct`: with the CT runs' DiffAugment and signed-distance masks, `time_ratio`
    against the plain row of the same process): mean seconds of a plain G+D step
    (`s_per_step`) and of one step that also runs the lazy R1 and path-length passes
    (`s_reg_step`; R1 runs every 16th step, path length every 4th when the preset keeps it)."""
    from lesion_studio.models.config import STYLEGAN2_FAMILIES, stylegan2_config

    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    plain_s: dict[tuple[str, str], float] = {}
    for preset, family, recipe in ((p, f, r) for p in presets for f in STYLEGAN2_FAMILIES for r in ("plain", "ct")):
        model = stylegan2_config(family, preset, **(CT_RECIPE[family] if recipe == "ct" else {}))
        strategy = STRATEGIES[family](model, 1000, device, autocast)
        n, b = model.patch_px, model.batch_size
        images = torch.rand(b, 1, n, n, device=device) * 2 - 1
        masks = torch.zeros(b, 1, n, n, device=device)
        masks[..., n // 3 : n // 2, n // 3 : n // 2] = 1
        plain = [i for i in range(1, 64 * steps) if i % model.r1_every and i % model.pl_every][: steps + 1]

        def timed(indices: list[int]) -> float:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for step in indices:
                strategy.optimize_parameters(images, masks, step)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - t) / len(indices)

        timed(plain[:1])  # warm-up
        dt = timed(plain[1:])
        reg = timed([0])  # step 0 runs R1 (and path length when on)
        plain_s.setdefault((preset, family), dt)
        emit({"bench": "train_step", "family": family, "preset": preset, "recipe": recipe, "device": str(device),
              "patch_px": n, "batch": b, "amp_bf16": amp, "s_per_step": round(dt, 3), "s_reg_step": round(reg, 3),
              "images_per_s": round(b / dt, 2), "time_ratio": round(dt / plain_s[(preset, family)], 3),
              "threads": torch.get_num_threads(),
              "g_params": sum(p.numel() for p in strategy.generator.parameters()),
              "load_avg_1m": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
