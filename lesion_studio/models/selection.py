"""Which validation step's generator becomes the `best` checkpoint (issue 14, SPEC §2.7).

Masked PSNR alone favours blur: a blurred fill is close to the mean and scores well, so the
shipped texture model's "best" was step 150 of 1500. The papers choose differently:

- `masked_psnr` ↑, `masked_ssim` ↑, `masked_l1` ↓: pixel agreement in the generated region
  (P0 Table 2, P3 Table I);
- `fid` ↓, `kid` ↓: Inception-v3 features of generated vs. real validation patches (P1 §3.2
  keeps the checkpoint of best FID);
- `blur` ↓: the sharpness gap `|ln(var∇²(generated) / var∇²(real))|` over the generated
  region, set means (P2 §3.2.2: the variance of the Laplacian);
- `realfake` ↓: ROC AUC of a real-vs-generated CNN on held-out patches, 0.5 when it cannot
  tell them apart (P2 §3.2.3);
- `fcn` ↑: Dice of a segmenter trained once on real patches, run on generated ones, against
  their masks (P2 §3.2.1, the FCN score).

`blur` compares with the real patches instead of rewarding the sharpest set, because noise
has a larger Laplacian variance than any tissue: too sharp and too smooth both count.
`realfake` trains the realism CNN (`models/realism_classifier.py`) on real training patches
against the generator's output for them at that step (both area-downsampled to at most 64²,
to keep it CPU-cheap: fine texture is `blur`'s part), and scores real against generated
*validation* patches; `realfake_fooled` is the fraction of generated validation patches the
CNN calls real at P2's lowered threshold (p(real) ≥ 10 %, P2 §5). `fcn` trains a small
U-Net (`models/segmentation`) once per run on the real training patches.

`fid`/`kid` need torchmetrics + torch-fidelity and Inception weights from a local file or
the torch hub cache (`metrics.inception_unavailable`); `fcn` needs lesions (not objective
"remove"). When the asked criterion cannot be measured the run says why and selects by
`FALLBACK` instead (`Selection.note`). Every measurement seeds its own networks inside
`torch.random.fork_rng`, so selection never changes the training's random stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lesion_studio.core.geometry.composition import context_band_px, inside_band
from lesion_studio.models.config import STYLEGAN2_FAMILIES, criterion_problem
from lesion_studio.models.metrics import fid, inception_unavailable, kid

#: criterion → True when lower is better: every one of `config.BEST_METRICS` (a test checks both agree).
LOWER_IS_BETTER: dict[str, bool] = {
    "masked_psnr": False, "masked_ssim": False, "masked_l1": True,
    "fid": True, "kid": True, "blur": True, "realfake": True, "fcn": False,
}
#: Families whose output is an image paired with a real target (every criterion applies).
IMAGE_FAMILIES = ("texture", "outpaint", "cascade", "pix2pix")
#: What a run selects by when its criterion cannot be measured here: P2's real/fake CNN, the
#: distribution-level judge closest to FID that needs no downloaded weights.
FALLBACK = "realfake"
#: The CNN of P2 §5 (Results) calls a generated image real at p(real) >= 10 % (threshold lowered from 50 %).
P2_REAL_THRESHOLD = 0.10
#: Training budget of the real/fake CNN (optimizer steps, batches of 64) and of the FCN. The
#: CNN sees patches area-downsampled to at most `REALFAKE_MAX_PX`², so one measurement costs
#: about the same at every patch size (a few seconds on a CPU; it runs at every validation).
REALFAKE_STEPS = 50
REALFAKE_MAX_PX = 64
FCN_STEPS = 150
FCN_BATCH = 8
#: At most this many training patches feed the real/fake CNN and the FCN (seeded choice).
SELECTION_MAX_PATCHES = 128


# -- the measures -----------------------------------------------------------------------------
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]


def laplacian_variances(images: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image variance of the 4-neighbour Laplacian `(N,)` (P2 §3.2.2), over the pixels
    where `region` `(N, 1, H, W)` is set (None: the whole image); NaN where fewer than 2."""
    x = images.float()[:, :1]
    lap = F.conv2d(x, _LAPLACIAN.to(x))[:, 0]  # (N, H-2, W-2): interior pixels
    if region is None:
        return lap.flatten(1).var(dim=1, unbiased=False)
    w = (region[:, 0, 1:-1, 1:-1] > 0.5).float()
    n = w.flatten(1).sum(1)
    mean = (lap * w).flatten(1).sum(1) / n.clamp_min(1)
    var = ((lap - mean[:, None, None]) ** 2 * w).flatten(1).sum(1) / n.clamp_min(1)
    return torch.where(n >= 2, var, torch.full_like(var, float("nan")))


