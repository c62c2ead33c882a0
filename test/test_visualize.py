"""clip_perception.visualize: annotated images (mask outline, projected oriented 3D box) with exact pixels."""

from __future__ import annotations

import numpy as np

from clip_perception.segment import InstanceMask
from clip_perception.types import Detection
from clip_perception.visualize import box3d_corners, draw_result

GREEN = (0, 220, 0)


def test_box3d_corners_of_a_rotated_box():
    """Case: a 0.2 x 0.1 x 0.04 m box at (0, 0, 1) turned 90 degrees about z: its long side runs along y."""
    s = np.sqrt(0.5)
    c = box3d_corners([0.0, 0.0, 1.0], [0.0, 0.0, s, s], [0.2, 0.1, 0.04])
    np.testing.assert_allclose(np.ptp(c, axis=0), [0.1, 0.2, 0.04], atol=1e-12)
    np.testing.assert_allclose(c.mean(axis=0), [0.0, 0.0, 1.0], atol=1e-12)


def test_draw_result_outlines_the_mask_and_projects_the_3d_box():
    """Case: a 20x10 px mask at (40, 30) -> its outline in the best colour; a 0.2 m cube-shaped box (identity
    orientation) at 1 m with fx = 100 -> its front face edge at u = 50 + 100 * 0.1 / 0.9 = 61.1 px (rounded 61)."""
    rgb = np.zeros((100, 100, 3), np.uint8)
    crop = np.ones((10, 20), bool)
    det = Detection(label="box", score=1.0, confidence=1.0, box=np.array([40, 30, 60, 40], np.float32),
                    mask=InstanceMask((40, 30), crop, (100, 100), "depth"))
    out = draw_result(rgb, [det])
    assert tuple(out[35, 40]) == GREEN and tuple(out[35, 50]) == (0, 0, 0)  # outline, not the inside
    K = np.array([[100.0, 0, 50.0], [0, 100.0, 50.0], [0, 0, 1]])
    det3 = Detection(label="box", score=1.0, confidence=1.0, box=np.array([0, 0, 2, 2], np.float32),
                     position=np.array([0.0, 0.0, 1.0]), size=np.array([0.2, 0.2, 0.2]),
                     orientation=np.array([0.0, 0.0, 0.0, 1.0]), position_is_centre=True)
    out = draw_result(rgb, [det3], K=K)
    assert tuple(out[50, 61]) != (0, 0, 0) and tuple(out[50, 50]) == (0, 0, 0)
    flat = draw_result(rgb, [Detection(label="box", score=1.0, confidence=1.0, box=det3.box,
                                       position=det3.position, size=det3.size)], K=K)
    assert tuple(flat[50, 61]) == (0, 0, 0)  # no 3D box unless the position is an object centre
