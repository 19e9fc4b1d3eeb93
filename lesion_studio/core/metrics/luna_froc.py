"""LUNA16-style FROC read-out, offered next to the box-IoU FROC of `detection.py` (issue 14).

As the LUNA16 evaluation script (`noduleCADEvaluationLUNA16.py`, Setio et al. 2017) defines it,
translated to 2D lesion masks:

* a lesion is a disc: centre = the centroid of its 8-connected component, radius = half its
  moment diameter (`core.geometry.size_modulation.component_moment_diameters`, the project's
  one diameter definition);
* a detection hits a lesion when the centre of its box lies within the lesion's radius; a
  lesion's score is the highest score among its hits, and every further hit on it is ignored
  (neither a true nor a false positive); a detection counts as a false positive only when it
  hits no lesion;
* the FROC is sensitivity against mean false positives per image over all thresholds, read at
  1/8, 1/4, … 8 FP/image by **linear interpolation** (`np.interp`, as LUNA16 does; beyond the
  last operating point the last sensitivity holds), and the CPM is the mean of those seven.

The box-IoU FROC (`froc_curve`, step read-out, a second hit on a lesion is a false positive)
stays the default; results name both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesion_studio.core.metrics.detection import FROC_FP_RATES


@dataclass(frozen=True)
class LesionDiscs:
    """Lesions of one image as discs: `centres` `(N, 2)` (row, col) and `radii` `(N,)`, in pixels,
    in continuous coordinates (pixel (r, c) spans [r, r + 1) × [c, c + 1))."""

    centres: np.ndarray
    radii: np.ndarray


def lesion_discs(mask: np.ndarray) -> LesionDiscs:
    """The lesions (8-connected components) of a bool mask as discs (centroid, moment radius)."""
    from lesion_studio.core.geometry.size_modulation import component_moment_diameters

    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return LesionDiscs(np.zeros((0, 2)), np.zeros(0))
    centres = np.asarray(ndimage.center_of_mass(mask, labels, np.arange(1, n + 1)), dtype=float).reshape(n, 2) + 0.5
    return LesionDiscs(centres, component_moment_diameters(mask) / 2.0)


@dataclass(frozen=True)
class LunaFroc:
    """Operating points (one per distinct score, from (0, 0)), the interpolated sensitivities
    at `fp_rates` and their mean, the CPM."""

    fp_per_image: np.ndarray
    sensitivity: np.ndarray
    sensitivities: dict[float, float]
    cpm: float
    n_images: int
    n_lesions: int

    def to_dict(self) -> dict:
        return {"fp_per_image": self.fp_per_image.tolist(), "sensitivity": self.sensitivity.tolist(),
                "sensitivities": {f"{r:g}": v for r, v in self.sensitivities.items()}, "cpm": self.cpm,
                "n_images": self.n_images, "n_lesions": self.n_lesions}


def _hits(boxes: np.ndarray, scores: np.ndarray, discs: LesionDiscs) -> tuple[np.ndarray, np.ndarray]:
    """Per lesion its best hit score (-inf when missed); per detection whether it is a false positive."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    scores = np.asarray(scores, dtype=float).reshape(-1)
    centres = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2.0, (boxes[:, 0] + boxes[:, 2]) / 2.0], axis=1)
    dist = np.linalg.norm(centres[:, None, :] - discs.centres[None, :, :], axis=2)  # (detections, lesions)
    inside = dist <= discs.radii[None, :]
    best = np.where(inside, scores[:, None], -np.inf).max(axis=0) if len(scores) else np.full(len(discs.radii), -np.inf)
    return best, ~inside.any(axis=1)


def luna_froc(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray], lesions: Sequence[LesionDiscs],
              fp_rates: Sequence[float] = FROC_FP_RATES) -> LunaFroc:
    """The LUNA16-style FROC of per-image boxes `(N, 4)` `(x0, y0, x1, y1)` and scores (see the
    module docstring). Sensitivities are 0 when there is no lesion."""
    if not (len(pred_boxes) == len(pred_scores) == len(lesions)):
        raise ValueError("one entry of boxes, scores and lesions per image is needed")
    lesion_scores, fp_scores = [], []
    for boxes, scores, discs in zip(pred_boxes, pred_scores, lesions):
        best, is_fp = _hits(boxes, scores, discs)
        lesion_scores.append(best)
        fp_scores.append(np.asarray(scores, dtype=float).reshape(-1)[is_fp])
    found = np.concatenate(lesion_scores or [np.zeros(0)])
    fps = np.concatenate(fp_scores or [np.zeros(0)])
    n_images, n_lesions = len(lesions), len(found)
    thresholds = np.unique(np.concatenate([found[np.isfinite(found)], fps]))[::-1]
    fp_axis = np.r_[0.0, [(fps >= t).sum() / max(n_images, 1) for t in thresholds]]
    sens_axis = np.r_[0.0, [(found >= t).sum() / n_lesions if n_lesions else 0.0 for t in thresholds]]
    # a vertical run (one FP count, several sensitivities) is read at its top, as np.interp on
    # LUNA16's sklearn ROC points does
    unique_fp, last = np.unique(fp_axis[::-1], return_index=True)
    top = sens_axis[::-1][last]
    sens = {float(r): float(np.interp(r, unique_fp, top)) for r in fp_rates}
    return LunaFroc(fp_axis, sens_axis, sens, float(np.mean(list(sens.values()))) if sens else float("nan"),
                    n_images, n_lesions)
