"""`lesion-studio phantom`: write a deterministic phantom dataset (no Qt, no patient data)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesion_studio.core.dataset import DATASET_FILE, validate_dataset
from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.phantom import DEFAULT_SIZE_PX, MAX_SIZE_PX, PHANTOM_KINDS, generate_phantom_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesion-studio phantom",
        description=(
            "Write a synthetic PHANTOM dataset (images/, masks/, location_maps/, dataset.json) "
            "with exact lesion masks, for tests and tutorials. Not patient data."
        ),
    )
    parser.add_argument("--kind", choices=PHANTOM_KINDS, required=True,
                        help="chest: radiograph with nodules; kub: abdominal radiograph with "
                             "stones; ct: abdominal CT slice (HU) with kidney stones")
    parser.add_argument("--n", type=int, required=True, help="number of cases")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE_PX,
                        help=f"image side in pixels, 64..{MAX_SIZE_PX} (default: {DEFAULT_SIZE_PX})")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder that already holds a dataset")
    return parser


def main(argv: list[str]) -> int:
    """Run the phantom command; returns the exit code (0 ok, 1 failed, 2 usage)."""
    args = build_parser().parse_args(argv)
    if args.n < 1 or args.seed < 0:
        print("lesion-studio phantom: --n must be >= 1 and --seed >= 0", file=sys.stderr)
        return 2
    if not 64 <= args.size <= MAX_SIZE_PX:
        print(f"lesion-studio phantom: --size must be 64..{MAX_SIZE_PX} pixels, got {args.size}",
              file=sys.stderr)
        return 2
    out: Path = args.out
    if out.exists() and not out.is_dir():
        print(f"{out}: exists and is not a folder", file=sys.stderr)
        return 1
    if (out / DATASET_FILE).exists() and not args.overwrite:
        print(f"{out / DATASET_FILE}: a dataset is already there; use --overwrite to replace it",
              file=sys.stderr)
        return 1
    try:
        path = generate_phantom_dataset(out, args.kind, args.n, seed=args.seed, size_px=args.size)
    except (LesionStudioError, OSError) as exc:
        print(f"lesion-studio phantom: {exc}", file=sys.stderr)
        return 1
    report = validate_dataset(out)
    print(f"wrote {args.n} {args.kind} phantom cases to {path.parent} (seed {args.seed}, {args.size} px)")
    if not report.ok:
        print(report.format(), file=sys.stderr)
        return 1
    return 0
