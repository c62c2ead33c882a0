"""Tests for clip_perception.camera: pinhole back-projection, intrinsics helpers, lens
distortion (plumb_bob / rational_polynomial / equidistant) and the duck-typed CameraInfo checks."""

import logging
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from clip_perception import camera as camera_mod
from clip_perception.camera import (
    CameraModel,
    backproject_depth,
    camera_info_K_for_image,
    camera_info_to_K,
    camera_info_to_model,
    depth_aligned,
    pixel_to_point,
    scale_intrinsics,
    subsample_intrinsics,
    valid_intrinsics,
)

# fx = fy = 500, cx = 320, cy = 240 (VGA camera)
K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
H, W = 480, 640


def const_depth(z=2.0):
    return np.full((H, W), z, dtype=np.float32)


def test_pixel_to_point_known_pixel():
    """Case: pixel (420, 240) at 2.0 m with fx=fy=500, cx=320, cy=240 -> (0.4, 0.0, 2.0) m."""
    p = pixel_to_point(420, 240, 2.0, K)
    assert p.shape == (3,) and p.dtype == np.float64
    np.testing.assert_allclose(p, [0.4, 0.0, 2.0], atol=1e-9)


def test_pixel_to_point_principal_point_and_y_down():
    """Case: principal point maps onto the optical axis; rows below cy give +y (REP 103 y down)."""
    np.testing.assert_allclose(pixel_to_point(320, 240, 1.5, K), [0.0, 0.0, 1.5], atol=1e-12)
    np.testing.assert_allclose(pixel_to_point(320, 340, 1.0, K), [0.0, 0.2, 1.0], atol=1e-12)


def test_pixel_to_point_vectorised():
    """Case: array input gives (..., 3) points, same formula per element."""
    pts = pixel_to_point(np.array([320, 420]), np.array([240, 140]), np.array([1.0, 2.0]), K)
    np.testing.assert_allclose(pts, [[0.0, 0.0, 1.0], [0.4, -0.4, 2.0]], atol=1e-12)


def test_pixel_to_point_invalid_K_raises():
    """Case: pixel_to_point with an all-zero K raises ValueError (no silent garbage)."""
    with pytest.raises(ValueError):
        pixel_to_point(1, 1, 1.0, np.zeros((3, 3)))


@pytest.mark.parametrize(
    "k, ok",
    [
        (K, True),
        (K.reshape(-1).tolist(), True),  # flat CameraInfo.k
        (np.zeros((3, 3)), False),  # uncalibrated camera_info
        (None, False),
        (np.where(np.eye(3, dtype=bool), np.nan, K), False),
        (np.array([[np.inf, 0, 320], [0, 500, 240], [0, 0, 1]]), False),
        (np.array([[500, 0, np.nan], [0, 500, 240], [0, 0, 1]]), False),
        (np.array([[-500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), False),
        (np.eye(2), False),
    ],
)
def test_valid_intrinsics(k, ok):
    """Case: valid_intrinsics accepts finite K with fx, fy > 0 and rejects zero/NaN/Inf/negative/wrong size."""
    assert valid_intrinsics(k) is ok


def test_depth_aligned():
    """Case: depth_aligned compares (H, W) only."""
    assert depth_aligned((480, 640, 3), (480, 640))
    assert not depth_aligned((480, 640, 3), (240, 320))
    assert not depth_aligned((480, 640, 3), None)


def test_backproject_depth_matches_pixel_to_point():
    """Case: organised back-projection equals pixel_to_point per pixel; invalid depth stays NaN."""
    d = const_depth(2.0)
    d[0, 0] = np.nan
    d[1, 1] = 0.0
    pts = backproject_depth(d, K)
    assert pts.shape == (H, W, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts[240, 420], [0.4, 0.0, 2.0], atol=1e-6)
    assert np.isnan(pts[0, 0]).all() and np.isnan(pts[1, 1]).all()


def test_scale_and_subsample_intrinsics():
    """Case: half-size resize maps cx 320 -> (320.5 * 0.5) - 0.5 = 159.75; subsample by 2 maps cx -> 160."""
    ks = scale_intrinsics(K, 0.5, 0.5)
    np.testing.assert_allclose(ks[0], [250.0, 0.0, 159.75])
    ksub = subsample_intrinsics(K, 2)
    np.testing.assert_allclose(ksub[:2], [[250.0, 0, 160.0], [0, 250.0, 120.0]])
    # subsampled pixel (210, 120) is source pixel (420, 240): same ray
    np.testing.assert_allclose(pixel_to_point(210, 120, 2.0, ksub), [0.4, 0.0, 2.0], atol=1e-12)


# ------------------------------------------------------------------ distortion
def corner_points(z=1.5, margin_px=25.0):
    """3D points (metres, optical frame) whose *undistorted* projections lie near the four image
    corners and edge midpoints (where distortion is largest), all at depth z."""
    uv = np.array([[margin_px, margin_px], [W - margin_px, margin_px], [margin_px, H - margin_px],
                   [W - margin_px, H - margin_px], [W / 2, margin_px], [margin_px, H / 2], [W / 2, H / 2]])
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, np.full(len(uv), z)], axis=1)


