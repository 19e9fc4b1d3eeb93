"""Box detectors of the papers' family: torchvision Faster R-CNN and RetinaNet (P3 §IV-A).

P3 evaluates its synthetic nodules with "a Faster R-CNN [Ren et al.] and a RetinaNet [Lin et
al.] with ResNet-50 backbones", batch size 2, the rest as in the original papers. P1 uses a
Cascade R-CNN (not in torchvision; Faster R-CNN is its single-stage-of-refinement parent).
These builders make those two from torchvision's parts, with three changes for lesion studies:

- **No downloads.** The networks are built from `torchvision.models.resnet*(weights=None)`;
  they start from scratch unless `backbone_weights` names a local safetensors file
  (`load_backbone_weights`). torchvision's hub is never touched.
- **Grayscale, fixed size.** `GrayscaleBoxDetector` repeats the one-channel image (already
  zero mean / unit variance, `experiments.normalize_image`) to three channels, and
  torchvision's transform gets `min_size = max_size = image_size_px` with mean 0 / std 1, so
  it neither rescales to 800 px nor renormalises.
- **Anchors for small lesions.** torchvision's anchors start at 32 px; lesions at 256² are
  often 3–30 px. `anchor_sizes_px` derives them from the training boxes (see there).

Backbone presets (`BACKBONES`): `resnet50_fpn` is the papers' network (torchvision's own FPN
layout); `resnet18_fpn` is the small CPU preset (ResNet-18 stages 1–3 at strides 4/8/16 plus
a max-pool level, 64 FPN channels, a 256-wide box head, fewer sampled anchors and proposals).
Measured on one busy CPU thread, one Faster R-CNN training step costs ≈ 0.23 s per 256² image
with `resnet18_fpn` and ≈ 2.2 s with `resnet50_fpn` (RetinaNet: ≈ 0.29 s and ≈ 1.0 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesion_studio.core.errors import ConfigError

#: Every detector an experiment can run; "heatmap" is `models.detection` (the segmenter's map).
DETECTORS = ("heatmap", "faster_rcnn", "retinanet")
#: The box detectors of this module (the papers' family).
BOX_DETECTORS = ("faster_rcnn", "retinanet")
#: How results and dashboards name each detector.
DETECTOR_LABELS = {
    "heatmap": "heatmap (fast baseline, not comparable with the papers' detectors)",
    "faster_rcnn": "Faster R-CNN (torchvision; P3's two-stage detector)",
    "retinanet": "RetinaNet (torchvision; P3's one-stage detector)",
}
#: Aspect ratios (h/w) of every anchor: torchvision's and both papers' (0.5, 1, 2); lesions are
#: roughly round, so the middle one carries most matches.
ASPECT_RATIOS = (0.5, 1.0, 2.0)
#: RetinaNet's three octave scales per level (Lin et al. §4: 2^0, 2^(1/3), 2^(2/3)).
RETINANET_OCTAVES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
#: The finest anchor when no training box is known (a run with lesion-free training images only).
FALLBACK_ANCHOR_PX = 8.0


@dataclass(frozen=True)
class BackbonePreset:
    """A ResNet + FPN layout and the sampling sizes of the heads built on it."""

    resnet: str                                  # torchvision.models.<resnet>(weights=None)
    faster_rcnn_layers: tuple[int, ...]          # ResNet stages fed to the FPN (1: stride 4 … 4: stride 32)
    retinanet_layers: tuple[int, ...]
    retinanet_p6p7: bool                         # Lin et al.'s P6/P7 levels instead of a max-pool level
    fpn_channels: int
    box_head_width: int                          # Faster R-CNN's two-layer box head (TwoMLPHead)
    rpn_samples_per_image: int                   # torchvision 256
    roi_samples_per_image: int                   # torchvision 512
    rpn_top_n: tuple[int, int, int, int]         # pre/post-NMS proposals, train then test
    doc: str = ""

    def levels(self, detector: str) -> int:
        """Feature-pyramid levels of `detector` on this backbone (the extra level included)."""
        if detector == "retinanet":
            return len(self.retinanet_layers) + (2 if self.retinanet_p6p7 else 1)
        return len(self.faster_rcnn_layers) + 1

    def finest_stride(self, detector: str) -> int:
        layers = self.retinanet_layers if detector == "retinanet" else self.faster_rcnn_layers
        return 2 ** (1 + min(layers))


BACKBONES: dict[str, BackbonePreset] = {
    # P3 §IV-A: ResNet-50; torchvision's layouts of fasterrcnn_resnet50_fpn / retinanet_resnet50_fpn
    "resnet50_fpn": BackbonePreset("resnet50", (1, 2, 3, 4), (2, 3, 4), True, 256, 1024, 256, 512,
                                   (2000, 2000, 1000, 1000), "the papers' ResNet-50 FPN (slow on a CPU)"),
    # ours: the small CPU preset; stride 4/8/16 levels suit 3-30 px lesions, 64 channels keep it fast
    "resnet18_fpn": BackbonePreset("resnet18", (1, 2, 3), (1, 2, 3), False, 64, 256, 128, 128,
                                   (600, 300, 300, 100), "small CPU preset: ResNet-18 stages 1-3, 64-channel FPN"),
}
DEFAULT_BACKBONE = "resnet18_fpn"


def anchor_sizes_px(box_sizes_px: Sequence[float], levels: int, finest_stride: int) -> tuple[float, ...]:
    """One anchor size per pyramid level (px at the model size), doubling per level as the FPN
    strides do.

    The finest level's anchor is the 5th percentile of the training boxes' sizes (`√(w·h)`),
    raised when needed so that the coarsest level reaches their 95th percentile, and never
    below half the finest stride (an anchor far smaller than its stride matches nothing).
    Without boxes it is `FALLBACK_ANCHOR_PX`. torchvision's defaults (32 … 512 px) would leave
    every lesion under ~20 px to the low-quality matches alone.
    """
    sizes = np.asarray([s for s in box_sizes_px if np.isfinite(s) and s > 0], dtype=float)
    if sizes.size == 0:
        finest = FALLBACK_ANCHOR_PX
    else:
        low, high = np.percentile(sizes, [5, 95])
        finest = max(float(low), float(high) / 2 ** (levels - 1))
    finest = max(finest, finest_stride / 2.0)
    return tuple(round(finest * 2 ** level, 2) for level in range(levels))


def box_sizes_px(boxes: Sequence[np.ndarray]) -> list[float]:
    """`√(w·h)` of every `(x0, y0, x1, y1)` box of every image: what anchors are sized by."""
    out: list[float] = []
    for b in boxes:
        b = np.asarray(b, dtype=float).reshape(-1, 4)
        out.extend(np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).tolist())
    return out


class GrayscaleBoxDetector(nn.Module):
    """A torchvision detector fed with one-channel images `(B, 1, H, W)` (normalised float32).

    Training: `forward(images, targets)` → torchvision's loss dict; `targets` hold `boxes`
    `(N, 4)` float `(x0, y0, x1, y1)` px and `labels` `(N,)` int64 (N = 0 for a lesion-free
    image). Inference: `forward(images)` → one `{"boxes", "scores", "labels"}` per image.
    """

    def __init__(self, detector: nn.Module, name: str, backbone: str, anchors_px: tuple[float, ...]) -> None:
        super().__init__()
        self.detector = detector
        self.name = name
        self.backbone_name = backbone
        self.anchors_px = anchors_px

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None):
        rgb = [x.expand(3, -1, -1) for x in images]  # grey repeated: what ImageNet backbone weights expect
        return self.detector(rgb, targets)


def _resnet_fpn(preset: BackbonePreset, layers: tuple[int, ...], p6p7: bool, pretrained: bool) -> nn.Module:
    """ResNet (weights=None) + FPN; BatchNorm from scratch, torchvision's frozen BN with weights."""
    import torchvision
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    norm = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    resnet = getattr(torchvision.models, preset.resnet)(weights=None, norm_layer=norm)
    if pretrained:  # torchvision's rule with backbone weights: conv1 and layer1 stay as loaded
        for name, p in resnet.named_parameters():
            if name.startswith(("conv1", "layer1")):
                p.requires_grad_(False)
    c = resnet.inplanes // 8  # torchvision's in_channels_stage2: 64 (ResNet-18/34) or 256 (ResNet-50)
    stage_channels = [c * 2 ** (k - 1) for k in layers]
    extra = LastLevelP6P7(preset.fpn_channels, preset.fpn_channels) if p6p7 else LastLevelMaxPool()
    return BackboneWithFPN(resnet, {f"layer{k}": str(i) for i, k in enumerate(layers)}, stage_channels,
                           preset.fpn_channels, extra_blocks=extra)


