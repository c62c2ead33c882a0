"""Pick-and-place through :class:`pipeline.Detector`: both objects grounded on one frame, the
place point against the simulator's geometry, exclusions ("no, the other one"), and stop.

Encoder: ``ColorTestEncoder`` (test/fake_encoders.py: a crop's embedding is its dominant colour),
so the answers are known; the scene is a MuJoCo render with depth and K."""

from __future__ import annotations

import numpy as np
import pytest

import clip_perception.pipeline  # noqa: F401  torch/triton before MuJoCo (see sim/scene.py)
from clip_perception.boxes import box_iou
from clip_perception.params import make_config
from clip_perception.pipeline import Detector
from clip_perception.sim.scene import TABLE_HEIGHT, make_scene
from fake_encoders import ColorTestEncoder

BOX = dict(shape="box", color="blue", xy=(0.05, 0.10), size=(0.06, 0.05, 0.02), name="blue box")
CUP = dict(shape="cup", color="green", xy=(0.12, -0.17), size=(0.04, 0.045), name="green cup")
BALL = dict(shape="ball", color="red", xy=(-0.10, -0.02), size=(0.03,), name="red ball")
BALL2 = dict(shape="ball", color="red", xy=(0.02, -0.22), size=(0.03,), name="red ball 2")
TOL = 0.02  # metres (the 2 cm)


@pytest.fixture(scope="module")
def frame():
    scene = make_scene(objects=[BOX, CUP, BALL, BALL2])
    try:
        yield scene.render()
    finally:
        scene.close()


@pytest.fixture(scope="module")
def detector():
    return Detector(make_config({"color_prior_weight": 0.5, "mode": "crop"}).detector, encoder=ColorTestEncoder())


def _optical(frame, p_world):
    T = np.asarray(frame.T_world_optical)
    return T[:3, :3].T @ (np.asarray(p_world, np.float64) - T[:3, 3])


def _iou(a, b):
    return float(box_iou(np.asarray(a, np.float32)[None], np.asarray(b, np.float32)[None])[0, 0])


def _truth(frame, name):
    (obj,) = frame.find(name)
    return obj


def test_put_the_ball_on_the_box_grounds_both_and_places_on_top(frame, detector):
    res = detector.detect(frame.rgb, "put the red ball on the blue box", depth=frame.depth, K=frame.K)
    assert res.intent == "pick_place"
    assert res.command.target == "red ball" and res.command.destination.target == "blue box"
    assert res.command.destination_relation == "on"
    assert res.best is not None and res.destination_detections
    balls = [_truth(frame, "red ball").box, _truth(frame, "red ball 2").box]
    assert max(_iou(res.best.box, b) for b in balls) >= 0.5
    assert _iou(res.destination_detections[0].box, _truth(frame, "blue box").box) >= 0.5
    top = [BOX["xy"][0], BOX["xy"][1], TABLE_HEIGHT + 2 * BOX["size"][2]]
    assert res.place.position is not None
    assert np.linalg.norm(res.place.position - _optical(frame, top)) < TOL
    assert res.summary().startswith("found red ball at ") and "; place: on the blue box at " in res.summary()


def test_put_it_in_the_cup_and_beside_relations(frame, detector):
    res = detector.detect(frame.rgb, "drop the blue box into the green cup", depth=frame.depth, K=frame.K)
    rim = [CUP["xy"][0], CUP["xy"][1], TABLE_HEIGHT + 2 * CUP["size"][1]]
    assert np.linalg.norm(res.place.position - _optical(frame, rim)) < TOL
    res = detector.detect(frame.rgb, "place the green cup to the left of the blue box", depth=frame.depth, K=frame.K)
    assert res.command.destination_relation == "left_of"
    half_cup = 0.5 * max(res.best.size[0], res.best.size[1])
    clearance = BOX["size"][1] + half_cup + 0.03  # image left is world +y
    beside = [BOX["xy"][0], BOX["xy"][1] + clearance, TABLE_HEIGHT]
    assert np.linalg.norm(res.place.position - _optical(frame, beside)) < TOL


def test_missing_destination_is_reported_apart_from_the_pick(frame, detector):
    res = detector.detect(frame.rgb, "put the red ball in the yellow bowl", depth=frame.depth, K=frame.K)
    assert res.best is not None  # the pick part is found
    assert res.destination_detections == [] and res.place is None
    assert res.summary().endswith("; place: no yellow bowl in view")


def test_without_depth_there_is_a_destination_but_no_place_point(frame, detector):
    res = detector.detect(frame.rgb, "put the red ball on the blue box")
    assert res.destination_detections and res.place.position is None
    assert "no depth" in res.place.reason
    assert res.summary().endswith("; place: on the blue box (no 3D position)")


def test_the_picked_object_is_never_its_own_destination(frame, detector):
    res = detector.detect(frame.rgb, "stack the red ball on the red ball", depth=frame.depth, K=frame.K)
    assert res.best is not None and res.destination_detections
    assert all(_iou(d.box, res.best.box) < 0.5 for d in res.destination_detections)


def test_exclusion_moves_the_target_to_the_other_red_ball(frame, detector):
    first = detector.detect(frame.rgb, "pick up the red ball", depth=frame.depth, K=frame.K).best
    excluded = first.box.copy()
    res = detector.detect(frame.rgb, "pick up the red ball", depth=frame.depth, K=frame.K,
                          exclude=lambda boxes: box_iou(boxes, excluded[None])[:, 0] >= 0.5)
    balls = {n: _truth(frame, n).box for n in ("red ball", "red ball 2")}
    which_first = max(balls, key=lambda n: _iou(first.box, balls[n]))
    other = "red ball 2" if which_first == "red ball" else "red ball"
    assert _iou(res.best.box, balls[other]) >= 0.5


def test_stop_text_gives_no_command_and_intent_stop(frame, detector):
    res = detector.detect(frame.rgb, "stop", depth=frame.depth, K=frame.K)
    assert res.command is None and res.detections == [] and res.intent == "stop"
    assert res.summary() == "stopped"
