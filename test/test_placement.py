"""``clip_perception.placement``: the place point of a pick-and-place command, against the
simulator's known geometry (MuJoCo render: depth in metres, K, world pose of the camera)."""

from __future__ import annotations

import numpy as np
import pytest

import clip_perception.pipeline  # noqa: F401  torch/triton before MuJoCo (see sim/scene.py)
from clip_perception import placement as PL
from clip_perception.sim.scene import TABLE_HEIGHT, make_scene

BOX = dict(shape="box", color="blue", xy=(0.05, 0.05), size=(0.07, 0.05, 0.02), name="blue box")
CUP = dict(shape="cup", color="green", xy=(0.10, -0.15), size=(0.04, 0.045), name="green cup")
BALL = dict(shape="ball", color="red", xy=(-0.10, -0.05), size=(0.035,), name="red ball")
TOL = 0.02  # metres: the 2 cm


@pytest.fixture(scope="module")
def frame():
    scene = make_scene(objects=[BOX, CUP, BALL])
    try:
        yield scene.render()
    finally:
        scene.close()


def _to_optical(frame, p_world):
    T = np.asarray(frame.T_world_optical)
    return T[:3, :3].T @ (np.asarray(p_world, np.float64) - T[:3, 3])


def _object(frame, name):
    (obj,) = frame.find(name)
    return obj


def test_support_plane_is_the_table(frame):
    plane = PL.fit_support_plane(frame.depth, frame.K)
    assert plane is not None
    up_optical = np.asarray(frame.T_world_optical)[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    assert float(plane.normal @ up_optical) > 0.999
    table_point = _to_optical(frame, [0.2, 0.3, TABLE_HEIGHT])
    assert abs(float(plane.height(table_point[None])[0])) < 0.003


@pytest.mark.parametrize("relation", ["on", "in"])
def test_on_and_in_give_the_top_centre_of_the_destination(frame, relation):
    box = _object(frame, "blue box")
    res = PL.locate_place(relation, frame.depth, frame.K, box.box)
    top_world = [BOX["xy"][0], BOX["xy"][1], TABLE_HEIGHT + 2 * BOX["size"][2]]
    assert res.position is not None, res.reason
    assert np.linalg.norm(res.position - _to_optical(frame, top_world)) < TOL


def test_in_a_cup_gives_its_rim_centre(frame):
    cup = _object(frame, "green cup")
    res = PL.locate_place("in", frame.depth, frame.K, cup.box)
    rim_world = [CUP["xy"][0], CUP["xy"][1], TABLE_HEIGHT + 2 * CUP["size"][1]]
    assert np.linalg.norm(res.position - _to_optical(frame, rim_world)) < TOL


@pytest.mark.parametrize("relation, axis, sign", [
    ("left_of", 1, +1.0),      # image left is world +y
    ("right_of", 1, -1.0),
    ("in_front_of", 0, -1.0),  # the camera stands at -x
    ("behind", 0, +1.0),
])
def test_side_relations_put_it_on_the_table_beside_the_destination(frame, relation, axis, sign):
    box = _object(frame, "blue box")
    half_picked, margin = 0.035, 0.03
    res = PL.locate_place(relation, frame.depth, frame.K, box.box, picked_half_extent=half_picked, margin=margin)
    half_dest = BOX["size"][axis]
    expected = np.array([BOX["xy"][0], BOX["xy"][1], TABLE_HEIGHT])
    expected[axis] += sign * (half_dest + half_picked + margin)
    assert res.position is not None, res.reason
    assert np.linalg.norm(res.position - _to_optical(frame, expected)) < TOL


def test_next_to_goes_to_the_side_of_the_picked_object(frame):
    box, ball = _object(frame, "blue box"), _object(frame, "red ball")
    res = PL.locate_place("next_to", frame.depth, frame.K, box.box, picked_half_extent=0.035, margin=0.03,
                          picked_position=ball.center_optical)
    # The ball is at world y = -0.05 < 0.05: image right of the box, so the point is on the right.
    expected = [BOX["xy"][0], BOX["xy"][1] - (BOX["size"][1] + 0.035 + 0.03), TABLE_HEIGHT]
    assert np.linalg.norm(res.position - _to_optical(frame, expected)) < TOL


def test_no_depth_or_no_points_gives_no_place_point_with_a_reason(frame):
    box = _object(frame, "blue box")
    res = PL.locate_place("on", None, frame.K, box.box)
    assert res.position is None and "no depth" in res.reason
    empty_table = np.array([600.0, 440.0, 630.0, 470.0], np.float32)  # a patch of bare table
    res = PL.locate_place("on", frame.depth, frame.K, empty_table)
    assert res.position is None and "too few" in res.reason


def test_unknown_relation_raises():
    plane = PL.SupportPlane(normal=np.array([0.0, -1.0, 0.0]), offset=0.5)
    with pytest.raises(ValueError, match="unknown place relation"):
        PL.place_point("under", np.zeros((30, 3)), plane)
