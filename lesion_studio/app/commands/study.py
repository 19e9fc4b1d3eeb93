"""`lesion-studio study build|analyze|machine`: blinded reader studies, headless (no Qt).

    lesion-studio study build STUDY.toml [--force]
    lesion-studio study analyze STUDY_DIR [--key KEY.json] [--out DIR] [--machine] [--force]
    lesion-studio study machine STUDY_DIR [--key KEY.json] [--epochs N] [--device cpu]

See docs/reader_study.md. The study folder goes to the readers; the answer key never does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lesion_studio.core.errors import LesionStudioError

#: `core/output_folder.py` kind of an analysis results folder.
RESULTS_KIND = "reader-study-results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lesion-studio study",
                                     description="Blinded reader studies: can readers tell real from synthetic lesions?")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{build,analyze,machine}")
    build = sub.add_parser("build", help="build a study folder and its answer key from STUDY.toml")
    build.add_argument("config", type=Path, metavar="STUDY.toml")
    build.add_argument("--force", action="store_true",
                       help="replace an existing study / key, or use a non-empty folder lesion-studio did not make")
    build.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides [synthetic] device")
    build.add_argument("--quiet", action="store_true", help="print only the summary")
    analyze = sub.add_parser("analyze", help="statistics of every reader session, with figures")
    analyze.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    analyze.add_argument("--key", type=Path, help="answer key (default: STUDY_DIR.key.json)")
    analyze.add_argument("--out", type=Path, help="results folder (default: STUDY_DIR.results, outside the study)")
    analyze.add_argument("--machine", action="store_true", help="run the machine reader first (as `study machine`)")
    analyze.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    analyze.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    analyze.add_argument("--no-figures", action="store_true", help="JSON and CSV only")
    analyze.add_argument("--force", action="store_true", help="use a non-empty results folder lesion-studio did not make")
    machine = sub.add_parser("machine", help="score the study with the realism CNN (session machine-cnn)")
    machine.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    machine.add_argument("--key", type=Path, help="answer key (default: STUDY_DIR.key.json)")
    _machine_options(machine)
    _machine_options(analyze, prefix="machine-")
    return parser


def _machine_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(f"--{prefix}epochs", type=int, help="training epochs (default: [machine] epochs)")
    parser.add_argument(f"--{prefix}max-train", type=int, help="training patches per class (default: [machine])")
    parser.add_argument(f"--{prefix}device", choices=("auto", "cpu", "cuda"), default="cpu",
                        help="where the CNN trains (default: cpu)")
    if not prefix:
        parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")


def main(argv: list[str]) -> int:
    """Run a study subcommand; returns 0 ok, 1 failed, 2 usage, 130 cancelled (Ctrl+C)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "build":
            return _build(args)
        if args.command == "machine":
            _machine(args.study_dir, args.key, args.epochs, args.max_train, args.device, args.seed)
            return 0
        return _analyze(args)
    except KeyboardInterrupt:
        print(f"lesion-studio study {args.command}: cancelled", file=sys.stderr)
        return 130
    except (LesionStudioError, OSError, ValueError) as exc:
        print(f"lesion-studio study {args.command}: {exc}", file=sys.stderr)
        return 1


def _build(args: argparse.Namespace) -> int:
    import dataclasses

    from lesion_studio.core.device import resolve_device
    from lesion_studio.core.reader_study.builder import build_study
    from lesion_studio.core.reader_study.config import load_study_config
    from lesion_studio.models.study_engines import study_engine_factory

    config = load_study_config(args.config)
    if args.device is not None:
        config = dataclasses.replace(config, device=args.device)
    device = resolve_device(config.device)

    def progress(done: int, total: int, message: str) -> None:
        if not args.quiet:
            print(f"[{done}/{total}] {message}", flush=True)

    base = config.source_toml.parent if config.source_toml is not None else None
    result = build_study(config, engine_factory=study_engine_factory(base, device), progress=progress,
                         force=args.force)
    print(result.summary())
    print("hand the study folder to the readers; keep the answer key to yourself")
    return 0


