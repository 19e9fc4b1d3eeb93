"""Pretrained VGG features for the perceptual (P3) and content (P0) losses, never random.

Weights come from exactly two places: torchvision's file in the local torch hub cache
(`<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth`, `vgg19-dcbb9e9d.pth`), or a file
the config names (`perceptual_weights = "path"` / `content_weights = "path"`: a torchvision
state dict saved with `torch.save`, read with `weights_only=True`, or a `.safetensors` file).
Nothing is downloaded. When neither is there, `resolve_vgg_weights` raises `ConfigError`
saying how to provide the file or how to turn the term off (`"disabled"`); a loss term is
never computed with random VGG weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lesion_studio.core.errors import ConfigError

#: torchvision's ImageNet weight files (the names `torchvision.models.VGG*_Weights` download).
VGG_FILES = {"vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth"}
#: P3 §III-C: outputs of pool1, pool2, pool3 of VGG16 (indices into `vgg16().features`).
VGG16_POOL_1_3 = (4, 9, 16)
#: P0 Eq. 6: the first conv of blocks 1-4 of VGG19 (after its ReLU), indices into `features`.
VGG19_BLOCK_FIRST_CONV = (1, 6, 11, 20)
DISABLED = ("disabled", "off", "none")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def hub_weight_path(arch: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `arch` in the local torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG_FILES[arch]


def resolve_vgg_weights(arch: str, setting: str, *, key: str) -> Path | None:
    """The weight file for `setting` ("auto", a path, or "disabled" → None); `ConfigError` otherwise."""
    if setting.strip().lower() in DISABLED:
        return None
    how = (
        f"Put torchvision's {VGG_FILES[arch]} into {hub_weight_path(arch).parent} "
        f"(or set {key} = \"/path/to/{VGG_FILES[arch]}\"), "
        f"or turn the term off explicitly with {key} = \"disabled\"."
    )
    if setting == "auto":
        path = hub_weight_path(arch)
        if not path.is_file():
            raise ConfigError(
                f"{key}: pretrained {arch.upper()} weights are not in the local torch hub cache "
                f"({path}); lesion-studio never trains this loss term with random VGG weights. " + how
            )
        return path
    path = Path(setting).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: VGG weight file not found: {path}. " + how, path)
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:  # e.g. a pickle renamed .safetensors
            raise ConfigError(f"not a readable safetensors file ({exc}); pickles are never loaded", path) from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # no pickle code runs
    except Exception as exc:  # noqa: BLE001 - any failure to read is the user's file problem
        raise ConfigError(f"cannot read VGG weights as a plain state dict: {exc}", path) from exc
    if not isinstance(state, dict):
        raise ConfigError("the VGG weight file does not hold a state dict", path)
    return state


class VGGFeatures(nn.Module):
    """Frozen VGG trunk returning the activations at `layers` for `(N, 1|3, H, W)` in [-1, 1]."""

    def __init__(self, arch: str, layers: tuple[int, ...], weights_path: Path) -> None:
        super().__init__()
        import torchvision

        if arch not in VGG_FILES:
            raise ConfigError(f"unknown VGG {arch!r}")
        full = getattr(torchvision.models, arch)(weights=None).features
        state = _read_state_dict(weights_path)
        wanted = {k: v for k, v in state.items() if k.startswith("features.")}
        extra = sorted(set(wanted) - {f"features.{k}" for k in full.state_dict()})
        if extra:  # e.g. VGG19 weights handed to VGG16: same early layers, different trunk
            raise ConfigError(f"not {arch.upper()} weights: unexpected {extra[0]}", weights_path)
        trunk = full[: max(layers) + 1]
        own = {f"features.{k}": v for k, v in trunk.state_dict().items()}
        missing = sorted(set(own) - set(wanted))
        if missing:
            raise ConfigError(f"not {arch.upper()} weights: {missing[0]} is missing", weights_path)
        for name, tensor in own.items():
            if tuple(wanted[name].shape) != tuple(tensor.shape):
                raise ConfigError(
                    f"not {arch.upper()} weights: {name} has shape {tuple(wanted[name].shape)}, "
                    f"expected {tuple(tensor.shape)}", weights_path,
                )
        trunk.load_state_dict({k[len("features."):]: wanted[k] for k in own})
        for module in trunk.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.trunk = trunk.eval().requires_grad_(False)
        self.layers = tuple(layers)
        self.arch = arch
        self.weights_path = str(weights_path)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGGFeatures":
        super().train(False)  # always frozen, BN-free, eval
        return self

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)  # grayscale → the three ImageNet channels
        x = ((image + 1.0) / 2.0 - self.mean) / self.std
        feats = []
        for i, layer in enumerate(self.trunk):
            x = layer(x)
            if i in self.layers:
                feats.append(x)
        return feats


def feature_l1(extractor: VGGFeatures, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Σ over layers of the size-normalised L1 distance (mean absolute difference) of features."""
    total = fake.new_zeros(())
    with torch.no_grad():
        real_feats = extractor(real)
    for f, r in zip(extractor(fake), real_feats):
        total = total + F.l1_loss(f.float(), r.float())
    return total
