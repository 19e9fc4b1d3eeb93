"""Build a blinded reader study: real and synthetic lesion patches, matched, shuffled, keyed apart.

`build_study(config)` (pure, no Qt; the GUI runs it on a worker thread with a progress callback
and a cancel check; the CLI runs `lesion-studio study build`):

1. reads the real source (`sources.py`): lesions with their moment diameter in mm, grouped by
   series or patient; series of the bundled real-nodule library are left out by default, so
   no nodule can be both a real case and the material of a synthetic one;
2. splits N over the strata (image type × size bin) as evenly as the material allows, and the
   groups into a *real* side and a *synthetic* side (disjoint: a real case and a synthetic
   case never come from one series/patient, so never show one nodule);
3. makes the cases (`cases.py`): real crops; synthetic ones at matched sites (a lesion of the
   synthetic side removed, a synthetic lesion of its diameter inserted at its centroid — the
   realism benchmark's design) or in lesion-free tissue at the diameter of the paired real
   case; lesion-free crops when "lesion present?" is asked. One crop and rounding rule for
   every class, so only the lesion tells them apart;
4. shuffles them into reading order (seeded): files are named by position, written with equal
   `.npy` headers for equal shapes and given one common mtime;
5. writes the study folder (`study.json`, `cases/`, `sessions/`) and, outside it, the answer
   key (truth, model, request, provenance hash, size bin, source, group, and a `design` record:
   the config, the strata asked and filled, what could not be filled, the groups used).

Strata that could not be filled are trimmed so that real and synthetic counts stay equal in
every stratum; the result and the key say so.
"""

from __future__ import annotations

import io
import os
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from lesion_studio.core.errors import ConfigError, LesionStudioError
from lesion_studio.core.reader_study.answer_key import KEY_FORMAT, KEY_VERSION
from lesion_studio.core.reader_study.cases import (
    StudyCase,
    classical_engine,
    make_free_site_case,
    make_lesion_free_case,
    make_matched_site_case,
    make_real_case,
    model_label,
)
from lesion_studio.core.reader_study.config import StudyConfig
from lesion_studio.core.reader_study.give_away import intensity_check
from lesion_studio.core.reader_study.sources import (
    SizeBin,
    SourceImage,
    SourceLesion,
    SourceSet,
    bin_of,
    load_dataset_source,
    load_npz_source,
    size_bins,
)
from lesion_studio.core.synthesis_engine import SynthesisEngine
from lesion_studio.core.windowing import CT_PRESETS, percentile_window

STUDY_FORMAT = "lesion-studio-reader-study"
FORMAT_VERSION = 1
#: `core/output_folder.py` kind of a study folder.
STUDY_KIND = "reader-study"
CASES_DIR = "cases"
SESSIONS_DIR = "sessions"
#: Lesion-free crops need a median inside this percentile range of the lesion crops' medians,
#: so they show the same tissue as the lesion cases (not air outside the body).
TISSUE_PERCENTILES = (10.0, 90.0)

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]
EngineFactory = Callable[[str], SynthesisEngine]


class StudyCancelled(LesionStudioError):
    """The build was cancelled; nothing was written."""


@dataclass(frozen=True)
class BuildResult:
    """What `build_study` wrote: where, how many of what, and what it could not do."""

    study_dir: Path
    key_path: Path
    study_id: str
    n_cases: int
    counts: list[dict[str, Any]]  # per stratum: image_type, size_bin, asked, real, synthetic
    n_lesion_free: int
    shortfalls: list[str]
    warnings: list[str]
    intensity_check: dict[str, Any]  # `give_away.intensity_check` of the lesion cases

    def summary(self) -> str:
        """A few lines for the CLI and the GUI."""
        lines = [f"study: {self.study_dir} ({self.n_cases} cases; key: {self.key_path})"]
        for row in self.counts:
            lines.append(f"  {row['image_type']} {row['size_bin']}: {row['real']} real, "
                         f"{row['synthetic']} synthetic (asked {row['asked']})")
        if self.n_lesion_free:
            lines.append(f"  lesion-free: {self.n_lesion_free}")
        if self.intensity_check.get("accuracy") is not None:
            lines.append(f"  pixel-statistics classifier (chance = 50 %): {self.intensity_check['accuracy']:.0%} "
                         f"(p = {self.intensity_check['p_value']:.2f})")
        lines += [f"  not filled: {s}" for s in self.shortfalls]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# -- sources and design ------------------------------------------------------------------------
