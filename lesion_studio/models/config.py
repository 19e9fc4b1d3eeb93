"""Training and network configuration: one dataclass per generator family, defaults from SPEC.

Every number a paper gives lives here, with the paper and section beside it (SPEC §2.1-2.5).
Where a paper is silent the comment says what lesion-studio chose and why.

A TOML file holds three parts:

```toml
family = "texture"            # shape | texture | outpaint | cascade | pix2pix | stylegan2-joint|-mask|-cond
[run]                         # RunConfig: data, steps, checkpoints, device
dataset = "data/chest"
out_dir = "runs/texture"
[model]                       # the family's config (TextureConfig here)
base_channels = 48
```

The file is checked by `core.config_schema` (the one validation layer of every config): the
Settings come from these dataclasses (kind and default) plus `RUN_BOUNDS`/`MODEL_BOUNDS`
(ranges and choices, by key name), so an unknown key, a wrong type, NaN/Inf or an
out-of-range value is one `ConfigError` line `FILE:LINE: model.base_chanels: reason` with a
"did you mean" suggestion. `validate` adds the rules that tie several keys together.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_studio.core.config_schema import (
    Problems, Schema, Setting, check_tables, load_toml, settings_from_dataclass,
)
from lesion_studio.core.errors import ConfigError
from lesion_studio.models.presets import GATES, TEXTURE_PRESETS

#: Adversarial loss kinds understood by `models.losses.AdversarialLoss`.
ADVERSARIAL_LOSSES = ("lsgan", "nonsaturating", "bce")
#: DiffAugment policies a StyleGAN2 discriminator's inputs may go through (`models/diffaugment.py`).
DIFFAUGMENT_POLICIES = ("translation", "cutout")
#: Training objectives of the hole-filling families: `inpaint` paints lesions into lesion
#: holes (P3 §III-C, P0 §III-B); `remove` fills non-lesion holes cut in lesion-free tissue
#: with the tissue that was there (P0 §III-A, SPEC §1.2), which is what removing a lesion needs.
OBJECTIVES = ("inpaint", "remove")
#: Families that may train with `objective = "remove"` (outpainting keeps the lesion).
REMOVE_FAMILIES = ("texture", "cascade")
#: The StyleGAN2 family of P4 §3: B-SG (image + mask), M-SG (masks), C-SG (mask → image).
STYLEGAN2_FAMILIES = ("stylegan2-joint", "stylegan2-mask", "stylegan2-cond")
#: Where StyleGAN2 training patches come from (`models/data.py`).
PATCH_SOURCES = ("lesion", "image")
#: Checkpoint selection criteria of `best_metric` (`models/selection.py` measures them; "":
#: no best checkpoint). Paired pixel measures (P0 Table 2, P3 Table I), FID/KID (P1 §3.2),
#: blurriness, the real/fake CNN and the FCN score (P2 §3.2).
BEST_METRICS = ("masked_psnr", "masked_ssim", "masked_l1", "fid", "kid", "blur", "realfake", "fcn")
#: Units of `run.select_at`: generator steps, or epochs of the training patches (P2 §4.2 counts epochs).
SELECT_UNITS = ("step", "epoch")


@dataclass
class RunConfig:
    """What to train on, for how long, where to write, and how to run (any family)."""

    dataset: str = ""  # dataset folder (images/, masks/, dataset.json); see docs/dataset_format.md
    out_dir: str = "runs/train"
    steps: int = 15_000  # generator iterations; P0 §III-B trains 15,000 iterations
    seed: int = 0
    val_fraction: float = 0.15  # P0 §III-B: 85/15 split, drawn per patient (never per image)
    checkpoint_every: int = 1000  # write `step_XXXXXXX` every N steps (0: only final/cancel)
    val_every: int = 500  # validation (masked-region PSNR/SSIM) every N steps (0: never)
    val_max_patches: int = 64  # validation on at most this many patches, always the same ones
    sample_every: int = 500  # sample images in the progress events every N steps (0: never)
    log_every: int = 10  # a StepEvent every N steps
    keep_last: int = 3  # periodic checkpoints kept (best, cancel and final are always kept)
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto: bf16 autocast on CUDA, off on CPU; "bf16" | "off"
    channels_last: bool = True  # NHWC memory format on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the networks (slow to start; worth it for long runs)
    num_threads: int | None = None  # torch CPU threads; unset: the free cores (cores − load average, >= 1); 0: torch's default
    value_range: list[float] | None = None  # [lo, hi] in image units mapped to [-1, 1]; None: dataset 0.5/99.5 percentiles
    lesion_label: int = 0  # mask value that marks lesions (0: any nonzero value)
    flip_augment: bool = True  # random horizontal/vertical flips of training patches
    select_at: list[int] = field(default_factory=list)  # extra validations whose checkpoints are kept as selection candidates (`select_step_N`); P2 §4.2 compares 10, 50, 100, 200 epochs
    select_unit: str = "step"  # step | epoch: the unit of select_at (an epoch: the training patches once)
    inception_weights: str = "auto"  # FID/KID weights: "auto" (torch hub cache) | a local weights-inception-2015-12-05-6726825d.pth; never downloaded


@dataclass
class ShapeConfig:
    """P3 §III-A shape generator: DCGAN, z ∈ R¹⁰⁰ → 128² mask; LSGAN losses."""

    family: str = "shape"
    z_dim: int = 100  # P3 §III-A: z ∈ R^100 ~ N(0, I)
    base_channels: int = 512  # P3 §III-A: projected to 4×4×512
    patch_px: int = 128  # P3 §III-A: 128×128 masks (five stride-2 transposed convs from 4×4)
    normalize_diameter_px: float = 100.0  # P3 §IV-A: training masks normalized to d_init = 100 px
    adversarial_loss: str = "lsgan"  # P3 Eq. 1-2
    lr_g: float = 1e-4  # P3 §IV-A
    lr_d: float = 1e-5  # P3 §IV-A
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # P3 §IV-A
    batch_size: int = 6  # P3 §IV-A
    d_every: int = 1  # P3 is silent: D and G alternate every step (DCGAN's default)
    lr_milestones: list[int] = field(default_factory=list)  # P3 §IV-A: constant rates
    lr_gamma: float = 0.1
    best_metric: str = ""  # no target image to compare against: periodic checkpoints only


@dataclass
class TextureConfig:
    """P3 §III-C texture generator: gated convs, coarse + refinement, SN-PatchGAN, 256²."""

    family: str = "texture"
    in_channels: int = 2  # SPEC §1.5: grayscale image with the hole filled, plus the mask
    out_channels: int = 1
    preset: str = "light"  # paper | deepfill | light: the architecture (models/presets.py); fields below left unset take the preset's value
    base_channels: int | None = None  # kept channels at full resolution (x2, x4 lower); unset: the preset's (paper 48, deepfill/light 24 = DeepFill v2's cnum 48 before its gate split)
    gate: str = ""  # full: a gate per channel (P3 Eq. 3) | half: one per 2 channels | single: one shared map (LWGC_sc, Yi et al. 2020); "": the preset's
    dilated_mult: int | None = None  # width of the dilated convs in units of base_channels: 4 (P3, DeepFill) | 2 (light: a narrower bottleneck); unset: the preset's
    dilations: list[int] = field(default_factory=lambda: [2, 4, 8, 16])  # P3 §III-C
    disc_channels: int = 64  # P3 silent; SN-PatchGAN (DeepFill v2) uses 64
    disc_layers: int = 6  # P3 §III-C: six-layer fully convolutional PatchGAN, output 1/32
    patch_px: int = 256  # P3 §III-C: 256² patches
    fill_value: float = 1.0  # P3 §III-C: I ⊙ (1 − M) + M (the top of the [-1, 1] range)
    invert_masks: bool = False  # True: outpainting (P1 §3.2), the lesion is kept
    objective: str = "inpaint"  # inpaint: lesion holes (P3 §III-C) | remove: non-lesion holes (P0 §III-A)
    nonlesion_pairs: float = 0.0  # objective inpaint: non-lesion hole pairs per lesion patch (P0 §III-A uses 1.0); P3 trains on nodule patches only; "remove" ignores it
    adversarial_loss: str = "lsgan"  # P3 §III-C
    l1_coarse_weight: float = 1.0  # P3 §III-C: all loss weights 1
    l1_refine_weight: float = 1.0  # P3 §III-C
    perceptual_weight: float = 1.0  # P3 §III-C: L1 of VGG16 pool1/pool2/pool3 features
    adversarial_weight: float = 1.0  # P3 §III-C
    perceptual_weights: str = "auto"  # "auto" (torch hub cache) | a .pth/.safetensors path | "disabled"
    lr_g: float = 1e-4  # P3 §IV-A: 1e-4, then 1e-5 after convergence
    lr_d_ratio: float = 0.1  # P3 §IV-A: lr_D = lr_G / 10 all the time
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # P3 §IV-A
    batch_size: int = 8  # P3 §IV-A
    d_every: int = 1  # P3 silent: one D update per G update
    lr_milestones: list[int] | None = None  # None: drop at half of run.steps (P3 "until convergence")
    lr_gamma: float = 0.1  # P3 §IV-A: 1e-4 → 1e-5
    best_metric: str = "fid"  # P1 §3.2 keeps the best-FID checkpoint (P3 Table I reports FID beside PSNR, which favours blur); without Inception weights: realfake


@dataclass
class OutpaintConfig(TextureConfig):
    """P1 §3.2 outpainting: the texture generator trained with inverted masks (SPEC §2.5)."""

    family: str = "outpaint"
    invert_masks: bool = True  # SPEC §2.5: regenerate everything but the lesion
    context_fraction: float = 0.0  # the crop's outer band kept as context (fraction of the side): 0 = P1's whole crop; > 0 lets the pasted crop meet the image without a square seam
    adversarial_loss: str = "nonsaturating"  # P1 §3.2 (MAT training uses a non-saturating loss)
    best_metric: str = "fid"  # P1 §3.2: the checkpoint of best FID; without Inception weights: realfake


@dataclass
class CascadeConfig:
    """P0 §III-B cascaded dilated U-Net inpainter, global + local discriminators, 128²."""

    family: str = "cascade"
    in_channels: int = 2  # image with the hole, plus the mask
    out_channels: int = 1
    base_channels: int = 64  # P0 silent; U-Net's 64 first-level filters
    depth: int = 3  # P0 silent; three downsamplings put the dilated convs at 16² (128² input)
    dilations: list[int] = field(default_factory=lambda: [2, 4, 8])  # P0 §III-B lists 2, 4, 8, 16; on the 16² map a dilation of 16 reads only padding off-centre (a 1×1 conv), so it is left out
    disc_channels: int = 64  # P0 silent
    global_blocks: int = 4  # P0 §III-B: 4 stride-2 conv blocks on the whole 128² image
    local_blocks: int = 3  # P0 §III-B: 3 blocks on a 48² crop around the hole
    local_px: int = 48  # P0 §III-B
    patch_px: int = 128  # P0 §III-B: 128² input
    fill_value: float = 0.0  # P0 silent on the hole value; 0 is mid-grey in [-1, 1]
    objective: str = "inpaint"  # inpaint: stone holes (P0 §III-B) | remove: non-stone holes (P0 §III-A)
    nonlesion_pairs: float = 1.0  # objective inpaint: non-lesion hole pairs per lesion patch; P0 §III-A trains on 1,800 stone + 1,800 stone-free pairs; "remove" ignores it
    stage1_steps: int | None = None  # P0 §III-B: stage 1 on L1 only; None: first 20 % of run.steps
    adversarial_loss: str = "bce"  # P0 Eq. 3 (log-loss with a sigmoid patch map)
    adversarial_weight: float = 1.0  # P0 Eq. 7: λ1 = 1
    l1_weight: float = 50.0  # P0 Eq. 7: λ2 = 50
    content_weight: float = 1.0  # P0 Eq. 7: λ3 = 1 (VGG19, first conv of blocks 1-4, Eq. 6)
    content_weights: str = "auto"  # "auto" (torch hub cache) | a .pth/.safetensors path | "disabled"
    global_local_mix: float = 0.5  # P0 Eq. 4: 0.5·L(G,D_g) + 0.5·L(G,D_l)
    lr_g: float = 2e-4  # P0 §III-B
    lr_d: float = 2e-4  # P0 §III-B
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # P0 §III-B: momentum 0.5
    batch_size: int = 16  # P0 silent on the inpainter batch; 16 as its segmentation training
    d_every: int = 2  # P0 §III-B: D updated once per two G updates
    lr_milestones: list[int] = field(default_factory=list)  # P0: constant rate
    lr_gamma: float = 0.1
    best_metric: str = "fid"  # P0 is silent (Table 2 reports PSNR/SSIM, which favour blur); P1 §3.2's FID; without Inception weights: realfake


@dataclass
class Pix2PixConfig:
    """P2 §3.1 LcGAN: pix2pix U-Net mask → image, 70×70 PatchGAN on [mask, image], 256²."""

    family: str = "pix2pix"
    in_channels: int = 1  # P2 §3.1: the lesion mask is the condition; condition_classes channels when that is set
    condition_classes: int = 0  # 0: binary lesion mask; K >= 2: mask values 1..K are classes, one-hot (P2 §4: five hemorrhage types)
    out_channels: int = 1  # grayscale CT slice
    base_channels: int = 64  # P2 §4.2: pix2pix (TensorFlow) filter counts, ngf = 64
    num_downs: int = 8  # pix2pix unet_256: 256² → 1²
    dropout: float = 0.5  # pix2pix: dropout in the three innermost decoder blocks
    disc_channels: int = 64  # pix2pix ndf = 64
    disc_layers: int = 3  # pix2pix 70×70 PatchGAN: 30×30 map at 256² (SPEC §2.4)
    patch_px: int = 256  # P2 §4.2 / SPEC §2.4: 256²
    adversarial_loss: str = "bce"  # P2 Eq. 1: log-loss cGAN
    l1_weight: float = 100.0  # SPEC §2.4: λ = 100, pix2pix's default
    lr_g: float = 2e-4  # P2 §4.2
    lr_d: float = 2e-4  # P2 §4.2
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # P2 §4.2: β1 0.5
    batch_size: int = 1  # pix2pix's default batch (P2 silent)
    d_every: int = 1
    lr_milestones: list[int] = field(default_factory=list)  # P2 §4.2: fixed learning rate
    lr_gamma: float = 0.1
    best_metric: str = "fcn"  # P2 §3.2.1: the FCN score, "the most important" of its three criteria (blur is reported beside it)


@dataclass
class StyleGAN2Config:
    """P4 §3.1 B-SG: one StyleGAN2 generating image and label mask together (2 channels).

    P4 names StyleGAN2 (Karras et al. 2020) and is silent on its settings; those below are the
    StyleGAN2 paper's config-f defaults (its training code's values). `stylegan2_config(family,
    preset)` gives P4's 256² size ("p4") or the CPU presets "cpu-128" and "cpu-64".
    """

    family: str = "stylegan2-joint"
    patch_source: str = "lesion"  # lesion: P0 context crop per lesion (ours) | image: whole image (P4 §4.1)
    patch_px: int = 256  # P4 Table 1: every dataset resized to 256²
    z_dim: int = 512  # StyleGAN2: z ∈ R^512 ~ N(0, I)
    w_dim: int = 512  # StyleGAN2: w ∈ R^512
    mapping_layers: int = 8  # StyleGAN §2: 8-layer mapping MLP
    mapping_lr_mul: float = 0.01  # StyleGAN §C: mapping network learning rate × 0.01
    channel_base: int = 32768  # StyleGAN2 config-f: min(32768 / resolution, 512) feature maps
    channel_max: int = 512  # StyleGAN2 config-f
    mbstd_group: int = 4  # StyleGAN2 (ProGAN §3): minibatch std over groups of 4
    adversarial_loss: str = "nonsaturating"  # P4 Eq. 1-3 and StyleGAN2: logistic loss, non-saturating G
    r1_gamma: float = 10.0  # StyleGAN2 config-f: R1 γ = 10 (P4 silent; ADA's heuristic 2e-4·px²/batch is lower)
    r1_every: int = 16  # StyleGAN2 App. B: lazy R1, once per 16 D steps (1: every step)
    pl_weight: float = 2.0  # StyleGAN2 §3.2: path-length regularisation weight 2 (0: off)
    pl_every: int = 4  # StyleGAN2 App. B: lazy path length, once per 4 G steps
    pl_decay: float = 0.01  # StyleGAN2: decay of the running mean path length
    pl_batch_shrink: int = 2  # StyleGAN2: path length on half of the minibatch
    style_mixing_prob: float = 0.9  # StyleGAN2 config-f: mixing regularisation, p = 0.9
    ema_kimg: float = 10.0  # StyleGAN2: generator EMA with a half-life of 10k images
    ema_rampup: float = 0.0  # StyleGAN2-ADA: half-life at most rampup × images seen (0: off, as StyleGAN2)
    diffaugment: list[str] = field(default_factory=list)  # DiffAugment policies D sees ([]: none, as StyleGAN2)
    mask_sigma_px: float = 0.0  # ours: B-SG / M-SG learn masks as tanh(signed distance / this), read at > 0 (0: sharp)
    lr_g: float = 0.002  # StyleGAN2 config-f (P4 Table 1's Adam 1e-4 is its U-Net's)
    lr_d: float = 0.002  # StyleGAN2 config-f
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])  # StyleGAN2
    batch_size: int = 32  # StyleGAN2 config-f minibatch (P4 Table 1's 64 is its U-Net's)
    d_every: int = 1  # StyleGAN2: one D step per G step
    lr_milestones: list[int] = field(default_factory=list)  # StyleGAN2: constant rate
    lr_gamma: float = 0.1
    best_metric: str = ""  # no paired target: "" or fid/kid (reported when Inception weights are present)


@dataclass
class StyleGAN2MaskConfig(StyleGAN2Config):
    """P4 §3.1 M-SG: the same StyleGAN2 generating label masks only (MC-SG's first stage; a shape source)."""

    family: str = "stylegan2-mask"


@dataclass
class StyleGAN2CondConfig(StyleGAN2Config):
    """P4 §3.2 C-SG: mask → image; G gets the mask after every demodulated conv, D before fromRGB and each block."""

    family: str = "stylegan2-cond"


#: Size presets of the StyleGAN2 families (`stylegan2_config`). "p4": P4's 256² at StyleGAN2
#: config-f widths (30 M + 29 M parameters). "cpu-128"/"cpu-64": narrow networks that train on
#: a CPU for demos and tests; R1 γ from StyleGAN2-ADA's heuristic 0.0002·px²/batch, path length
#: off (it doubles a G step), the EMA ramped up so short runs average recent weights.
STYLEGAN2_PRESETS: dict[str, dict[str, Any]] = {
    "p4": {},
    "cpu-128": dict(patch_px=128, z_dim=128, w_dim=128, mapping_layers=4, channel_base=2048, channel_max=64,
                    batch_size=8, r1_gamma=0.4, pl_weight=0.0, ema_kimg=1.0, ema_rampup=0.05),
    "cpu-64": dict(patch_px=64, z_dim=64, w_dim=64, mapping_layers=2, channel_base=2048, channel_max=64,
                   batch_size=8, r1_gamma=0.1, pl_weight=0.0, ema_kimg=0.5, ema_rampup=0.05),
}


def stylegan2_config(family: str, preset: str = "p4", **changes: Any) -> StyleGAN2Config:
    """The config of a StyleGAN2 family at a size preset, with optional field `changes`."""
    if family not in STYLEGAN2_FAMILIES:
        raise ConfigError(f"family: {family!r} is not a StyleGAN2 family ({', '.join(STYLEGAN2_FAMILIES)})")
    if preset not in STYLEGAN2_PRESETS:
        raise ConfigError(f"preset: unknown StyleGAN2 preset {preset!r}; "
                          f"expected one of {', '.join(STYLEGAN2_PRESETS)}")
    return FAMILY_CONFIGS[family](**{**STYLEGAN2_PRESETS[preset], **changes})


FAMILY_CONFIGS: dict[str, type] = {
    "shape": ShapeConfig,
    "texture": TextureConfig,
    "outpaint": OutpaintConfig,
    "cascade": CascadeConfig,
    "pix2pix": Pix2PixConfig,
    "stylegan2-joint": StyleGAN2Config,
    "stylegan2-mask": StyleGAN2MaskConfig,
    "stylegan2-cond": StyleGAN2CondConfig,
}

ModelConfig = ShapeConfig | TextureConfig | OutpaintConfig | CascadeConfig | Pix2PixConfig | StyleGAN2Config


@dataclass
class TrainConfig:
    """A whole training run: the family's model config plus the run settings."""

    model: Any
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def family(self) -> str:
        return self.model.family

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "run": dataclasses.asdict(self.run), "model": dataclasses.asdict(self.model)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str | Path | None = None, text: str = "") -> "TrainConfig":
        """Build from a parsed TOML/JSON dict (a file, a checkpoint sidecar, the GUI dialog);
        one `ConfigError` lists every bad key (`FILE:LINE: key: reason` when `text` is given)."""
        data = dict(data)
        if isinstance(data.get("model"), dict):  # the sidecar repeats the family inside [model]
            data["model"] = {k: v for k, v in data["model"].items() if k != "family"}
        family = data.get("family")
        known = isinstance(family, str) and family in FAMILY_CONFIGS
        problems = Problems(path, text, "training config")
        values = check_tables(data, train_schema(family if known else None), problems,
                              allow_extra_sections=() if known else ("model",))
        problems.raise_if_any()
        model = FAMILY_CONFIGS[family](**values["model"])
        model.family = family
        config = cls(model=model, run=RunConfig(**values["run"]))
        validate(config, path=path, text=text)
        return config


