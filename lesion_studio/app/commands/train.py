"""`lesion-studio train CONFIG.toml`: train a generator headless (also under torchrun for DDP).

`torchrun --nproc-per-node N -m lesion_studio train CONFIG.toml` runs N processes with DDP
(gloo on CPU, NCCL on CUDA). Progress goes to a console bar on stderr (rank 0 only).
"""

from __future__ import annotations

import argparse
import sys

from lesion_studio.core.errors import LesionStudioError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lesion-studio train", description=__doc__.splitlines()[0])
    parser.add_argument("config", metavar="CONFIG.toml", help="training config (family, [run], [model])")
    parser.add_argument("--resume", metavar="CHECKPOINT", help="resume from a checkpoint written by a previous run")
    parser.add_argument("--steps", type=int, help="override run.steps")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override run.device")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true",
                        help="train into a non-empty run folder that lesion-studio did not make")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        from lesion_studio.models.config import load_config, validate
        from lesion_studio.models.progress import ConsoleProgress
        from lesion_studio.models.trainer import train

        config = load_config(args.config)
        if args.steps is not None:
            config.run.steps = args.steps
        if args.device is not None:
            config.run.device = args.device
        validate(config, path=args.config)
        callback = None if args.quiet else ConsoleProgress()
        result = train(config, callback=callback, resume=args.resume, force=args.force)
    except LesionStudioError as exc:
        print(f"lesion-studio train: {exc}", file=sys.stderr)
        _report_on_every_rank(exc)
        return 2
    except KeyboardInterrupt:
        print("lesion-studio train: interrupted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # leave a DDP process group cleanly
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    print(f"checkpoint: {result.checkpoint}")
    if result.best_checkpoint:
        print(f"best: {result.best_checkpoint} {result.best_metrics}")
        sel = result.selection
        if sel.get("criterion"):
            print(f"selected by {sel['criterion']} ({sel['better']} is better) at step {sel['best_step']}"
                  + (f"; {sel['note']}" if sel.get("note") else ""))
    return 0


def _report_on_every_rank(exc: BaseException) -> None:
    """Under torchrun, an output folder rank 0 could not lock stops every rank: wait until each has said so."""
    if getattr(exc, "on_every_rank", False):
        from lesion_studio.models.distributed import report_on_every_rank

        report_on_every_rank(exc)