def load_sources(config: StudyConfig, *, training: bool = False) -> SourceSet:
    """The real source of a study config (npz or dataset). With `exclude_library_series`, the
    series of the bundled nodule library are left out, and an npz of LIDC series keeps only the
    library's held-out split (`resources/nodules/split.json`): no nodule is both shown as real
    and the material of a synthetic case, and no learned model trained on the library split
    sees its own training series.

    `training` (the machine reader's material, never shown to readers): every series, less the
    library's own nodules — the classifier needs more patches than the held-out split holds.
    """
    if config.real_npz is not None:
        excluded: frozenset[str] = frozenset()
        heldout: frozenset[str] = frozenset()
        names: frozenset[str] = frozenset()
        if config.exclude_library_series:
            from lesion_studio.core.classical.nodule_library import bundled_library, heldout_series_uids

            if training:
                names = frozenset(bundled_library().names)
            else:
                excluded, heldout = frozenset(bundled_library().series_uids), heldout_series_uids()
        return load_npz_source(config.real_npz, modality=config.modality, groups_excluded=excluded,
                               heldout_groups=heldout, names_excluded=names)
    if config.real_dataset is not None:
        return load_dataset_source(config.real_dataset, splits=config.real_splits, modality=config.modality)
    raise ConfigError("the study config names no real source ([real] npz or dataset)")


Stratum = tuple[str, str]  # (image_type, size-bin label)


