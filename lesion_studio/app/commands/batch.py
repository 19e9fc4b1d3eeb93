"""`lesion-studio batch CONFIG.toml` (also `lesion-studio --batch CONFIG.toml`): headless batch export.

Exit codes: 0 every item done, 2 config error (every problem listed with its line and key),
3 finished with failures (listed, and written to OUTPUT/failures.json). Under
`torchrun --nproc-per-node N -m lesion_studio batch CONFIG.toml` the items are sharded
across ranks and one manifest is merged. Never imports Qt.
"""

from __future__ import annotations

import argparse
import sys

from lesion_studio.core.errors import LesionStudioError

EXIT_OK, EXIT_CONFIG, EXIT_FAILURES = 0, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lesion-studio batch", description=__doc__.splitlines()[0])
    parser.add_argument("config", metavar="CONFIG.toml", help="batch export config (see docs/batch_export.md)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and counts, write nothing")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override models.device")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty output folder that lesion-studio did not make")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        from lesion_studio.core.export.config import load_batch_config

        config = load_batch_config(args.config)
        from lesion_studio.core.device import resolve_device

        device = resolve_device(args.device or config.device)
    except (LesionStudioError, ValueError) as exc:
        print(f"lesion-studio batch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        import torch

        from lesion_studio.models.batch_export import run_batch

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        result = run_batch(config, device=device, dry_run=args.dry_run, show_progress=not args.quiet,
                           force=args.force)
    except LesionStudioError as exc:  # the dataset or a checkpoint cannot be used at all
        print(f"lesion-studio batch: {exc}", file=sys.stderr)
        _report_on_every_rank(exc)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("lesion-studio batch: interrupted (re-run the same command to resume)", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # leave a DDP process group cleanly
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    return EXIT_FAILURES if result.failures else EXIT_OK


def _report_on_every_rank(exc: BaseException) -> None:
    """Under torchrun, an output folder rank 0 could not lock stops every rank: wait until each has said so."""
    if getattr(exc, "on_every_rank", False):
        from lesion_studio.models.distributed import report_on_every_rank

        report_on_every_rank(exc)
