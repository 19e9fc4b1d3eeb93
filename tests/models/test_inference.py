"""load_synthesizer: full image + SynthesisRequest → composited image, new mask, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.errors import CheckpointError, ConfigError
from lesion_studio.core.phantom import lesion_shape
from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest
from lesion_studio.models.inference import load_shape_sampler, load_synthesizer
from lesion_studio.models.trainer import Trainer
from tests.models.conftest import tiny_config


@pytest.fixture(scope="module")
def trained(chest_dataset: Path, tmp_path_factory) -> dict[str, Path]:
    out = {}
    for family in ("texture", "pix2pix", "shape", "outpaint"):
        run = tmp_path_factory.mktemp(family)
        Trainer(tiny_config(family, chest_dataset, run, steps=2)).run()
        out[family] = run / "final"
    return out


def _image(chest_dataset: Path):
    ds = load_dataset(chest_dataset)
    case = ds.split("train")[0]
    return ds.read_image(case), ds.read_mask(case), ds.spacing_for(case)


@pytest.mark.parametrize("family", ["texture", "pix2pix"])
def test_inpaint_request_changes_only_the_hole_and_its_seam(family: str, trained, chest_dataset: Path) -> None:
    image, mask, spacing = _image(chest_dataset)
    synth = load_synthesizer(trained[family], "cpu")
    drawn = np.zeros((9, 9), bool)
    drawn[2:7, 2:7] = True
    request = SynthesisRequest(mode="inpaint", centre_rc=(64.0, 40.0), mask_source=MaskSource("drawn"), seed=3)
    result = synth(image, request, lesion_mask=mask, source_mask=drawn, spacing_mm=spacing)
    assert result.image.shape == image.shape and result.image.dtype == np.float32
    hole = result.plan.footprint_image()
    seam = ndimage.distance_transform_edt(~hole) <= result.plan.request.blending.feather_px
    assert np.array_equal(result.image[~seam], image[~seam])
    assert result.mask[64, 40] and (result.mask | mask).sum() == result.mask.sum()
    assert result.provenance["model"]["family"] == family and result.provenance["learned"] is True
    # the model saw a native-scale 32² patch (its input size), no squeezed context
    assert result.box.shape == (32, 32) and result.provenance["patch"]["scale"] == 1.0
    assert result.provenance["intensity"]["source"] == "checkpoint"  # phantom units, phantom model
    json.dumps(result.provenance)
    batch = synth(image, [request, request], lesion_mask=mask, source_mask=drawn, spacing_mm=spacing)
    assert len(batch) == 2 and np.allclose(batch[0].image, result.image, rtol=1e-4, atol=0.05)


def test_an_8bit_image_is_mapped_with_its_own_range(trained) -> None:
    synth = load_synthesizer(trained["texture"], "cpu")
    png = np.asarray(np.random.default_rng(0).integers(0, 256, (96, 96)), np.float32)
    request = SynthesisRequest(mode="inpaint", centre_rc=(48.0, 48.0), mask_source=MaskSource("drawn"), seed=3)
    result = synth(png, request, source_mask=np.ones((8, 8), bool))
    assert result.provenance["intensity"]["source"] == "image"
    assert 0.0 <= result.image.min() and result.image.max() <= 255.0


def test_generator_masks_and_family_checks(trained, chest_dataset: Path) -> None:
    image, mask, spacing = _image(chest_dataset)
    synth = load_synthesizer(trained["texture"], shape_checkpoint=trained["shape"])
    request = SynthesisRequest(mode="inpaint", centre_rc=(60.0, 60.0), mask_source=MaskSource("generator"),
                               diameter_px=8.0, seed=1)
    sampler = load_shape_sampler(trained["shape"])
    if sampler.sample(1, 1)[0].any():  # an untrained DCGAN may draw an empty mask
        result = synth(image, request, lesion_mask=mask)
        assert result.provenance["shape_generator"]["shape_seed"] == 1
    with pytest.raises(CheckpointError, match="draws masks"):
        load_synthesizer(trained["shape"])
    outpaint = SynthesisRequest(mode="outpaint", centre_rc=(60.0, 60.0), mask_source=MaskSource("drawn"))
    with pytest.raises(ConfigError, match="not 'outpaint'"):
        synth(image, outpaint, source_mask=np.ones((5, 5), bool))
    result = load_synthesizer(trained["outpaint"])(image, outpaint, source_mask=np.ones((5, 5), bool))
    assert not result.mask.any()  # outpainting leaves the ground truth as it was (plan.paste_mask)


def test_classical_methods_load_by_name_without_weights() -> None:
    telea = load_synthesizer("telea")
    assert telea.modes == ("remove",) and telea.family == "telea"
    assert load_synthesizer("real-nodule").modes == ("inpaint",)
