"""Tests for clip_perception.messages: result messages, the camera-side builders (Image,
depth Image, CompressedImage, CameraInfo), CameraInfo -> K, and stamp conversions."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from clip_perception import messages
from clip_perception.command import parse_command
from clip_perception.compressed import decode_compressed
from clip_perception.decode import decode_depth, decode_image
from clip_perception.pipeline import FrameResult
from clip_perception.types import Detection

STAMP = Time(sec=1_700_000_000, nanosec=123)
FRAME = "cam_color_optical_frame"
W, H = 640, 480
K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])


def info_msg(stamp: Time, k: np.ndarray = K, frame: str = FRAME) -> CameraInfo:
    msg = CameraInfo(header=Header(stamp=stamp, frame_id=frame), width=W, height=H)
    msg.k = [float(v) for v in np.asarray(k).ravel()]
    return msg


def _result(position=None, size=None):
    det = Detection(label="red ball", score=0.9, confidence=0.9, box=np.array([10.2, 20.7, 50.0, 80.4], np.float32),
                    position=position, size=size, clip_score=0.8, color_score=None)
    parse = parse_command("pick up the red ball")
    return FrameResult(command=parse.first, parse=parse, detections=[det])


# ---------------------------------------------------------------------------- results -> messages
def test_messages_without_position_have_zeros_and_no_pose():
    """has_position False -> position/size zero, no PoseStamped, markers only DELETEALL."""
    header = Header(stamp=STAMP, frame_id=FRAME)
    res = _result()
    arr = messages.to_detection_array(res, header, "pick up the red ball")
    assert arr.header.stamp == STAMP and arr.header.frame_id == FRAME
    assert (arr.action, arr.target, arr.command) == ("pick up", "red ball", "pick up the red ball")
    d = arr.detections[0]
    assert (d.roi.x_offset, d.roi.y_offset, d.roi.width, d.roi.height) == (10, 21, 40, 59)
    assert not d.has_position and (d.position.x, d.position.y, d.position.z) == (0.0, 0.0, 0.0)
    assert d.color_score == -1.0
    assert messages.to_pose(res, header) is None
    markers = messages.to_markers(res, header).markers
    assert [m.action for m in markers] == [Marker.DELETEALL]


def test_messages_with_position_pose_and_markers_in_image_frame():
    header = Header(stamp=STAMP, frame_id=FRAME)
    res = _result(position=np.array([0.1, -0.2, 1.5]), size=np.array([0.08, 0.08, 0.02]))
    pose = messages.to_pose(res, header)
    assert pose.header.frame_id == FRAME and pose.header.stamp == STAMP
    assert (pose.pose.position.x, pose.pose.position.y, pose.pose.position.z) == (0.1, -0.2, 1.5)
    assert pose.pose.orientation.w == 1.0
    markers = messages.to_markers(res, header).markers
    assert [m.action for m in markers] == [Marker.DELETEALL, Marker.ADD, Marker.ADD]
    assert [m.type for m in markers[1:]] == [Marker.CUBE, Marker.TEXT_VIEW_FACING]  # the oriented box
    assert all(m.header.frame_id == FRAME and m.header.stamp == STAMP for m in markers)
    assert markers[1].scale.x == pytest.approx(0.08) and markers[1].scale.z == pytest.approx(0.02)
    assert markers[2].text.startswith("red ball")
    assert messages.camera_info_to_K(info_msg(STAMP, k=np.zeros((3, 3)))) is None
    np.testing.assert_array_equal(messages.camera_info_to_K(info_msg(STAMP)), K)


# ---------------------------------------------------------------------------- CameraInfo -> K
def test_camera_info_k_for_image_checks_size_and_applies_roi_and_binning():
    """Case (unit level): CameraInfo for 640x480 -> K for a 640x480 image, None with the reason
    for 320x240; width/height 0 -> not checked; binning 2 -> fx, fy, cx, cy halved (320x240);
    ROI (100, 50, 200x100) -> principal point shifted by the offset (200x100 image)."""
    info = info_msg(STAMP)
    np.testing.assert_array_equal(messages.camera_info_K_for_image(info, W, H)[0], K)
    k, why = messages.camera_info_K_for_image(info, 320, 240)
    assert k is None and why.startswith("describes 640x480 images but the image is 320x240")
    unsized = info_msg(STAMP)
    unsized.width = unsized.height = 0
    np.testing.assert_array_equal(messages.camera_info_K_for_image(unsized, 320, 240)[0], K)
    binned = info_msg(STAMP)
    binned.binning_x = binned.binning_y = 2
    np.testing.assert_allclose(messages.camera_info_K_for_image(binned, 320, 240)[0],
                               [[250.0, 0.0, 159.75], [0.0, 250.0, 119.75], [0.0, 0.0, 1.0]])
    assert messages.camera_info_K_for_image(binned, W, H)[0] is None
    cropped = info_msg(STAMP)
    cropped.roi.x_offset, cropped.roi.y_offset, cropped.roi.width, cropped.roi.height = 100, 50, 200, 100
    np.testing.assert_allclose(messages.camera_info_K_for_image(cropped, 200, 100)[0],
                               [[500.0, 0.0, 219.5], [0.0, 500.0, 189.5], [0.0, 0.0, 1.0]])
    nan_k = info_msg(STAMP, k=np.full((3, 3), np.nan))
    assert messages.camera_info_K_for_image(nan_k, W, H) == (None, "has no valid K (uncalibrated?)")


# ---------------------------------------------------------------------------- stamps
@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_700_000_001_123_456_789])
def test_stamp_round_trip(ns):
    """ns -> Time -> ns is exact; nanosec stays in [0, 1e9)."""
    t = messages.ns_to_stamp(ns)
    assert (t.sec, t.nanosec) == (ns // 1_000_000_000, ns % 1_000_000_000)
    assert messages.stamp_to_ns(t) == ns
    assert messages.stamp_is_zero(t) is (ns == 0)


def test_copy_header_is_independent():
    """copy_header keeps stamp and frame_id; changing the copy leaves the original."""
    h = Header(stamp=STAMP, frame_id=FRAME)
    c = messages.copy_header(h)
    c.stamp.sec = 5
    c.frame_id = "other"
    assert (h.stamp.sec, h.frame_id) == (1_700_000_000, FRAME)


# ---------------------------------------------------------------------------- builders
def test_rgb_image_msg_round_trip_and_header():
    """rgb8 Image: step = 3 W, header copied (not shared), decode gives the pixels back; bgr8 too."""
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    header = Header(stamp=STAMP, frame_id=FRAME)
    msg = messages.rgb_to_image_msg(rgb, header)
    assert (msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian) == (5, 7, "rgb8", 21, 0)
    assert msg.header == header and msg.header is not header
    np.testing.assert_array_equal(decode_image(msg), rgb)
    np.testing.assert_array_equal(decode_image(messages.rgb_to_image_msg(rgb, header, "bgr8")), rgb)
    with pytest.raises(ValueError):
        messages.rgb_to_image_msg(rgb[..., 0], header)


@pytest.mark.parametrize("encoding, step, atol", [("32FC1", 16, 0.0), ("16UC1", 8, 0.0005)])
def test_depth_image_msg_round_trip(encoding, step, atol):
    """Depth Image: 32FC1 metres / 16UC1 millimetres (REP 118); invalid (NaN, 0, < 0) -> NaN back."""
    d = np.array([[0.5, 1.234, np.nan, 0.0], [2.0, -1.0, 3.25, 0.7]])
    msg = messages.depth_to_image_msg(d, Header(frame_id=FRAME), encoding)
    assert (msg.encoding, msg.step, msg.height, msg.width, msg.header.frame_id) == (encoding, step, 2, 4, FRAME)
    out = decode_depth(msg)
    expected = np.where(np.isfinite(d) & (d > 0), d, np.nan)
    np.testing.assert_allclose(out, expected, atol=atol)
    assert np.array_equal(np.isnan(out), np.isnan(expected))
    with pytest.raises(ValueError):
        messages.depth_to_image_msg(d, None, "8UC1")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_msg_round_trip(fmt):
    """CompressedImage as compressed_image_transport writes it: 'rgb8; png compressed bgr8' decodes
    back exactly; JPEG (quality 95) of a flat colour within 3 levels."""
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:] = (200, 30, 90)
    msg = messages.rgb_to_compressed_msg(rgb, Header(stamp=STAMP, frame_id=FRAME), fmt)
    assert msg.format == f"rgb8; {fmt} compressed bgr8" and msg.header.stamp == STAMP
    out = decode_compressed(msg).astype(int)
    assert np.abs(out - rgb).max() <= (0 if fmt == "png" else 3)
    with pytest.raises(ValueError):
        messages.rgb_to_compressed_msg(rgb, None, "webp")


def test_camera_info_msg_fields():
    """CameraInfo builder: size, K, P = [K | 0], R = I, plumb_bob D = 0 by default; D / model given."""
    msg = messages.camera_info_msg(K, W, H, Header(stamp=STAMP, frame_id=FRAME))
    assert (msg.width, msg.height, msg.distortion_model) == (W, H, "plumb_bob")
    np.testing.assert_array_equal(np.asarray(msg.k).reshape(3, 3), K)
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4), np.hstack([K, np.zeros((3, 1))]))
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    assert list(msg.d) == [0.0] * 5 and msg.header.stamp == STAMP
    np.testing.assert_array_equal(messages.camera_info_to_K(msg), K)
    fish = messages.camera_info_msg(K, W, H, D=[0.1, 0.0, 0.0, 0.01], distortion_model="equidistant")
    assert list(fish.d) == [0.1, 0.0, 0.0, 0.01] and fish.distortion_model == "equidistant"
    model, why = messages.camera_info_to_model(fish, (H, W, 3))
    assert why == "" and model.family == "fisheye"
    with pytest.raises(ValueError):
        messages.camera_info_msg(np.eye(2), W, H)


# ---------------------------------------------------------------------------- grasp-ready outputs (issue 14)
def _segmented_result():
    """A detection with a 3x2-pixel mask at (12, 21) in a 40x30 image, two of its points with depth, a
    centre, an oriented extent and a 90-degree rotation about the optical z axis."""
    from clip_perception.segment import InstanceMask

    crop = np.array([[True, True, False], [False, True, True]])
    mask = InstanceMask(offset=(12, 21), crop=crop, image_size=(30, 40), method="depth",
                        points=np.array([[0.1, 0.2, 1.0], [-0.25, 0.5, 2.0]], np.float32),
                        pixels=np.array([[12, 21], [14, 22]], np.int32))
    s = np.sqrt(0.5)
    det = Detection(label="red box", score=0.9, confidence=0.8, box=np.array([12, 21, 15, 23], np.float32),
                    position=np.array([0.1, 0.2, 1.0]), size=np.array([0.12, 0.05, 0.04]), clip_score=0.7,
                    proposal_box=np.array([10.0, 20.0, 18.0, 26.0], np.float32),
                    orientation=np.array([0.0, 0.0, s, s]), position_is_centre=True, mask=mask, track_id=7)
    parse = parse_command("pick up the red box")
    return FrameResult(command=parse.first, parse=parse, detections=[det])


def test_detection_fields_proposal_roi_centre_flag_and_orientation():
    """Case: roi = the mask's tight box, proposal_roi = the ranked proposal, position_is_centre, orientation,
    and target_pose / the CUBE marker carry the orientation; without one: identity (w = 1)."""
    header = Header(stamp=STAMP, frame_id=FRAME)
    res = _segmented_result()
    d = messages.to_detection_array(res, header, "pick up the red box").detections[0]
    assert (d.roi.x_offset, d.roi.y_offset, d.roi.width, d.roi.height) == (12, 21, 3, 2)
    assert (d.proposal_roi.x_offset, d.proposal_roi.y_offset, d.proposal_roi.width, d.proposal_roi.height) == \
        (10, 20, 8, 6)
    assert d.position_is_centre is True
    s = float(np.sqrt(0.5))
    assert (d.orientation.x, d.orientation.y, d.orientation.z, d.orientation.w) == (0.0, 0.0, s, s)
    pose = messages.to_pose(res, header)
    assert (pose.pose.orientation.z, pose.pose.orientation.w) == (s, s)
    cube = messages.to_markers(res, header).markers[1]
    assert cube.type == Marker.CUBE and (cube.pose.orientation.z, cube.pose.orientation.w) == (s, s)
    assert (cube.scale.x, cube.scale.y, cube.scale.z) == pytest.approx((0.12, 0.05, 0.04))
    plain = messages.detection_to_msg(_result().detections[0])
    assert not plain.position_is_centre and plain.orientation.w == 1.0
    assert (plain.proposal_roi.x_offset, plain.proposal_roi.width) == (plain.roi.x_offset, plain.roi.width)


def test_target_mask_is_mono8_full_size_with_the_image_header():
    from clip_perception import messages_3d

    header = Header(stamp=STAMP, frame_id=FRAME)
    msg = messages_3d.to_target_mask(_segmented_result(), header, (30, 40))
    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == ("mono8", 30, 40, 40, 0)
    assert msg.header.stamp == STAMP and msg.header.frame_id == FRAME
    img = np.frombuffer(bytes(msg.data), np.uint8).reshape(30, 40)
    want = np.zeros((30, 40), np.uint8)
    want[21, 12:14] = want[22, 13:15] = 255
    np.testing.assert_array_equal(img, want)
    empty = messages_3d.to_target_mask(_result(), header, (30, 40))  # no mask: all zero, same size
    assert bytes(empty.data) == bytes(30 * 40)


def test_target_cloud_has_xyz_rgb_fields_packed_as_pcl():
    """Case: two mask points -> PointCloud2 x, y, z, rgb FLOAT32 at offsets 0/4/8/12, point_step 16, width 2,
    the points' metres and the colours of their pixels packed 0x00RRGGBB; no target -> width 0."""
    from sensor_msgs.msg import PointField

    from clip_perception import messages_3d

    header = Header(stamp=STAMP, frame_id=FRAME)
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[21, 12] = (255, 16, 1)
    rgb[22, 14] = (0, 128, 255)
    msg = messages_3d.to_target_cloud(_segmented_result(), header, rgb)
    assert msg.header.stamp == STAMP and msg.header.frame_id == FRAME
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == \
        [("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
         ("rgb", 12, PointField.FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense, msg.is_bigendian) == \
        (1, 2, 16, 32, True, False)
    data = np.frombuffer(bytes(msg.data), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")]))
    np.testing.assert_array_equal(np.stack([data["x"], data["y"], data["z"]], 1),
                                  np.array([[0.1, 0.2, 1.0], [-0.25, 0.5, 2.0]], np.float32))
    assert data["rgb"].tolist() == [0xFF1001, 0x0080FF]
    none = messages_3d.to_target_cloud(_result(), header, rgb)
    assert (none.width, len(none.data)) == (0, 0)


def _vision_stand_ins():
    """Stand-ins with the Humble layout of vision_msgs (Detection3DArray / Detection3D / BoundingBox3D /
    ObjectHypothesisWithPose), built from real geometry_msgs types: vision_msgs is not installed here."""
    from types import SimpleNamespace

    from geometry_msgs.msg import Pose, PoseWithCovariance, Vector3

    class Hyp:
        def __init__(self):
            self.hypothesis = SimpleNamespace(class_id="", score=0.0)
            self.pose = PoseWithCovariance()

    class Det3D:
        def __init__(self):
            self.header = Header()
            self.results = []
            self.bbox = SimpleNamespace(center=Pose(), size=Vector3())
            self.id = ""

    class Arr:
        def __init__(self):
            self.header = Header()
            self.detections = []

    return SimpleNamespace(Detection3DArray=Arr, Detection3D=Det3D, ObjectHypothesisWithPose=Hyp)


def test_detection3d_array_with_stand_ins_and_none_without_vision_msgs():
    from clip_perception import messages_3d

    header = Header(stamp=STAMP, frame_id=FRAME)
    res = _segmented_result()
    res.detections.append(_result().detections[0])  # no 3D position: not in the array
    arr = messages_3d.to_detection3d_array(res, header, _vision_stand_ins())
    assert arr.header.stamp == STAMP and arr.header.frame_id == FRAME and len(arr.detections) == 1
    d = arr.detections[0]
    assert d.header.frame_id == FRAME and d.id == "7"
    c = d.bbox.center
    assert (c.position.x, c.position.y, c.position.z) == (0.1, 0.2, 1.0)
    s = float(np.sqrt(0.5))
    assert (c.orientation.x, c.orientation.y, c.orientation.z, c.orientation.w) == (0.0, 0.0, s, s)
    assert (d.bbox.size.x, d.bbox.size.y, d.bbox.size.z) == (0.12, 0.05, 0.04)
    (hyp,) = d.results
    assert (hyp.hypothesis.class_id, hyp.hypothesis.score) == ("red box", pytest.approx(0.8))
    assert hyp.pose.pose.position.z == 1.0
    if not messages.HAVE_VISION_MSGS:
        assert messages_3d.to_detection3d_array(res, header) is None
