"""Train the small demo models shipped in `lesion_studio/resources/models`.

They are trained on lesion-studio's *phantom* chest data (synthetic anatomy, not patients) so
that a fresh install can try the synthesis workflow without any download. They are demo
models: for research, train on real data with `lesion-studio train CONFIG.toml`.

    python scripts/train_default_models.py [--steps 1500] [--out lesion_studio/resources/models]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file, save_file

from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.config import default_config
from lesion_studio.models.trainer import train

DESCRIPTION = (
    "Demo model trained on lesion-studio phantom chest data (synthetic anatomy, not patients); "
    "for trying the workflow, not for research or clinical use."
)

#: name -> (family, model overrides). Small widths and 64 px patches keep CPU previews fast.
MODELS = {
    "demo_texture_inpaint": ("texture", dict(base_channels=16, disc_channels=16, patch_px=64, perceptual_weights="disabled", lr_g=1e-3, batch_size=8)),
    "demo_outpaint": ("outpaint", dict(base_channels=16, disc_channels=16, patch_px=64, perceptual_weights="disabled", lr_g=1e-3, batch_size=8)),
    "demo_shape": ("shape", dict(base_channels=32, patch_px=64, lr_g=1e-3, lr_d=5e-4, batch_size=16)),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "lesion_studio" / "resources" / "models")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "phantom_chest"
        generate_phantom_dataset(data, "chest", args.cases, seed=7, size_px=256)
        for name, (family, overrides) in MODELS.items():
            if args.only and name not in args.only:
                continue
            started = time.time()
            config = default_config(
                family, dataset=str(data), out_dir=str(Path(tmp) / name), steps=args.steps,
                val_every=max(50, args.steps // 10), checkpoint_every=0, sample_every=0, log_every=50, device="cpu",
            )
            config.model = dataclasses.replace(config.model, **overrides)
            result = train(config)
            source = Path(result.best_checkpoint or result.checkpoint)
            # Ship the generator only: inference never loads the discriminator.
            weights = load_file(str(source.with_name(source.name + ".safetensors")))
            save_file({k: v for k, v in weights.items() if k.startswith("generator.")}, str(args.out / f"{name}.safetensors"))
            meta = json.loads(source.with_name(source.name + ".json").read_text())
            meta["description"] = DESCRIPTION
            meta["networks"] = ["generator"]
            meta["training_state"] = None  # weights only: a demo model is not resumed
            meta_path = args.out / f"{name}.json"
            meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
            print(f"{name}: {family}, {args.steps} steps in {time.time() - started:.0f} s -> {meta_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
