"""A precomputed synthetic dataset (`synthetic_dataset` of `lesion-studio evaluate`) made with
the classical `real-nodule` synthesis: no generator to train, so no generator can leak.

Each lesion of a real case is replaced as P0 §IV-A plans it (`core.augmentation_plan`): the
lesion is removed (`auto-fill`) and a real LIDC nodule from the bundled library is inserted
at its place, by default at the replaced lesion's moment diameter (`match_size`), so the hole
is covered and the synthetic sizes follow the real ones. Every synthetic case keeps its real
case's `patient_id` (the experiment runner draws synthetic cases only from the fold's training
patients of the sampled fraction) and lists in `source_patients` that patient plus the library
series of the nodules it received.

Isolation: the library nodules come from other patients' scans. The writer refuses a real
dataset with any patient among the library's series (`ConfigError` naming them): there, a
test patient's own nodule could be pasted into a training image. Build the real dataset from
the library's held-out scans (`core.public_datasets.build_node21_dataset(series="heldout")`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lesion_studio.core.dataset import DATASET_FILE, IMAGE_DIR, MASK_DIR, load_dataset, write_dataset_json
from lesion_studio.core.errors import ConfigError, MaskError
from lesion_studio.core.public_datasets import ATTRIBUTION, prepare_output_folder, sha256_of

#: The synthesis methods this writer offers (classical: nothing is trained).
METHODS = ("real-nodule",)
#: Smallest nodule inserted (pixels): a one-pixel lesion component has a moment diameter of 0.
MIN_DIAMETER_PX = 2.0
SYNTHESIS_RULE = (
    "per real case and variant: P0 §IV-A plan (core.augmentation_plan.plan_augmentation) with the "
    "real-nodule engine: each lesion removed (auto-fill) and replaced by a real LIDC nodule from the "
    "bundled library (lesion_studio/resources/nodules), at the replaced lesion's moment diameter when "
    "match_size; the nodule drawn from the variant's seed; patient_id = the real case's patient"
)


def _variant_seed(seed: int, case_id: str, variant: int) -> int:
    return int(hashlib.sha256(f"{seed}:{case_id}:{variant}".encode()).hexdigest()[:8], 16)


def library_overlap(patients: set[str]) -> set[str]:
    """The real patients that are also series of the bundled real-nodule library."""
    from lesion_studio.core.classical.nodule_library import bundled_library

    return patients & set(bundled_library().series_uids)


def write_synthetic_dataset(real: str | Path, out: str | Path, *, method: str = "real-nodule", per_case: int = 1,
                            seed: int = 0, match_size: bool = True) -> dict[str, Any]:
    """Write `per_case` synthetic variants of every lesion case of the dataset `real` into `out`
    (dataset format, float32 `.npy` images in the real units); returns the build summary.
    Idempotent like `core.public_datasets` (same real dataset and settings: reused)."""
    from lesion_studio.core.augmentation_plan import plan_augmentation
    from lesion_studio.core.classical.nodule_library import bundled_library
    from lesion_studio.core.geometry.crops import component_masks
    from lesion_studio.core.geometry.size_modulation import moment_diameter
    from lesion_studio.core.mask_bank import MaskBank
    from lesion_studio.models.inference import load_synthesizer

    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if per_case < 1:
        raise ConfigError(f"per_case must be >= 1, got {per_case}")
    real, out = Path(real), Path(out)
    dataset = load_dataset(real)
    leaked = library_overlap({c.patient_id for c in dataset.cases})
    if leaked:
        shown = ", ".join(sorted(leaked)[:5]) + (f" … ({len(leaked)} in all)" if len(leaked) > 5 else "")
        raise ConfigError(f"patient leakage: {len(leaked)} patient(s) of this dataset are scans the real-nodule "
                          f"library takes nodules from ({shown}); their own nodules could be pasted into training "
                          "images of other folds. Build the dataset from the library's held-out scans "
                          "(build_node21_dataset(series='heldout'))", real / DATASET_FILE)
    library = bundled_library()
    summary: dict[str, Any] = {
        "builder": "synthetic_dataset", "builder_version": 1, "method": method, "per_case": int(per_case),
        "seed": int(seed), "match_size": bool(match_size), "real_dataset_sha256": sha256_of(real / DATASET_FILE),
        "library_sha256": library.sha256,
    }
    if prepare_output_folder(out, "synthetic_dataset", summary):
        return json.loads((out / DATASET_FILE).read_text(encoding="utf-8"))["build_summary"]
    engine, remover = load_synthesizer(method), load_synthesizer("auto-fill")
    backend = engine.backend
    cases, skipped, failed = [], 0, []
    for case in dataset.cases:
        location = dataset.read_location_map(case)
        if not case.has_lesion and location is None:
            skipped += 1  # nowhere to place a nodule
            continue
        image, mask = dataset.read_image(case), dataset.read_mask(case)
        spacing = dataset.spacing_for(case)
        parts = component_masks(mask) if case.has_lesion else []
        floor = MIN_DIAMETER_PX * (min(spacing) if spacing is not None else 1.0)  # a 1 px component measures 0
        sizes = [max(moment_diameter(p, spacing), floor) for p in parts] if match_size and parts else None
        bank = MaskBank.from_masks([mask], spacings_mm=[spacing], sources=[case.case_id]) if parts else None
        for v in range(per_case):
            img, msk, nodules = image, mask, []
            try:
                plan = plan_augmentation(image.shape, lesion_mask=mask, location_map=location, bank=bank,
                                         seed=_variant_seed(seed, case.case_id, v), spacing_mm=spacing,
                                         diameters_mm=sizes if spacing is not None else None,
                                         diameters_px=sizes if spacing is None else None,
                                         model_input_px=engine.patch_px or 128)
                for step in plan.steps:
                    result = (remover if step.request.mode == "remove" else engine)(
                        img, step.request, lesion_mask=msk, bank=bank, spacing_mm=spacing)
                    img, msk = result.image, result.mask
                    if step.request.mode == "inpaint" and result.plan.bank_index is not None:
                        nodules.append(backend.library_index("ct", result.plan.bank_index))
            except (MaskError, ConfigError) as exc:  # e.g. one lesion's removal hole swallows its neighbour
                failed.append(f"{case.case_id} variant {v}: {exc}")
                continue
            cid = f"{case.case_id}_syn{v}"
            np.save(out / IMAGE_DIR / f"{cid}.npy", np.asarray(img, np.float32))
            has = bool(np.any(msk))
            if has:
                np.save(out / MASK_DIR / f"{cid}.npy", np.asarray(msk, np.uint8))
            cases.append({
                "id": cid, "image": f"{IMAGE_DIR}/{cid}.npy", "mask": f"{MASK_DIR}/{cid}.npy" if has else None,
                "patient_id": case.patient_id, "has_lesion": has, "split": case.split, "source_case": case.case_id,
                "library_nodules": [library.names[i] for i in nodules],
                "source_patients": sorted({case.patient_id, *(library.series_uids[i] for i in nodules)}),
                **({"spacing_mm": list(case.spacing_mm)} if case.spacing_mm is not None else {}),
            })
    if not cases:
        raise ConfigError("no case to synthesize from (no lesion, no location map)", real / DATASET_FILE)
    summary.update({"cases": len(cases), "skipped_lesion_free_without_location_map": skipped,
                    "failed": len(failed), "failures": failed[:20]})
    text = (real / ATTRIBUTION).read_text(encoding="utf-8") if (real / ATTRIBUTION).is_file() else ""
    lib_attr = library.path.parent / ATTRIBUTION
    text += ("\n\n---\nInserted nodules (real-nodule library):\n\n" + lib_attr.read_text(encoding="utf-8")
             if lib_attr.is_file() else "")
    (out / ATTRIBUTION).write_text(text.lstrip() + f"\n\n---\nSynthetic images: {SYNTHESIS_RULE}.\n", encoding="utf-8")
    for extra in real.glob("LICENSE*"):
        shutil.copyfile(extra, out / extra.name)
    write_dataset_json(out, cases, description=(
        f"SYNTHETIC images made from {real.name} by lesion-studio's {method} synthesis (real nodules of other "
        "patients pasted in place of each real nodule); not patient data."), spacing_mm=dataset.spacing_mm,
        modality=dataset.modality, extra={"build_summary": summary, "synthesis": {
            "method": method, "rule": SYNTHESIS_RULE, "library": library.path.name, "library_sha256": library.sha256,
            "isolation": "no patient of the real dataset is a library series (checked); each case's patient_id is "
                         "its real case's patient, source_patients adds the library series it received"}})
    return summary