def blur_gap(fake: torch.Tensor, real: torch.Tensor, region: torch.Tensor | None = None) -> float:
    """`|ln(mean var∇²(fake) / mean var∇²(real))|` over `region` (P2 §3.2.2): 0 when the
    generated set is as sharp as the real one; blur and noise both raise it. NaN when the
    region is too small or flat to measure."""
    vf, vr = laplacian_variances(fake, region), laplacian_variances(real, region)
    ok = ~(torch.isnan(vf) | torch.isnan(vr))
    if not bool(ok.any()):
        return float("nan")
    mf, mr = float(vf[ok].mean()), float(vr[ok].mean())
    if mr <= 0.0:
        return float("nan")
    return abs(math.log(max(mf, 1e-12) / mr))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from lesion_studio.core.metrics.classification import roc_auc

    return roc_auc(labels, scores)


def realfake_scores(real_train: torch.Tensor, fake_train: torch.Tensor, real_val: torch.Tensor,
                    fake_val: torch.Tensor, *, seed: int, device: torch.device | str = "cpu") -> dict[str, float]:
    """P2 §3.2.3: train the realism CNN on real vs. generated training patches, then
    `realfake` = its ROC AUC on real vs. generated validation patches (lower: harder to tell
    apart) and `realfake_fooled` = the fraction of generated validation patches it calls real
    at p(real) >= 10 %. Patches `(N, 1, H, W)` in the model's [-1, 1]."""
    from lesion_studio.models.realism_classifier import BATCH_SIZE, train_realism_classifier

    def small(t: torch.Tensor) -> torch.Tensor:
        t = t.float().cpu()
        return F.interpolate(t, size=(REALFAKE_MAX_PX,) * 2, mode="area") if t.shape[-1] > REALFAKE_MAX_PX else t

    real_train, fake_train, real_val, fake_val = map(small, (real_train, fake_train, real_val, fake_val))
    x = torch.cat([real_train, fake_train])[:, 0].numpy()
    y = np.r_[np.zeros(len(real_train)), np.ones(len(fake_train))].astype(np.float32)
    epochs = max(1, math.ceil(REALFAKE_STEPS / max(1, math.ceil(len(x) / BATCH_SIZE))))
    with _own_rng(device), torch.enable_grad():  # callers validate under no_grad
        cnn = train_realism_classifier(x, y, epochs=epochs, seed=seed, value_range=(-1.0, 1.0), device=device,
                                       recalibrate=True)
    p_real = cnn.probabilities(real_val[:, 0].numpy())
    p_fake = cnn.probabilities(fake_val[:, 0].numpy())
    labels = np.r_[np.zeros(len(p_real)), np.ones(len(p_fake))]
    return {"realfake": _auc(labels, np.r_[p_real, p_fake]),
            "realfake_fooled": float(np.mean(1.0 - p_fake >= P2_REAL_THRESHOLD))}


