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


# ---------------------------------------------------------------------------- the 3D step of one detection
def _plane_of(frame):
    from clip_perception.proposals import support_plane

    n, d = support_plane(frame.depth, frame.K)
    return PL.SupportPlane(np.asarray(n, np.float64), float(d))


@pytest.mark.parametrize("name", [o["name"] for o in OBJECTS])
def test_locate_object_gives_tight_box_centre_and_orientation(frame, name):
    """Case: the support plane as the pipeline fits it (proposals.support_plane, once per frame) and the
    object's GT box grown by 10 % -> a depth mask (IoU >= 0.8 with the segmentation render), the tight box
    of that mask, the centre within 1 cm, the height within 1 cm, a unit quaternion whose z axis is the
    plane normal, and the mask's points: one per mask pixel, each on its pixel's ray."""
    plane = _plane_of(frame)
    (obj,) = frame.find(name)
    b = obj.box.astype(np.float64)
    grown = b + 0.1 * np.array([-(b[2] - b[0]), -(b[3] - b[1]), b[2] - b[0], b[3] - b[1]])
    est = SG.locate_object(frame.rgb, grown, frame.depth, frame.K, plane)
    assert est.is_centre and est.note == "" and est.mask.method == "depth"
    full = est.mask.full()
    assert _iou(full, frame.segmentation == obj.index) >= 0.8
    assert est.box.tolist() == SG.mask_box(full).tolist() and est.mask.area == int(full.sum())
    assert np.linalg.norm(est.position - obj.center_optical) < 0.01
    assert abs(est.size[2] - obj.size[2]) < 0.01
    R = SG.quaternion_to_rotation(est.orientation)
    np.testing.assert_allclose(R[:, 2], plane.normal, atol=1e-9)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    pts, px = est.mask.points, est.mask.pixels
    assert len(pts) == est.mask.area and full[px[:, 1], px[:, 0]].all()
    u = frame.K[0, 0] * pts[:, 0] / pts[:, 2] + frame.K[0, 2]
    np.testing.assert_allclose(u, px[:, 0], atol=1e-3)


def test_locate_object_without_plane_reports_the_visible_surface_with_a_note(frame):
    """Case: depth + K but no support plane -> GrabCut mask, position = geometry.box_position on the mask's
    tight box (the visible surface, as before masks), no orientation, position_is_centre false, NOTE_NO_PLANE;
    without depth: the mask and its box only."""
    from clip_perception.geometry import box_position

    (obj,) = frame.find("red ball")
    est = SG.locate_object(frame.rgb, obj.box, frame.depth, frame.K, None)
    assert not est.is_centre and est.note == SG.NOTE_NO_PLANE and est.orientation is None
    assert est.mask.method == "grabcut" and _iou(est.mask.full(), frame.segmentation == obj.index) >= 0.7
    want = box_position(frame.depth, est.box, frame.K)
    np.testing.assert_array_equal(est.position, want.position)
    np.testing.assert_array_equal(est.size, want.size)
    assert len(est.mask.points) > 0
    flat = SG.locate_object(frame.rgb, obj.box)
    assert flat.position is None and flat.note == "" and flat.box.tolist() == est.box.tolist()


def test_object_not_above_the_plane_falls_back_with_a_note():
    """Case: a flat depth image (everything on the plane) and a red square -> no depth mask, GrabCut finds the
    square exactly ([60, 40, 100, 80]), position = back-projection of its centre at 1 m, NOTE_NOT_ABOVE."""
    rgb = np.full((120, 160, 3), 128, np.uint8)
    rgb[40:80, 60:100] = (220, 20, 20)
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    depth = np.full((120, 160), 1.0, np.float32)
    plane = PL.SupportPlane(np.array([0.0, 0.0, -1.0]), 1.0)
    est = SG.locate_object(rgb, [55, 35, 105, 85], depth, K, plane)
    assert est.note == SG.NOTE_NOT_ABOVE and not est.is_centre
    assert est.box.tolist() == [60.0, 40.0, 100.0, 80.0]
    np.testing.assert_allclose(est.position, [0.0, 0.0, 1.0], atol=1e-12)


