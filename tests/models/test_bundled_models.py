"""The bundled real-data generators on real held-out CT slices (tests/data/lidc_heldout_axial.npz:
LIDC-IDRI series the models never saw) and on a real radiograph they must refuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.geometry.composition import context_band_px
from lesion_studio.core.imageio import load_image
from lesion_studio.core.model_catalog import builtin_models_dir
from lesion_studio.core.sample_data import sample_file
from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest
from lesion_studio.models.inference import load_synthesizer
from lesion_studio.models.runtime import bf16_native

BUNDLED = builtin_models_dir()
HELDOUT = Path(__file__).parents[1] / "data" / "lidc_heldout_axial.npz"


@pytest.fixture(scope="module")
def slices() -> list[tuple[np.ndarray, np.ndarray]]:
    data = np.load(HELDOUT)
    return [(img.astype(np.float32), mask > 0) for img, mask in zip(data["images"], data["masks"])]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return float(rows.mean()), float(cols.mean())


def _open_lung_site(image: np.ndarray, nodule: np.ndarray) -> tuple[float, float]:
    """The lung pixel farthest from any non-lung tissue, at least 10 px from the nodule."""
    lung = ndimage.binary_opening(image < -400, iterations=1)
    depth = ndimage.distance_transform_edt(np.pad(lung, 1))[1:-1, 1:-1]
    depth[ndimage.distance_transform_edt(~nodule) < 10] = 0
    r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return float(r), float(c)


def test_ct_nodule_inpaint_paints_a_dense_nodule_into_held_out_lung(slices) -> None:
    engine = load_synthesizer(BUNDLED / "ct_nodule_inpaint")
    disc = ndimage.distance_transform_edt(np.pad([[1]], 4) == 0) <= 3.5  # a 7 px disc
    for image, nodule in slices:
        site = _open_lung_site(image, nodule)
        request = SynthesisRequest(mode="inpaint", centre_rc=site, mask_source=MaskSource("drawn"), seed=0)
        result = engine(image, request, lesion_mask=nodule, source_mask=disc, spacing_mm=(1.0, 1.0), modality="CT")
        hole = result.plan.footprint_image()
        core = ndimage.binary_erosion(hole, iterations=2)
        rim = hole & ~ndimage.binary_erosion(hole)
        # a nodule is soft tissue in air: its core hundreds of HU above the lung it replaced, and
        # denser than its own rim (the phantom demo model painted flat plates: core − rim ≈ 0)
        assert result.image[core].mean() > image[hole].mean() + 250, (result.image[core].mean(), image[hole].mean())
        assert result.image[core].mean() > result.image[rim].mean() + 120, (result.image[core].mean(),
                                                                            result.image[rim].mean())
        far = ndimage.distance_transform_edt(~hole) > result.plan.request.blending.feather_px
        assert np.array_equal(result.image[far], image[far])
        assert result.provenance["model"]["checkpoint"].endswith("ct_nodule_inpaint")


def test_ct_nodule_outpaint_keeps_the_nodule_and_paints_lung_around_it(slices) -> None:
    engine = load_synthesizer(BUNDLED / "ct_nodule_outpaint")
    for image, nodule in slices:
        request = SynthesisRequest(mode="outpaint", centre_rc=_centroid(nodule), mask_source=MaskSource("existing"))
        result = engine(image, request, lesion_mask=nodule, spacing_mm=(1.0, 1.0), modality="CT")
        assert np.array_equal(result.image[nodule], image[nodule])  # the finding is kept bit for bit
        np.testing.assert_array_equal(result.mask, nodule)  # and so is its ground truth
        # the crop's outer band is the context the model was trained with: it and all beyond stay
        box = result.box
        band = context_band_px(min(box.shape), engine.backend.outpaint_context_fraction)
        assert band >= 2
        inner = np.zeros(image.shape, bool)
        inner[box.row0 + band : box.row0 + box.height - band, box.col0 + band : box.col0 + box.width - band] = True
        assert not ((result.image != image) & ~inner).any()
        outside = ndimage.distance_transform_edt(~nodule)
        ring = (outside > 2) & (outside <= 6) & (result.image != image)
        assert ring.sum() > 30
        # the regenerated surroundings have the lung's density (the phantom demo model painted
        # them 250-450 HU too bright)
        generated, real = float(np.median(result.image[ring])), float(np.median(image[ring]))
        assert abs(generated - real) < 150, (generated, real)


@pytest.mark.parametrize("name", ["ct_nodule_inpaint", "ct_nodule_outpaint"])
def test_ct_models_refuse_a_radiograph_with_a_clear_error(name: str) -> None:
    image = load_image(sample_file("RG1_UNCR.dcm"))
    engine = load_synthesizer(BUNDLED / name)
    mode = "inpaint" if name.endswith("inpaint") else "outpaint"
    source = "drawn" if mode == "inpaint" else "existing"
    lesion = np.zeros(image.plane_shape, bool)
    lesion[600:612, 800:812] = True
    request = SynthesisRequest(mode=mode, centre_rc=(606.0, 806.0), mask_source=MaskSource(source))
    with pytest.raises(ConfigError, match=rf"{name} was trained on ct images only"):
        engine(image, request, lesion_mask=lesion, source_mask=np.ones((9, 9), bool))


def test_bf16_precision_stays_close_to_fp32_and_is_recorded(slices) -> None:
    stem = BUNDLED / "ct_nodule_inpaint"
    fp32, bf16 = load_synthesizer(stem), load_synthesizer(stem, precision="bf16")
    image, nodule = slices[0]
    request = SynthesisRequest(mode="inpaint", centre_rc=_open_lung_site(image, nodule),
                               mask_source=MaskSource("drawn"), seed=0)
    kwargs = dict(lesion_mask=nodule, source_mask=np.ones((7, 7), bool), spacing_mm=(1.0, 1.0), modality="CT")
    a, b = fp32(image, request, **kwargs), bf16(image, request, **kwargs)
    assert a.provenance["model"]["precision"] == "fp32" and b.provenance["model"]["precision"] == "bf16-autocast"
    hole = a.plan.footprint_image()
    diff = np.abs(a.image - b.image)[hole]
    assert diff.mean() < 15.0 and diff.max() < 200.0  # HU; the lesion itself is ~500 HU above lung
    auto = load_synthesizer(stem, precision="auto")
    expected = "bf16-autocast" if bf16_native(torch.device("cpu")) else "fp32"
    assert auto(image, request, **kwargs).provenance["model"]["precision"] == expected
    with pytest.raises(ConfigError, match="precision must be one of"):
        load_synthesizer(stem, precision="fp16")