def dice_score(probabilities: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> float:
    """Mean Dice per image `(N, 1, H, W)` over the images whose mask holds a lesion (P2 Eq. 2)."""
    pred = (probabilities >= threshold).float().flatten(1)
    gt = (masks > 0.5).float().flatten(1)
    has = gt.sum(1) > 0
    if not bool(has.any()):
        return float("nan")
    inter = (pred * gt).sum(1)
    dice = 2 * inter / (pred.sum(1) + gt.sum(1)).clamp_min(1e-9)
    return float(dice[has].mean())


class FCNScorer:
    """P2 §3.2.1's FCN score: a small U-Net trained once on real `(image, lesion)` patches;
    `score(images, lesions)` is the Dice of its prediction on generated images."""

    def __init__(self, images: torch.Tensor, lesions: torch.Tensor, *, seed: int,
                 device: torch.device | str = "cpu") -> None:
        from lesion_studio.models.segmentation import build_loss, build_segmenter

        self.device = torch.device(device)
        with _own_rng(self.device), torch.enable_grad():  # callers validate under no_grad
            torch.manual_seed(seed)
            net = build_segmenter("unet", base_channels=8, depth=3, norm="instance").to(self.device)
            opt = torch.optim.Adam(net.parameters(), lr=1e-3)
            loss_fn = build_loss("dice_bce")
            g = torch.Generator().manual_seed(seed)
            x, y = images.float(), (lesions > 0.5).float()
            net.train()
            for _ in range(FCN_STEPS):
                idx = torch.randint(0, len(x), (min(FCN_BATCH, len(x)),), generator=g)
                xb, yb = x[idx], y[idx]
                if torch.rand(1, generator=g) < 0.5:
                    xb, yb = xb.flip(-1), yb.flip(-1)
                opt.zero_grad()
                loss = loss_fn(net(xb.to(self.device)), yb.to(self.device))
                loss.backward()
                opt.step()
        self.network = net.eval()

    @torch.no_grad()
    def score(self, images: torch.Tensor, lesions: torch.Tensor, batch: int = 16) -> float:
        """Mean Dice of the FCN on `images` against `lesions` (both `(N, 1, H, W)`)."""
        probs = torch.cat([torch.sigmoid(self.network(images[i : i + batch].float().to(self.device))).cpu()
                           for i in range(0, len(images), batch)])
        return dice_score(probs, lesions)


def _own_rng(device: torch.device | str):
    """`torch.random.fork_rng` on the CPU (and the CUDA device in use): what runs inside
    draws from its own seed and leaves the training's random state as it was."""
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


# -- the record of one run ----------------------------------------------------------------------
@dataclass
class Selection:
    """The criterion a run selects by and every candidate step measured so far.

    `requested` is `model.best_metric`; `criterion` what is used (the fallback when the
    requested one cannot be measured, `note` says why); `candidates` are
    `{"step", "value", "checkpoint"}` dicts in step order.
    """

    requested: str
    criterion: str
    note: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lower_is_better(self) -> bool:
        return LOWER_IS_BETTER.get(self.criterion, False)

    def is_better(self, value: float, than: float | None) -> bool:
        """Whether `value` beats `than` (None: nothing yet); NaN never wins."""
        if value is None or not math.isfinite(value):
            return False
        if than is None or not math.isfinite(than):
            return True
        return value < than if self.lower_is_better else value > than

    def add(self, step: int, value: float, checkpoint: str = "") -> None:
        """Record the criterion's value at `step` (a re-measured step replaces the old entry)."""
        self.candidates = [c for c in self.candidates if c["step"] != step]
        self.candidates.append({"step": int(step), "value": float(value), "checkpoint": checkpoint})
        self.candidates.sort(key=lambda c: c["step"])

    def ranked(self) -> list[dict[str, Any]]:
        """Candidates best first (ties: the earlier step); unmeasurable (NaN) values last."""
        def key(c: dict[str, Any]) -> tuple:
            v = c["value"]
            finite = math.isfinite(v)
            return (not finite, (v if self.lower_is_better else -v) if finite else 0.0, c["step"])

        return sorted(self.candidates, key=key)

    def summary(self, best_step: int | None = None) -> dict[str, Any]:
        """What the best checkpoint's JSON and `selection.json` record: the criterion, its
        direction, the chosen step and value, the runner-up and every candidate."""
        def plain(c: dict[str, Any]) -> dict[str, Any]:  # JSON has no NaN: unmeasurable is null
            return {**c, "value": c["value"] if math.isfinite(c["value"]) else None}

        ranked = self.ranked()
        chosen = next((c for c in ranked if c["step"] == best_step), ranked[0] if ranked else None)
        runner = next((c for c in ranked if chosen is None or c["step"] != chosen["step"]), None)
        return {
            "requested": self.requested,
            "criterion": self.criterion,
            "better": "lower" if self.lower_is_better else "higher",
            "note": self.note,
            "best_step": chosen["step"] if chosen else None,
            "best_value": plain(chosen)["value"] if chosen else None,
            "runner_up": plain(runner) if runner else None,
            "candidates": [plain(c) for c in self.candidates],
        }

    def state(self) -> dict[str, Any]:
        """The part that survives a resume (in the checkpoint's training state)."""
        return {"candidates": [[c["step"], c["value"], c["checkpoint"]] for c in self.candidates]}

    def restore(self, state: dict[str, Any] | None) -> None:
        for step, value, checkpoint in (state or {}).get("candidates", []):
            self.add(int(step), float(value), str(checkpoint))


# -- the judge a trainer asks at each validation ------------------------------------------------
Generate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SelectionJudge:
    """Measures a run's selection criterion on validation patches (see the module docstring).

    `train_images`/`train_masks`: the real training patches (model range; masks mark the
    generated region, or for pix2pix the condition; `train_lesion_free` flags non-lesion
    pairs); `lesion_of` gives the lesion the FCN must find in a patch (the outpainter's mask is
    everything *but* the lesion; a non-lesion pair has none).
    """

    def __init__(self, requested: str, family: str, *, objective: str = "inpaint", invert_masks: bool = False,
                 context_fraction: float = 0.0, train_images: torch.Tensor | None = None,
                 train_masks: torch.Tensor | None = None,
                 train_lesion_free: torch.Tensor | None = None, n_val: int = 0, seed: int = 0,
                 device: torch.device | str = "cpu", inception_weights: str | Path = "auto") -> None:
        self.family, self.objective, self.invert = family, objective, invert_masks
        self.context_fraction = float(context_fraction)  # an outpainter's kept outer band is not lesion
        self.seed, self.device, self.inception_weights = seed, torch.device(device), inception_weights
        self.train_images, self.train_masks, self.train_lesion_free = self._subset(
            train_images, train_masks, train_lesion_free)
        self._fcn: FCNScorer | None = None
        criterion, note = requested, ""
        reason = self.unavailable(requested, n_val)
        if reason:
            reasons, criterion = [reason], ""
            if family in IMAGE_FAMILIES:  # FALLBACK, else the paired measure every validation has
                second = self.unavailable(FALLBACK, n_val) if requested != FALLBACK else reason
                criterion = "masked_psnr" if second else FALLBACK
                if second and second != reason:
                    reasons.append(second)
            note = "model selection: " + "; ".join(reasons) + (
                f"; selecting by {criterion} instead" if criterion else "; no best checkpoint is kept")
        self.selection = Selection(requested=requested, criterion=criterion, note=note)

    def _subset(self, images: torch.Tensor | None, masks: torch.Tensor | None, lesion_free: torch.Tensor | None):
        """At most `SELECTION_MAX_PATCHES` training patches (a seeded choice)."""
        if images is None or masks is None or len(images) <= SELECTION_MAX_PATCHES:
            return images, masks, lesion_free
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(images), generator=g)[:SELECTION_MAX_PATCHES].sort().values
        return images[idx], masks[idx], None if lesion_free is None else lesion_free[idx]

    def lesion_of(self, masks: torch.Tensor, lesion_free: torch.Tensor | None = None) -> torch.Tensor:
        """The lesion pixels `(N, 1, H, W)` of patches whose `masks` mark the generated region
        (none in a non-lesion pair, `lesion_free` `(N,)` bool)."""
        if self.invert:  # the outpainter's mask is all but the lesion and, when it keeps one, the outer band
            lesion = (masks <= 0.5).float()
            band = context_band_px(masks.shape[-1], self.context_fraction)
            if band:
                inner = torch.from_numpy(inside_band(tuple(masks.shape[-2:]), band)).to(masks.device)
                lesion = lesion * inner.float()
        else:
            lesion = (masks > 0.5).float()
        if lesion_free is not None:
            lesion = lesion * (~lesion_free.bool()).float()[:, None, None, None]
        return lesion

    def unavailable(self, criterion: str, n_val: int) -> str:
        """Why `criterion` cannot be measured in this run ("" when it can)."""
        if not criterion:
            return ""
        problem = criterion_problem(criterion, self.family, self.objective)
        if problem:
            return f"{criterion} unavailable: {problem}"
        if criterion in ("fid", "kid"):
            return inception_unavailable(criterion.upper(), self.inception_weights)
        if self.family in STYLEGAN2_FAMILIES or criterion not in ("realfake", "fcn"):
            return ""  # the paired measures and blur: every validation reports them
        if n_val < 2:
            return f"{criterion} unavailable: fewer than 2 validation patches"
        n_train = 0 if self.train_images is None else len(self.train_images)
        if criterion == "realfake" and n_train < 2:
            return "realfake unavailable: fewer than 2 training patches to train the real/fake CNN on"
        if criterion == "fcn" and (self.train_masks is None or
                                   not bool(self.lesion_of(self.train_masks, self.train_lesion_free).any())):
            return "fcn unavailable: no training patch holds a lesion to train the FCN on"
        return ""

    def measure(self, generate: Generate, val_images: torch.Tensor, val_masks: torch.Tensor,
                fake_val: torch.Tensor, *, lesion_free: torch.Tensor | None = None) -> dict[str, float]:
        """The criterion's numbers at this step (nothing for the paired measures and `blur`,
        which every validation reports). `generate(images, masks)` runs the generator now;
        `lesion_free` flags the validation patches that are non-lesion pairs."""
        c = self.selection.criterion
        if c == "realfake":
            fake_train = self._generate_all(generate, self.train_images, self.train_masks)
            return realfake_scores(self.train_images, fake_train, val_images, fake_val, seed=self.seed,
                                   device=self.device)
        if c == "fcn":
            if self._fcn is None:
                self._fcn = FCNScorer(self.train_images, self.lesion_of(self.train_masks, self.train_lesion_free),
                                      seed=self.seed, device=self.device)
            return {"fcn": self._fcn.score(fake_val, self.lesion_of(val_masks, lesion_free))}
        if c in ("fid", "kid") and self.family in IMAGE_FAMILIES:
            result = (fid if c == "fid" else kid)(val_images, fake_val, weights=self.inception_weights)
            return {c: result.value} if result.available else {}
        return {}

    @staticmethod
    @torch.no_grad()
    def _generate_all(generate: Generate, images: torch.Tensor, masks: torch.Tensor, batch: int = 16) -> torch.Tensor:
        return torch.cat([generate(images[i : i + batch], masks[i : i + batch]).float().cpu()
                          for i in range(0, len(images), batch)])


def validation_blur(fake: torch.Tensor, real: torch.Tensor, region: torch.Tensor | None) -> dict[str, float]:
    """`blur` (see `blur_gap`) for a validation report; empty when it cannot be measured."""
    value = blur_gap(fake, real, region)
    return {"blur": value} if math.isfinite(value) else {}
