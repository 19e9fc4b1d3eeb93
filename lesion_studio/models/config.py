"""Training and network configuration: one dataclass per generator family, defaults from SPEC.

Every number a paper gives lives here, with the paper and section beside it (SPEC §2.1-2.5).
Where a paper is silent the comment says what lesion-studio chose and why.

A TOML file holds three parts:

```toml
family = "texture"            # shape | texture | outpaint | cascade | pix2pix
[run]                         # RunConfig: data, steps, checkpoints, device
dataset = "data/chest"
out_dir = "runs/texture"
[model]                       # the family's config (TextureConfig here)
base_channels = 48
```

Unknown keys and wrong types raise `ConfigError` naming the key (`model.base_chanels`),
with a "did you mean" suggestion; `validate` range-checks every number (finite, positive
sizes, rates and betas in range).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_studio.core.errors import ConfigError

#: Adversarial loss kinds understood by `models.losses.AdversarialLoss`.
ADVERSARIAL_LOSSES = ("lsgan", "nonsaturating", "bce")
#: Training objectives of the hole-filling families: `inpaint` paints lesions into lesion
#: holes (P3 §III-C, P0 §III-B); `remove` fills non-lesion holes cut in lesion-free tissue
#: with the tissue that was there (P0 §III-A, SPEC §1.2), which is what removing a lesion needs.
OBJECTIVES = ("inpaint", "remove")
#: Families that may train with `objective = "remove"` (outpainting keeps the lesion).
REMOVE_FAMILIES = ("texture", "cascade")


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
    num_threads: int = 0  # torch CPU threads (0: torch's default)
    value_range: list[float] | None = None  # [lo, hi] in image units mapped to [-1, 1]; None: dataset 0.5/99.5 percentiles
    lesion_label: int = 0  # mask value that marks lesions (0: any nonzero value)
    flip_augment: bool = True  # random horizontal/vertical flips of training patches


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
    base_channels: int = 48  # P3 silent; DeepFill v2 [P3 ref 26] uses cnum = 48
    dilations: list[int] = field(default_factory=lambda: [2, 4, 8, 16])  # P3 §III-C
    disc_channels: int = 64  # P3 silent; SN-PatchGAN (DeepFill v2) uses 64
    disc_layers: int = 6  # P3 §III-C: six-layer fully convolutional PatchGAN, output 1/32
    patch_px: int = 256  # P3 §III-C: 256² patches
    fill_value: float = 1.0  # P3 §III-C: I ⊙ (1 − M) + M (the top of the [-1, 1] range)
    invert_masks: bool = False  # True: outpainting (P1 §3.2), the lesion is kept
    objective: str = "inpaint"  # inpaint: lesion holes (P3 §III-C) | remove: non-lesion holes (P0 §III-A)
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
    best_metric: str = "masked_psnr"  # SPEC §2.7; P3 Table I reports PSNR/SSIM in the nodule region


@dataclass
class OutpaintConfig(TextureConfig):
    """P1 §3.2 outpainting: the texture generator trained with inverted masks (SPEC §2.5)."""

    family: str = "outpaint"
    invert_masks: bool = True  # SPEC §2.5: regenerate everything but the lesion
    adversarial_loss: str = "nonsaturating"  # P1 §3.2 (MAT training uses a non-saturating loss)
    best_metric: str = "masked_psnr"  # P1 picks by FID; FID needs Inception weights (SPEC §2.7)


@dataclass
class CascadeConfig:
    """P0 §III-B cascaded dilated U-Net inpainter, global + local discriminators, 128²."""

    family: str = "cascade"
    in_channels: int = 2  # image with the hole, plus the mask
    out_channels: int = 1
    base_channels: int = 64  # P0 silent; U-Net's 64 first-level filters
    depth: int = 3  # P0 silent; three downsamplings put the dilated convs at 16² (128² input)
    dilations: list[int] = field(default_factory=lambda: [2, 4, 8, 16])  # P0 §III-B
    disc_channels: int = 64  # P0 silent
    global_blocks: int = 4  # P0 §III-B: 4 stride-2 conv blocks on the whole 128² image
    local_blocks: int = 3  # P0 §III-B: 3 blocks on a 48² crop around the hole
    local_px: int = 48  # P0 §III-B
    patch_px: int = 128  # P0 §III-B: 128² input
    fill_value: float = 0.0  # P0 silent on the hole value; 0 is mid-grey in [-1, 1]
    objective: str = "inpaint"  # inpaint: stone holes (P0 §III-B) | remove: non-stone holes (P0 §III-A)
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
    best_metric: str = "masked_psnr"  # P0 Table 2 reports PSNR/SSIM


@dataclass
class Pix2PixConfig:
    """P2 §3.1 LcGAN: pix2pix U-Net mask → image, 70×70 PatchGAN on [mask, image], 256²."""

    family: str = "pix2pix"
    in_channels: int = 1  # P2 §3.1: the lesion mask is the condition
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
    best_metric: str = "masked_psnr"  # P2 picks by FCN score/blurriness (SPEC §2.8); PSNR here


FAMILY_CONFIGS: dict[str, type] = {
    "shape": ShapeConfig,
    "texture": TextureConfig,
    "outpaint": OutpaintConfig,
    "cascade": CascadeConfig,
    "pix2pix": Pix2PixConfig,
}

ModelConfig = ShapeConfig | TextureConfig | OutpaintConfig | CascadeConfig | Pix2PixConfig


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
    def from_dict(cls, data: dict[str, Any], *, path: str | Path | None = None) -> "TrainConfig":
        """Build from a parsed TOML/JSON dict; `ConfigError` names the first bad key."""
        data = dict(data)
        family = data.pop("family", None)
        if family is None:
            raise ConfigError("missing key 'family' (one of " + ", ".join(FAMILY_CONFIGS) + ")", path)
        model_cls = model_config_class(family, path=path)
        run_table = data.pop("run", {})
        model_table = dict(data.pop("model", {}))
        if data:
            key = sorted(data)[0]
            raise ConfigError(f"{key}: unknown key{did_you_mean(key, ('family', 'run', 'model'))} "
                              "(expected family, [run], [model])", path)
        model_table.pop("family", None)
        model = _build_dataclass(model_cls, model_table, "model", path)
        model.family = family
        run = _build_dataclass(RunConfig, run_table, "run", path)
        config = cls(model=model, run=run)
        validate(config, path=path)
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
    """Read a training TOML file; `ConfigError` (with the path and key) when it is invalid."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config file not found", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from exc
    config = TrainConfig.from_dict(data, path=path)
    if config.run.dataset and not Path(config.run.dataset).is_absolute():
        config.run.dataset = str((path.parent / config.run.dataset).resolve())
    if not Path(config.run.out_dir).is_absolute():
        config.run.out_dir = str((path.parent / config.run.out_dir).resolve())
    return config


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _build_dataclass(cls: type, table: Any, prefix: str, path: str | Path | None) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table, got {type(table).__name__}", path)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(f"{prefix}.{key}: unknown key for {cls.__name__}{did_you_mean(key, names)}", path)
        if not _matches(value, hints[key]):
            raise ConfigError(f"{prefix}.{key}: expected {type_name(hints[key])}, got {value!r}", path)
        bad = _non_finite(value)
        if bad is not None:
            raise ConfigError(f"{prefix}.{key}: must be a finite number, got {bad}", path)
        if hints[key] is float and isinstance(value, int):
            value = float(value)
        values[key] = value
    return cls(**values)


