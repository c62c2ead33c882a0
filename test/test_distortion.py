"""Lens distortion end to end (issue 12 item 5): a distorted synthetic camera (plumb_bob k1 = -0.3, and a
fisheye equidistant) views small coloured squares at known 3D points near the image corners; the rendered
colour + depth image goes through Detector.detect (colour test encoder, contour proposals) with the
CameraModel, and the 3D position comes out within 1 cm.  With D all zero the results are identical to
a plain K, bit for bit; geometry / placement / segment take the model through camera.py."""

import cv2
import numpy as np
import pytest

from clip_perception import geometry, placement, proposals, segment
from clip_perception.camera import CameraModel, camera_info_to_model
from clip_perception.params import make_config
from clip_perception.pipeline import Detector
from fake_encoders import ColorTestEncoder

W, H = 640, 480
HALF = 14  # squares of 2 * HALF + 1 = 29 pixels
COLOURS = {"red": (220, 20, 20), "green": (30, 190, 40), "blue": (30, 50, 220), "yellow": (230, 220, 30)}
#: No depth behind the squares (NaN: out of range), so no support plane is fitted and the 3D step is the
#: visible-surface point of the square (segment.locate_object's fallback, geometry.box_position).
BACKGROUND_Z = np.nan

#: (model, K, D, normalised (x / z, y / z) of the four points, their depths z [m])
CAMERAS = {
    # k1 = -0.3 alone: the corner pixels are r_d = 0.57 from the centre (r = 0.68 undistorted), ~75 px of
    # distortion there.
    "plumb_bob": ("plumb_bob", np.array([[700.0, 0, 319.5], [0, 700.0, 239.5], [0, 0, 1]]),
                  np.array([-0.3, 0.0, 0.0, 0.0, 0.0]),
                  [(-0.46, -0.34), (0.46, -0.34), (-0.46, 0.34), (0.46, 0.34)], [1.0, 1.1, 0.9, 1.2]),
    # Kannala-Brandt fisheye, ~150 degrees diagonal: the points are 50 degrees off the axis.
    "equidistant": ("equidistant", np.array([[300.0, 0, 319.5], [0, 300.0, 239.5], [0, 0, 1]]),
                    np.array([0.05, -0.02, 0.005, -0.001]),
                    [(-0.95, -0.72), (0.95, -0.72), (-0.95, 0.72), (0.95, 0.72)], [0.8, 0.9, 1.0, 1.1]),
}


def known_points(name):
    _, _, _, xy, zs = CAMERAS[name]
    return np.array([[x * z, y * z, z] for (x, y), z in zip(xy, zs)])


def project(name, pts):
    """Pixels of ``pts`` with OpenCV's forward model (independent of the undistortion under test)."""
    model, K, D, _, _ = CAMERAS[name]
    if model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    else:
        uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, D)
    return uv.reshape(-1, 2)


def render(name):
    """(rgb, depth, pixel centres): grey background without depth, one 29 px square per colour centred on
    the integer pixel nearest each point's projection, at that point's depth (fronto-parallel)."""
    pts = known_points(name)
    rgb = np.full((H, W, 3), 128, np.uint8)
    depth = np.full((H, W), BACKGROUND_Z, np.float32)
    centres = np.rint(project(name, pts)).astype(int)
    for (u, v), colour, z in zip(centres, COLOURS.values(), pts[:, 2]):
        assert HALF <= u < W - HALF and HALF <= v < H - HALF, "the square must fit in the image"
        rgb[v - HALF:v + HALF + 1, u - HALF:u + HALF + 1] = colour
        depth[v - HALF:v + HALF + 1, u - HALF:u + HALF + 1] = z
    return rgb, depth, centres


def camera(name, zero_d=False):
    model, K, D, _, _ = CAMERAS[name]
    return CameraModel(K=K, D=np.zeros_like(D) if zero_d else D, distortion_model=model, width=W, height=H)


def detector():
    cfg = make_config({"color_prior_weight": 1.0, "proposal_methods": ["contours"], "mode": "crop"})
    return Detector(cfg.detector, encoder=ColorTestEncoder())


@pytest.mark.parametrize("name", list(CAMERAS))
def test_detector_positions_near_corners_within_1cm(name):
    """Case: each coloured square is found (box centred on its pixel) and its position is the known 3D
    point within 1 cm; K alone (distortion ignored) is off by more than 3 cm for the same boxes."""
    rgb, depth, centres = render(name)
    pts = known_points(name)
    det, cam = detector(), camera(name)
    for (colour, _), point, (u, v) in zip(COLOURS.items(), pts, centres):
        res = det.detect(rgb, f"pick up the {colour} block", depth=depth, K=cam)
        assert res.found, f"{colour} block not found ({res.notes})"
        best = res.best
        assert np.abs(np.subtract(geometry.box_center(best.box), (u, v))).max() <= 1.0
        np.testing.assert_allclose(best.position, point, atol=0.01, err_msg=f"{name} {colour}")
        naive = det.detect(rgb, f"pick up the {colour} block", depth=depth, K=cam.K).best.position
        assert np.abs(naive - point).max() > 0.03
        # the box's extent at that depth: the 29 px square is 29 px of the *undistorted* image around it
        assert best.size[0] > 0 and best.size[1] > 0 and best.size[2] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", list(CAMERAS))
