"""Inference cost of each generator next to a reference network of the same task, same process.

Usage: python benchmarks/infer.py [--device cpu|cuda] [--families texture,cascade,pix2pix]
       [--repeats 7] [--warmup 2] [--batch 1] [--threads auto|N] [--bf16 auto|on|off]
       [--compile] [--channels-last] [--no-error]

Groups (`_groups.py`): the texture presets at 256² next to a DeepFill v2-style gated inpainter
with contextual attention; the cascade at its own 128² next to the same DeepFill v2 at 128²;
pix2pix at 256² next to junyanz's `unet_256`. One JSON line per network and precision: params,
GFLOP (FlopCounterMode, batch 1), median latency of `--repeats` timed calls after `--warmup`
untimed ones, images/s, `gflop_ratio` and `time_ratio` to the group's reference, device, torch
threads, 1-minute load average before and after, commit. The networks of a group are timed in
interleaved rounds (A, B, C, ref, A, B, ...), so load that comes and goes hits all of them alike.

bf16 (`--bf16 auto`: where `models.runtime.bf16_native` says the CPU/GPU runs it natively):
the same rows under `torch.autocast(bfloat16)`, plus `bf16_error` lines: max / mean absolute
difference to fp32 of the bundled texture and outpaint models' composited output on real CT
nodule patches from the bundled library (model units, [-1, 1]; and in HU). Random weights elsewhere:
speed does not depend on them.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import emit  # noqa: E402
from benchmarks._groups import Group, build_group, example_batch, gflop, load_1m, params_m  # noqa: E402
from lesion_studio.models.runtime import bf16_native, free_cores  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "lesion_studio" / "resources" / "models"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def measure_group(group: Group, device: torch.device, args: argparse.Namespace, bf16: bool) -> list[dict]:
    """One record per network of `group`: cost, latency and ratios to the group's reference."""
    images, masks = example_batch(group.patch_px, args.batch, device)
    one_image, one_mask = images[:1], masks[:1]
    nets = {}
    for entry in group.entries:
        net = entry.net.to(device).eval()
        if args.channels_last:
            net = net.to(memory_format=torch.channels_last)
        nets[entry.name] = torch.compile(net) if args.compile else net
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
        masks = masks.contiguous(memory_format=torch.channels_last)

    def call(name: str, x: torch.Tensor, m: torch.Tensor) -> None:
        with torch.no_grad(), _autocast(device, bf16):
            group.call(nets[name], x, m)
        _sync(device)

    load_before = load_1m()
    with torch.no_grad():  # counted on the plain modules (compile would hide the ops), fp32
        flops = {e.name: gflop(lambda e=e: group.call(e.net, one_image, one_mask)) for e in group.entries}
    for _ in range(args.warmup):
        for e in group.entries:
            call(e.name, images, masks)
    samples: dict[str, list[float]] = {e.name: [] for e in group.entries}
    for _ in range(args.repeats):  # interleaved rounds: every network sees the same load
        for e in group.entries:
            t = time.perf_counter()
            call(e.name, images, masks)
            samples[e.name].append(time.perf_counter() - t)
    load_after = load_1m()
    ref = group.reference
    ref_ms = statistics.median(samples[ref.name]) * 1000
    records = []
    for e in group.entries:
        ms = statistics.median(samples[e.name]) * 1000
        records.append({
            "bench": "infer", "group": group.family, "network": e.name, "reference": ref.name,
            "patch_px": group.patch_px, "batch": args.batch, "precision": "bf16-autocast" if bf16 else "fp32",
            "params_m": params_m(e.net), "gflop_per_image": round(flops[e.name], 3),
            "median_ms": round(ms, 2), "min_ms": round(min(samples[e.name]) * 1000, 2),
            "ms_per_image": round(ms / args.batch, 2), "images_per_s": round(args.batch * 1000 / ms, 3),
            "gflop_ratio": round(flops[e.name] / flops[ref.name], 3), "time_ratio": round(ms / ref_ms, 3),
            "n": args.repeats, "warmup": args.warmup, "device": str(device), "threads": torch.get_num_threads(),
            "compile": args.compile, "channels_last": args.channels_last,
            "load_1m_before": load_before, "load_1m_after": load_after,
        })
    return records