def build_detector(name: str, *, image_size_px: int, backbone: str = DEFAULT_BACKBONE, num_classes: int = 2,
                   anchors_px: Sequence[float] | None = None, score_thresh: float = 0.05,
                   detections_per_image: int = 100, backbone_weights: str | Path | None = None) -> GrayscaleBoxDetector:
    """A from-scratch Faster R-CNN or RetinaNet (`name`) for `image_size_px`² one-channel images.

    `num_classes` counts the background (lesion-studio masks are one lesion class: 2).
    `anchors_px`: one size per level (`anchor_sizes_px`); torchvision's when None.
    `score_thresh`: the lowest box score reported (the FROC tail). `backbone_weights`: a local
    safetensors file loaded into the ResNet (`load_backbone_weights`); never a download.
    Seed torch before calling: the initial weights come from its generator.
    """
    from torchvision.models.detection import FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    if name not in BOX_DETECTORS:
        raise ConfigError(f"model.detector: {name!r} is not a box detector; expected one of {BOX_DETECTORS}")
    if backbone not in BACKBONES:
        raise ConfigError(f"model.detector_backbone: unknown backbone {backbone!r}; expected one of {tuple(BACKBONES)}")
    preset = BACKBONES[backbone]
    retina = name == "retinanet"
    layers = preset.retinanet_layers if retina else preset.faster_rcnn_layers
    body = _resnet_fpn(preset, layers, retina and preset.retinanet_p6p7, backbone_weights is not None)
    levels = preset.levels(name)
    if anchors_px is None:
        anchors_px = tuple(32.0 * 2 ** i for i in range(levels))
    if len(anchors_px) != levels:
        raise ValueError(f"{name} on {backbone} has {levels} pyramid levels, got {len(anchors_px)} anchor sizes")
    scales = RETINANET_OCTAVES if retina else (1.0,)
    anchors = AnchorGenerator(tuple(tuple(float(a) * s for s in scales) for a in anchors_px),
                              (ASPECT_RATIOS,) * levels)
    common = dict(min_size=image_size_px, max_size=image_size_px, image_mean=[0.0, 0.0, 0.0],
                  image_std=[1.0, 1.0, 1.0])
    if retina:
        detector = RetinaNet(body, num_classes, anchor_generator=anchors, score_thresh=score_thresh,
                             detections_per_img=detections_per_image, **common)
    else:
        pre_train, post_train, pre_test, post_test = preset.rpn_top_n
        names = [str(i) for i in range(len(layers))]
        pool = MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)
        head = TwoMLPHead(preset.fpn_channels * 7 * 7, preset.box_head_width)
        detector = FasterRCNN(body, None, rpn_anchor_generator=anchors, box_roi_pool=pool, box_head=head,
                              box_predictor=FastRCNNPredictor(preset.box_head_width, num_classes),
                              rpn_pre_nms_top_n_train=pre_train, rpn_post_nms_top_n_train=post_train,
                              rpn_pre_nms_top_n_test=pre_test, rpn_post_nms_top_n_test=post_test,
                              rpn_batch_size_per_image=preset.rpn_samples_per_image,
                              box_batch_size_per_image=preset.roi_samples_per_image,
                              box_score_thresh=score_thresh, box_detections_per_img=detections_per_image, **common)
    model = GrayscaleBoxDetector(detector, name, backbone, tuple(float(a) for a in anchors_px))
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    return model