def model_config_class(family: str, *, path: str | Path | None = None) -> type:
    """The config dataclass of a family name; `ConfigError` for an unknown one."""
    try:
        return FAMILY_CONFIGS[family]
    except KeyError:
        raise ConfigError(
            f"family: unknown family {family!r}; expected one of {', '.join(FAMILY_CONFIGS)}", path
        ) from None


def default_config(family: str, **run_overrides: Any) -> TrainConfig:
    """The paper defaults of a family, with optional `RunConfig` fields overridden."""
    return TrainConfig(model=model_config_class(family)(), run=RunConfig(**run_overrides))


def load_config(path: str | Path) -> TrainConfig:
    """Read a training TOML file; `ConfigError` (with the path, line and key) when it is invalid."""
    path = Path(path)
    data, text = load_toml(path)
    config = TrainConfig.from_dict(data, path=path, text=text)
    if config.run.dataset and not Path(config.run.dataset).is_absolute():
        config.run.dataset = str((path.parent / config.run.dataset).resolve())
    if not Path(config.run.out_dir).is_absolute():
        config.run.out_dir = str((path.parent / config.run.out_dir).resolve())
    return config


#: Upper bounds of the structural model settings (far above anything trainable here): they keep
#: a typo or a hostile checkpoint sidecar from describing a network that cannot be built.
MODEL_SIZE_LIMITS = {
    "base_channels": 4096, "disc_channels": 4096, "z_dim": 4096, "in_channels": 64, "out_channels": 64,
    "depth": 10, "num_downs": 12, "disc_layers": 12, "global_blocks": 12, "local_blocks": 12,
    "local_px": 8192, "patch_px": 8192,
    "w_dim": 4096, "mapping_layers": 32, "channel_base": 1 << 20, "channel_max": 4096, "mbstd_group": 256,
}


