"""Batch export throughput: images/s at 1024² with the default (paper-sized) texture generator.

Usage: python benchmarks/export.py [--device cpu|cuda] [--cases 3] [--per-image 2]
       [--formats png,nifti,nnunet,coco,dicom] [--threads N]
Random weights (speed does not depend on them) saved as a real checkpoint; a 1024² chest
phantom dataset; the whole exporter (plans, generator passes, pasting, every writer, fsyncs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import cpu_device, emit  # noqa: E402
from lesion_studio.core.export.config import parse_batch_config  # noqa: E402
from lesion_studio.core.phantom import generate_phantom_dataset  # noqa: E402
from lesion_studio.models.batch_export import BatchExporter  # noqa: E402
from lesion_studio.models.checkpoint import save_checkpoint  # noqa: E402
from lesion_studio.models.config import default_config  # noqa: E402
from lesion_studio.models.presets import resolve_preset  # noqa: E402
from lesion_studio.models.networks import build_generator  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", type=int, default=3)
    p.add_argument("--per-image", type=int, default=2)
    p.add_argument("--formats", default="png,nifti,nnunet,coco,dicom")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_phantom_dataset(root / "ds", "chest", args.cases, size_px=1024)
        config = default_config("texture")
        config.model = resolve_preset(config.model)  # the sidecar and the record name the numbers
        generator = build_generator(config.model)
        stem = save_checkpoint(root / "texture", family="texture", config=config.to_dict(),
                               networks={"generator": generator}, step=0,
                               normalization={"lo": 0.0, "hi": 65535.0})
        formats = args.formats.split(",")
        batch = parse_batch_config({
            "seed": 0, "input": {"dataset": str(root / "ds")}, "synthesis": {"per_image": args.per_image},
            "models": {"inpaint": str(stem), "device": args.device},
            "output": {"dir": str(root / "out"), "formats": formats},
        }, path=root / "bench.toml")
        exporter = BatchExporter(batch, device=args.device)
        exporter.models.get("inpaint")  # load outside the timing
        t = time.perf_counter()
        result = exporter.run()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t
        device = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_device()
        emit({"bench": "export_1024", "device": device, "threads": torch.get_num_threads(),
              "model": f"texture preset={config.model.preset} base_channels={config.model.base_channels} "
                       f"patch_px={config.model.patch_px}",
              "formats": formats, "images": result.done, "failed": len(result.failures),
              "seconds": round(elapsed, 2), "images_per_s": round(result.done / elapsed, 3)})


if __name__ == "__main__":
    main()
