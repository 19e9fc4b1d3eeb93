"""The `real-stone` family: the bundled stone library (training sessions only), its paste, and
its insertion through the synthesis engine on a real held-out kidney-stone CT slice."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from lesion_studio.core.classical.stone_library import (
    MIN_STONE_PEAK, StoneLibrary, bundled_stone_library, contrast_scale, paste_stone, stone_outlines,
)
from lesion_studio.core.errors import MaskError
from lesion_studio.core.public_datasets import kidney_stone_split
from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest
from lesion_studio.models.inference import load_synthesizer

DATA = Path(__file__).resolve().parents[1] / "data"


def _slice() -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(DATA / "kidney_stone_ks0057.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    mask = cv2.imread(str(DATA / "kidney_stone_ks0057_mask.png"), cv2.IMREAD_UNCHANGED) > 0
    return image, mask


def test_bundled_library_holds_training_sessions_only() -> None:
    library = bundled_stone_library()
    assert len(library) > 500
    assert all(kidney_stone_split(s) != "test" for s in library.sessions)   # never a held-out session
    for i in range(len(library)):
        contrast, outline = library.stone(i)
        assert contrast.shape == outline.shape and outline.any()
        assert contrast.min() >= 0 and contrast[outline].max() >= MIN_STONE_PEAK  # hyperdense
        assert library.areas[i] == outline.sum()
    with pytest.raises(MaskError, match="out of range"):
        library.stone(len(library))


def test_library_refuses_missing_corrupt_and_foreign_files(tmp_path) -> None:
    with pytest.raises(MaskError, match="missing") as err:
        StoneLibrary.load(tmp_path / "none.npz")
    assert "none.npz" in str(err.value)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(MaskError, match="cannot read"):
        StoneLibrary.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "foreign.npz", images=np.zeros(3))
    with pytest.raises(MaskError, match="not a real-stone library"):
        StoneLibrary.load(tmp_path / "foreign.npz")
    bundled = bundled_stone_library().path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(bundled[: len(bundled) // 2])      # a truncated copy
    with pytest.raises(MaskError, match="cannot read") as err:
        StoneLibrary.load(tmp_path / "cut.npz")
    assert "cut.npz" in str(err.value)


def test_nearest_picks_a_stone_of_similar_area_by_seed() -> None:
    library = bundled_stone_library()
    target = float(np.median(library.areas))
    picks = {library.nearest(target, seed) for seed in range(40)}
    assert 1 < len(picks) <= 5                                                 # a pool, drawn by seed
    assert all(abs(library.areas[i] - target) <= np.sort(np.abs(library.areas - target))[4] for i in picks)
    assert library.nearest(target, 3) == library.nearest(target, 3)


def test_paste_adds_the_stone_inside_the_outline_only() -> None:
    background = np.full((40, 40), 100.0, np.float32)
    footprint = np.zeros((40, 40), bool)
    footprint[15:25, 14:26] = True
    contrast, outline = bundled_stone_library().stone(0)
    out = paste_stone(background, footprint, contrast, outline, ceiling=255.0)
    assert (out >= background - 1e-4).all() and out.max() <= 255.0
    assert out[footprint].mean() > background[footprint].mean() + 5
    far = ~ndimage.binary_dilation(footprint, iterations=4)
    assert np.array_equal(out[far], background[far])                           # nothing beyond the soft edge
    assert contrast_scale((0.0, 255.0)) == 1.0 and contrast_scale((-1000.0, 1550.0)) == pytest.approx(10.0)
    assert contrast_scale((0.0, 1.0)) == pytest.approx(1 / 255)                 # a 0-1 image is not 8-bit


def test_real_stone_engine_inserts_into_a_held_out_slice() -> None:
    image, mask = _slice()
    outline = stone_outlines(mask)[0]
    engine = load_synthesizer("real-stone")
    removed = load_synthesizer("auto-fill")(
        image, SynthesisRequest(mode="remove", centre_rc=tuple(np.argwhere(outline).mean(0)),
                                mask_source=MaskSource("existing")), lesion_mask=outline).image
    request = SynthesisRequest(mode="inpaint", centre_rc=tuple(np.argwhere(outline).mean(0)),
                               mask_source=MaskSource("existing"), seed=5)
    result = engine(removed, request, lesion_mask=outline)
    footprint = result.plan.footprint_image()
    assert np.array_equal(footprint, outline)                                  # the stone's own outline, in place
    seam = ndimage.binary_dilation(footprint, iterations=4)
    assert np.array_equal(result.image[~seam], removed[~seam])                 # only the outline and its seam
    assert result.image[footprint].mean() > removed[footprint].mean() + 20     # a hyperdense stone came back
    assert result.image.max() <= 255.0
    identity = result.provenance["model"]
    assert identity["family"] == "real-stone" and identity["library_sha256"] == bundled_stone_library().sha256
    again = engine(removed, request, lesion_mask=outline)
    assert np.array_equal(again.image, result.image)                          # same seed, same pixels
    drawn = engine(removed, SynthesisRequest(mode="inpaint", centre_rc=request.centre_rc,
                                             mask_source=MaskSource("drawn"), seed=5), source_mask=outline)
    assert drawn.plan.footprint_image().sum() == outline.sum()               # a drawn shape is taken as drawn


def test_batch_export_fingerprints_the_stone_library(tmp_path, monkeypatch) -> None:
    """A rebuilt library changes every insertion: batch export's resume fingerprint follows it."""
    from lesion_studio.core.classical import stone_library
    from lesion_studio.models.batch_export import _classical_data_sha256

    assert _classical_data_sha256("real-stone") == bundled_stone_library().sha256
    assert _classical_data_sha256("telea") is None
    other = tmp_path / "real_stones.npz"
    other.write_bytes(bundled_stone_library().path.read_bytes() + b"\0")
    monkeypatch.setattr(stone_library, "DEFAULT_LIBRARY_PATH", other)
    assert _classical_data_sha256("real-stone") != bundled_stone_library().sha256
