"""Shape cleanup (one component, no holes, smooth outline) wherever shapes enter, and soft
mask resizing (smooth upsampled edges, small lesions kept when shrinking)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.draw import disk

from lesion_studio.core.builtin_shapes import builtin_shapes, lobulated_shape
from lesion_studio.core.errors import MaskError
from lesion_studio.core.geometry.crops import resize_mask, resize_soft_mask
from lesion_studio.core.geometry.shape_cleanup import clean_shape, fill_holes, is_clean, largest_component
from lesion_studio.core.geometry.size_modulation import moment_diameter
from lesion_studio.core.mask_bank import MaskBank
from lesion_studio.core.shape_choice import footprint
from tests.core._lesion_strategies import ellipse_mask, lesion_shapes

SHIPPED_SHAPE = Path(__file__).resolve().parents[2] / "lesion_studio" / "resources" / "models" / "ct_nodule_shape"


def _disc(n: int, radius: float) -> np.ndarray:
    mask = np.zeros((n, n), bool)
    centre = n / 2.0 - 0.5
    rr, cc = disk((centre, centre), radius, shape=mask.shape)
    mask[rr, cc] = True
    return mask


def _dirty(shape: np.ndarray, rng: np.random.Generator, n_specks: int, n_holes: int) -> np.ndarray:
    """A shape with isolated specks outside and pinholes inside."""
    out = shape.copy()
    inner = ndimage.binary_erosion(shape, iterations=2)
    outer = ~ndimage.binary_dilation(shape, iterations=3)
    for where, value, count in ((outer, True, n_specks), (inner, False, n_holes)):
        rows, cols = np.nonzero(where)
        if rows.size:
            pick = rng.choice(rows.size, size=min(count, rows.size), replace=False)
            out[rows[pick], cols[pick]] = value
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


# ---------------------------------------------------------------- clean_shape


@settings(max_examples=60, deadline=None)
@given(
    shape=lesion_shapes(min_radius=6.0),
    seed=st.integers(0, 2**32 - 1),
    n_specks=st.integers(0, 12),
    n_holes=st.integers(0, 12),
)
def test_dirty_shapes_come_out_single_component_hole_free_and_the_same_size(shape, seed, n_specks, n_holes):
    dirty = _dirty(shape, np.random.default_rng(seed), n_specks, n_holes)
    out = clean_shape(dirty)
    assert out.dtype == bool and out.shape == dirty.shape
    assert is_clean(out)
    assert abs(int(out.sum()) - int(shape.sum())) < 0.05 * shape.sum()
    assert _iou(out, shape) > 0.9


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), density=st.floats(0.05, 0.95))
def test_any_random_mask_comes_out_clean(seed, density):
    mask = np.random.default_rng(seed).random((40, 50)) < density
    if not mask.any():
        mask[3, 4] = True
    for smooth in (None, 0.0, 2.5):
        out = clean_shape(mask, smooth_px=smooth)
        assert out.shape == mask.shape and out.dtype == bool and is_clean(out)


def test_empty_or_3d_mask_is_a_mask_error():
    with pytest.raises(MaskError):
        clean_shape(np.zeros((8, 8), bool))
    with pytest.raises(MaskError):
        clean_shape(np.ones((2, 8, 8), bool))


def test_is_clean_and_the_topology_helpers():
    disc = _disc(30, 10)
    assert is_clean(disc)
    holed = disc.copy()
    holed[15, 15] = False
    assert not is_clean(holed) and is_clean(fill_holes(holed))
    two = disc.copy()
    two[0, 0] = True
    assert not is_clean(two)
    np.testing.assert_array_equal(largest_component(two), disc)
    assert not is_clean(np.zeros((5, 5), bool))
    diagonal = np.eye(6, dtype=bool)  # 8-connected: one component
    assert is_clean(diagonal)


def test_smoothing_keeps_lobulation_and_size():
    """A four-lobed shape stays four-lobed (not a disc) and keeps its area within 5 %."""
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    radius = 30 * (1 + 0.25 * np.cos(4 * theta))
    from skimage.draw import polygon

    mask = np.zeros((100, 100), bool)
    rr, cc = polygon(50 + radius * np.sin(theta), 50 + radius * np.cos(theta), mask.shape)
    mask[rr, cc] = True
    out = clean_shape(mask)
    assert abs(int(out.sum()) - int(mask.sum())) < 0.05 * mask.sum()
    assert _iou(out, mask) > 0.97
    # the dents between lobes survive: the convex hull deficit is kept
    from skimage.morphology import convex_hull_image

    def deficit(m):
        return 1 - m.sum() / convex_hull_image(m).sum()

    assert deficit(out) > 0.8 * deficit(mask)


def test_tiny_shapes_are_kept_not_smoothed_away():
    for mask in (np.eye(3, dtype=bool), _disc(9, 1.5)):
        out = clean_shape(mask)
        assert is_clean(out) and abs(int(out.sum()) - int(mask.sum())) <= 0.05 * mask.sum()


# ---------------------------------------------------------------- where shapes enter


def test_builtin_shapes_are_clean():
    for shape in builtin_shapes(20, seed=3):
        assert shape.shape == (128, 128) and is_clean(shape)
    np.testing.assert_array_equal(lobulated_shape(7), lobulated_shape(7))  # still deterministic


def _real_lesions_with_holes_and_specks(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((160, 160), bool)
    mask |= _dirty(ellipse_mask((160, 160), (45, 45), (25, 14), 0.6), rng, 0, 8)
    mask |= _dirty(ellipse_mask((160, 160), (110, 110), (18, 18)), rng, 0, 5)
    mask |= ellipse_mask((160, 160), (40, 120), (9, 5), -0.3) & ~ellipse_mask((160, 160), (40, 120), (4, 2), -0.3)
    mask[140:143, 20:23] = True  # a 3x3 lesion
    return mask


def test_bank_entries_from_real_masks_with_holes_are_clean():
    masks = [_real_lesions_with_holes_and_specks(s) for s in range(3)]
    bank = MaskBank.from_masks(masks, spacings_mm=[(0.5, 0.5)] * 3)
    assert len(bank) == 12
    assert all(is_clean(m) for m in bank.masks)
    rng = np.random.default_rng(0)
    for _ in range(40):
        assert is_clean(bank.sample(rng).mask)
    assert is_clean(bank.get(0, rotation_deg=7.5, flip_vertical=True).mask)


def test_loading_an_older_bank_cleans_its_entries(tmp_path):
    dirty = np.zeros((2, 64, 64), bool)
    dirty[0] = _disc(64, 20)
    dirty[0, 30:33, 30:33] = False  # a hole
    dirty[1] = _disc(64, 15)
    dirty[1, 2, 2] = True  # a speck
    path = tmp_path / "old.npz"
    meta = {"format": "lesion-studio-mask-bank", "version": 1, "d_init_px": 100.0, "patch_px": 256}
    np.savez_compressed(
        path, masks=dirty.astype(np.uint8), diameters_px=np.array([40.0, 30.0]),
        diameters_mm=np.array([np.nan, np.nan]), sources=np.asarray(["a", "b"]),
        meta=np.asarray(json.dumps(meta)),
    )
    bank = MaskBank.load(path)
    assert all(is_clean(m) for m in bank.masks)
    again = MaskBank.load(bank.save(tmp_path / "new.npz"))
    np.testing.assert_array_equal(again.masks, bank.masks)  # a current bank loads unchanged


def test_drawn_shape_footprint_is_clean():
    drawn = _dirty(ellipse_mask((80, 80), (40, 40), (20, 11), 0.3), np.random.default_rng(1), 6, 6)
    fp = footprint(drawn, diameter=25.0, unit="px", spacing_mm=None, rotation_deg=5.0)
    assert is_clean(fp)
    assert moment_diameter(fp) == pytest.approx(25.0, abs=1.0)


def test_shipped_shape_generator_samples_are_clean_after_cleanup():
    """Raw masks of the shipped (real-data) shape generator, before the sampler's own cleanup,
    come out clean."""
    torch = pytest.importorskip("torch")
    from lesion_studio.models.inference import load_shape_sampler

    sampler = load_shape_sampler(SHIPPED_SHAPE)
    with torch.no_grad():  # the generator's thresholded output, as `ShapeSampler.sample` makes it
        z = torch.randn(50, sampler.z_dim, generator=torch.Generator().manual_seed(0))
        raw = (sampler.generator(z.to(sampler.device))[:, 0] > 0).cpu().numpy()
    for mask in raw:
        out = clean_shape(mask)
        assert is_clean(out)
        assert abs(int(out.sum()) - int(mask.sum())) < 0.2 * mask.sum()  # specks and pinholes only
    assert all(is_clean(m) for m in sampler.sample(50, seed=0))


# ---------------------------------------------------------------- soft resizing


def test_upsampled_disc_has_a_smooth_edge():
    """64² → 256²: close to a disc drawn at 256², with no nearest-neighbour stairs."""
    small, target = _disc(64, 64 * 0.3), _disc(256, 256 * 0.3)
    soft = resize_mask(small, (256, 256))
    nearest = resize_mask(small, (256, 256), method="nearest")
    assert _iou(soft, target) > 0.97

    def max_edge_distance(mask):  # worst distance of an edge pixel from the true disc's edge
        def edge(m):
            return m & ~ndimage.binary_erosion(m)

        return ndimage.distance_transform_edt(~edge(target))[edge(mask)].max()

    assert max_edge_distance(soft) <= 1.5 < max_edge_distance(nearest)


def test_doubling_matches_nearest_neighbour():
    """P3 §III-B upsamples 128² → 256² nearest; at exactly 2× the soft resize is identical."""
    mask = np.random.default_rng(0).random((128, 128)) < 0.5
    np.testing.assert_array_equal(resize_mask(mask, (256, 256)), resize_mask(mask, (256, 256), method="nearest"))


@pytest.mark.parametrize("target", [(40, 40), (64, 64), (17, 23), (100, 100)])
def test_shrinking_keeps_a_3px_lesion(target):
    mask = np.zeros((300, 300), bool)
    mask[100:103, 200:203] = True
    mask[20:120, 20:120] |= _disc(100, 40)  # and a large one elsewhere
    out = resize_mask(mask, target)
    labels, n = ndimage.label(out, structure=np.ones((3, 3)))
    assert n == 2
    small = 1 + int(np.argmin(np.bincount(labels.ravel())[1:]))
    r, c = np.argwhere(labels == small)[0]
    assert abs((r + 0.5) * 300 / target[0] - 101.5) < 300 / target[0] + 1
    assert abs((c + 0.5) * 300 / target[1] - 201.5) < 300 / target[1] + 1


def test_resize_keeps_area_and_soft_map_is_a_fraction():
    mask = ellipse_mask((200, 200), (100, 100), (60, 35), 0.4)
    for shape in ((73, 73), (130, 90), (400, 400)):
        out = resize_mask(mask, shape)
        expected = mask.sum() * shape[0] * shape[1] / mask.size
        assert abs(out.sum() - expected) < 0.03 * expected
        soft = resize_soft_mask(mask, shape)
        assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
        assert math.isclose(float(soft.sum()), expected, rel_tol=0.02)
    with pytest.raises(ValueError):
        resize_mask(mask, (10, 10), method="cubic")