def _value_range_check(value: list[float]) -> str | None:
    return None if value[0] < value[1] else f"must be [lo, hi] with lo < hi, got {value}"


_COUNT = {"ge": 0}  # 0 switches the feature off
#: Ranges and choices of the `[run]` keys (kinds and defaults come from `RunConfig`).
RUN_BOUNDS: dict[str, dict[str, Any]] = {
    "steps": {"ge": 1},
    "val_fraction": {"ge": 0.0, "lt": 1.0},
    "checkpoint_every": _COUNT, "val_every": _COUNT, "val_max_patches": {"ge": 1}, "sample_every": _COUNT,
    "log_every": {"ge": 1}, "keep_last": _COUNT, "num_threads": _COUNT,
    "device": {"choices": ("auto", "cpu", "cuda")},
    "amp": {"choices": ("auto", "bf16", "off")},
    "value_range": {"min_len": 2, "max_len": 2, "check": _value_range_check},
    "lesion_label": {"ge": 0},  # 0: any nonzero mask value
    "select_at": {"ge": 1, "max_len": 64},
    "select_unit": {"choices": SELECT_UNITS},
    "inception_weights": {"check": lambda v: None if v.strip() else 'must be "auto" or a file path'},
}
_POSITIVE, _WEIGHT = {"gt": 0.0}, {"ge": 0.0}
#: Ranges and choices of the `[model]` keys of every family, by key name (a name means the same
#: thing in every family); kinds and defaults come from the family's dataclass.
MODEL_BOUNDS: dict[str, dict[str, Any]] = {
    **{key: {"ge": 1, "le": high} for key, high in MODEL_SIZE_LIMITS.items()},
    "dilations": {"min_len": 1, "max_len": 32, "ge": 1, "le": 4096},
    "adversarial_loss": {"choices": ADVERSARIAL_LOSSES},
    "objective": {"choices": OBJECTIVES},
    "best_metric": {"choices": ("", *BEST_METRICS)},
    "nonlesion_pairs": {"ge": 0.0, "le": 10.0},
    "context_fraction": {"ge": 0.0, "le": 0.3},
    "condition_classes": {"ge": 0, "le": 64},
    "batch_size": {"ge": 1}, "d_every": {"ge": 1},
    "betas": {"min_len": 2, "max_len": 2, "ge": 0.0, "lt": 1.0},
    "lr_g": _POSITIVE, "lr_d": _POSITIVE, "lr_d_ratio": _POSITIVE, "lr_gamma": _POSITIVE,
    "normalize_diameter_px": _POSITIVE,
    "l1_coarse_weight": _WEIGHT, "l1_refine_weight": _WEIGHT, "perceptual_weight": _WEIGHT,
    "adversarial_weight": _WEIGHT, "l1_weight": _WEIGHT, "content_weight": _WEIGHT,
    "dropout": {"ge": 0.0, "le": 0.99},
    "global_local_mix": {"ge": 0.0, "le": 1.0},
    "lr_milestones": {"ge": 1},
    "stage1_steps": {"ge": 0},
    "patch_source": {"choices": PATCH_SOURCES},
    "mapping_lr_mul": {"gt": 0.0, "le": 1.0},
    "r1_gamma": _WEIGHT, "pl_weight": _WEIGHT, "r1_every": {"ge": 1}, "pl_every": {"ge": 1},
    "pl_decay": {"gt": 0.0, "le": 1.0}, "pl_batch_shrink": {"ge": 1},
    "style_mixing_prob": {"ge": 0.0, "le": 1.0},
    "ema_kimg": _WEIGHT, "ema_rampup": _WEIGHT,
    "diffaugment": {"choices": DIFFAUGMENT_POLICIES, "max_len": len(DIFFAUGMENT_POLICIES)},
    "mask_sigma_px": {"ge": 0.0, "le": 16.0},
    "preset": {"choices": tuple(TEXTURE_PRESETS)},
    "gate": {"choices": ("", *GATES)},
    "dilated_mult": {"ge": 1, "le": 16},
}
#: The top-level keys of a training file.
TOP_SETTINGS: dict[str, Setting] = {
    "family": Setting("str", choices=tuple(FAMILY_CONFIGS), doc="generator family"),
}