@pytest.mark.parametrize("model, D", [
    ("plumb_bob", [-0.3, 0.1, 0.001, -0.002, 0.0]),
    ("rational_polynomial", [-0.3, 0.08, 0.0005, 0.0005, 0.0, 0.01, 0.0, 0.002]),
])
def test_distorted_pinhole_recovers_points_near_corners(model, D):
    """Case: plumb_bob k1 = -0.3 (and an 8-term rational model): pixels from cv2.projectPoints
    back-projected with their depth give the 3D points within 1 cm (in fact < 1e-4 m); the
    undistorted pinhole formula would be off by several cm there."""
    pts = corner_points()
    uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, np.array(D))
    uv = uv.reshape(-1, 2)
    cam = CameraModel(K=K, D=D, distortion_model=model, width=W, height=H)
    got = cam.pixel_to_point(uv[:, 0], uv[:, 1], pts[:, 2])
    np.testing.assert_allclose(got, pts, atol=1e-4)
    naive = pixel_to_point(uv[:, 0], uv[:, 1], pts[:, 2], K)
    assert np.abs(naive - pts).max() > 0.05  # the distortion matters at the corners


def test_fisheye_recovers_points_near_corners():
    """Case: equidistant (Kannala-Brandt) D = (0.1, -0.05, 0.01, -0.002): cv2.fisheye.projectPoints
    pixels back-project to the 3D points within 1 cm."""
    pts = corner_points(z=1.2)
    D = np.array([0.1, -0.05, 0.01, -0.002])
    uv, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    uv = uv.reshape(-1, 2)
    cam = CameraModel(K=K, D=D, distortion_model="equidistant")
    np.testing.assert_allclose(cam.pixel_to_point(uv[:, 0], uv[:, 1], pts[:, 2]), pts, atol=0.01)
    np.testing.assert_allclose(cam.pixel_to_point(uv[:, 0], uv[:, 1], pts[:, 2]), pts, atol=1e-4)


def test_backproject_depth_with_distortion_matches_pixel_to_point():
    """Case: organised back-projection of a distorted model equals pixel_to_point per pixel (float32),
    z is the depth unchanged, invalid depth stays NaN."""
    cam = CameraModel(K=K, D=[-0.3, 0.1, 0.0, 0.0, 0.0], distortion_model="plumb_bob")
    d = const_depth(2.0)
    d[0, 0] = np.nan
    pts = cam.backproject_depth(d)
    assert pts.shape == (H, W, 3) and pts.dtype == np.float32
    for u, v in ((5, 7), (630, 470), (320, 240), (100, 400)):
        np.testing.assert_allclose(pts[v, u], cam.pixel_to_point(u, v, 2.0), atol=1e-5)
    assert np.isnan(pts[0, 0]).all()
    assert (pts[..., 2][1:, 1:] == 2.0).all()


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant", "unknown_model"])
def test_zero_distortion_is_exactly_the_pinhole(model):
    """Case: D all zero (any model) gives bit-identical results to the K-only functions."""
    cam = CameraModel(K=K, D=np.zeros(8 if model == "rational_polynomial" else 5), distortion_model=model)
    u, v = np.array([0.0, 17.3, 639.0]), np.array([0.0, 240.0, 479.0])
    assert np.array_equal(cam.pixel_to_point(u, v, 1.7), pixel_to_point(u, v, 1.7, K))
    d = np.random.default_rng(0).uniform(0.2, 3.0, (H, W)).astype(np.float32)
    assert np.array_equal(backproject_depth(d, cam), backproject_depth(d, K), equal_nan=True)
    assert cam.family is None


