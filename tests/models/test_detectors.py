"""Box detectors (torchvision Faster R-CNN / RetinaNet): built without downloads, trained on tiny
phantoms with empty targets, seeded, backbone weights from local files, detections into the
metrics, and a tiny `lesion-studio evaluate` detection experiment end to end (CPU)."""

import json
import socket
import urllib.request

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lesion_studio.app.cli import main as cli_main
from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.metrics import masks_to_boxes
from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.detector_training import detector_loss, mask_target, predict_boxes, train_detector
from lesion_studio.models.detectors import (
    BACKBONES, BOX_DETECTORS, DETECTOR_LABELS, anchor_sizes_px, box_sizes_px, build_detector, detector_description,
)
from lesion_studio.models.experiments import evaluate_detections, experiment_config_from_dict, load_cases, load_results

SIZE = 64


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("det_phantom")
    generate_phantom_dataset(root, "chest", 12, seed=3, size_px=SIZE)
    return root


@pytest.fixture(scope="module")
def prepared(phantom):
    ds = load_dataset(phantom)
    images, masks = load_cases(ds, ds.cases, SIZE)
    return images[:8], masks[:8], images[8:], masks[8:]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download (torch hub, urllib, a socket) fails the test."""
    import torch.hub
    import torchvision.models._api as tv_api

    def refuse(*_args, **_kwargs):
        raise AssertionError("a detector tried to reach the network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse, raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _anchors(name: str, masks) -> tuple[float, ...]:
    preset = BACKBONES["resnet18_fpn"]
    return anchor_sizes_px(box_sizes_px([masks_to_boxes(m) for m in masks]), preset.levels(name),
                           preset.finest_stride(name))


@pytest.mark.parametrize("name", BOX_DETECTORS)
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_detectors_build_from_scratch_without_downloading(no_network, name, backbone):
    torch.manual_seed(0)
    model = build_detector(name, image_size_px=SIZE, backbone=backbone)
    # torchvision's transform keeps the experiment's size (no rescale to 800) and the normalisation
    transform = model.detector.transform
    assert transform.min_size == (SIZE,) and transform.max_size == SIZE
    batch, _ = transform([torch.randn(3, SIZE, SIZE)])
    assert batch.image_sizes == [(SIZE, SIZE)]
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, SIZE, SIZE))
    assert len(out) == 2 and out[0]["boxes"].shape[-1] == 4
    assert len(model.anchors_px) == BACKBONES[backbone].levels(name)


def test_anchor_sizes_follow_the_training_boxes():
    sizes = [4.0] * 50 + [10.0] * 40 + [30.0] * 10
    anchors = anchor_sizes_px(sizes, levels=4, finest_stride=4)
    assert anchors[0] == pytest.approx(4.0) and anchors == tuple(anchors[0] * 2 ** i for i in range(4))
    # the coarsest level reaches the 95th percentile even when the smallest boxes are tiny
    wide = anchor_sizes_px([2.0] * 90 + [200.0] * 10, levels=3, finest_stride=4)
    assert wide[-1] >= 200.0 - 1e-6
    # never far below the finest stride; a fallback without boxes
    assert anchor_sizes_px([1.0] * 10, 4, finest_stride=8)[0] == 4.0
    assert anchor_sizes_px([], 4, finest_stride=4)[0] == 8.0


def test_empty_targets_are_negatives(prepared):
    images, masks, _, _ = prepared
    free = [i for i, m in enumerate(masks) if not m.any()]
    assert free, "the phantom has lesion-free images"
    target = mask_target(masks[free[0]])
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    for name in BOX_DETECTORS:
        torch.manual_seed(0)
        model = build_detector(name, image_size_px=SIZE, anchors_px=_anchors(name, masks))
        # a batch of negatives only trains (a loss, a gradient) without error
        train_detector(model, [images[i] for i in free], [masks[i] for i in free], [], [], epochs=1,
                       batch_size=len(free), lr=1e-3, seed=0, device="cpu")
        assert np.isfinite(detector_loss(model, [images[free[0]]], [masks[free[0]]], 1, "cpu"))


@pytest.mark.parametrize("name", BOX_DETECTORS)
def test_training_lowers_the_loss_and_the_seed_fixes_weights_and_detections(prepared, name):
    images, masks, test_images, test_masks = prepared
    anchors = _anchors(name, masks)

    def run(seed: int):
        torch.manual_seed(seed)
        model = build_detector(name, image_size_px=SIZE, anchors_px=anchors)
        before = detector_loss(model, images, masks, 4, "cpu")
        train_detector(model, images, masks, [], [], epochs=6, batch_size=4, lr=1e-3, seed=seed, device="cpu",
                       optimizer="adamw", weight_decay=1e-4)
        after = detector_loss(model, images, masks, 4, "cpu")
        return model, before, after, predict_boxes(model, test_images, batch_size=4)

    model, before, after, (boxes, scores) = run(0)
    assert after < before
    again, _, _, (boxes2, scores2) = run(0)
    state, state2 = model.state_dict(), again.state_dict()
    assert all(torch.equal(state[k], state2[k]) for k in state)
    assert all(np.array_equal(a, b) for a, b in zip(boxes + scores, boxes2 + scores2))
    # the detections feed the metric code as any detector's do
    record = evaluate_detections(boxes, scores, test_masks)
    for key in ("froc_auc", "node21_score", "map50", "image_auc", "luna_cpm", "sens@1fp"):
        value = record["metrics"][key]
        assert np.isnan(value) or 0.0 <= value <= 1.0
    assert record["froc"]["fp_per_image"][0] == 0


def test_perfect_boxes_score_perfectly():
    masks = [np.zeros((32, 32), bool) for _ in range(3)]
    masks[0][4:8, 4:8] = True
    masks[1][20:26, 10:14] = True
    boxes = [masks_to_boxes(m) for m in masks]
    scores = [np.ones(len(b)) * 0.9 for b in boxes]
    boxes[2], scores[2] = np.array([[1.0, 1.0, 5.0, 5.0]]), np.array([0.1])  # a weak FP on the negative
    m = evaluate_detections(boxes, scores, masks)["metrics"]
    assert m["map50"] == pytest.approx(1.0) and m["image_auc"] == pytest.approx(1.0)
    assert m["sens@0.5fp"] == pytest.approx(1.0)


def test_backbone_weights_load_from_a_local_safetensors_file(tmp_path, no_network):
    import torchvision

    torch.manual_seed(7)
    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet.state_dict().items()}, str(path))
    model = build_detector("faster_rcnn", image_size_px=SIZE, backbone="resnet18_fpn", backbone_weights=path)
    body = model.detector.backbone.body
    assert torch.equal(body.conv1.weight, resnet.conv1.weight)
    assert torch.equal(body.layer3[1].bn2.running_var, resnet.layer3[1].bn2.running_var)
    # a lesion-studio detector checkpoint's backbone is accepted too (its keys carry a prefix)
    prefixed = tmp_path / "ckpt.safetensors"
    save_file({f"detector.detector.backbone.body.{k}": v.contiguous() for k, v in body.state_dict().items()},
              str(prefixed))
    build_detector("retinanet", image_size_px=SIZE, backbone="resnet18_fpn", backbone_weights=prefixed)


def test_foreign_or_missing_backbone_weights_are_refused_naming_the_key(tmp_path):
    import torchvision

    foreign = tmp_path / "unet.safetensors"
    save_file({"encoder.0.weight": torch.zeros(8, 1, 3, 3)}, str(foreign))
    with pytest.raises(ConfigError, match="conv1.weight"):
        build_detector("faster_rcnn", image_size_px=SIZE, backbone_weights=foreign)
    wrong = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision.models.resnet50(weights=None).state_dict().items()},
              str(wrong))
    with pytest.raises(ConfigError, match=r"layer1\.0\.conv1\.weight.*shape"):
        build_detector("faster_rcnn", image_size_px=SIZE, backbone="resnet18_fpn", backbone_weights=wrong)
    with pytest.raises(ConfigError, match="no such file"):
        build_detector("retinanet", image_size_px=SIZE, backbone_weights=tmp_path / "absent.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="backbone_weights"):
        build_detector("retinanet", image_size_px=SIZE, backbone_weights=garbage)


def test_config_keys_and_labels(tmp_path):
    base = {"name": "d", "dataset": "data"}
    cfg = experiment_config_from_dict({"experiment": {**base, "task": "detection"}}, tmp_path)
    assert cfg.detector_name == "faster_rcnn" and cfg.detector_backbone == "resnet18_fpn"
    seg = experiment_config_from_dict({"experiment": base}, tmp_path)
    assert seg.detector_name == "heatmap" and not seg.box_detector
    for bad, word in (({"task": "detection", "detector": "yolo"}, "detector"),
                      ({"detector": "retinanet"}, "task = 'detection'"),
                      ({"task": "detection", "detector_backbone": "vgg16"}, "detector_backbone"),
                      ({"task": "detection", "detector": "heatmap", "backbone_weights": "w.safetensors"},
                       "backbone_weights")):
        with pytest.raises(ConfigError, match=word):
            experiment_config_from_dict({"experiment": {**base, **bad}}, tmp_path)
    assert detector_description("heatmap")["label"] == DETECTOR_LABELS["heatmap"]
    assert "fast baseline, not comparable" in DETECTOR_LABELS["heatmap"]
    assert detector_description("faster_rcnn", "resnet18_fpn")["initialisation"] == "from scratch"


def test_detection_experiment_with_faster_rcnn_via_cli(phantom, tmp_path):
    """The tiny end-to-end detection experiment: two folds, a real and a real + synthetic arm."""
    toml = tmp_path / "det.toml"
    toml.write_text(f"""
