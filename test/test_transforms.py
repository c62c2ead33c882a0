"""transforms.py (ROS-free): quaternion -> rotation, compose / inverse / apply with exact numbers,
unit-quaternion and camera_extrinsics validation, the static lookup, the tf2 adapter over a stand-in
tf2_ros (looked up at the image stamp, never "latest"), and a result expressed in the target frame."""

import sys
import types
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest

from clip_perception import transforms
from clip_perception.params import ParameterError, make_config, validate
from clip_perception.transforms import (RigidTransform, StaticTransform, express_result, make_lookup,
                                        parse_extrinsics, quaternion_multiply, quaternion_to_matrix, unit_quaternion)

S = np.sqrt(0.5)
#: A camera 0.6 m above the base origin, 0.3 m forward, looking straight down (README example):
#: optical z = base -z, optical x = base -y, so optical y = base -x.
DOWN = "0.3 0.0 0.6 0.7071068 -0.7071068 0.0 0.0"


def test_quaternion_to_matrix_exact():
    """Case: identity -> I; 90 deg about z (0, 0, sin 45, cos 45) maps x -> y, y -> -x; 180 deg about x
    (1, 0, 0, 0) flips y and z; all within 1e-15."""
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, 0, 1]), np.eye(3), atol=0)
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, S, S]), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(quaternion_to_matrix([1, 0, 0, 0]), np.diag([1.0, -1.0, -1.0]), atol=0)