def train_schema(family: str | None) -> Schema:
    """The schema of a training file of `family` (None: family unknown, `[model]` unchecked)."""
    schema: dict[str, Any] = {"": TOP_SETTINGS, "run": settings_from_dataclass(RunConfig, RUN_BOUNDS)}
    if family is not None:
        schema["model"] = settings_from_dataclass(model_config_class(family), MODEL_BOUNDS)
    return schema


def validate(config: TrainConfig, *, path: str | Path | None = None, text: str = "") -> None:
    """Every key against `train_schema`, then the rules that tie keys together; one
    `ConfigError` lists every problem (with its line when the file's `text` is given)."""
    model = config.model
    problems = Problems(path, text, "training config")
    check_tables(config.to_dict(), train_schema(config.family), problems)
    problems.raise_if_any()  # the rules below assume each key is valid on its own

    def bad(key: str, reason: str) -> None:
        problems.add(key, reason)

    min_px = {"shape": 32, "texture": 16, "outpaint": 16, "cascade": 16, "pix2pix": 2 ** getattr(model, "num_downs", 1),
              **dict.fromkeys(STYLEGAN2_FAMILIES, 16)}
    if model.patch_px < min_px[model.family] or model.patch_px % 16:
        bad("model.patch_px", f"must be a multiple of 16 and >= {min_px[model.family]}, got {model.patch_px}")
    elif model.family == "shape" and model.patch_px != 2 ** round(math.log2(model.patch_px)):
        bad("model.patch_px", f"the DCGAN needs a power of two, got {model.patch_px}")
    elif model.family in STYLEGAN2_FAMILIES and model.patch_px != 2 ** round(math.log2(model.patch_px)):
        bad("model.patch_px", f"StyleGAN2 needs a power of two, got {model.patch_px}")
    if getattr(model, "objective", "inpaint") == "remove" and model.family not in REMOVE_FAMILIES:
        bad("model.objective", f"'remove' trains {' and '.join(REMOVE_FAMILIES)} models, not {model.family}")
    if model.family == "cascade" and model.patch_px < model.local_px:
        bad("model.local_px", f"{model.local_px} is larger than patch_px {model.patch_px}")
    problem = criterion_problem(model.best_metric, model.family, getattr(model, "objective", "inpaint"))
    if problem:
        bad("model.best_metric", problem)
    if getattr(model, "nonlesion_pairs", 0.0) > 0 and model.family not in REMOVE_FAMILIES:  # "remove": unused
        bad("model.nonlesion_pairs", f"non-lesion pairs join the inpaint training of {' and '.join(REMOVE_FAMILIES)} "
                                     f"models (P0 §III-A), not {model.family}; set 0")
    classes = getattr(model, "condition_classes", 0)
    if model.family == "pix2pix" and model.in_channels != max(classes, 1):
        bad("model.in_channels", f"must be {max(classes, 1)} for condition_classes = {classes} "
                                 "(one channel per class; 1 for a binary mask)")
    if classes == 1:
        bad("model.condition_classes", "0 for a binary mask, or the number of classes (>= 2)")
    problems.raise_if_any()


def criterion_problem(criterion: str, family: str, objective: str = "inpaint") -> str:
    """Why `best_metric = criterion` cannot select checkpoints of `family` ("" when it can)."""
    if not criterion:
        return ""
    if criterion not in BEST_METRICS:
        return f"unknown criterion {criterion!r}; expected one of {', '.join(BEST_METRICS)}"
    if family in STYLEGAN2_FAMILIES:
        return "" if criterion in ("fid", "kid") else \
            f"{criterion} needs a paired target; StyleGAN2 runs select by fid or kid (or leave it empty)"
    if family == "shape":
        return "the shape generator draws masks: no checkpoint selection (leave best_metric empty)"
    if criterion == "fcn" and objective == "remove":
        return "the FCN score needs lesions; objective 'remove' fills lesion-free holes (try realfake)"
    return ""
