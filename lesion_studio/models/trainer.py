"""One training loop for every generator family; each family plugs in a step strategy.

A strategy (`ShapeStep`, `TextureStep`, `CascadeStep`, `Pix2PixStep`, `StyleGAN2Step`) owns its networks,
optimizers, schedulers and losses and runs one iteration in `optimize_parameters` (pix2pix's
pattern). The `Trainer` around it does everything else: data, AMP, channels_last, compile,
DDP, validation (masked-region PSNR/SSIM), sample images, progress events, periodic / best /
cancel / final checkpoints, and resume (weights, optimizers, schedulers, step, RNG).

Entry point: `train(config, callback=..., cancel=..., resume=...)` or `Trainer(...).run()`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.errors import CheckpointError, ConfigError
from lesion_studio.models import distributed
from lesion_studio.core.export.atomic import TempJournal, remove_stale_temps
from lesion_studio.core.output_folder import open_output_folder
from lesion_studio.models.checkpoint import (
    load_checkpoint, remove_checkpoint, save_checkpoint, stem_of, update_sidecar,
)
from lesion_studio.models.config import TrainConfig
from lesion_studio.models.data import (
    Normalizer,
    PatchSet,
    batch_indices,
    build_patches,
    dataset_fingerprint,
    dataset_value_range,
    flip_augment,
    split_cases,
)
from lesion_studio.models.diffaugment import augment_pair
from lesion_studio.models.losses import AdversarialLoss, build_vgg_term, l1
from lesion_studio.models.metrics import fid, inception_unavailable, kid, lesion_contrast, quality
from lesion_studio.models.networks import build_discriminator, build_generator
from lesion_studio.models.networks.pix2pix import class_condition
from lesion_studio.models.presets import is_pre_preset_sidecar, resolve_preset
from lesion_studio.models.runtime import free_cores
from lesion_studio.models.selection import IMAGE_FAMILIES, SelectionJudge, validation_blur
from lesion_studio.models.stylegan2_losses import (
    PathLengthPenalty,
    draw_crossover,
    ema_beta,
    lazy_adam_settings,
    r1_penalty,
    soft_mask,
    update_ema,
)
from lesion_studio.models.progress import (
    Callback,
    CancelToken,
    CheckpointEvent,
    NoteEvent,
    PhaseEvent,
    SampleEvent,
    StepEvent,
    TrainFinished,
    TrainStarted,
    ValidationEvent,
)

#: A step is reported at least this often (seconds) whatever `run.log_every` says.
REPORT_AT_LEAST_EVERY_S = 10.0


# -- step strategies -------------------------------------------------------------------------
class FamilyStep:
    """Networks, optimizers, schedulers and losses of one family; one iteration per call."""

    family = ""

    def __init__(self, model, total_steps: int, device: torch.device, autocast) -> None:
        self.model = model
        self.device = device
        self.autocast = autocast
        self.total_steps = total_steps
        self.generator = build_generator(model).to(device)
        self.discriminator = build_discriminator(model).to(device)
        self.g = self.generator  # what the loop calls: possibly compiled / DDP-wrapped
        self.d = self.discriminator
        self.d_raw = self.discriminator  # G's adversarial term: no DDP hooks on D there
        self.adversarial = AdversarialLoss(model.adversarial_loss)
        betas = tuple(model.betas)
        self.optimizers = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=model.lr_g, betas=betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=self.lr_d(), betas=betas),
        }
        milestones = self.milestones()
        self.schedulers = {
            name: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=model.lr_gamma)
            for name, opt in self.optimizers.items()
        }

    def lr_d(self) -> float:
        return self.model.lr_d

    def milestones(self) -> list[int]:
        return list(self.model.lr_milestones or [])

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def extra_modules(self) -> list[nn.Module]:
        return []

    def wrap(self, *, compile_: bool, ddp: bool, device_ids: list[int] | None) -> None:
        """Optionally compile and DDP-wrap the generator and discriminator used by the loop."""
        g, d = self.generator, self.discriminator
        if ddp:
            warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated")
            g = DDP(g, device_ids=device_ids, broadcast_buffers=False, find_unused_parameters=self.ddp_find_unused)
            d = DDP(d, device_ids=device_ids, broadcast_buffers=False)
        if compile_:
            g, d = torch.compile(g), torch.compile(d)
            self.d_raw = torch.compile(self.discriminator)
        self.g, self.d = g, d

    ddp_find_unused = False

    @staticmethod
    def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def update_d(self, step: int) -> bool:
        return step % self.model.d_every == 0

    def optimize_parameters(self, images: torch.Tensor, masks: torch.Tensor, step: int) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Model-range output for a batch (eval mode): the composited patch, or G's image."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Lines the run reports once before its first step (`NoteEvent`), e.g. a missing metric."""
        return []

    def validation_metrics(self, val: PatchSet) -> dict[str, float] | None:
        """The family's own validation metrics, or None for the trainer's paired ones."""
        return None

    def sample_grid(self, patches: PatchSet, n: int) -> tuple[np.ndarray, tuple[str, ...]] | None:
        """The family's own sample images `(3k, H, W)` and titles, or None for input/generated/target."""
        return None