#: Key prefixes under which a file may hold the ResNet: a plain torchvision classifier state
#: dict, a BackboneWithFPN, a torchvision detector, or a lesion-studio detector checkpoint.
_PREFIXES = ("", "body.", "backbone.body.", "detector.backbone.body.", "detector.detector.backbone.body.")


def load_backbone_weights(model: GrayscaleBoxDetector, path: str | Path) -> None:
    """Load a local safetensors file into the detector's ResNet (`model.backbone_weights`).

    The file holds a torchvision ResNet state dict (e.g. `resnet18(weights=...).state_dict()`
    saved with `safetensors.torch.save_file`), optionally under one of the prefixes of a
    torchvision detector or a lesion-studio detector checkpoint. Every tensor of the stages the
    preset uses must be there with its shape; other keys (the classifier `fc.*`, unused stages)
    are ignored. Raises `ConfigError` naming the file and the first missing or misshapen key.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ConfigError("model.backbone_weights: no such file (weights are only read from local files)", path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"model.backbone_weights: not a safetensors file ({exc})", path) from None
    prefix = next((p for p in _PREFIXES if f"{p}conv1.weight" in tensors), None)
    if prefix is None:
        raise ConfigError(f"model.backbone_weights: no ResNet weights in the file (missing key 'conv1.weight'; "
                          f"it has {', '.join(sorted(tensors)[:3]) or 'no keys'}, ...)", path)
    body = model.detector.backbone.body
    wanted = body.state_dict()
    loaded = {}
    for key, target in wanted.items():
        if key.endswith("num_batches_tracked"):
            continue
        source = tensors.get(prefix + key)
        if source is None:
            raise ConfigError(f"model.backbone_weights: missing key {prefix + key!r} for the "
                              f"{model.backbone_name} backbone", path)
        if tuple(source.shape) != tuple(target.shape):
            raise ConfigError(f"model.backbone_weights: key {prefix + key!r} has shape {tuple(source.shape)}, "
                              f"the {model.backbone_name} backbone needs {tuple(target.shape)}", path)
        loaded[key] = source.to(target.dtype)
    body.load_state_dict(loaded, strict=False)


def detector_description(name: str, backbone: str | None = None, backbone_weights: str | Path | None = None) -> dict:
    """The results file's `detector` entry: what ran and whether the papers' tables compare."""
    if name not in BOX_DETECTORS:
        return {"name": name, "label": DETECTOR_LABELS.get(name, name), "papers_family": False,
                "note": "candidates are components of a segmenter's probability map; FROC, NODE21, mAP@50 and "
                        "AUROC are not comparable with the papers' box detectors"}
    return {"name": name, "label": DETECTOR_LABELS[name], "backbone": backbone,
            "backbone_doc": BACKBONES[backbone].doc if backbone in BACKBONES else "",
            "initialisation": f"backbone weights from {backbone_weights}" if backbone_weights else "from scratch",
            "papers_family": True,
            "note": "the papers' detector family; P3 uses ResNet-50 (resnet50_fpn), and its numbers also depend "
                    "on the backbone preset, the initialisation and the training length"}

