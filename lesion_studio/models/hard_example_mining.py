"""Hard-example mining as an experiment type (P3 §III-D, SPEC §3.8).

Per fold: (1) train the detector on the real training images; (2) detect on those real
images and split ground-truth lesions into detected / missed (a lesion is detected when a
candidate scoring ≥ `hem.detection_threshold` overlaps its box at IoU ≥ 0.2); (3) write the
missed lesions' diameters (`missed_diameters_fold<k>.json`, also readable by batch export:
`{"diameters_px": [...], "diameters_mm": [...]}`); (4) draw N diameters uniformly from that
array and synthesize N lesions at those sizes; (5) fine-tune on real + synthetic (P3: lr 1e-4,
10 epochs) and (6) re-evaluate on the fold's test images. The two conditions are
`pretrained` and `hem_finetuned`; the report holds the diameter arrays per fold.

One diameter definition throughout: P3's moment diameter (`d_init`, the mean of the axes of
the ellipse with the same second moments; `component_moment_diameters`), the definition the
size control synthesizes with. Missed lesions are measured on the model-size masks and turned
into mm with *each image's own* spacing scaled to the model size, so a dataset with several
pixel spacings gets the right millimetres for every lesion.

The synthesizer is `synthetic_generator`: 'checkpoint' (a trained generator through
`load_synthesizer`, lesion sizes in mm; a train TOML trains one per fold, see
`experiments.fold_generator`) or 'phantom_painter' (the cheap, non-GAN stand-in of
`synthetic_sources`, used by the fast tests). The diameter file also feeds batch export
(`diameters = {file = ...}`) for an offline synthetic set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lesion_studio.core.dataset import Dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.geometry.size_modulation import component_moment_diameters
from lesion_studio.core.metrics import masks_to_boxes, match_detections
from lesion_studio.models.detection import detect_from_probability
from lesion_studio.models.synthetic_sources import CheckpointSynthesisSource, PhantomLesionPainter, SyntheticCase

DIAMETER_FILE_FORMAT = "lesion-studio-diameters"
#: The diameter definition named in the diameter file and the report.
DIAMETER_DEFINITION = "moment diameter (P3 d_init: mean of the equal-moment ellipse's axes), at least one pixel"


@dataclass(frozen=True)
class LesionSizes:
    """Moment diameters of the missed and the detected ground-truth lesions: px at the model
    size, and mm from each image's own spacing (None when an image has no spacing)."""

    missed_px: np.ndarray
    found_px: np.ndarray
    missed_mm: np.ndarray | None
    found_mm: np.ndarray | None


def missed_lesion_diameters(probs: np.ndarray, masks: list[np.ndarray], *,
                            spacings_mm: list[tuple[float, float] | None] | None = None,
                            detection_threshold: float = 0.5, min_prob: float = 0.05) -> LesionSizes:
    """Moment diameters of the ground-truth lesions that were missed, and of the detected.

    `spacings_mm[k]`: `(row_mm, col_mm)` of image k's pixels (at the masks' size); mm values
    are None unless every image has one.
    """
    spacings = list(spacings_mm) if spacings_mm is not None else [None] * len(masks)
    with_mm = all(s is not None for s in spacings) and len(spacings) == len(masks)
    missed, found, missed_mm, found_mm = [], [], [], []
    for p, g, spacing in zip(probs, masks, spacings):
        boxes, scores = detect_from_probability(p, min_prob)
        keep = scores >= detection_threshold
        _, matched = match_detections(boxes[keep], scores[keep], masks_to_boxes(g))
        diam = component_moment_diameters(g)  # same component order as masks_to_boxes (ndimage.label)
        missed.extend(diam[~matched].tolist())
        found.extend(diam[matched].tolist())
        if with_mm:
            diam_mm = component_moment_diameters(g, spacing)
            missed_mm.extend(diam_mm[~matched].tolist())
            found_mm.extend(diam_mm[matched].tolist())
    return LesionSizes(np.asarray(missed, float), np.asarray(found, float),
                       np.asarray(missed_mm, float) if with_mm else None, np.asarray(found_mm, float) if with_mm else None)