def test_camera_looking_down_maps_optical_points_to_base_coordinates():
    """Case: the README extrinsics: a point 0.5 m in front of the camera is 0.1 m above the base origin under
    the camera, (0.3, 0, 0.1); optical (0.1, 0.2, 0.6) -> base (0.3 - 0.2, -0.1, 0.0); within 1e-6 m (the
    quaternion is given to 7 digits)."""
    t = parse_extrinsics(DOWN, "base_link")
    np.testing.assert_allclose(t.matrix, [[0, -1, 0], [-1, 0, 0], [0, 0, -1]], atol=1e-7)
    np.testing.assert_allclose(t.apply([0.0, 0.0, 0.5]), [0.3, 0.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(t.apply([[0.1, 0.2, 0.6], [0, 0, 0]]), [[0.1, -0.1, 0.0], [0.3, 0.0, 0.6]], atol=1e-6)
    assert (t.target_frame, t.source_frame) == ("base_link", "")


def test_compose_and_inverse():
    """Case: A <- B (translate (1, 2, 3)) after B <- C (90 deg about z, translate (0.5, 0, 0)) applied to p equals
    applying both in turn; T.compose(T.inverse()) is the identity; the quaternion product gives R(a) R(b)."""
    ab = RigidTransform([1.0, 2.0, 3.0], [0, 0, 0, 1], "A", "B")
    bc = RigidTransform([0.5, 0.0, 0.0], [0, 0, S, S], "B", "C")
    ac = ab.compose(bc)
    p = np.array([0.2, -0.4, 1.0])
    np.testing.assert_allclose(ac.apply(p), ab.apply(bc.apply(p)), atol=1e-15)
    np.testing.assert_allclose(ac.apply(p), [1.0 + 0.5 + 0.4, 2.0 + 0.2, 4.0], atol=1e-15)
    assert (ac.target_frame, ac.source_frame) == ("A", "C")
    ident = ac.compose(ac.inverse())
    np.testing.assert_allclose(ident.translation, 0.0, atol=1e-15)
    np.testing.assert_allclose(ident.matrix, np.eye(3), atol=1e-15)
    a, b = unit_quaternion([0.1, 0.2, 0.3, 0.9273618]), unit_quaternion([0, S, 0, S])
    np.testing.assert_allclose(quaternion_to_matrix(quaternion_multiply(a, b)),
                               quaternion_to_matrix(a) @ quaternion_to_matrix(b), atol=1e-15)


def test_rotate_orientation_into_the_target_frame():
    """Case: the identity orientation of the optical frame becomes the transform's rotation; an orientation
    of 90 deg about optical z becomes R_T * q (checked through the matrices)."""
    t = parse_extrinsics(DOWN, "base")
    np.testing.assert_allclose(t.rotate([0, 0, 0, 1]), t.rotation, atol=1e-15)
    q = [0, 0, S, S]
    np.testing.assert_allclose(quaternion_to_matrix(t.rotate(q)), t.matrix @ quaternion_to_matrix(q), atol=1e-12)


@pytest.mark.parametrize("text,reason", [
    ("0 0 0 0 0 0", "7 numbers"),
    ("0 0 0 0 0 0 1 5", "7 numbers"),
    ("a b c 0 0 0 1", "7 numbers"),
    ("0 0 nan 0 0 0 1", "7 numbers"),
    ("0 0 0 0 0 0 2", "not unit length"),
    ("0 0 0 0 0 0 0", "not unit length"),
])
def test_extrinsics_rejected_with_reason(text, reason):
    """Case: a bad camera_extrinsics string raises ValueError naming the problem, and the parameter table
    rejects it (ParameterError) at start-up."""
    with pytest.raises(ValueError, match=reason):
        parse_extrinsics(text)
    with pytest.raises(ParameterError, match=reason):
        validate("camera_extrinsics", text)


def test_extrinsics_accepted_forms():
    """Case: commas work as separators; a quaternion off unit length by < 1e-3 is normalised; the defaults
    are off ('' target_frame, '' extrinsics, 0.1 s timeout)."""
    t = parse_extrinsics("1, 2, 3, 0, 0, 0, 1.0005")
    np.testing.assert_allclose(t.rotation, [0, 0, 0, 1], atol=0)
    np.testing.assert_allclose(t.translation, [1, 2, 3], atol=0)
    cfg = make_config({})
    assert (cfg.target_frame, cfg.camera_extrinsics, cfg.transform_timeout) == ("", "", 0.1)
    assert make_config({"camera_extrinsics": DOWN, "target_frame": "base"}).camera_extrinsics == DOWN


def test_static_lookup_answers_its_target_only():
    """Case: StaticTransform gives the extrinsics (frames named) at any stamp, refuses another target and,
    when bound to a camera frame, another source frame, with a reason."""
    static = StaticTransform(parse_extrinsics(DOWN, "base"))
    t, why = static.lookup("base", "cam_optical", 0)
    assert why == "" and (t.target_frame, t.source_frame) == ("base", "cam_optical")
    np.testing.assert_allclose(t.apply([0, 0, 0.5]), [0.3, 0.0, 0.1], atol=1e-6)
    t, why = static.lookup("map", "cam_optical", 5)
    assert t is None and "not map" in why
    bound = StaticTransform(parse_extrinsics(DOWN, "base"), source_frame="left_optical")
    assert bound.lookup("base", "right_optical", 5)[0] is None


def test_make_lookup_sources(monkeypatch):
    """Case: off without target_frame; static extrinsics when given (refused for two cameras); without
    extrinsics and without tf2_ros: none, with the reason."""
    assert make_lookup(None, "", "", 0.1) == (None, "")
    lookup, about = make_lookup(None, "base", DOWN, 0.1)
    assert isinstance(lookup, StaticTransform) and "static" in about
    lookup, about = make_lookup(None, "base", DOWN, 0.1, cameras=2)
    assert lookup is None and "one camera" in about
    monkeypatch.setitem(sys.modules, "tf2_ros", None)  # import tf2_ros -> ImportError
    lookup, about = make_lookup(None, "base", "", 0.1)
    assert lookup is None and "tf2_ros is not installed" in about


class _FakeBuffer:
    """Stands in for tf2_ros.Buffer: records the lookups, answers one transform or raises."""

    answer = None
    calls: list = []

    def lookup_transform(self, target, source, time, timeout=None):
        self.calls.append((target, source, time.nanoseconds, timeout.nanoseconds))
        if self.answer is None:
            raise LookupError(f'"{target}" passed to lookupTransform argument target_frame does not exist')
        return self.answer


def test_tf2_adapter_looks_up_at_the_image_stamp(monkeypatch):
    """Case: the adapter asks the buffer at the image stamp (ns) with the timeout, converts the
    TransformStamped; a zero stamp is refused without asking (tf2 would answer the latest); a tf2 exception
    is None with its message."""
    fake = types.ModuleType("tf2_ros")
    fake.Buffer = _FakeBuffer
    fake.TransformListener = lambda buffer, node: types.SimpleNamespace(unregister=lambda: None)
    monkeypatch.setitem(sys.modules, "tf2_ros", fake)
    _FakeBuffer.calls = []
    lookup, about = make_lookup(object(), "base", "", 0.25)
    assert isinstance(lookup, transforms.Tf2Lookup) and "tf2" in about
    v = types.SimpleNamespace
    _FakeBuffer.answer = v(transform=v(translation=v(x=0.3, y=0.0, z=0.6),
                                       rotation=v(x=0.7071068, y=-0.7071068, z=0.0, w=0.0)))
    t, why = lookup.lookup("base", "cam", 1_700_000_000_000_000_123)
    assert why == "" and _FakeBuffer.calls == [("base", "cam", 1_700_000_000_000_000_123, 250_000_000)]
    np.testing.assert_allclose(t.apply([0, 0, 0.5]), [0.3, 0.0, 0.1], atol=1e-6)
    t, why = lookup.lookup("base", "cam", 0)
    assert t is None and "zero" in why and len(_FakeBuffer.calls) == 1
    _FakeBuffer.answer = None
    t, why = lookup.lookup("base", "cam", 5)
    assert t is None and "LookupError" in why and "does not exist" in why
    lookup.close()


@dataclass
class _Det:
    position: Optional[np.ndarray]
    orientation: Optional[np.ndarray] = None


def test_express_result_moves_every_position():
    """Case: detections (one without 3D), destination detections and the place point move into the target
    frame; the best detection's orientation (identity when it has none) is rotated."""
    t = parse_extrinsics(DOWN, "base")
    result = types.SimpleNamespace(
        detections=[_Det(np.array([0.0, 0.0, 0.5])), _Det(None)],
        destination_detections=[_Det(np.array([0.1, 0.2, 0.6]))],
        place=types.SimpleNamespace(position=np.array([0.1, 0.2, 0.6])))
    framed = express_result(result, t)
    assert framed.frame == "base"
    np.testing.assert_allclose(framed.detections[0], [0.3, 0.0, 0.1], atol=1e-6)
    assert framed.detections[1] is None
    np.testing.assert_allclose(framed.destinations[0], [0.1, -0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(framed.place, [0.1, -0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(framed.orientation, t.rotation, atol=1e-15)
    result.detections[0].orientation = np.array([0, 0, S, S])
    np.testing.assert_allclose(express_result(result, t).orientation, t.rotate([0, 0, S, S]), atol=1e-15)
    empty = express_result(types.SimpleNamespace(detections=[], place=None), t)
    assert (empty.detections, empty.destinations, empty.place, empty.orientation) == ([], [], None, None)