def did_you_mean(key: str, known: Any) -> str:
    """'; did you mean 'x'?' for the closest known name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def type_name(annotation: Any) -> str:
    """A config type in words ('an integer', 'a list of numbers', ...), not Python's repr."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(item, "values")
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(annotation, "a value")


def _non_finite(value: Any) -> float | None:
    """The first NaN/Inf in a number or list of numbers (TOML allows nan and inf), else None."""
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, float) and not math.isfinite(v):
            return v
    return None


#: Upper bounds of the structural model settings (far above anything trainable here): they keep
#: a typo or a hostile checkpoint sidecar from describing a network that cannot be built.
MODEL_SIZE_LIMITS = {
    "base_channels": 4096, "disc_channels": 4096, "z_dim": 4096, "in_channels": 64, "out_channels": 64,
    "depth": 10, "num_downs": 12, "disc_layers": 12, "global_blocks": 12, "local_blocks": 12,
    "local_px": 8192, "patch_px": 8192,
}


def validate(config: TrainConfig, *, path: str | Path | None = None) -> None:
    """Range checks that types alone do not catch; `ConfigError` names the key."""
    run, model = config.run, config.model

    def bad(key: str, reason: str) -> None:
        raise ConfigError(f"{key}: {reason}", path)

    for prefix, obj in (("run", run), ("model", model)):  # NaN/Inf slip through every range check below
        for f in dataclasses.fields(obj):
            value = _non_finite(getattr(obj, f.name))
            if value is not None:
                bad(f"{prefix}.{f.name}", f"must be a finite number, got {value}")
    if run.steps < 1:
        bad("run.steps", f"must be >= 1, got {run.steps}")
    if not 0.0 <= run.val_fraction < 1.0:
        bad("run.val_fraction", f"must be in [0, 1), got {run.val_fraction}")
    if run.device not in ("auto", "cpu", "cuda"):
        bad("run.device", f"must be auto, cpu or cuda, got {run.device!r}")
    if run.amp not in ("auto", "bf16", "off"):
        bad("run.amp", f"must be auto, bf16 or off, got {run.amp!r}")
    if run.value_range is not None and (len(run.value_range) != 2 or run.value_range[0] >= run.value_range[1]):
        bad("run.value_range", f"must be [lo, hi] with lo < hi, got {run.value_range}")
    for key in ("checkpoint_every", "val_every", "sample_every", "keep_last", "num_threads"):
        if getattr(run, key) < 0:
            bad(f"run.{key}", "must be >= 0")
    if run.log_every < 1:
        bad("run.log_every", "must be >= 1")
    if model.adversarial_loss not in ADVERSARIAL_LOSSES:
        bad("model.adversarial_loss", f"must be one of {ADVERSARIAL_LOSSES}, got {model.adversarial_loss!r}")
    if model.batch_size < 1:
        bad("model.batch_size", "must be >= 1")
    if model.d_every < 1:
        bad("model.d_every", "must be >= 1")
    if len(model.betas) != 2:
        bad("model.betas", "must be two numbers [beta1, beta2]")
    if not all(0.0 <= b < 1.0 for b in model.betas):
        bad("model.betas", f"each beta must be in [0, 1), got {list(model.betas)}")
    if run.lesion_label < 0:
        bad("run.lesion_label", f"must be >= 0 (0: any nonzero mask value), got {run.lesion_label}")
    for key in ("base_channels", "in_channels", "out_channels", "disc_channels", "disc_layers", "z_dim", "depth",
                "num_downs", "global_blocks", "local_blocks", "local_px"):
        value = getattr(model, key, None)
        if value is not None and value < 1:
            bad(f"model.{key}", f"must be >= 1, got {value}")
    for key, high in MODEL_SIZE_LIMITS.items():  # also bounds what a checkpoint's sidecar can ask to build
        value = getattr(model, key, None)
        if value is not None and value > high:
            bad(f"model.{key}", f"must be <= {high}, got {value}")
    dilations = getattr(model, "dilations", None)
    if dilations is not None and (len(dilations) > 32 or max(dilations, default=0) > 4096):
        bad("model.dilations", f"at most 32 dilations, each <= 4096, got {str(dilations)[:80]}")
    for key in ("lr_g", "lr_d", "lr_d_ratio", "lr_gamma", "normalize_diameter_px"):
        value = getattr(model, key, None)
        if value is not None and value <= 0:
            bad(f"model.{key}", f"must be > 0, got {value}")
    for key in ("l1_coarse_weight", "l1_refine_weight", "perceptual_weight", "adversarial_weight", "l1_weight",
                "content_weight"):
        value = getattr(model, key, None)
        if value is not None and value < 0:
            bad(f"model.{key}", f"must be >= 0, got {value}")
    for key in ("dropout", "global_local_mix"):
        value = getattr(model, key, None)
        if value is not None and not 0.0 <= value <= (1.0 if key == "global_local_mix" else 0.99):
            bad(f"model.{key}", f"must be in [0, {1 if key == 'global_local_mix' else 0.99}], got {value}")
    dilations = getattr(model, "dilations", None)
    if dilations is not None and (not dilations or min(dilations) < 1):
        bad("model.dilations", f"must be a non-empty list of integers >= 1, got {dilations}")
    if model.lr_milestones and min(model.lr_milestones) < 1:
        bad("model.lr_milestones", f"steps must be >= 1, got {model.lr_milestones}")
    if getattr(model, "stage1_steps", None) is not None and model.stage1_steps < 0:
        bad("model.stage1_steps", f"must be >= 0, got {model.stage1_steps}")
    if model.best_metric not in ("", "masked_psnr", "masked_ssim", "masked_l1"):
        bad("model.best_metric", f"unknown metric {model.best_metric!r}")
    min_px = {"shape": 32, "texture": 16, "outpaint": 16, "cascade": 16, "pix2pix": 2 ** getattr(model, "num_downs", 1)}
    if model.patch_px < min_px[model.family] or model.patch_px % 16:
        bad("model.patch_px", f"must be a multiple of 16 and >= {min_px[model.family]}, got {model.patch_px}")
    if model.family == "shape" and model.patch_px != 2 ** round(math.log2(model.patch_px)):
        bad("model.patch_px", "the DCGAN needs a power of two")
    objective = getattr(model, "objective", None)
    if objective is not None:
        if objective not in OBJECTIVES:
            bad("model.objective", f"must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if objective == "remove" and model.family not in REMOVE_FAMILIES:
            bad("model.objective", f"'remove' trains {' and '.join(REMOVE_FAMILIES)} models, not {model.family}")
    if model.family == "cascade" and model.patch_px < model.local_px:
        bad("model.local_px", f"{model.local_px} is larger than patch_px {model.patch_px}")