[experiment]
name = "tiny-det"
task = "detection"
dataset = "{phantom}"
out_dir = "out"
folds = 2
seed = 0
synthetic_generator = "phantom_painter"
[model]
detector = "faster_rcnn"
detector_backbone = "resnet18_fpn"
image_size_px = {SIZE}
[training]
epochs = 2
batch_size = 4
detector_optimizer = "adamw"
[[conditions]]
name = "real"
[[conditions]]
name = "real+syn"
synthetic_count = 4
""")
    assert cli_main(["evaluate", str(toml), "--quiet"]) == 0
    out = tmp_path / "out"
    doc = load_results(out)
    assert doc["detector"]["name"] == "faster_rcnn" and doc["detector"]["papers_family"]
    assert doc["detector"]["initialisation"] == "from scratch"
    assert len(doc["folds"]) == 4
    for fold in doc["folds"]:
        assert "froc_auc" in fold["metrics"] and "node21_score" in fold["metrics"]
        assert "region_f1" not in fold["metrics"]          # boxes only: no pixel or region metrics
        assert len(fold["anchors_px"]) == BACKBONES["resnet18_fpn"].levels("faster_rcnn")
        meta = json.loads((out / (fold["model_checkpoint"] + ".json")).read_text())
        assert meta["family"] == "detector" and meta["config"]["detector"] == "faster_rcnn"
    assert doc["patient_isolation"]["leakage"] == "none"
    assert "froc_auc" in doc["summary"]["real+syn"]