def _machine(study_dir: Path, key: Path | None, epochs: int | None, max_train: int | None, device: str,
             seed: int) -> None:
    from lesion_studio.core.device import resolve_device
    from lesion_studio.core.reader_study.answer_key import default_key_for, load_answer_key
    from lesion_studio.core.reader_study.config import StudyConfig
    from lesion_studio.models.machine_reader import run_machine_reader
    from lesion_studio.models.study_engines import study_engine_factory

    key_path = key if key is not None else default_key_for(study_dir)
    design = load_answer_key(key_path).design.get("config") or {}
    toml = StudyConfig.from_dict(design).source_toml if design else None
    dev = resolve_device(device)
    result = run_machine_reader(study_dir, key_path, epochs=epochs, max_train_per_class=max_train, seed=seed,
                                device=dev, engine_factory=study_engine_factory(toml.parent if toml else None, dev),
                                progress=lambda message: print(message, flush=True))
    print(f"machine reader: trained on {result.n_train_real} real / {result.n_train_synthetic} synthetic patches "
          f"outside the study; session {result.session_path} ({result.seconds:.0f} s)")


def _analyze(args: argparse.Namespace) -> int:
    from lesion_studio.core.errors import ConfigError
    from lesion_studio.core.output_folder import open_output_folder
    from lesion_studio.core.reader_study.analysis import analyze_study, write_results

    study_dir = args.study_dir.resolve()
    out = (args.out if args.out is not None else study_dir.with_name(study_dir.name + ".results")).resolve()
    if out == study_dir or study_dir in out.parents:
        raise ConfigError(f"--out: the results name every answer; write them outside the study folder {study_dir}",
                          out)
    if args.bootstrap < 100:
        raise ConfigError(f"--bootstrap must be at least 100, got {args.bootstrap}")
    lock = open_output_folder(out, kind=RESULTS_KIND, force=args.force, key="--out")
    try:
        if args.machine:
            _machine(study_dir, args.key, args.machine_epochs, args.machine_max_train, args.machine_device, args.seed)
        results = analyze_study(study_dir, args.key, seed=args.seed, n_bootstrap=args.bootstrap)
        write_results(results, out, figures=not args.no_figures)
    finally:
        lock.release()
    print(report(results))
    print(f"results: {out / 'results.json'}")
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _line(stats: dict[str, Any]) -> str:
    ci, auc, auc_ci = stats["accuracy_ci"], stats["auc"], stats["auc_ci"]
    acc = f"accuracy {_pct(stats['accuracy'])}" + (f" (95 % CI {_pct(ci[0])}-{_pct(ci[1])})" if ci else "")
    auc_text = "AUC n/a" if auc is None else f"AUC {auc:.2f}" + (f" ({auc_ci[0]:.2f}-{auc_ci[1]:.2f})" if auc_ci else "")
    p = stats["p_binomial"]
    p_text = "" if p is None else f", p = {p:.3g}"
    return (f"{stats['reader']} ({stats['kind']}, {stats['n']} cases): {acc}, {auc_text}{p_text}, "
            f"sensitivity {_pct(stats['sensitivity'])}, specificity {_pct(stats['specificity'])} -> {stats['verdict']}")


def report(results: dict[str, Any]) -> str:
    """The analysis in a few lines: each reader, the pooled humans, κ, the verdict and its power."""
    lines = [_line(s) for s in results["readers"].values()]
    if results.get("pooled") is not None and len(results["readers"]) > 1:
        lines.append(_line(results["pooled"]))
    fleiss = (results.get("kappa") or {}).get("fleiss")
    if fleiss and fleiss.get("kappa") is not None:
        lines.append(f"Fleiss' kappa ({len(fleiss['readers'])} readers, {fleiss['n']} cases): {fleiss['kappa']:.2f}")
    power = results.get("power_65")
    lines.append(f"verdict: {results['verdict']}"
                 + ("" if power is None else f" (power to detect a 65 % accuracy: {power:.0%})"))
    lines += [f"note: {w}" for w in results.get("warnings", [])]
    return "\n".join(lines)
