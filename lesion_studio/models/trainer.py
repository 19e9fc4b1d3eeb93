"""One training loop for every generator family; each family plugs in a step strategy.

A strategy (`ShapeStep`, `TextureStep`, `CascadeStep`, `Pix2PixStep`) owns its networks,
optimizers, schedulers and losses and runs one iteration in `optimize_parameters` (pix2pix's
pattern). The `Trainer` around it does everything else: data, AMP, channels_last, compile,
DDP, validation (masked-region PSNR/SSIM), sample images, progress events, periodic / best /
cancel / final checkpoints, and resume (weights, optimizers, schedulers, step, RNG).

Entry point: `train(config, callback=..., cancel=..., resume=...)` or `Trainer(...).run()`.
"""

from __future__ import annotations

import contextlib
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
from lesion_studio.models.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint, stem_of
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
from lesion_studio.models.losses import AdversarialLoss, build_vgg_term, l1
from lesion_studio.models.metrics import quality
from lesion_studio.models.networks import build_discriminator, build_generator
from lesion_studio.models.progress import (
    Callback,
    CancelToken,
    CheckpointEvent,
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
    """P2 §3.1: cGAN (log-loss) + λ·L1, λ = 100; D sees [mask, image]."""

    family = "pix2pix"

    @staticmethod
    def condition(masks: torch.Tensor) -> torch.Tensor:
        return masks * 2.0 - 1.0  # the mask in the model's [-1, 1] range

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


STRATEGIES: dict[str, type[FamilyStep]] = {
    "shape": ShapeStep,
    "texture": TextureStep,
    "outpaint": TextureStep,
    "cascade": CascadeStep,
    "pix2pix": Pix2PixStep,
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
        self.config = config
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
        lock = None
        if self.dist.is_main:
            lock = open_output_folder(out_dir, kind="train", force=self.force, key="run.out_dir")
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
        if run.num_threads:
            torch.set_num_threads(run.num_threads)
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
        val = PatchSet(val.images[: run.val_max_patches], val.masks[: run.val_max_patches],
                       val.case_ids[: run.val_max_patches], val.patient_ids[: run.val_max_patches])

        self._emit(PhaseEvent("building model"))
        strategy = STRATEGIES[model.family](model, run.steps, device, autocast)
        if channels_last:
            for net in strategy.networks.values():
                net.to(memory_format=torch.channels_last)
        start_step, best_value, best_metrics = 0, None, {}
        out_dir = Path(run.out_dir)
        best_path: Path | None = None
        if checkpoint is not None:
            checkpoint.load_into(strategy.networks)
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
            }
            path = save_checkpoint(
                out_dir / name, family=model.family, config=self.config.to_dict(),
                networks=strategy.networks, step=step, metrics=metrics,
                dataset_fingerprint=fingerprint, normalization=normalizer.to_dict(),
                training_state=state, reason=reason,
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
            if self.dist.is_main and run.val_every and (step % run.val_every == 0 or step == run.steps) and len(val):
                last_metrics = self.validate(strategy, val)
                is_best = False
                if model.best_metric and model.best_metric in last_metrics:
                    value = last_metrics[model.best_metric]
                    lower_is_better = model.best_metric == "masked_l1"
                    if best_value is None or (value < best_value if lower_is_better else value > best_value):
                        best_value, best_metrics, is_best = value, dict(last_metrics), True
                self._emit(ValidationEvent(step=step, metrics=last_metrics, is_best=is_best))
                if is_best:
                    best_path = save(step, "best", "best", last_metrics)
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
        self._emit(TrainFinished(step=step, cancelled=cancelled, checkpoint=str(final_path),
                                 best_checkpoint=str(best_path) if best_path else None, best_metrics=best_metrics))
        self.strategy = strategy
        return TrainResult(step, cancelled, final_path, best_path, best_metrics, history)

    @torch.no_grad()
    def validate(self, strategy: FamilyStep, val: PatchSet, batch: int = 16) -> dict[str, float]:
        """Full-patch and masked-region MAE/MSE/PSNR/SSIM on the validation patches (model range)."""
        for net in strategy.networks.values():
            net.eval()
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
        return quality(fake, val.images, val.masks, data_range=2.0)

    @torch.no_grad()
    def samples(self, strategy: FamilyStep, patches: PatchSet, step: int, n: int = 4) -> SampleEvent:
        """Input, generated and target of the first `n` patches, stacked `(3n, H, W)`."""
        for net in strategy.networks.values():
            net.eval()
        images = patches.images[:n].to(strategy.device)
        masks = patches.masks[:n].to(strategy.device)
        fake = strategy.generate(images, masks).cpu()
        shown_input = (patches.masks[:n] * 2 - 1) if strategy.family in ("pix2pix", "shape") else patches.images[:n] * (1 - patches.masks[:n])
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
