"""`lesion-studio phantom`: write a deterministic phantom dataset (no Qt, no patient data).

The settings come from the command line or from the `[phantom]` table of a `--config` TOML
file (the flags win); both are checked by `core.config_schema` against `PHANTOM_SETTINGS`, so
a bad value reads as in every other config: `--size: must be in [64, 4096], got 10`, or
`phantom.toml:3: phantom.size: ...` when it came from the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from lesion_studio.core.config_schema import Problems, Setting, check_tables, check_value, load_toml
from lesion_studio.core.dataset import DATASET_FILE, validate_dataset
from lesion_studio.core.errors import ConfigError, LesionStudioError
from lesion_studio.core.phantom import DEFAULT_SIZE_PX, MAX_SIZE_PX, PHANTOM_KINDS, generate_phantom_dataset

#: The settings of the command: the flags (`--size`) and the `[phantom]` keys (`size`) share names.
PHANTOM_SETTINGS: dict[str, Setting] = {
    "kind": Setting("str", choices=PHANTOM_KINDS, doc="chest: radiograph with nodules; kub: abdominal "
                    "radiograph with stones; ct: abdominal CT slice (HU) with kidney stones"),
    "n": Setting("int", ge=1, doc="number of cases"),
    "out": Setting("path", doc="output folder", check=lambda v: None if v.strip() else "must not be empty"),
    "seed": Setting("int", 0, ge=0, doc="random seed"),
    "size": Setting("int", DEFAULT_SIZE_PX, ge=64, le=MAX_SIZE_PX, doc="image side in pixels"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesion-studio phantom",
        description=(
            "Write a synthetic PHANTOM dataset (images/, masks/, location_maps/, dataset.json) "
            "with exact lesion masks, for tests and tutorials. Not patient data."
        ),
    )
    s = PHANTOM_SETTINGS
    parser.add_argument("--kind", choices=PHANTOM_KINDS, help=s["kind"].doc)
    parser.add_argument("--n", type=int, help=f"{s['n'].doc} (>= 1)")
    parser.add_argument("--out", type=str, help=s["out"].doc)
    parser.add_argument("--seed", type=int, help=f"{s['seed'].doc} (default: 0)")
    parser.add_argument("--size", type=int,
                        help=f"{s['size'].doc}, 64..{MAX_SIZE_PX} (default: {DEFAULT_SIZE_PX})")
    parser.add_argument("--config", type=Path,
                        help="a TOML file with a [phantom] table of the same settings (kind, n, out, seed, "
                             "size); flags given on the command line win")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder that already holds a dataset")
    return parser


def phantom_settings(flags: dict[str, Any], config: Path | None = None) -> dict[str, Any]:
    """The checked settings from the flags given (None: not given) over a `--config` file's
    `[phantom]` table over the defaults; one `ConfigError` per source names every problem."""
    from_file: dict[str, Any] = {}
    if config is not None:
        data, text = load_toml(config, what="phantom config")
        optional = {k: dataclasses.replace(v, default=None, nullable=True) if v.required else v
                    for k, v in PHANTOM_SETTINGS.items()}
        problems = Problems(config, text, "phantom config")
        values = check_tables(data, {"phantom": optional}, problems)["phantom"]
        problems.raise_if_any()
        table = data.get("phantom", {})
        from_file = {k: v for k, v in values.items() if k in table}
    problems = Problems(None, "", "phantom arguments")
    out: dict[str, Any] = {}
    for key, setting in PHANTOM_SETTINGS.items():
        if flags.get(key) is not None:
            value, reason = check_value(flags[key], setting)
            if reason is not None:
                problems.add(f"--{key}", reason)
            out[key] = value
        elif key in from_file:
            out[key] = from_file[key]
        elif setting.required:
            problems.add(f"--{key}", "is required" + (" (or [phantom] " + key + " in --config)" if config else ""))
        else:
            out[key] = setting.default
    problems.raise_if_any()
    return out


def main(argv: list[str]) -> int:
    """Run the phantom command; returns the exit code (0 ok, 1 failed, 2 usage)."""
    args = build_parser().parse_args(argv)
    flags = {key: getattr(args, key) for key in PHANTOM_SETTINGS}
    try:
        settings = phantom_settings(flags, args.config)
    except ConfigError as exc:
        print(f"lesion-studio phantom: {exc}", file=sys.stderr)
        return 2
    out = Path(settings["out"]).expanduser()
    if args.config is not None and args.out is None and not out.is_absolute():
        out = args.config.parent / out  # a path in a config file is relative to the file
    kind, n, seed, size = settings["kind"], settings["n"], settings["seed"], settings["size"]
    if out.exists() and not out.is_dir():
        print(f"{out}: exists and is not a folder", file=sys.stderr)
        return 1
    if (out / DATASET_FILE).exists() and not args.overwrite:
        print(f"{out / DATASET_FILE}: a dataset is already there; use --overwrite to replace it",
              file=sys.stderr)
        return 1
    try:
        path = generate_phantom_dataset(out, kind, n, seed=seed, size_px=size)
    except (LesionStudioError, OSError) as exc:
        print(f"lesion-studio phantom: {exc}", file=sys.stderr)
        return 1
    report = validate_dataset(out)
    print(f"wrote {n} {kind} phantom cases to {path.parent} (seed {seed}, {size} px)")
    if not report.ok:
        print(report.format(), file=sys.stderr)
        return 1
    return 0
