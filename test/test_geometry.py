"""Tests for clip_perception.geometry (pinhole back-projection, box 3D position/size)."""

import numpy as np
import pytest

from clip_perception.geometry import BoxGeometry, box_center, box_position

# fx = fy = 500, cx = 320, cy = 240 (VGA camera)
K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
H, W = 480, 640


def const_depth(z=2.0):
    return np.full((H, W), z, dtype=np.float32)


# A box whose centre ((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2) is pixel (420, 240).
BOX_420_240 = np.array([370.0, 190.0, 471.0, 291.0], dtype=np.float32)


def test_box_center_convention():
    """Case: box centre of exclusive-edge box is ((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2)."""
    assert box_center(BOX_420_240) == (420.0, 240.0)
    assert box_center([0, 0, W, H]) == (319.5, 239.5)


def test_box_position_constant_depth():
    """Case: box centred on (420, 240) over constant 2.0 m depth -> position (0.4, 0, 2.0) within 1 mm."""
    g = box_position(const_depth(2.0), BOX_420_240, K)
    assert isinstance(g, BoxGeometry)
    np.testing.assert_allclose(g.position, [0.4, 0.0, 2.0], atol=1e-3)
    assert g.num_valid == 101 * 101
    pos, size = g  # contract form: (position, size)
    np.testing.assert_allclose(pos, g.position)


def test_box_position_nan_centre_pixel_ignored():
    """Case: a NaN at the box-centre pixel (and a few around) is ignored by the median."""
    d = const_depth(2.0)
    d[235:246, 415:426] = np.nan
    g = box_position(d, BOX_420_240, K)
    np.testing.assert_allclose(g.position, [0.4, 0.0, 2.0], atol=1e-3)
    assert g.num_valid == 101 * 101 - 11 * 11


def test_box_position_median_robust_to_outliers():
    """Case: 20 % of the box at a far background (5 m) and zeros (invalid) do not move the 2.0 m median."""
    d = const_depth(2.0)
    d[190:210, 370:471] = 5.0  # 20 of 101 rows -> background
    d[280:291, 370:380] = 0.0  # zero = invalid
    g = box_position(d, BOX_420_240, K)
    np.testing.assert_allclose(g.position[2], 2.0, atol=1e-6)
    # the background rows are outside the depth band, so they are not "used"
    assert g.num_valid == 101 * 101 - 20 * 101 - 11 * 10
    assert g.size[2] == pytest.approx(0.0, abs=1e-6)


def test_box_position_all_invalid_is_none():
    """Case: all-NaN depth inside the box -> None (never a made-up (0, 0, 0))."""
    d = const_depth(2.0)
    d[190:291, 370:471] = np.nan
    assert box_position(d, BOX_420_240, K) is None
    assert box_position(np.full((H, W), np.nan, np.float32), BOX_420_240, K) is None


def test_box_position_zero_K_is_none():
    """Case: all-zero K (uncalibrated camera_info) -> None."""
    assert box_position(const_depth(), BOX_420_240, np.zeros((3, 3))) is None


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_box_position_nonfinite_K_is_none(bad):
    """Case: NaN / Inf in K -> None."""
    k = K.copy()
    k[0, 2] = bad
    assert box_position(const_depth(), BOX_420_240, k) is None


@pytest.mark.parametrize(
    "box",
    [
        [100, 100, 100, 150],  # zero width
        [100, 100, 150, 100],  # zero height
        [700, 100, 760, 150],  # right of the image
        [-80, -60, -10, -5],  # above-left of the image
        [100, 500, 150, 560],  # below the image
        [np.nan, 0, 10, 10],
    ],
)
def test_box_position_degenerate_box_is_none(box):
    """Case: zero-area or out-of-image box -> None."""
    assert box_position(const_depth(), box, K) is None


def test_box_position_size_fronto_parallel_patch():
    """Case: 100 x 60 px box on a 2.0 m fronto-parallel plane -> size (0.4, 0.24, 0.0) m within 1 mm."""
    g = box_position(const_depth(2.0), [200, 100, 300, 160], K)
    np.testing.assert_allclose(g.size, [0.4, 0.24, 0.0], atol=1e-3)


def test_box_position_size_tilted_plane_patch():
    """Case: plane z = 2 + 0.001 * (u - 320) (slanted about the y axis); a 100-px-wide box spans
    z in [1.95, 2.049] -> size x = 100 * 2.0 / 500 = 0.4 m (+-1 mm), depth extent = 5..95th percentile
    of z = 0.9 * 0.099 m (+-2 mm), position z = 2.0 m (+-1 mm)."""
    u = np.arange(W, dtype=np.float32)[None, :]
    d = np.repeat(2.0 + 0.001 * (u - 320.0), H, axis=0).astype(np.float32)
    g = box_position(d, [270, 200, 370, 280], K)
    assert g.position[2] == pytest.approx(1.9995, abs=1e-3)
    assert g.size[0] == pytest.approx(0.4, abs=1e-3)
    assert g.size[1] == pytest.approx(80 * 2.0 / 500, abs=1e-3)
    assert g.size[2] == pytest.approx(0.9 * 0.099, abs=2e-3)


def test_box_position_with_mask():
    """Case: foreground mask restricts the pixels: object at 1.0 m inside a box over a 3.0 m background."""
    d = const_depth(3.0)
    d[200:240, 300:340] = 1.0
    mask = np.zeros((H, W), bool)
    mask[200:240, 300:340] = True
    box = [280, 180, 360, 260]  # object covers only 25 % of the box
    g = box_position(d, box, K, mask=mask)
    assert g.position[2] == pytest.approx(1.0, abs=1e-6)
    assert g.num_valid == 40 * 40
    # a mask with no valid depth under it -> None
    d2 = d.copy()
    d2[mask] = np.nan
    assert box_position(d2, box, K, mask=mask) is None
    with pytest.raises(ValueError):
        box_position(d, box, K, mask=np.ones((10, 10), bool))


def test_box_position_depth_band_drops_background():
    """Case: object (1.0 m) filling the inner box over a 3.0 m background: the band keeps only the object."""
    d = const_depth(3.0)
    d[190:270, 280:360] = 1.0  # central 80x80 of a 120x120 box = 44 % of its pixels
    g = box_position(d, [260, 170, 380, 290], K)
    assert g.position[2] == pytest.approx(1.0, abs=1e-6)
    assert g.num_valid == 80 * 80


def test_box_position_partly_outside_is_clipped():
    """Case: a box half outside the image uses the visible part: centre of [600, 200, 640, 240] = (619.5, 219.5)."""
    g = box_position(const_depth(1.0), [600, 200, 680, 240], K)
    np.testing.assert_allclose(g.position, [(619.5 - 320) / 500, (219.5 - 240) / 500, 1.0], atol=1e-9)
    np.testing.assert_allclose(g.size[:2], [40 / 500, 40 / 500], atol=1e-9)
