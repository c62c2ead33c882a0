"""``clip_perception.segment``: masks, centres, extents and yaw against the simulator's
ground truth (segmentation render, object centres and sizes, world pose of the camera)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import clip_perception.pipeline  # noqa: F401  torch/triton before MuJoCo (see sim/scene.py)
from clip_perception import placement as PL
from clip_perception import segment as SG
from clip_perception.sim.scene import make_scene

OBJECTS = [
    dict(shape="box", color="blue", xy=(0.05, 0.08), size=(0.07, 0.04, 0.02), yaw=0.5, name="blue box"),
    dict(shape="cup", color="green", xy=(0.12, -0.15), size=(0.04, 0.045), name="green cup"),
    dict(shape="ball", color="red", xy=(-0.10, -0.05), size=(0.035,), name="red ball"),
    dict(shape="cube", color="yellow", xy=(-0.05, 0.20), size=(0.03, 0.03, 0.03), yaw=-0.3, name="yellow cube"),
]


@pytest.fixture(scope="module")
def frame():
    scene = make_scene(objects=OBJECTS)
    try:
        yield scene.render()
    finally:
        scene.close()


@pytest.fixture(scope="module")
def plane(frame):
    return PL.fit_support_plane(frame.depth, frame.K)


def _iou(a, b):
    return float((a & b).sum()) / float((a | b).sum())


@pytest.mark.parametrize("name", [o["name"] for o in OBJECTS])
def test_depth_mask_matches_the_segmentation_render(frame, plane, name):
    (obj,) = frame.find(name)
    truth = frame.segmentation == obj.index
    mask = SG.segment(frame.rgb, obj.box, frame.depth, frame.K, plane)
    assert _iou(mask, truth) >= 0.8


@pytest.mark.parametrize("name", [o["name"] for o in OBJECTS])
def test_depth_mask_grown_from_a_partial_box_covers_the_object(frame, plane, name):
    """A proposal that covers only the upper half of the object still yields the whole object
    (the mask grows beyond the box through the connected component)."""
    (obj,) = frame.find(name)
    b = obj.box.astype(np.float64)
    half = np.array([b[0], b[1], b[2], (b[1] + b[3]) / 2])
    mask = SG.segment(frame.rgb, half, frame.depth, frame.K, plane)
    truth = frame.segmentation == obj.index
    assert _iou(mask, truth) >= 0.8
    tight = SG.mask_box(mask)
    from clip_perception.boxes import box_iou
    assert float(box_iou(tight[None], obj.box[None])[0, 0]) >= 0.9


@pytest.mark.parametrize("name", [o["name"] for o in OBJECTS])
def test_centre_and_extent_from_the_mask(frame, plane, name):
    (obj,) = frame.find(name)
    mask = SG.segment(frame.rgb, obj.box, frame.depth, frame.K, plane)
    geo = SG.object_geometry(SG.mask_points(frame.depth, frame.K, mask), plane)
    assert geo.is_centre
    assert np.linalg.norm(geo.centre - obj.center_optical) < 0.01  # 1 cm
    true_height = obj.size[2]
    assert abs(geo.extent[2] - true_height) < 0.01


@pytest.mark.parametrize("name", ["blue box", "yellow cube"])
def test_yaw_of_boxes_within_10_degrees(frame, plane, name):
    spec = next(o for o in OBJECTS if o["name"] == name)
    (obj,) = frame.find(name)
    mask = SG.segment(frame.rgb, obj.box, frame.depth, frame.K, plane)
    geo = SG.object_geometry(SG.mask_points(frame.depth, frame.K, mask), plane)
    # The long axis in the world: optical "right" on the table is world -y, "towards the
    # camera" is world -x (camera yaw 0), so the world angle is -theta - 90 degrees.
    world_long = np.asarray(frame.T_world_optical)[:3, :3] @ geo.rotation[:, 0]
    measured = math.atan2(world_long[1], world_long[0])
    hx, hy = spec["size"][0], spec["size"][1]
    period = math.pi / 2 if abs(hx - hy) < 1e-9 else math.pi  # a cube is symmetric under 90 degrees
    truth = spec["yaw"] + (0.0 if hx >= hy else math.pi / 2)
    err = (measured - truth + period / 2) % period - period / 2
    assert abs(math.degrees(err)) < 10.0
    if period == math.pi:
        assert abs(geo.extent[0] - 2 * hx) < 0.01 and abs(geo.extent[1] - 2 * hy) < 0.01


def test_without_a_plane_the_visible_surface_point_is_reported_and_flagged(frame):
    (obj,) = frame.find("red ball")
    mask = frame.segmentation == obj.index
    geo = SG.object_geometry(SG.mask_points(frame.depth, frame.K, mask), None)
    assert not geo.is_centre
    # The visible surface of a 3.5 cm ball lies within a radius of its centre, nearer the camera.
    dist = np.linalg.norm(geo.centre - obj.center_optical)
    assert 0.01 < dist <= 0.036
    assert geo.centre[2] < obj.center_optical[2]


def test_grabcut_without_depth_finds_a_saturated_object(frame):
    (obj,) = frame.find("red ball")
    mask = SG.segment(frame.rgb, obj.box)
    assert _iou(mask, frame.segmentation == obj.index) >= 0.7


def test_quaternion_of_known_rotations():
    assert np.allclose(SG.rotation_to_quaternion(np.eye(3)), [0, 0, 0, 1])
    c, s = math.cos(0.3), math.sin(0.3)
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    assert np.allclose(SG.rotation_to_quaternion(rz), [0, 0, math.sin(0.15), math.cos(0.15)])
    rx180 = np.diag([1.0, -1.0, -1.0])
    assert np.allclose(np.abs(SG.rotation_to_quaternion(rx180)), [1, 0, 0, 0])


def test_mask_box_is_tight_and_exclusive():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    assert SG.mask_box(m).tolist() == [3.0, 2.0, 9.0, 5.0]
    assert SG.mask_box(np.zeros((4, 4), bool)) is None