def test_unknown_distortion_model_warns_once_and_is_treated_as_rectified(caplog):
    """Case: an unknown model with non-zero D logs one warning (not one per call) and the
    pixels are back-projected with the pinhole formula."""
    camera_mod._WARNED_MODELS.discard("kannala_mystery")
    cam = CameraModel(K=K, D=[0.2, 0.1, 0.0, 0.0], distortion_model="kannala_mystery")
    with caplog.at_level(logging.WARNING, logger="clip_perception.camera"):
        a = cam.pixel_to_point(10.0, 20.0, 1.0)
        b = cam.pixel_to_point(600.0, 400.0, 1.0)
    np.testing.assert_array_equal(a, pixel_to_point(10.0, 20.0, 1.0, K))
    np.testing.assert_array_equal(b, pixel_to_point(600.0, 400.0, 1.0, K))
    warnings = [r for r in caplog.records if "kannala_mystery" in r.getMessage()]
    assert len(warnings) == 1


def test_pixel_to_ray_is_unit_depth_optical_frame():
    """Case: pixel_to_ray has z = 1; right / below the principal point give +x / +y (REP 103)."""
    cam = CameraModel(K=K)
    np.testing.assert_allclose(cam.pixel_to_ray(420, 340), [0.2, 0.2, 1.0], atol=1e-12)
    assert cam.pixel_to_ray(np.zeros((2, 3)), np.zeros((2, 3))).shape == (2, 3, 3)


def test_camera_model_rejects_bad_K_and_D():
    """Case: invalid K or non-finite D raise ValueError at construction."""
    with pytest.raises(ValueError):
        CameraModel(K=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        CameraModel(K=K, D=[np.nan, 0, 0, 0, 0])


# ------------------------------------------------------------------ CameraInfo-like objects
def info(k=K, width=W, height=H, d=(0.0,) * 5, model="plumb_bob", bx=0, by=0, roi=(0, 0, 0, 0)):
    """A duck-typed sensor_msgs/CameraInfo (rosbags / rclpy / SimpleNamespace all work)."""
    x0, y0, rw, rh = roi
    return SimpleNamespace(k=np.asarray(k, dtype=np.float64).ravel(), width=width, height=height, d=list(d),
                           distortion_model=model, binning_x=bx, binning_y=by,
                           roi=SimpleNamespace(x_offset=x0, y_offset=y0, width=rw, height=rh))


def test_camera_info_to_K_duck_typed():
    """Case: k of 9 numbers -> (3, 3); all zero / wrong size / missing -> None."""
    np.testing.assert_array_equal(camera_info_to_K(info()), K)
    assert camera_info_to_K(info(k=np.zeros(9))) is None
    assert camera_info_to_K(SimpleNamespace(k=[1.0, 2.0])) is None
    assert camera_info_to_K(SimpleNamespace()) is None


def test_camera_info_to_model_applies_binning_keeps_D_and_checks_size():
    """Case: binning 2 on a 640x480 calibration: model for the 320x240 image has fx 250, cx 160,
    the message's D and model; a 640x480 image is refused with the size reason."""
    msg = info(d=(-0.3, 0.1, 0.0, 0.0, 0.0), bx=2, by=2)
    model, why = camera_info_to_model(msg, (240, 320, 3))
    assert why == ""
    np.testing.assert_allclose(model.K, [[250.0, 0.0, 160.0], [0.0, 250.0, 120.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(model.D, [-0.3, 0.1, 0.0, 0.0, 0.0])
    assert (model.distortion_model, model.width, model.height) == ("plumb_bob", 320, 240)
    none, why = camera_info_to_model(msg, (480, 640))
    assert none is None and why.startswith("describes 320x240 images but the image is 640x480")
    assert camera_info_to_model(info(d=(np.nan,) * 5), (480, 640)) == (None, "has non-finite distortion D")
    assert camera_info_K_for_image(info(), W, H)[1] == ""


def test_from_camera_info_raises_with_the_reason():
    """Case: CameraModel.from_camera_info raises ValueError naming the problem."""
    with pytest.raises(ValueError, match="no valid K"):
        CameraModel.from_camera_info(info(k=np.zeros(9)))
    with pytest.raises(ValueError, match="describes 640x480"):
        CameraModel.from_camera_info(info(), image_shape=(240, 320))
    cam = CameraModel.from_camera_info(info(d=(0.1, 0, 0, 0), model="equidistant"))
    assert cam.family == "fisheye" and (cam.width, cam.height) == (W, H)