def write_diameter_file(path: str | Path, diameters_px: np.ndarray, diameters_mm: np.ndarray | None,
                        **extra: Any) -> Path:
    """The missed-lesion diameter array as JSON (P3 §III-D), for batch export's size sampling.

    `diameters_mm[i]` belongs to `diameters_px[i]` (each from its own image's spacing), or None.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": DIAMETER_FILE_FORMAT, "version": 1, "source": "hard-example mining (P3 §III-D)",
           "diameter_definition": DIAMETER_DEFINITION,
           "diameters_px": [float(d) for d in diameters_px],
           "diameters_mm": None if diameters_mm is None else [float(d) for d in diameters_mm], **extra}
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def read_diameter_file(path: str | Path) -> dict:
    """Read a diameter file: `{"diameters_px": [...], "diameters_mm": [...] or None, ...}`."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("format") != DIAMETER_FILE_FORMAT:
        raise ValueError(f"{path}: not a lesion-studio diameter file")
    return doc


def run_hard_example_mining(config, dataset: Dataset, folds, *, progress: Callable, cancel: Any,
                            resume: bool = True) -> tuple[list[dict], dict]:
    """The HEM experiment's fold loop; returns fold records (two conditions) and a report."""
    from lesion_studio.models.experiments import (
        ConditionConfig, ExperimentCancelled, ExperimentProgress, _cancelled, _fold_path, _public, _write_json,
        evaluate_probabilities, fold_generator, model_spacing_mm, predict_probabilities, prepare, run_fold,
        save_segmenter, train_segmenter,
    )
    from lesion_studio.models.patient_isolation import FoldPatients, check_fold_isolation

    records, report = [], {}
    total = len(folds) * 2
    hem = config.hem
    for fold in folds:
        p_pre = _fold_path(config.out_dir, "pretrained", fold.index)
        p_hem = _fold_path(config.out_dir, "hem_finetuned", fold.index)
        if resume and p_pre.exists() and p_hem.exists():
            saved = [json.loads(p.read_text(encoding="utf-8")) for p in (p_pre, p_hem)]
            if all(s.get("config_hash") == config.hash() and "patients" in s for s in saved):
                records.extend(saved)
                report[f"fold{fold.index}"] = saved[1].get("hem", {})
                progress(ExperimentProgress("skipped", "hem_finetuned", fold.index, len(records), total,
                                            f"fold {fold.index}: already done"))
                continue
        if _cancelled(cancel):
            raise ExperimentCancelled()
        t0 = time.monotonic()
        progress(ExperimentProgress("fold", "pretrained", fold.index, len(records), total,
                                    f"training the detector, fold {fold.index}"))
        pre = run_fold(config, dataset, fold, ConditionConfig("pretrained"), progress=progress, cancel=cancel,
                       unit=len(records), total=total)
        train_cases = pre.pop("_train_cases")
        model = pre.pop("_model")
        images, masks, test_images, test_masks = pre.pop("_data")
        pre.pop("_isolation")
        # each image's own spacing, scaled to the model size (not the first case's for all)
        spacings = [model_spacing_mm(dataset, c, config.image_size_px) for c in train_cases]
        probs = predict_probabilities(model, images, batch_size=config.batch_size, device=config.device)
        sizes = missed_lesion_diameters(probs, masks, spacings_mm=spacings, detection_threshold=hem.detection_threshold,
                                        min_prob=config.min_prob)
        diam_path = write_diameter_file(config.out_dir / f"missed_diameters_fold{fold.index}.json", sizes.missed_px,
                                        sizes.missed_mm, fold=fold.index, image_size_px=config.image_size_px,
                                        n_detected=int(sizes.found_px.size))
        seed = config.seed * 1000 + fold.index + 99
        rng = np.random.default_rng(seed)
        if sizes.missed_px.size:
            source_px, source_mm = sizes.missed_px, sizes.missed_mm
        else:  # nothing missed: any size
            source_px = np.concatenate([sizes.found_px, sizes.missed_px])
            source_mm = None if sizes.found_mm is None else np.concatenate([sizes.found_mm, sizes.missed_mm])
        picks = rng.integers(len(source_px), size=hem.n_synthetic) if source_px.size else np.zeros(0, int)
        drawn_px = source_px[picks]
        drawn_mm = None if source_mm is None else source_mm[picks]
        patients = [c.patient_id for c in train_cases]
        generator, note = None, "phantom painter (no generator)"
        if config.synthetic_generator == "checkpoint":  # the trained generator, sizes in mm (P3 size modulation)
            if drawn_mm is None:
                raise ConfigError("hard-example mining with a generator needs every training image's pixel spacing "
                                  "(the missed diameters are synthesized in mm)", dataset.root)
            path, generator, note = fold_generator(config, dataset, fold, 1.0, train_cases, seed, cancel)
            made = CheckpointSynthesisSource(path, config.device).synthesize(
                dataset, list(train_cases), len(drawn_mm), int(rng.integers(2**31)),
                diameters_mm=[float(d) for d in drawn_mm])
            synthetic = [SyntheticCase(*prepare(c.image, c.mask, config.image_size_px), c.patients) for c in made]
        else:
            pixel_mm = [None if sp is None else (sp[0] + sp[1]) / 2.0 for sp in spacings]
            synthetic = PhantomLesionPainter().synthesize(
                images, masks, len(drawn_px), rng, patients=patients, diameters_px=drawn_px, diameters_mm=drawn_mm,
                pixel_mm=pixel_mm, draw=False)
        isolation = check_fold_isolation(FoldPatients(
            fold.index, frozenset(patients), frozenset(c.patient_id for c in fold.val),
            frozenset(c.patient_id for c in fold.test), frozenset().union(*(c.patients for c in synthetic)),
            generator, note), condition="hem_finetuned")
        progress(ExperimentProgress("fold", "hem_finetuned", fold.index, len(records) + 1, total,
                                    f"fine-tuning on {len(synthetic)} lesions at {sizes.missed_px.size} missed diameters"))
        train_segmenter(model, images + [c.image for c in synthetic], masks + [c.mask for c in synthetic], [], [],
                        loss_name=config.loss, epochs=hem.finetune_epochs, batch_size=config.batch_size,
                        lr=hem.finetune_lr, seed=config.seed + fold.index, device=config.device,
                        lr_patience=config.lr_patience, min_lr=hem.finetune_lr, cancel=cancel)
        probs_test = predict_probabilities(model, test_images, batch_size=config.batch_size, device=config.device)
        after = evaluate_probabilities(probs_test, test_masks, prob_threshold=config.prob_threshold,
                                       min_prob=config.min_prob)
        info = {"diameter_definition": DIAMETER_DEFINITION, "spacing": "each image's own, scaled to the model size",
                "missed_diameters_px": sizes.missed_px.tolist(),
                "missed_diameters_mm": None if sizes.missed_mm is None else sizes.missed_mm.tolist(),
                "detected_diameters_px": sizes.found_px.tolist(),
                "drawn_diameters_px": [float(d) for d in drawn_px],
                "drawn_diameters_mm": None if drawn_mm is None else [float(d) for d in drawn_mm],
                "diameter_file": diam_path.relative_to(config.out_dir).as_posix(),
                "synthesizer": "checkpoint" if config.synthetic_generator == "checkpoint" else "phantom_painter"}
        after.update({k: v for k, v in pre.items()
                      if k not in ("metrics", "size_groups", "froc", "froc_luna", "condition", "model_checkpoint")})
        after.update({"condition": "hem_finetuned", "n_train_synthetic": len(synthetic), "hem": info,
                      "patients": isolation, "seconds": time.monotonic() - t0})
        if config.save_models:
            after["model_checkpoint"] = save_segmenter(config, model, "hem_finetuned", fold.index,
                                                       {"train": isolation["train"], "val": isolation["val"]}).as_posix()
        pre = _public(pre)
        _write_json(p_pre, pre)
        _write_json(p_hem, after)
        records.extend([pre, after])
        report[f"fold{fold.index}"] = info
    return records, {"hard_example_mining": report}
