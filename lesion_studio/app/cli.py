"""Command line entry point: the GUI by default, headless subcommands by name.

`lesion-studio [PATH ...] [--demo] [--device ...]` opens the main window;
`lesion-studio SUBCOMMAND ...` runs a headless command without importing Qt.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lesion_studio import __version__

#: Headless subcommands: name -> module exposing `main(argv: list[str]) -> int`.
SUBCOMMANDS: dict[str, str] = {
    "batch": "lesion_studio.app.commands.batch",
    "phantom": "lesion_studio.app.commands.phantom",
    "evaluate": "lesion_studio.app.commands.evaluate",
    "train": "lesion_studio.app.commands.train",
    "study": "lesion_studio.app.commands.study",
}

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def build_gui_parser() -> argparse.ArgumentParser:
    """Arguments of the GUI launcher (also shown by `--help`)."""
    parser = argparse.ArgumentParser(
        prog="lesion-studio",
        description=(
            "Open radiographs and CT, paint or sample lesion masks and preview GAN-synthesized "
            "lesions. Headless subcommands: " + ", ".join(sorted(SUBCOMMANDS)) + "."
        ),
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH",
        help="image files (DICOM, NIfTI, NRRD, MHA, PNG, JPEG, TIFF) or a DICOM series folder",
    )
    parser.add_argument("--demo", action="store_true", help="open the demo chest radiograph")
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto",
        help="where models run: auto picks CUDA when available (default: auto)",
    )
    parser.add_argument(
        "--batch", metavar="CONFIG.toml",
        help="run a batch export headless, as `lesion-studio batch CONFIG.toml` (no display needed)",
    )
    parser.add_argument("--version", action="version", version=f"lesion-studio {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[args_list[0]])
        return int(module.main(args_list[1:]))

    args = build_gui_parser().parse_args(args_list)
    if args.batch is not None:  # headless: the batch command never imports Qt
        module = importlib.import_module(SUBCOMMANDS["batch"])
        device = [] if args.device == "auto" else ["--device", args.device]
        return int(module.main([args.batch, *device]))

    from lesion_studio.app.main import run_gui  # imports Qt: only on the GUI path

    return run_gui(paths=args.paths, demo=args.demo, device=args.device)


if __name__ == "__main__":
    sys.exit(main())