class ShapeStep(FamilyStep):
    """P3 §III-A: DCGAN on masks with LSGAN losses."""

    family = "shape"

    def optimize_parameters(self, images, masks, step):
        z = torch.randn(images.shape[0], self.model.z_dim, device=self.device)
        losses = {}
        with self.autocast():
            fake = self.g(z)
        if self.update_d(step):
            with self.autocast():
                d_loss = self.adversarial.discriminator(self.d(images), self.d(fake.detach()))
            self._update(self.optimizers["discriminator"], d_loss)
            losses["d_adv"] = float(d_loss.detach())
        with self.autocast():
            g_loss = self.adversarial.generator(self.d_raw(fake))
        self._update(self.optimizers["generator"], g_loss)
        losses["g_adv"] = float(g_loss.detach())
        return losses

    @torch.no_grad()
    def generate(self, images, masks):
        g = torch.Generator(device="cpu").manual_seed(1234)  # fixed draws: validation never touches the training RNG
        z = torch.randn(images.shape[0], self.model.z_dim, generator=g).to(self.device)
        return self.generator(z).float()


class TextureStep(FamilyStep):
    """P3 §III-C: L1(I_out,1) + L1(I_out,2) + L_perc + L_adv, SN-PatchGAN on [I_out,2, M]."""

    family = "texture"

    def __init__(self, model, total_steps, device, autocast) -> None:
        super().__init__(model, total_steps, device, autocast)
        self.perceptual = build_vgg_term("vgg16", model.perceptual_weights, model.perceptual_weight,
                                         key="model.perceptual_weights")
        if self.perceptual is not None:
            self.perceptual.to(device)

    def lr_d(self) -> float:
        return self.model.lr_g * self.model.lr_d_ratio  # P3 §IV-A: lr_D = lr_G / 10

    def milestones(self) -> list[int]:
        if self.model.lr_milestones is None:
            return [self.total_steps // 2]  # P3 §IV-A: 1e-4 "until convergence", then 1e-5
        return list(self.model.lr_milestones)

    def optimize_parameters(self, images, masks, step):
        m = self.model
        losses = {}
        with self.autocast():
            out1, out2 = self.g(images, masks)
            composed = out2 * masks + images * (1 - masks)
        if self.update_d(step):
            with self.autocast():
                d_loss = self.adversarial.discriminator(self.d(images, masks), self.d(composed.detach(), masks))
            self._update(self.optimizers["discriminator"], d_loss)
            losses["d_adv"] = float(d_loss.detach())
        with self.autocast():
            terms = {
                "l1_coarse": m.l1_coarse_weight * l1(out1, images),
                "l1_refine": m.l1_refine_weight * l1(out2, images),
                "g_adv": m.adversarial_weight * self.adversarial.generator(self.d_raw(composed, masks)),
            }
            if self.perceptual is not None:
                terms["perceptual"] = m.perceptual_weight * self.perceptual(out2, images)
            total = sum(terms.values())
        self._update(self.optimizers["generator"], total)
        losses.update({k: float(v.detach()) for k, v in terms.items()})
        losses["g_total"] = float(total.detach())
        return losses

    @torch.no_grad()
    def generate(self, images, masks):
        _, out2 = self.generator(images, masks)
        return (out2 * masks + images * (1 - masks)).float()


def _local_crops(images: torch.Tensor, masks: torch.Tensor, size: int) -> torch.Tensor:
    """`size`² crops centred on each sample's hole (clamped inside the patch)."""
    n, _, h, w = images.shape
    crops = []
    for i in range(n):
        rows = torch.nonzero(masks[i, 0].sum(dim=1) > 0).flatten()
        cols = torch.nonzero(masks[i, 0].sum(dim=0) > 0).flatten()
        cr = int((rows.min() + rows.max()) // 2) if rows.numel() else h // 2
        cc = int((cols.min() + cols.max()) // 2) if cols.numel() else w // 2
        r0 = min(max(cr - size // 2, 0), h - size)
        c0 = min(max(cc - size // 2, 0), w - size)
        crops.append(images[i : i + 1, :, r0 : r0 + size, c0 : c0 + size])
    return torch.cat(crops)


class CascadeStep(FamilyStep):
    """P0 §III-B: stage 1 L1 only; stage 2 1·L_adv + 50·L1 + 1·L_content; D every 2nd G step."""

    family = "cascade"
    ddp_find_unused = True  # stage 1 leaves the second U-Net without gradients

    def __init__(self, model, total_steps, device, autocast) -> None:
        super().__init__(model, total_steps, device, autocast)
        self.stage1_steps = (
            model.stage1_steps if model.stage1_steps is not None else int(0.2 * total_steps)
        )
        self.content = build_vgg_term("vgg19", model.content_weights, model.content_weight,
                                      key="model.content_weights")
        if self.content is not None:
            self.content.to(device)

    def optimize_parameters(self, images, masks, step):
        m = self.model
        with self.autocast():
            coarse, refined = self.g(images, masks)
        if step < self.stage1_steps:  # stage 1: the first U-Net on L1 only (P0 §III-B)
            with self.autocast():
                loss = l1(coarse, images)
            self._update(self.optimizers["generator"], loss)
            return {"l1_coarse": float(loss.detach())}
        losses = {}
        with self.autocast():
            composed = refined * masks + images * (1 - masks)
        mix = m.global_local_mix
        if self.update_d(step):  # P0 §III-B: D once per two G updates
            with self.autocast():
                real_g, real_l = self.d(images, _local_crops(images, masks, m.local_px))
                fake_in = composed.detach()
                fake_g, fake_l = self.d(fake_in, _local_crops(fake_in, masks, m.local_px))
                d_loss = (1 - mix) * self.adversarial.discriminator(real_g, fake_g) + mix * self.adversarial.discriminator(real_l, fake_l)
            self._update(self.optimizers["discriminator"], d_loss)
            losses["d_adv"] = float(d_loss.detach())
        with self.autocast():
            fake_g, fake_l = self.d_raw(composed, _local_crops(composed, masks, m.local_px))
            adv = (1 - mix) * self.adversarial.generator(fake_g) + mix * self.adversarial.generator(fake_l)  # P0 Eq. 4
            terms = {
                "l1_coarse": l1(coarse, images),
                "g_adv": m.adversarial_weight * adv,
                "l1_refine": m.l1_weight * l1(refined, images),
            }
            if self.content is not None:
                terms["content"] = m.content_weight * self.content(refined, images)
            total = sum(terms.values())
        self._update(self.optimizers["generator"], total)
        losses.update({k: float(v.detach()) for k, v in terms.items()})
        losses["g_total"] = float(total.detach())
        return losses

    @torch.no_grad()
    def generate(self, images, masks):
        _, refined = self.generator(images, masks)
        return (refined * masks + images * (1 - masks)).float()


class Pix2PixStep(FamilyStep):
    """P2 §3.1: cGAN (log-loss) + λ·L1, λ = 100; D sees [condition, image]; the condition is
    the mask, or one channel per lesion class (`condition_classes`, P2 §4)."""

    family = "pix2pix"

    def condition(self, masks: torch.Tensor) -> torch.Tensor:
        return class_condition(masks, self.model.condition_classes)  # in the model's [-1, 1] range

    def optimize_parameters(self, images, masks, step):
        cond = self.condition(masks)
        losses = {}
        with self.autocast():
            fake = self.g(cond)
        if self.update_d(step):
            with self.autocast():
                d_loss = self.adversarial.discriminator(self.d(cond, images), self.d(cond, fake.detach()))
            self._update(self.optimizers["discriminator"], d_loss)
            losses["d_adv"] = float(d_loss.detach())
        with self.autocast():
            adv = self.adversarial.generator(self.d_raw(cond, fake))
            rec = self.model.l1_weight * l1(fake, images)
            total = adv + rec
        self._update(self.optimizers["generator"], total)
        losses.update({"g_adv": float(adv.detach()), "l1": float(rec.detach()), "g_total": float(total.detach())})
        return losses

    @torch.no_grad()
    def generate(self, images, masks):
        return self.generator(self.condition(masks)).float()


class StyleGAN2Step(FamilyStep):
    """P4 §3 B-SG / M-SG / C-SG: StyleGAN2's non-saturating logistic loss, lazy R1, optional
    lazy path length, style mixing, and an EMA of G that validation and sampling use
    (`models/stylegan2_losses.py`). One G forward per step serves the D and the G update."""

    family = "stylegan2"

    def __init__(self, model, total_steps, device, autocast) -> None:
        super().__init__(model, total_steps, device, autocast)
        self.family = model.family
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False).eval()
        self.path_length = PathLengthPenalty(model.pl_decay).to(device)
        # lazy regularisation (StyleGAN2 App. B): each regularised network's Adam rate and
        # betas are scaled by k / (k + 1), its regulariser running every k steps
        betas = tuple(model.betas)
        g_lr, g_betas = lazy_adam_settings(model.lr_g, betas, model.pl_every if model.pl_weight > 0 else 0)
        d_lr, d_betas = lazy_adam_settings(model.lr_d, betas, model.r1_every if model.r1_gamma > 0 else 0)
        self.optimizers = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=g_lr, betas=g_betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=d_lr, betas=d_betas),
        }
        self.schedulers = {
            name: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=self.milestones(), gamma=model.lr_gamma)
            for name, opt in self.optimizers.items()
        }
        self.inception_reason = inception_unavailable("FID/KID")

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator,
                "generator_ema": self.generator_ema, "path_length": self.path_length}

    def views(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what D judges, the condition or None) in model range: B-SG [image, mask], M-SG the
        mask, C-SG the image with the mask as condition (masks {0, 1} → {-1, 1}; the masks B-SG
        and M-SG learn are signed-distance ramps of `mask_sigma_px`, C-SG's condition stays sharp)."""
        if self.family == "stylegan2-joint":
            return torch.cat([images, soft_mask(masks, self.model.mask_sigma_px)], dim=1), None
        if self.family == "stylegan2-mask":
            return soft_mask(masks, self.model.mask_sigma_px), None
        return images, masks * 2.0 - 1.0

    def _mixing(self, n: int) -> dict[str, Any]:
        crossover = draw_crossover(self.generator.num_ws, self.model.style_mixing_prob)
        if crossover is None:
            return {}
        return {"z2": torch.randn(n, self.model.z_dim, device=self.device), "crossover": crossover}

    def optimize_parameters(self, images, masks, step):
        m = self.model
        real, cond = self.views(images, masks)
        n = real.shape[0]
        losses = {}
        z = torch.randn(n, m.z_dim, device=self.device)
        with self.autocast():
            fake = self.g(z, cond, track_w_avg=True, **self._mixing(n))
        policies = m.diffaugment  # DiffAugment: D sees real and fake through the same random transforms
        if self.update_d(step):
            with self.autocast():
                real_logits = self.d(*augment_pair(real, cond, policies))
                fake_logits = self.d(*augment_pair(fake.detach(), cond, policies))
                d_loss = self.adversarial.discriminator(real_logits, fake_logits)
            self._update(self.optimizers["discriminator"], d_loss)
            losses.update(d_adv=float(d_loss.detach()), d_real=float(real_logits.detach().float().mean()),
                          d_fake=float(fake_logits.detach().float().mean()))
            if m.r1_gamma > 0 and (step // m.d_every) % m.r1_every == 0:  # lazy R1 (StyleGAN2 App. B)
                x = real.detach().requires_grad_(True)  # R1 on the un-augmented reals, through the augmentation
                logits = self.d(*augment_pair(x, cond, policies))
                penalty = r1_penalty(logits, x)
                # × r1_every keeps the strength of a per-step R1; logits·0 touches every D weight (DDP)
                self._update(self.optimizers["discriminator"],
                             penalty * (m.r1_gamma / 2) * m.r1_every + logits.float().sum() * 0)
                losses["r1"] = float(penalty.detach())
        with self.autocast():
            g_loss = self.adversarial.generator(self.d_raw(*augment_pair(fake, cond, policies)))
        self._update(self.optimizers["generator"], g_loss)
        losses["g_adv"] = float(g_loss.detach())
        if m.pl_weight > 0 and step % m.pl_every == 0:  # lazy path length (StyleGAN2 §3.2, App. B)
            k = max(1, n // m.pl_batch_shrink)
            z = torch.randn(k, m.z_dim, device=self.device)
            pl_images, ws = self.g(z, None if cond is None else cond[:k], return_ws=True, **self._mixing(k))
            penalty = self.path_length(pl_images, ws)
            self._update(self.optimizers["generator"],
                         penalty * m.pl_weight * m.pl_every + pl_images[:, 0, 0, 0].float().sum() * 0)
            losses["pl"] = float(penalty.detach())
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        batch = m.batch_size * world
        update_ema(self.generator_ema, self.generator, ema_beta(batch, (step + 1) * batch, m.ema_kimg, m.ema_rampup))
        return losses

    @torch.no_grad()
    def generate(self, images, masks, *, seed: int = 1234):
        """The EMA generator on fixed latents (seeded, never the training RNG) and fixed noise:
        B-SG `(N, 2, P, P)` image + mask, M-SG `(N, 1, P, P)` mask, C-SG the image for `masks`."""
        _, cond = self.views(images, masks)
        z = torch.randn(images.shape[0], self.model.z_dim, generator=torch.Generator().manual_seed(seed))
        return self.generator_ema(z.to(self.device), cond, noise_mode="const").float()

    def notes(self) -> list[str]:
        return [self.inception_reason] if self.inception_reason else []

    @torch.no_grad()
    def validation_metrics(self, val: PatchSet, batch: int = 16) -> dict[str, float]:
        """Mask statistics (B-SG, M-SG), lesion contrast (B-SG, C-SG) against the real
        validation patches, and FID/KID when Inception weights are present (SPEC §2.7)."""
        g = torch.Generator().manual_seed(1234)
        z_all = torch.randn(len(val), self.model.z_dim, generator=g)
        fakes = []
        for i in range(0, len(val), batch):
            _, cond = self.views(val.images[i : i + batch], val.masks[i : i + batch])
            cond = None if cond is None else cond.to(self.device)
            z = z_all[i : i + batch].to(self.device)
            fakes.append(self.generator_ema(z, cond, noise_mode="const").float().cpu())
        fake = torch.cat(fakes)
        real_masks = val.masks > 0.5
        metrics: dict[str, float] = {}
        if self.family != "stylegan2-cond":
            fake_masks = fake[:, -1:] > 0
            metrics["mask_fraction"] = float(fake_masks.float().mean())
            metrics["real_mask_fraction"] = float(real_masks.float().mean())
            metrics["mean_mask_l1"] = float((fake_masks.float().mean(0) - real_masks.float().mean(0)).abs().mean())
        if self.family != "stylegan2-mask":
            gen_masks = fake[:, 1:2] > 0 if self.family == "stylegan2-joint" else real_masks
            for key, value in (("lesion_contrast", lesion_contrast(fake[:, :1], gen_masks)),
                               ("real_lesion_contrast", lesion_contrast(val.images, real_masks))):
                if value is not None:
                    metrics[key] = value
        if not self.inception_reason:
            judged_real = val.masks * 2 - 1 if self.family == "stylegan2-mask" else val.images
            for name, result in (("fid", fid(judged_real, fake[:, :1])), ("kid", kid(judged_real, fake[:, :1]))):
                if result.available:
                    metrics[name] = result.value
        return metrics

    @torch.no_grad()
    def sample_grid(self, patches: PatchSet, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
        """Rows of three: B-SG generated mask, image and a real image; M-SG two generated masks
        and a real one; C-SG the condition, the image generated for it and the real image."""
        k = min(n, len(patches))
        images, masks = patches.images[:k], patches.masks[:k]
        fake = self.generate(images.to(self.device), masks.to(self.device)).cpu()
        if self.family == "stylegan2-mask":
            more = self.generate(images.to(self.device), masks.to(self.device), seed=4321).cpu()
        rows, titles = [], []
        for i in range(k):
            if self.family == "stylegan2-joint":
                rows += [fake[i, 1], fake[i, 0], images[i, 0]]
                titles += ["generated mask", "generated image", "real image"]
            elif self.family == "stylegan2-mask":
                rows += [fake[i, 0], more[i, 0], masks[i, 0] * 2 - 1]
                titles += ["generated mask", "generated mask", "real mask"]
            else:
                rows += [masks[i, 0] * 2 - 1, fake[i, 0], images[i, 0]]
                titles += ["condition", "generated", "real image"]
        return torch.stack(rows).numpy().astype(np.float32), tuple(titles)


STRATEGIES: dict[str, type[FamilyStep]] = {
    "shape": ShapeStep,
    "texture": TextureStep,
    "outpaint": TextureStep,
    "cascade": CascadeStep,
    "pix2pix": Pix2PixStep,
    "stylegan2-joint": StyleGAN2Step,
    "stylegan2-mask": StyleGAN2Step,
    "stylegan2-cond": StyleGAN2Step,
}


# -- the loop --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    step: int
    cancelled: bool
    checkpoint: Path
    best_checkpoint: Path | None
    best_metrics: dict[str, float]
    history: list[dict[str, float]]  # losses of every step run in this call
    selection: dict[str, Any] = dataclasses.field(default_factory=dict)  # Selection.summary (models/selection.py)


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device: cuda was asked for, but no CUDA GPU is usable here")
    return torch.device(choice)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    """Trains one family from a `TrainConfig`; events go to `callback`, `cancel` stops it."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        callback: Callback | None = None,
        cancel: CancelToken | None = None,
        patches: tuple[PatchSet, PatchSet, Normalizer, str] | None = None,
        force: bool = False,
    ) -> None:
        # a preset's numbers are filled in here, so the checkpoints record them (models/presets.py)
        self.config = dataclasses.replace(config, model=resolve_preset(config.model))
        self.force = force  # accept a non-empty run folder lesion-studio did not make
        self.callback = callback or (lambda event: None)
        self.cancel = cancel or CancelToken()
        self._patches = patches  # (train, val, normalizer, fingerprint): skips reading the dataset

    def _emit(self, event) -> None:
        if self.dist.is_main:
            self.callback(event)

    def _prepare_data(self, normalization: dict | None) -> tuple[PatchSet, PatchSet, Normalizer, str]:
        if self._patches is not None:
            return self._patches
        run, model = self.config.run, self.config.model
        if not run.dataset:
            raise ConfigError("run.dataset: no dataset folder given")
        dataset = load_dataset(run.dataset)
        train_cases, val_cases = split_cases(dataset, run.val_fraction, run.seed)
        if normalization:
            normalizer = Normalizer(float(normalization["lo"]), float(normalization["hi"]))
        elif run.value_range is not None:
            normalizer = Normalizer(float(run.value_range[0]), float(run.value_range[1]))
        else:
            normalizer = dataset_value_range(dataset, train_cases)
        # objective "remove" (P0 §III-A): train and validation holes both lie in lesion-free
        # tissue, drawn from run.seed per case, so validation measures tissue filling too
        train = build_patches(dataset, train_cases, model, normalizer, lesion_label=run.lesion_label, seed=run.seed)
        val = build_patches(dataset, val_cases, model, normalizer, lesion_label=run.lesion_label, seed=run.seed)
        if len(train) == 0:
            if getattr(model, "objective", "inpaint") == "remove":
                raise ConfigError(
                    f"model.objective: the training split of {dataset.root} gives no non-lesion holes "
                    f"(images smaller than patch_px = {model.patch_px}, or no lesion-free tissue?)")
            if run.lesion_label:
                raise ConfigError(f"run.lesion_label = {run.lesion_label}: the training split of {dataset.root} "
                                  f"gives no {model.family} patches with this mask value; is it the dataset's "
                                  "lesion label? (0 takes any nonzero value)")
            raise ConfigError(f"the training split of {dataset.root} gives no {model.family} patches (no lesions?)")
        return train, val, normalizer, dataset_fingerprint(dataset)

    def run(self, resume: str | Path | None = None) -> TrainResult:
        """Train to `run.steps` (from scratch, or from the checkpoint `resume`).

        The run folder is checked, locked and marked first (`core.output_folder`):
        `ConfigError` for a refused folder, `FolderInUseError` while another run holds it.
        """
        device = resolve_device(self.config.run.device)
        self.dist = distributed.init_from_env(device.type)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        out_dir = Path(self.config.run.out_dir)
        # Rank 0 locks and claims; the other ranks raise its error when it cannot (never hang or write).
        lock = distributed.run_on_main(
            self.dist, lambda: open_output_folder(out_dir, kind="train", force=self.force, key="run.out_dir"))
        try:
            with TempJournal(out_dir):
                if self.dist.is_main:
                    remove_stale_temps(out_dir)  # only the temporary files a killed run's journal lists
                return self._train(device, resume)
        finally:
            if lock is not None:
                lock.release()

    def _train(self, device: torch.device, resume: str | Path | None) -> TrainResult:
        run, model = self.config.run, self.config.model
        threads = run.num_threads
        if threads is None and device.type == "cpu":  # unset: the cores other work leaves free
            threads = max(1, free_cores() // self.dist.world_size)
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(run.seed + self.dist.rank)
        use_amp = run.amp == "bf16" or (run.amp == "auto" and device.type == "cuda")
        channels_last = run.channels_last and device.type == "cuda"

        def autocast():
            if not use_amp:
                return contextlib.nullcontext()
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

        checkpoint = None
        self._emit(PhaseEvent("preparing data"))
        if resume is not None:
            checkpoint = load_checkpoint(resume, family=model.family, with_training_state=True)
        train, val, normalizer, fingerprint = self._prepare_data(checkpoint.meta.get("normalization") if checkpoint else None)
        patients = {"train": sorted(set(train.patient_ids)), "val": sorted(set(val.patient_ids))}  # issue 14
        k = run.val_max_patches
        val = PatchSet(val.images[:k], val.masks[:k], val.case_ids[:k], val.patient_ids[:k],
                       lesion_free=None if val.lesion_free is None else val.lesion_free[:k])

        self._emit(PhaseEvent("building model"))
        strategy = STRATEGIES[model.family](model, run.steps, device, autocast)
        for text in strategy.notes():
            self._emit(NoteEvent(text))
        if channels_last:
            for net in strategy.networks.values():
                net.to(memory_format=torch.channels_last)
        # checkpoint selection (issue 14, models/selection.py): its criterion, and the steps
        # whose checkpoints stay as candidates (P2 §4.2: 10/50/100/200 epochs)
        judge = self._judge = self._selection_judge(train, len(val), device)
        select_steps = selection_steps(run, len(train), model.batch_size * self.dist.world_size)
        validates = len(val) and (run.val_every or select_steps)
        if judge.selection.note and validates:
            self._emit(NoteEvent(judge.selection.note))
        late = [s for s in select_steps if s > run.steps]
        if late:
            self._emit(NoteEvent(f"select_at: step(s) {', '.join(map(str, late))} lie past run.steps = {run.steps}; "
                                 "no candidate there"))
        start_step, best_value, best_metrics, best_step = 0, None, {}, None
        out_dir = Path(run.out_dir)
        best_path: Path | None = None
        if checkpoint is not None:
            try:
                checkpoint.load_into(strategy.networks)
            except CheckpointError as exc:
                if is_pre_preset_sidecar(checkpoint.meta.get("config")):
                    raise CheckpointError(f"{exc.reason}; this checkpoint predates texture presets: resume it with "
                                          'preset = "paper" in [model]', checkpoint.path) from exc
                raise
            state = checkpoint.training_state
            try:
                for name, opt in strategy.optimizers.items():
                    opt.load_state_dict(state["optimizers"][name])
                for name, sched in strategy.schedulers.items():
                    sched.load_state_dict(state["schedulers"][name])
            except (KeyError, ValueError) as exc:
                raise CheckpointError(f"optimizer/scheduler state does not fit: {exc}", checkpoint.path) from exc
            _set_rng_state(state["rng"], device)
            if self.dist.rank:
                torch.manual_seed(run.seed + self.dist.rank + checkpoint.step)
            start_step = checkpoint.step
            best_value = state.get("best_value")
            best_metrics = dict(state.get("best_metrics", {}))
            best_step = state.get("best_step")
            judge.selection.restore(state.get("selection"))
            if (out_dir / "best.json").is_file():
                best_path = out_dir / "best"
        strategy.wrap(compile_=run.compile, ddp=self.dist.enabled,
                      device_ids=[device.index] if device.type == "cuda" else None)

        def save(step: int, name: str, reason: str, metrics: dict[str, float]) -> Path:
            state = {
                "optimizers": {k: o.state_dict() for k, o in strategy.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in strategy.schedulers.items()},
                "rng": _rng_state(device),
                "best_value": best_value,
                "best_metrics": best_metrics,
                "best_step": best_step,
                "selection": judge.selection.state(),
            }
            path = save_checkpoint(
                out_dir / name, family=model.family, config=self.config.to_dict(),
                networks=strategy.networks, step=step, metrics=metrics,
                dataset_fingerprint=fingerprint, normalization=normalizer.to_dict(),
                training_state=state, reason=reason, patients=patients,
            )
            self._emit(CheckpointEvent(step=step, path=str(path), reason=reason))
            return path

        self._emit(TrainStarted(model.family, run.steps, start_step, str(device), self.dist.world_size, len(train), len(val)))
        self._emit(PhaseEvent("first step"))
        history: list[dict[str, float]] = []
        periodic = periodic_checkpoints(out_dir)  # those of earlier runs count towards keep_last too
        last_metrics: dict[str, float] = {}
        step = start_step
        cancelled = False
        window_t, window_step = time.perf_counter(), step
        batch = model.batch_size
        final_path: Path | None = None
        while step < run.steps:
            if distributed.any_rank(self.cancel.cancelled, self.dist):
                cancelled = True
                break
            idx = batch_indices(len(train), batch, step, run.seed, self.dist.rank, self.dist.world_size)
            images, masks = train.images[idx], train.masks[idx]
            if run.flip_augment:
                images, masks = flip_augment(images, masks, step, run.seed, self.dist.rank)
            images, masks = images.to(device), masks.to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
                masks = masks.contiguous(memory_format=torch.channels_last)
            for net in strategy.networks.values():
                net.train()
            losses = strategy.optimize_parameters(images, masks, step)
            with warnings.catch_warnings():  # cascade stage 1 steps no D optimizer: expected
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
                for sched in strategy.schedulers.values():
                    sched.step()
            step += 1
            history.append(losses)
            now = time.perf_counter()
            # the first step of a run and slow runs report at once: a 90 s/step run with
            # log_every 10 would otherwise look frozen for 15 minutes
            if (step % run.log_every == 0 or step == run.steps or step == start_step + 1
                    or now - window_t >= REPORT_AT_LEAST_EVERY_S):
                it_s = (step - window_step) / max(now - window_t, 1e-9)
                window_t, window_step = now, step
                self._emit(StepEvent(
                    step=step, total_steps=run.steps, losses=losses,
                    lr={k: o.param_groups[0]["lr"] for k, o in strategy.optimizers.items()},
                    it_per_s=it_s, images_per_s=it_s * batch * self.dist.world_size,
                    eta_s=(run.steps - step) / it_s if it_s > 0 else math.inf,
                ))
            at_select = step in select_steps
            if self.dist.is_main and len(val) and (
                    (run.val_every and (step % run.val_every == 0 or step == run.steps)) or at_select):
                last_metrics = self.validate(strategy, val)
                is_best = False
                criterion = judge.selection.criterion
                select_name = f"select_step_{step:07d}" if at_select else ""
                if criterion and criterion in last_metrics:
                    value = last_metrics[criterion]
                    judge.selection.add(step, value, select_name)
                    if judge.selection.is_better(value, best_value):
                        best_value, best_metrics, best_step, is_best = value, dict(last_metrics), step, True
                self._emit(ValidationEvent(step=step, metrics=last_metrics, is_best=is_best, criterion=criterion))
                if is_best:
                    best_path = save(step, "best", "best", last_metrics)
                if at_select:  # kept whatever keep_last says: a candidate of the selection
                    save(step, select_name, "select", last_metrics)
                if criterion:
                    self._record_selection(out_dir, judge, best_step, best_path)
            if self.dist.is_main and run.sample_every and step % run.sample_every == 0:
                self._emit(self.samples(strategy, val if len(val) else train, step))
            if run.checkpoint_every and step % run.checkpoint_every == 0 and step < run.steps:
                if self.dist.is_main:
                    path = save(step, f"step_{step:07d}", "periodic", last_metrics)
                    periodic = [p for p in periodic if p != path] + [path]
                    while run.keep_last and len(periodic) > run.keep_last:
                        remove_checkpoint(periodic.pop(0))
                distributed.barrier(self.dist)
        if self.dist.is_main:
            name, reason = (f"cancelled_step_{step:07d}", "cancel") if cancelled else ("final", "final")
            final_path = save(step, name, reason, last_metrics)
        distributed.barrier(self.dist)
        final_path = final_path or out_dir / ("final" if not cancelled else f"cancelled_step_{step:07d}")
        selection = judge.selection.summary(best_step) if judge.selection.criterion else {}
        self._emit(TrainFinished(step=step, cancelled=cancelled, checkpoint=str(final_path),
                                 best_checkpoint=str(best_path) if best_path else None, best_metrics=best_metrics,
                                 selection=selection))
        self.strategy = strategy
        return TrainResult(step, cancelled, final_path, best_path, best_metrics, history, selection)

    def _selection_judge(self, train: PatchSet, n_val: int, device: torch.device) -> SelectionJudge:
        """The judge of `model.best_metric` for this run (`models/selection.py`)."""
        run, model = self.config.run, self.config.model
        return SelectionJudge(model.best_metric, model.family, objective=getattr(model, "objective", "inpaint"),
                              invert_masks=getattr(model, "invert_masks", False),
                              context_fraction=getattr(model, "context_fraction", 0.0), train_images=train.images,
                              train_masks=train.masks, train_lesion_free=train.lesion_free, n_val=n_val,
                              seed=run.seed, device=device,
                              inception_weights=run.inception_weights)

    def _record_selection(self, out_dir: Path, judge: SelectionJudge, best_step: int | None,
                          best_path: Path | None) -> None:
        """Write the selection so far to `selection.json` (the run's summary) and to the best
        checkpoint's JSON (`selection`): criterion, chosen step and value, runner-up, candidates."""
        summary = judge.selection.summary(best_step)
        write_json_atomic(out_dir / SELECTION_FILE, {"family": self.config.model.family,
                                                     "best_checkpoint": best_path.name if best_path else None,
                                                     **summary})
        if best_path is not None:
            update_sidecar(best_path, selection=summary)

    @torch.no_grad()
    def validate(self, strategy: FamilyStep, val: PatchSet, batch: int = 16) -> dict[str, float]:
        """Full-patch and masked-region MAE/MSE/PSNR/SSIM, `blur` and the run's selection
        criterion (`models/selection.py`) on the validation patches (model range)."""
        for net in strategy.networks.values():
            net.eval()
        own = strategy.validation_metrics(val)
        if own is not None:
            return own
        fakes = []
        for i in range(0, len(val), batch):
            images = val.images[i : i + batch].to(strategy.device)
            masks = val.masks[i : i + batch].to(strategy.device)
            fakes.append(strategy.generate(images, masks).cpu())
        fake = torch.cat(fakes)
        if strategy.family == "shape":  # no paired target: compare the mean mask of both sets
            real_mean = val.images.mean(dim=0, keepdim=True)
            fake_mean = fake.mean(dim=0, keepdim=True)
            return {"mean_mask_l1": float((real_mean - fake_mean).abs().mean()),
                    "mask_fraction": float((fake > 0).float().mean())}
        # pix2pix generates the whole image: masked measures on the lesion (any class), blur on all
        region = (val.masks > 0.5).float()
        metrics = quality(fake, val.images, region, data_range=2.0)
        metrics.update(validation_blur(fake, val.images, None if strategy.family == "pix2pix" else region))
        judge = getattr(self, "_judge", None)
        if judge is not None and strategy.family in IMAGE_FAMILIES:
            dev = strategy.device
            metrics.update(judge.measure(lambda i, m: strategy.generate(i.to(dev), m.to(dev)), val.images,
                                         val.masks, fake, lesion_free=val.lesion_free))
        return metrics

    @torch.no_grad()
    def samples(self, strategy: FamilyStep, patches: PatchSet, step: int, n: int = 4) -> SampleEvent:
        """Input, generated and target of the first `n` patches, stacked `(3n, H, W)`."""
        for net in strategy.networks.values():
            net.eval()
        own = strategy.sample_grid(patches, n)
        if own is not None:
            return SampleEvent(step=step, images=own[0], titles=own[1])
        images = patches.images[:n].to(strategy.device)
        masks = patches.masks[:n].to(strategy.device)
        fake = strategy.generate(images, masks).cpu()
        classes = max(getattr(strategy.model, "condition_classes", 0), 1)  # class values 1..K shown as grey levels
        shown_input = (patches.masks[:n] / classes * 2 - 1) if strategy.family in ("pix2pix", "shape") \
            else patches.images[:n] * (1 - patches.masks[:n])
        rows, titles = [], []
        for i in range(fake.shape[0]):
            rows += [shown_input[i, 0], fake[i, 0], patches.images[i, 0]]
            titles += ["input", "generated", "target"]
        return SampleEvent(step=step, images=torch.stack(rows).numpy().astype(np.float32), titles=tuple(titles))


def train(
    config: TrainConfig,
    *,
    callback: Callback | None = None,
    cancel: CancelToken | None = None,
    resume: str | Path | None = None,
    force: bool = False,
) -> TrainResult:
    """Train `config` headless; see `Trainer`."""
    return Trainer(config, callback=callback, cancel=cancel, force=force).run(resume=resume)


#: The run's selection summary (criterion, chosen step, runner-up, candidates), beside its checkpoints.
SELECTION_FILE = "selection.json"


def selection_steps(run, n_train: int, per_step: int) -> list[int]:
    """`run.select_at` in generator steps; an epoch is the training patches seen once
    (`n_train // per_step` steps, at least 1, as `batch_indices` counts them)."""
    if run.select_unit == "epoch":
        per_epoch = max(n_train // max(per_step, 1), 1)
        return sorted({int(e) * per_epoch for e in run.select_at})
    return sorted({int(s) for s in run.select_at})


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write `doc` as `path` through a temporary file (a reader sees the old or the new one)."""
    import json
    import os

    from lesion_studio.core.export.atomic import temp_path

    tmp = temp_path(path)
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=True), encoding="utf-8")
    os.replace(tmp, path)


def periodic_checkpoints(out_dir: Path) -> list[Path]:
    """The periodic checkpoints (`step_NNNNNNN`) in `out_dir`, oldest step first."""
    found = []
    for json_path in Path(out_dir).glob("step_*.json"):
        digits = json_path.stem[len("step_"):]
        if digits.isdigit():
            found.append((int(digits), stem_of(json_path)))
    return [stem for _, stem in sorted(found)]


def replace_run(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of `config` with `RunConfig` fields changed (tests, benchmarks, the CLI)."""
    return TrainConfig(model=dataclasses.replace(config.model), run=dataclasses.replace(config.run, **changes))