def _ct_patches(n: int, count: int, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` n² CT patches (HU) centred on a real nodule, in the model range, with its mask:
    the bundled real-nodule library's axial centre slices (library series, no shared data needed)."""
    from lesion_studio.core.classical.nodule_library import bundled_library
    from lesion_studio.core.geometry.crops import resize_image, resize_mask

    library = bundled_library()
    images, masks = [], []
    for index in range(min(count, len(library))):
        hu, mask = library.axial(index)
        images.append(np.clip((resize_image(hu.astype(np.float32), (n, n)) - lo) / (hi - lo) * 2 - 1, -1, 1))
        masks.append(resize_mask(mask > 0, (n, n)).astype(np.float32))
    return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(np.stack(masks)[:, None])


def _regions(lesions: torch.Tensor, model) -> torch.Tensor:
    """The pixels a model generates, as the engine asks for them: the lesion (inpainting), or
    all but the lesion inside the crop less its context band (outpainting)."""
    from lesion_studio.core.geometry.composition import outpaint_region

    if not getattr(model, "invert_masks", False):
        return lesions
    fraction = getattr(model, "context_fraction", 0.0)
    return torch.stack([torch.from_numpy(outpaint_region(m[0].numpy() > 0, context_fraction=fraction)
                                         .astype(np.float32))[None] for m in lesions])


def shipped_generators() -> list[str]:
    """The bundled texture-family and outpaint checkpoints (names), read from their sidecars."""
    import json

    names = []
    for sidecar in sorted(SHIPPED.glob("*.json")):
        if json.loads(sidecar.read_text()).get("family") in ("texture", "outpaint"):
            names.append(sidecar.stem)
    return names


def bf16_error(device: torch.device) -> list[dict]:
    """bf16-autocast vs fp32 on the bundled texture/outpaint models (trained weights), on real
    CT nodule patches (their training units: HU)."""
    from lesion_studio.models.checkpoint import load_checkpoint
    from lesion_studio.models.inference import _generator_from

    records = []
    for name in shipped_generators():
        ck = load_checkpoint(SHIPPED / name)
        net, model = _generator_from(ck, device)
        lo, hi = float(ck.meta["normalization"]["lo"]), float(ck.meta["normalization"]["hi"])
        images, lesions = _ct_patches(model.patch_px, 16, lo, hi)
        holes = _regions(lesions, model)
        images, holes = images.to(device), holes.to(device)
        outs = {}
        for bf16 in (False, True):
            with torch.no_grad(), _autocast(device, bf16):
                _, refined = net(images, holes)
            outs[bf16] = (refined.float() * holes + images * (1 - holes))
        diff = (outs[True] - outs[False]).abs()[holes.bool()]
        records.append({
            "bench": "bf16_error", "checkpoint": name, "preset": model.preset, "patches": int(images.shape[0]),
            "patch_px": model.patch_px, "device": str(device), "region": "generated pixels (hole)",
            "max_abs_model_units": round(float(diff.max()), 5), "mean_abs_model_units": round(float(diff.mean()), 5),
            "max_abs_image_units": round(float(diff.max()) * (hi - lo) / 2, 3),
            "mean_abs_image_units": round(float(diff.mean()) * (hi - lo) / 2, 3),
            "image_range": [lo, hi], "load_1m": load_1m(),
        })
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--families", default="texture,cascade,pix2pix")
    p.add_argument("--presets", default="", help="texture presets to time (default: all)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", default="auto", help="torch threads: auto (the free cores) or a number")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--no-error", action="store_true", help="skip the bf16 error check on the shipped models")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(free_cores() if args.threads == "auto" else int(args.threads))
    precisions = [False]
    if args.bf16 == "on" or (args.bf16 == "auto" and bf16_native(device)):
        precisions.append(True)
    presets = tuple(s for s in args.presets.split(",") if s) or None
    torch.manual_seed(0)
    for family in args.families.split(","):
        group = build_group(family, presets=presets)
        for bf16 in precisions:
            for record in measure_group(group, device, args, bf16):
                emit(record)
    if True in precisions and not args.no_error:
        for record in bf16_error(device):
            emit(record)


if __name__ == "__main__":
    main()
