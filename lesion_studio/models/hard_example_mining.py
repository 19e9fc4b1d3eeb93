"""Hard-example mining as an experiment type (P3 §III-D, SPEC §3.8).

Per fold: (1) train the detector on the real training images; (2) detect on those real
images and split ground-truth lesions into detected / missed (a lesion is detected when a
candidate scoring ≥ `hem.detection_threshold` overlaps its box at IoU ≥ 0.2); (3) write the
missed lesions' diameters (`missed_diameters_fold<k>.json`, also readable by batch export:
`{"diameters_px": [...], "diameters_mm": [...]}`); (4) draw N diameters uniformly from that
array and synthesize N lesions at those sizes; (5) fine-tune on real + synthetic (P3: lr 1e-4,
10 epochs) and (6) re-evaluate on the fold's test images. The two conditions are
`pretrained` and `hem_finetuned`; the report holds the diameter arrays per fold.

The synthesizer is `synthetic_generator`: 'checkpoint' (a trained generator through
`load_synthesizer`, lesion sizes in mm from the drawn diameters) or 'phantom_painter' (the
cheap, non-GAN stand-in of `synthetic_sources`, used by the fast tests). The diameter file
also feeds batch export (`diameters = {file = ...}`) for an offline synthetic set.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lesion_studio.core.dataset import Dataset
from lesion_studio.core.metrics import masks_to_boxes, match_detections
from lesion_studio.models.detection import detect_from_probability, lesion_diameters_px
from lesion_studio.models.synthetic_sources import CheckpointSynthesisSource, PhantomLesionPainter

DIAMETER_FILE_FORMAT = "lesion-studio-diameters"


def missed_lesion_diameters(probs: np.ndarray, masks: list[np.ndarray], *, detection_threshold: float = 0.5,
                            min_prob: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent diameters (px) of the ground-truth lesions that were missed, and of the detected."""
    missed, found = [], []
    for p, g in zip(probs, masks):
        boxes, scores = detect_from_probability(p, min_prob)
        keep = scores >= detection_threshold
        gt_boxes = masks_to_boxes(g)
        _, matched = match_detections(boxes[keep], scores[keep], gt_boxes)
        diam = lesion_diameters_px(g)  # same component order as masks_to_boxes (ndimage.label)
        missed.extend(diam[~matched].tolist())
        found.extend(diam[matched].tolist())
    return np.asarray(missed, float), np.asarray(found, float)


def write_diameter_file(path: str | Path, diameters_px: np.ndarray, spacing_mm: float | None, **extra: Any) -> Path:
    """The missed-lesion diameter array as JSON (P3 §III-D), for batch export's size sampling."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": DIAMETER_FILE_FORMAT, "version": 1, "source": "hard-example mining (P3 §III-D)",
           "diameters_px": [float(d) for d in diameters_px],
           "diameters_mm": None if spacing_mm is None else [float(d) * spacing_mm for d in diameters_px], **extra}
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
        evaluate_probabilities, predict_probabilities, prepare, run_fold, train_segmenter,
    )

    records, report = [], {}
    total = len(folds) * 2
    hem = config.hem
    first = dataset.cases[0]
    spacing = dataset.spacing_for(first)
    for fold in folds:
        p_pre = _fold_path(config.out_dir, "pretrained", fold.index)
        p_hem = _fold_path(config.out_dir, "hem_finetuned", fold.index)
        if resume and p_pre.exists() and p_hem.exists():
            saved = [json.loads(p.read_text(encoding="utf-8")) for p in (p_pre, p_hem)]
            if all(s.get("config_hash") == config.hash() for s in saved):
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
        probs = predict_probabilities(model, images, batch_size=config.batch_size, device=config.device)
        missed, found = missed_lesion_diameters(probs, masks, detection_threshold=hem.detection_threshold,
                                                min_prob=config.min_prob)
        # the phantom size is the resized image: convert px back to mm with the resize factor
        h = dataset.read_image(first).shape[0]
        px_mm = None if spacing is None else spacing[0] * h / config.image_size_px
        diam_path = write_diameter_file(config.out_dir / f"missed_diameters_fold{fold.index}.json", missed, px_mm,
                                        fold=fold.index, image_size_px=config.image_size_px,
                                        n_detected=int(found.size))
        rng = np.random.default_rng(config.seed * 1000 + fold.index + 99)
        source = missed if missed.size else np.concatenate([found, missed])  # nothing missed: any size
        drawn = rng.choice(source, size=hem.n_synthetic, replace=True) if source.size else np.zeros(0)
        if config.synthetic_generator == "checkpoint":  # the trained generator, sizes in mm (P3 size modulation)
            if px_mm is None:
                raise ValueError("hard-example mining with a generator needs the pixel spacing")
            pairs = CheckpointSynthesisSource(config.synthesis_checkpoint, config.device).synthesize(
                dataset, list(train_cases), len(drawn), int(rng.integers(2**31)),
                diameters_mm=[float(d) * px_mm for d in drawn])
            synthetic = [prepare(img, m, config.image_size_px) for img, m in pairs]
        else:
            synthetic = PhantomLesionPainter().synthesize(images, masks, len(drawn), rng, diameters_px=drawn)
        progress(ExperimentProgress("fold", "hem_finetuned", fold.index, len(records) + 1, total,
                                    f"fine-tuning on {len(synthetic)} lesions at {missed.size} missed diameters"))
        train_segmenter(model, images + [s[0] for s in synthetic], masks + [s[1] for s in synthetic], [], [],
                        loss_name=config.loss, epochs=hem.finetune_epochs, batch_size=config.batch_size,
                        lr=hem.finetune_lr, seed=config.seed + fold.index, device=config.device,
                        lr_patience=config.lr_patience, min_lr=hem.finetune_lr, cancel=cancel)
        probs_test = predict_probabilities(model, test_images, batch_size=config.batch_size, device=config.device)
        after = evaluate_probabilities(probs_test, test_masks, prob_threshold=config.prob_threshold,
                                       min_prob=config.min_prob)
        info = {"missed_diameters_px": missed.tolist(), "detected_diameters_px": found.tolist(),
                "drawn_diameters_px": [float(d) for d in drawn], "diameter_file": str(diam_path),
                "synthesizer": "checkpoint" if config.synthetic_generator == "checkpoint" else "phantom_painter"}
        after.update({k: v for k, v in pre.items() if k not in ("metrics", "size_groups", "froc", "condition")})
        after.update({"condition": "hem_finetuned", "n_train_synthetic": len(synthetic), "hem": info,
                      "seconds": time.monotonic() - t0})
        pre = _public(pre)
        _write_json(p_pre, pre)
        _write_json(p_hem, after)
        records.extend([pre, after])
        report[f"fold{fold.index}"] = info
    return records, {"hard_example_mining": report}