def test_grabcut_is_deterministic_and_bounded_by_its_downscale(frame):
    """Case: GrabCut's k-means draws from OpenCV's RNG, seeded per call: two calls give the same mask; a box
    larger than GRABCUT_MAX_SIDE is segmented on a downscaled crop and the mask comes back full size."""
    (obj,) = frame.find("green cup")
    a, b = SG.grabcut_mask(frame.rgb, obj.box), SG.grabcut_mask(frame.rgb, obj.box)
    assert np.array_equal(a, b) and a.shape == frame.rgb.shape[:2]
    big = obj.box.astype(np.float64) + np.array([-80, -80, 80, 80])
    assert SG.grabcut_mask(frame.rgb, big).any()


def test_crop_points_match_the_full_back_projection_with_distortion():
    """Case: crop_points of a window equals camera.backproject_depth of the whole image on that window, for a
    pinhole K and for a CameraModel with plumb_bob distortion (the crop keeps the distortion)."""
    from clip_perception.camera import CameraModel, backproject_depth

    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 1.5, (60, 80)).astype(np.float32)
    depth[5, 7] = np.nan
    K = np.array([[70.0, 0, 39.5], [0, 70.0, 29.5], [0, 0, 1]])
    for cam in (K, CameraModel(K, np.array([-0.2, 0.05, 0.001, -0.001, 0.0]), "plumb_bob")):
        full = backproject_depth(depth, cam)
        np.testing.assert_allclose(SG.crop_points(depth, cam, 3, 4, 50, 40), full[4:40, 3:50], atol=1e-6)


def test_quaternion_round_trip():
    """Case: quaternion_to_rotation inverts rotation_to_quaternion (up to the sign of q) for random rotations."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = SG.quaternion_to_rotation(q)
        q2 = SG.rotation_to_quaternion(R)
        assert np.allclose(q2, q, atol=1e-9) or np.allclose(q2, -q, atol=1e-9)


# ---------------------------------------------------------------------------- real RGB-D frames (PoseCNN demo)
REAL = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "posecnn_ycb_demo_rgbd"


@pytest.mark.skipif(not (REAL / "boxes_from_posecnn_results.json").exists(), reason="../shared/data/real is absent")
def test_masks_and_centres_on_real_frames_agree_with_the_posecnn_labels():
    """Case: the 20 labelled YCB objects of PoseCNN's 4 demo frames (real 640x480 RGB-D, depth in mm; labels
    are PoseCNN predictions, not human truth): each label box as the proposal -> a depth mask whose tight box
    overlaps the label box (IoU >= 0.6 for all but one object -- the banana lying against the pitcher merges
    with it -- median >= 0.85), and object centres within 4 cm of the predicted pose translation in the
    median (measured 2.9 cm; the model origins of YCB meshes are not all at the centre: the bowl's is at its
    bottom) and within 11 cm for all but the standing marker (its predicted pose lies below the table)."""
    import json

    import cv2
    import yaml

    from clip_perception.boxes import box_iou

    K = np.array(yaml.safe_load((REAL / "meta.yml").read_text())["INTRINSICS"], np.float64).reshape(3, 3)
    labels = json.loads((REAL / "boxes_from_posecnn_results.json").read_text())["images"]
    ious, errors = {}, {}
    for name, objs in sorted(labels.items()):
        rgb = np.ascontiguousarray(cv2.imread(str(REAL / name))[..., ::-1])
        depth = cv2.imread(str(REAL / name.replace("color", "depth")), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000
        depth[depth <= 0] = np.nan
        plane = _plane_of(type("F", (), {"depth": depth, "K": K})())
        for o in objs:
            box = np.array(o["bbox_xyxy"], np.float32)
            est = SG.locate_object(rgb, box, depth, K, plane)
            assert est.is_centre and est.mask.method == "depth", o["class"]
            ious[o["class"]] = float(box_iou(est.box[None], box[None])[0, 0])
            errors[o["class"]] = float(np.linalg.norm(est.position - np.array(o["t_xyz_m"])))
    assert len(ious) == 20
    assert sorted(k for k, v in ious.items() if v < 0.6) == ["011_banana"]
    assert np.median(list(ious.values())) >= 0.85
    assert np.median(list(errors.values())) <= 0.04
    assert sorted(k for k, v in errors.items() if v > 0.11) == ["040_large_marker"]