def test_all_zero_distortion_is_identical_to_plain_K(name):
    """Case: a CameraModel whose D is all zero gives exactly (bit for bit) the positions and sizes of the
    plain K, through the detector and box_position."""
    rgb, depth, _ = render(name)
    det, cam = detector(), camera(name, zero_d=True)
    for colour in COLOURS:
        a = det.detect(rgb, f"the {colour} block", depth=depth, K=cam)
        b = det.detect(rgb, f"the {colour} block", depth=depth, K=cam.K)
        assert len(a.detections) == len(b.detections) > 0
        for x, y in zip(a.detections, b.detections):
            np.testing.assert_array_equal(x.box, y.box)
            np.testing.assert_array_equal(x.position, y.position)
            np.testing.assert_array_equal(x.size, y.size)


def test_box_size_uses_the_undistorted_edges():
    """Case: with distortion, box_position's width / height are the distance between the back-projected
    midpoints of the box edges: equal to pixel_to_point differences, not w_px * z / fx."""
    cam = camera("plumb_bob")
    depth = np.full((H, W), 1.0, np.float32)
    box = np.array([580.0, 420.0, 620.0, 460.0])
    g = geometry.box_position(depth, box, cam)
    uc, vc = geometry.box_center(box)
    left, right = cam.pixel_to_point(579.5, vc, 1.0), cam.pixel_to_point(619.5, vc, 1.0)
    top, bottom = cam.pixel_to_point(uc, 419.5, 1.0), cam.pixel_to_point(uc, 459.5, 1.0)
    np.testing.assert_allclose(g.size[:2], [np.linalg.norm(right - left), np.linalg.norm(bottom - top)],
                               rtol=1e-12)
    assert g.size[0] > 40 / 700 * 1.05  # larger than the pinhole size near the corner (barrel distortion)
    np.testing.assert_allclose(g.position, cam.pixel_to_point(uc, vc, 1.0), atol=1e-12)


def test_plane_points_and_proposals_take_the_model():
    """Case: support plane, object points and depth proposals accept a CameraModel: a distorted camera over
    a tilted table (depth along the model's rays, whose undistortion test_camera.py checks against
    cv2.projectPoints) fits the true plane within 1 cm, which K alone misses;
    zero D equals K exactly for the points and the proposals."""
    name = "plumb_bob"
    cam = camera(name)
    # a table tilted 0.6 rad towards the camera, 0.9 m from it; depth = z of each pixel's ray where it meets it
    vv, uu = np.mgrid[0:H, 0:W]
    rays = cam.pixel_to_ray(uu.astype(float), vv.astype(float))
    normal, offset = np.array([0.0, -np.cos(0.6), -np.sin(0.6)]), 0.9  # n . p + d = 0, camera on the + side
    depth = (-offset / (rays @ normal)).astype(np.float32)  # z along each ray (ray z = 1)
    depth[(depth <= 0) | (depth > 5)] = np.nan
    plane = placement.fit_support_plane(depth, cam)
    assert plane is not None
    sign = np.sign(plane.normal @ normal)
    np.testing.assert_allclose(sign * plane.normal, normal, atol=0.01)
    assert sign * plane.offset == pytest.approx(offset, abs=0.01)
    naive = placement.fit_support_plane(depth, cam.K)
    assert abs(abs(naive.offset) - offset) > 0.01 or np.abs(np.abs(naive.normal) - np.abs(normal)).max() > 0.01
    zero = camera(name, zero_d=True)
    box = np.array([100.0, 300.0, 200.0, 400.0])
    np.testing.assert_array_equal(placement.object_points(depth, zero, box, plane, min_height=-1.0),
                                  placement.object_points(depth, zero.K, box, plane, min_height=-1.0))
    np.testing.assert_array_equal(segment.depth_mask(depth, zero, box, plane),
                                  segment.depth_mask(depth, zero.K, box, plane))
    for a, b in zip(proposals.depth_proposals(depth, zero), proposals.depth_proposals(depth, zero.K)):
        np.testing.assert_array_equal(a, b)


def test_camera_info_with_distortion_reaches_the_detector():
    """Case: camera_info_to_model (what the node's worker calls) of a CameraInfo with d / distortion_model
    gives the same positions as the model built by hand."""
    from types import SimpleNamespace

    model, K, D, _, _ = CAMERAS["plumb_bob"]
    info = SimpleNamespace(k=K.ravel().tolist(), d=D.tolist(), distortion_model=model, width=W, height=H,
                           binning_x=0, binning_y=0, roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0))
    rgb, depth, _ = render("plumb_bob")
    cam, why = camera_info_to_model(info, rgb.shape)
    assert why == "" and cam.family == "standard"
    got = detector().detect(rgb, "the red block", depth=depth, K=cam).best.position
    np.testing.assert_allclose(got, known_points("plumb_bob")[0], atol=0.01)