def _quotas(n: int, caps: dict[Stratum, int]) -> dict[Stratum, int]:
    """`n` spread as evenly as possible over the strata, none above its cap."""
    q = {s: 0 for s in caps}
    left = n
    while left > 0:
        open_ = [s for s in sorted(caps) if q[s] < caps[s]]
        if not open_:
            break
        share = max(1, left // len(open_))
        for s in open_:
            add = min(share, caps[s] - q[s], left)
            q[s] += add
            left -= add
            if left == 0:
                break
    return q


def _assign_groups(by_group: dict[str, list[SourceLesion]], stratum: Callable[[SourceLesion], Stratum | None],
                   quota: dict[Stratum, int], need_hosts: bool, rng: np.random.Generator) -> dict[str, str]:
    """Each group to "real", "synthetic" or "unused": greedily, to the side it helps most."""
    groups = sorted(by_group)
    rng.shuffle(groups)
    rem = {"real": dict(quota), "synthetic": dict(quota) if need_hosts else {}}
    roles: dict[str, str] = {}
    for g in groups:
        counts = Counter(s for s in map(stratum, by_group[g]) if s is not None)
        gain = {side: sum(min(c, r.get(s, 0)) for s, c in counts.items()) for side, r in rem.items()}
        if not any(gain.values()):
            roles[g] = "unused"
            continue
        left = {side: sum(r.values()) for side, r in rem.items()}
        side = max(rem, key=lambda k: (gain[k], left[k], k == "real"))
        roles[g] = side
        for s, c in counts.items():
            if s in rem[side]:
                rem[side][s] = max(0, rem[side][s] - c)
    return roles


def _round_robin(lesions: list[SourceLesion], rng: np.random.Generator) -> list[SourceLesion]:
    """Shuffled, one lesion per group before a group's second: spreads a stratum over patients."""
    order = rng.permutation(len(lesions))
    rank: dict[str, int] = defaultdict(int)
    keyed = []
    for i in order:
        les = lesions[int(i)]
        keyed.append((rank[les.group], len(keyed), les))
        rank[les.group] += 1
    return [les for _, _, les in sorted(keyed, key=lambda t: (t[0], t[1]))]


# -- the build ---------------------------------------------------------------------------------
@dataclass
class StudyDraw:
    """The cases of a study before they are shuffled and written, with the design record."""

    cases: list[StudyCase]
    counts: list[dict[str, Any]]
    shortfalls: list[str]
    warnings: list[str]
    roles: dict[str, str]  # group -> real / synthetic / lesion-free / unused
    quantum: float
    sources: SourceSet


class _Steps:
    """Progress and cancel in one place."""

    def __init__(self, total: int, progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        self.total, self.done, self.progress, self.cancel = max(total, 1), 0, progress, cancel

    def tick(self, message: str, advance: int = 1) -> None:
        if self.cancel is not None and self.cancel():
            raise StudyCancelled("the study build was cancelled; nothing was written")
        self.done = min(self.total, self.done + advance)
        if self.progress is not None:
            self.progress(self.done, self.total, message)


def stratum_fn(bins: tuple[SizeBin, ...]) -> Callable[[SourceLesion], Stratum | None]:
    """The stratum (image type, size bin) of a lesion; None below the smallest bin."""
    def stratum(lesion: SourceLesion) -> Stratum | None:
        b = bin_of(bins, lesion.diameter_mm)
        return None if b is None else (lesion.image.image_type, b.label)
    return stratum


def draw_cases(config: StudyConfig, sources: SourceSet, engine_factory: EngineFactory,
               steps: _Steps) -> StudyDraw:
    """Pick, synthesize and crop every case (nothing written)."""
    rng = np.random.default_rng(config.seed)
    bins = size_bins(config.size_bins_mm)
    stratum = stratum_fn(bins)
    warnings: list[str] = [f"left out of {sources.description}: {n} {why}" for why, n in sources.excluded.items()]
    quantum = 1.0 if all(im.integer_valued for im in sources.images) else 0.0
    by_stratum: dict[Stratum, list[SourceLesion]] = defaultdict(list)
    too_small = 0
    for les in sources.lesions:
        s = stratum(les)
        if s is None:
            too_small += 1
        else:
            by_stratum[s].append(les)
    if too_small:
        warnings.append(f"{too_small} lesion(s) smaller than {bins[0].low_mm:g} mm left out")
    if not by_stratum:
        raise ConfigError(f"no lesion of {bins[0].low_mm:g} mm or more in {sources.description}",
                          config.real_npz or config.real_dataset)
    matched = config.placement == "matched-site"
    caps = {s: (len(v) // 2 if matched else len(v)) for s, v in by_stratum.items()}
    quota = _quotas(config.cases_per_class, caps)
    by_group: dict[str, list[SourceLesion]] = defaultdict(list)
    for les in sources.lesions:
        by_group[les.group].append(les)
    roles = _assign_groups(by_group, stratum, quota, matched, rng)
    removal = classical_engine(config.removal) if matched else None
    engines: dict[str, SynthesisEngine] = {}
    for model in config.models:
        engines[model] = engine_factory(model)
    cases: list[StudyCase] = []
    counts: list[dict[str, Any]] = []
    shortfalls: list[str] = []
    failures: Counter[str] = Counter()
    for s in sorted(quota):
        want = quota[s]
        if want == 0:
            counts.append({"image_type": s[0], "size_bin": s[1], "asked": 0, "real": 0, "synthetic": 0})
            continue
        pool = _round_robin(by_stratum[s], rng)
        reals: list[StudyCase] = []
        for les in [x for x in pool if roles.get(x.group) == "real"] + \
                   [x for x in pool if roles.get(x.group) == "unused"]:
            if len(reals) >= want:
                break
            if roles[les.group] not in ("real", "unused"):
                continue
            case = make_real_case(les, s[1], config, rng, quantum)
            if case is None:
                failures["real crop"] += 1
                continue
            roles[les.group] = "real"
            reals.append(case)
            steps.tick(f"real {s[0]} {s[1]}: {len(reals)}/{want}")
        offset = sum(c.truth == "synthetic" for c in cases) % len(config.models)  # models take turns
        slot_models = [config.models[(offset + i) % len(config.models)] for i in range(len(reals))]
        if matched:
            hosts = [x for x in pool if roles.get(x.group) == "synthetic"] + \
                    [x for x in pool if roles.get(x.group) == "unused"]
            syns = _synthetic_cases(
                (host for host in hosts if roles[host.group] in ("synthetic", "unused")), reals, slot_models, s,
                roles, steps, failures, "synthesis or crop",
                lambda host, model, _k: make_matched_site_case(host, s[1], model, engines[model], removal, config,
                                                               rng, quantum))
        else:
            syns = _free_site_cases(reals, slot_models, s, sources, roles, engines, config, rng, quantum, steps,
                                    failures)
        n = min(len(reals), len(syns))
        if n < want:
            shortfalls.append(f"{s[0]} {s[1]}: {n} of {want} pairs (real {len(reals)}, synthetic {len(syns)})")
        cases += reals[:n] + syns[:n]
        counts.append({"image_type": s[0], "size_bin": s[1], "asked": want, "real": n, "synthetic": n})
    asked_total = sum(quota.values())
    if asked_total < config.cases_per_class:
        shortfalls.append(f"the source holds material for {asked_total} of {config.cases_per_class} cases per class")
    if failures:
        warnings.append("skipped: " + ", ".join(f"{n} {what}" for what, n in sorted(failures.items())))
    if config.lesion_free_cases:
        cases += _lesion_free_cases(cases, sources, roles, config, rng, quantum, steps, shortfalls)
    if not any(c.truth == "real" for c in cases):
        raise ConfigError("no real/synthetic pair could be made from this source; " + "; ".join(shortfalls),
                          config.real_npz or config.real_dataset)
    return StudyDraw(cases, counts, shortfalls, warnings, roles, quantum, sources)


def _tissue_range(cases: list[StudyCase]) -> tuple[float, float] | None:
    medians = [float(np.median(c.pixels)) for c in cases if c.truth != "lesion-free"]
    if len(medians) < 2:
        return None
    lo, hi = np.percentile(medians, TISSUE_PERCENTILES)
    return float(lo), float(hi)


def _free_images(sources: SourceSet, roles: dict[str, str], avoid: tuple[str, ...],
                 rng: np.random.Generator, *, clean_first: bool = True) -> list[SourceImage]:
    """Images for lesion-free crops/sites: groups not on the `avoid` sides, in random order
    (lesion-free images first when `clean_first`)."""
    order = [sources.images[int(i)] for i in rng.permutation(len(sources.images))]
    usable = [im for im in order if roles.get(im.group, "unused") not in avoid]
    if not clean_first:
        return usable
    clean = [im for im in usable if not im.lesion_mask.any()]
    return clean + [im for im in usable if im.lesion_mask.any()]


def _synthetic_cases(candidates: Iterable[SourceLesion | SourceImage], reals: list[StudyCase],
                     slot_models: list[str], s: Stratum, roles: dict[str, str], steps: _Steps, failures: Counter,
                     failure: str, make: Callable[[Any, str, int], StudyCase | None]) -> list[StudyCase]:
    """One synthetic case per real case of stratum `s`: `make(candidate, model, k)` for the k-th case,
    its model `slot_models[k]`, trying the candidates in turn. A None is counted in `failures` as
    "<model> `failure`" and the next candidate tried; a used candidate's group joins the synthetic side."""
    out: list[StudyCase] = []
    for candidate in candidates:
        if len(out) >= len(reals):
            break
        model = slot_models[len(out)]
        case = make(candidate, model, len(out))
        if case is None:
            failures[f"{model_label(model)} {failure}"] += 1
            continue
        roles[candidate.group] = "synthetic"
        out.append(case)
        steps.tick(f"synthetic {s[0]} {s[1]}: {len(out)}/{len(reals)}")
    return out


def _free_site_cases(reals: list[StudyCase], slot_models: list[str], s: Stratum, sources: SourceSet,
                     roles: dict[str, str], engines: dict[str, SynthesisEngine], config: StudyConfig,
                     rng: np.random.Generator, quantum: float, steps: _Steps, failures: Counter) -> list[StudyCase]:
    tissue = _tissue_range(reals)
    # no preference for lesion-free images: they may differ (scanner, spacing) from lesion images,
    # and that difference must not follow the synthetic class
    images = [im for im in _free_images(sources, roles, ("real",), rng, clean_first=False) if im.image_type == s[0]]

    def make(image: SourceImage, model: str, k: int) -> StudyCase | None:  # at the diameter of the k-th real case
        diameter = float(reals[k].diameter_mm or 0.0)
        return make_free_site_case(image, diameter, s[1], model, engines[model], config, rng, quantum, tissue)

    return _synthetic_cases(images, reals, slot_models, s, roles, steps, failures,
                            "insertion in lesion-free tissue", make)


def _lesion_free_cases(lesion_cases: list[StudyCase], sources: SourceSet, roles: dict[str, str],
                       config: StudyConfig, rng: np.random.Generator, quantum: float, steps: _Steps,
                       shortfalls: list[str]) -> list[StudyCase]:
    tissue = _tissue_range(lesion_cases)
    types = Counter(c.image_type for c in lesion_cases)
    out: list[StudyCase] = []
    first = _free_images(sources, roles, ("real", "synthetic"), rng)  # patients not shown otherwise
    seen = {id(im) for im in first}
    for image in first + [im for im in _free_images(sources, roles, (), rng) if id(im) not in seen]:
        if len(out) >= config.lesion_free_cases:
            break
        if image.image_type not in types:
            continue
        case = make_lesion_free_case(image, config, rng, quantum, tissue)
        if case is None:
            continue
        roles.setdefault(image.group, "lesion-free")
        if roles[image.group] == "unused":
            roles[image.group] = "lesion-free"
        out.append(case)
        steps.tick(f"lesion-free: {len(out)}/{config.lesion_free_cases}")
    if len(out) < config.lesion_free_cases:
        fov = config.field_of_view_mm
        shortfalls.append(f"lesion-free: {len(out)} of {config.lesion_free_cases} (too few {fov:g} mm crops "
                          "without a lesion in this source)")
    return out


def study_window(config: StudyConfig, cases: list[StudyCase]) -> tuple[float, float]:
    """`(center, width)`: the config's, a preset, or auto (CT lung for CT, 1-99 % of every patch)."""
    if config.window_center is not None and config.window_width is not None:
        return float(config.window_center), float(config.window_width)
    if config.window != "auto":
        w = CT_PRESETS[config.window]
        return float(w.center), float(w.width)
    if all(c.image_type == "ct" for c in cases):
        w = CT_PRESETS["CT lung"]
        return float(w.center), float(w.width)
    w = percentile_window(np.concatenate([c.pixels.ravel() for c in cases]))
    return float(w.center), float(w.width)


def default_instructions(config: StudyConfig) -> str:
    """What readers are told when the config gives no text."""
    k = config.confidence_levels
    text = (f"Each patch shows {config.field_of_view_mm:g} mm of tissue at its native resolution, all in the "
            "same window. Some lesions are real, some were synthesized by a computer. ")
    if config.lesion_present:
        text += "First answer whether a lesion is present (Y/N). "
    text += (f"Press R for real, S for synthetic, then 1-{k} for how sure you are (1 = a guess, {k} = certain). "
             "Take the time you need; there is no time limit.")
    return text


def _npy_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(pixels, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


def check_study_outputs(config: StudyConfig, force: bool) -> None:
    """Refuse (ConfigError) a study folder or key that would overwrite another study, before work."""
    from lesion_studio.core.output_folder import check_output_folder

    check_output_folder(config.out_dir, kind=STUDY_KIND, force=force, key="study.out_dir")
    if (config.out_dir / "study.json").exists() and not force:
        raise ConfigError("study.out_dir already holds a study (its readers' sessions would no longer match); "
                          "choose a new folder or pass --force to replace it", config.out_dir)
    if config.key_path.exists() and not force:
        raise ConfigError("study.key: an answer key is already there (another study's answers would be lost); "
                          "choose another path or pass --force", config.key_path)
    out = config.out_dir.resolve()
    if out in config.key_path.resolve().parents:
        raise ConfigError(f"study.key: the answer key must lie outside the study folder {out}", config.key_path)


def write_study(config: StudyConfig, draw: StudyDraw, *, force: bool = False) -> BuildResult:
    """Shuffle the cases into reading order and write the study folder and the answer key."""
    from lesion_studio.core.export.atomic import TempJournal, remove_stale_temps, write_bytes, write_json
    from lesion_studio.core.output_folder import open_output_folder
    from lesion_studio.core.reader_study.session import utc_now

    check_study_outputs(config, force)
    order = np.random.default_rng([config.seed, 1]).permutation(len(draw.cases))
    cases = [draw.cases[int(i)] for i in order]
    ids = [f"case_{i + 1:04d}" for i in range(len(cases))]
    study_id = secrets.token_hex(16)
    center, width = study_window(config, cases)
    units = "HU" if all(c.image_type == "ct" for c in cases) else ""
    study_doc = {
        "format": STUDY_FORMAT, "version": FORMAT_VERSION, "study_id": study_id, "name": config.name,
        "created": utc_now(),
        "questions": {"real_or_synthetic": True, "lesion_present": bool(config.lesion_present)},
        "allow_back": bool(config.allow_back), "confidence_levels": int(config.confidence_levels),
        "window": {"center": center, "width": width}, "units": units,
        "field_of_view_mm": float(config.field_of_view_mm),
        "instructions": config.instructions or default_instructions(config),
        "cases": [{"id": cid, "file": f"{CASES_DIR}/{cid}.npy",
                   "spacing_mm": [float(c.spacing_mm[0]), float(c.spacing_mm[1])]} for cid, c in zip(ids, cases)],
    }
    n_free = sum(c.truth == "lesion-free" for c in cases)
    lesion_cases = [c for c in cases if c.truth != "lesion-free"]
    check = intensity_check([c.pixels for c in lesion_cases], [c.truth == "synthetic" for c in lesion_cases])
    warnings = list(draw.warnings)
    if check["p_value"] is not None and check["p_value"] < 0.05 and check["accuracy"] > 0.5:
        ci = check["accuracy_ci"]
        warnings.append(
            f"pixel statistics alone (intensity histogram, mean, std) tell real from synthetic in "
            f"{check['accuracy']:.0%} of cases (95 % CI {ci[0]:.0%}-{ci[1]:.0%}, p = {check['p_value']:.3f}): the "
            "synthetic lesions differ in intensity, and readers may notice that rather than their shape")
    key_doc = {
        "format": KEY_FORMAT, "version": KEY_VERSION, "study_id": study_id, "study_dir": str(config.out_dir),
        "cases": {cid: c.key_entry() for cid, c in zip(ids, cases)},
        "design": {
            "config": config.to_dict(), "sources": draw.sources.description, "strata": draw.counts,
            "shortfalls": draw.shortfalls, "warnings": warnings, "rounding_quantum": draw.quantum,
            "intensity_check": check,
            "lesion_free_cases": n_free,
            "groups": {role: sorted(g for g, r in draw.roles.items() if r == role)
                       for role in ("real", "synthetic", "lesion-free", "unused")},
        },
    }
    lock = open_output_folder(config.out_dir, kind=STUDY_KIND, force=force, key="study.out_dir")
    try:
        remove_stale_temps(config.out_dir)
        write_json(config.key_path, key_doc)  # the key first: a study never exists without its answers
        with TempJournal(config.out_dir):
            folder = config.out_dir / CASES_DIR
            if folder.is_dir():
                for old in folder.glob("case_*.npy"):
                    old.unlink()
            paths = [write_bytes(folder / f"{cid}.npy", _npy_bytes(c.pixels)) for cid, c in zip(ids, cases)]
            stamp = time.time()
            for path in paths:  # one mtime for all: the writing order gives nothing away either
                os.utime(path, (stamp, stamp))
            (config.out_dir / SESSIONS_DIR).mkdir(exist_ok=True)
            write_json(config.out_dir / "study.json", study_doc)
    finally:
        lock.release()
    return BuildResult(study_dir=config.out_dir, key_path=config.key_path, study_id=study_id, n_cases=len(cases),
                       counts=draw.counts, n_lesion_free=n_free, shortfalls=draw.shortfalls, warnings=warnings,
                       intensity_check=check)


def build_study(config: StudyConfig, *, engine_factory: EngineFactory | None = None,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                force: bool = False) -> BuildResult:
    """Build the study of `config` (see the module docstring); Qt-free, for a worker thread.

    `engine_factory(name)` gives the synthesis engine of a model name (default: classical
    methods only; pass `models.inference.load_synthesizer` for checkpoints). `progress(done,
    total, message)` is called after each case; `cancel()` returning True stops the build
    with `StudyCancelled` before anything is written.
    """
    check_study_outputs(config, force)
    steps = _Steps(2 * config.cases_per_class + config.lesion_free_cases + 1, progress, cancel)
    steps.tick("reading the real lesions", 0)
    sources = load_sources(config)
    draw = draw_cases(config, sources, engine_factory or classical_engine, steps)
    steps.tick("writing the study")
    return write_study(config, draw, force=force)


__all__ = ["BuildResult", "StudyCancelled", "StudyDraw", "build_study", "check_study_outputs",
           "default_instructions", "draw_cases", "load_sources", "study_window", "write_study", "STUDY_KIND"]
