"""ranking.py on synthetic scenes with known answers (test encoders from fake_encoders.py).

Scenes are filled rectangles / circles drawn with OpenCV on a grey (128, 128, 128)
"table"; the proposals are the exact object boxes plus table-only boxes.  Most cases rank
through ``pipeline.rank_boxes`` (prepare -> embed -> rank, the Detector's path for given
boxes); the last ones call the pure ``ranking`` functions on hand-made embeddings.
"""

import cv2
import numpy as np
import pytest

from clip_perception import ranking
from clip_perception.command import ParsedCommand, parse_command
from clip_perception.params import PARAMETERS, ParameterError, RankingConfig
from clip_perception.pipeline import rank_boxes as rank
from clip_perception.types import Detection, Timings
from fake_encoders import ColorTestEncoder, ConstantEncoder, SlowEncoder

H, W = 480, 640
TABLE = (128, 128, 128)
RED, GREEN, BLUE = (255, 0, 0), (0, 200, 0), (0, 0, 255)
WHITE, ORANGE, PURPLE = (255, 255, 255), (255, 165, 0), (128, 0, 128)
# table-only proposals (grey): must never be reported
TABLE_BOXES = [[0, 0, 60, 60], [560, 400, 640, 480], [250, 420, 330, 470]]


def cfg(**kw):
    base = dict(score_threshold=0.5, color_prior_weight=0.3, relation_weight=0.5, top_k=5, mode="crop",
                cascade_top_k=10, negative_prompts=list(PARAMETERS["negative_prompts"].default))
    base.update(kw)
    return RankingConfig(**base)


def scene(rects):
    """rects: list of (x1, y1, x2, y2, rgb); returns (image, boxes incl. table boxes) -- object i = box i."""
    img = np.full((H, W, 3), TABLE, np.uint8)
    for x1, y1, x2, y2, c in rects:
        img[y1:y2, x1:x2] = c
    boxes = np.array([r[:4] for r in rects] + TABLE_BOXES, np.float32)
    return img, boxes


def cmd(text):
    res = parse_command(text)
    assert res.status == "ok", res
    return res.first


def best_index(result, boxes):
    assert result.detections, result.notes
    return int(np.flatnonzero((boxes == result.detections[0].box).all(1))[0])


def picked(result, boxes):
    return [int(np.flatnonzero((boxes == d.box).all(1))[0]) for d in result.detections]


# ---------------------------------------------------------------------------------------------
# CLIP score, colour prior and fusion
# ---------------------------------------------------------------------------------------------


def test_colour_prior_alone_picks_red_ball():
    """Case: w = 1 with ConstantEncoder (CLIP ties): the colour prior alone picks the red ball of red/blue/green."""
    img = np.full((H, W, 3), TABLE, np.uint8)
    centres = [(150, 240, BLUE), (320, 240, RED), (490, 240, GREEN)]
    for x, y, c in centres:
        cv2.circle(img, (x, y), 40, c, -1)
    boxes = np.array([[x - 40, y - 40, x + 41, y + 41] for x, y, _ in centres] + TABLE_BOXES, np.float32)
    res = rank(img, boxes, None, cmd("pick up the red ball"), ConstantEncoder(), cfg(color_prior_weight=1.0))
    assert picked(res, boxes) == [1]
    x1, y1, x2, y2 = boxes[1].astype(int)
    expected = float((img[y1:y2, x1:x2] == RED).all(-1).mean())  # red pixels / box pixels, counted directly
    det = res.detections[0]
    assert det.confidence == pytest.approx(expected, abs=1e-6) and det.color_score == pytest.approx(expected)
    assert 0.75 < expected < 0.8  # a disc fills pi/4 of its box
    assert det.clip_score == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(res.fused, res.color_score, atol=1e-6)


def test_clip_alone_with_colour_encoder_picks_named_colour():
    """Case: w = 0, ColorTestEncoder: 'the blue cube' -> the blue one; p(target) ~ 1 for blue, ~ 0 otherwise."""
    img, boxes = scene([(100, 200, 160, 260, RED), (300, 200, 360, 260, BLUE), (500, 200, 560, 260, GREEN)])
    res = rank(img, boxes, None, cmd("the blue cube"), ColorTestEncoder(), cfg(color_prior_weight=0.0))
    assert picked(res, boxes) == [1]
    assert res.clip_prob[1] > 0.999
    assert np.all(np.delete(res.clip_prob, 1) < 1e-3)


def test_weight_zero_is_pure_clip_and_one_is_colour_only():
    """Case: w = 0 ignores the colour prior (fused == clip), w = 1 uses only it, w = 0.5 is the convex blend.

    Block A is blue with a red centre (the colour encoder calls it red; 25 % red pixels);
    block B is red with a blue centre (encoder: blue; 75 % red pixels).
    """
    img = np.full((H, W, 3), TABLE, np.uint8)
    img[150:250, 100:200] = BLUE
    img[175:225, 125:175] = RED
    img[150:250, 400:500] = RED
    img[175:225, 425:475] = BLUE
    boxes = np.array([[100, 150, 200, 250], [400, 150, 500, 250]] + TABLE_BOXES, np.float32)
    c = cmd("the red block")
    enc = ColorTestEncoder()
    r0 = rank(img, boxes, None, c, enc, cfg(color_prior_weight=0.0, score_threshold=0.1))
    assert picked(r0, boxes) == [0]
    np.testing.assert_array_equal(r0.fused, r0.clip_prob)
    np.testing.assert_allclose(r0.color_score[:2], [0.25, 0.75], atol=1e-6)
    r1 = rank(img, boxes, None, c, enc, cfg(color_prior_weight=1.0, score_threshold=0.1))
    assert picked(r1, boxes) == [1, 0]
    np.testing.assert_allclose(r1.fused, r1.color_score, atol=1e-6)
    rh = rank(img, boxes, None, c, enc, cfg(color_prior_weight=0.5, score_threshold=0.1))
    np.testing.assert_allclose(rh.fused, 0.5 * rh.clip_prob + 0.5 * rh.color_score, atol=1e-6)
    assert picked(rh, boxes) == [0, 1]  # 0.5 * 1 + 0.5 * 0.25 = 0.625 > 0.5 * 0 + 0.5 * 0.75 = 0.375


def test_two_colours_sum_of_fractions():
    """Case: 'the red and white mug': colour score = red + white pixel fraction (a half red, half white box -> 1)."""
    img = np.full((H, W, 3), TABLE, np.uint8)
    img[100:200, 100:150] = RED
    img[100:200, 150:200] = WHITE
    img[100:200, 400:500] = RED
    boxes = np.array([[100, 100, 200, 200], [400, 100, 500, 200], [100, 300, 200, 400]], np.float32)
    res = rank(img, boxes, None, cmd("the red and white mug"), ConstantEncoder(), cfg(color_prior_weight=1.0))
    np.testing.assert_allclose(res.color_score, [1.0, 1.0, 0.0], atol=1e-6)
    assert picked(res, boxes) == [0, 1]


def test_nothing_matching_is_not_found():
    """Case: 'the purple ball' when no object is purple -> empty result (honest not found), with a note."""
    img, boxes = scene([(100, 200, 160, 260, RED), (300, 200, 360, 260, BLUE), (500, 200, 560, 260, GREEN)])
    res = rank(img, boxes, None, cmd("pick up the purple ball"), ColorTestEncoder(), cfg())
    assert res.detections == [] and not res and len(res) == 0
    assert np.all(res.clip_prob < 1e-3) and np.all(res.fused < 0.01)
    assert any("score_threshold" in n for n in res.notes)


def test_threshold_change_changes_result():
    """Case: fractions 1.0 / 0.5 / 0.25 red (w = 1): threshold 0.9 -> 1, 0.45 -> 2, 0.2 -> 3 detections."""
    img = np.full((H, W, 3), TABLE, np.uint8)
    img[100:200, 50:150] = RED
    img[100:200, 250:350] = BLUE
    img[100:200, 250:300] = RED
    img[100:200, 450:550] = BLUE
    img[100:150, 450:500] = RED
    boxes = np.array([[50, 100, 150, 200], [250, 100, 350, 200], [450, 100, 550, 200]], np.float32)
    c, enc = cmd("the red box"), ConstantEncoder()
    expect = {0.9: [0], 1.0: [0], 0.45: [0, 1], 0.5: [0, 1], 0.2: [0, 1, 2], 0.0: [0, 1, 2]}
    for thr, idx in expect.items():
        res = rank(img, boxes, None, c, enc, cfg(color_prior_weight=1.0, score_threshold=thr))
        assert picked(res, boxes) == idx, thr
        np.testing.assert_allclose([d.confidence for d in res], [1.0, 0.5, 0.25][:len(idx)], atol=1e-6)


def test_confidence_always_in_unit_interval():
    """Case: random scenes, boxes (degenerate / outside), weights, thresholds, encoders: all scores in [0, 1]."""
    rng = np.random.default_rng(7)
    texts = ["the red ball", "find the blue cup on the left", "the nearest green block", "grab the ball",
             "the cup next to the red plate", "the red and white mug", "the largest box"]
    for seed in range(25):
        img = np.full((120, 160, 3), TABLE, np.uint8)
        for _ in range(5):
            x, y = rng.integers(0, 150), rng.integers(0, 110)
            img[y:y + rng.integers(5, 40), x:x + rng.integers(5, 40)] = rng.integers(0, 256, 3)
        n = int(rng.integers(0, 30))
        xy = rng.uniform(-40, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(-5, 80, (n, 2))], 1).astype(np.float32)
        depth = rng.uniform(0.3, 3.0, (120, 160)).astype(np.float32) if seed % 2 else None
        enc = ColorTestEncoder(logit_scale=float(rng.uniform(1, 100))) if seed % 3 else \
            ConstantEncoder(target_cos=float(rng.uniform(-1, 1)))
        conf = cfg(color_prior_weight=float(rng.uniform()), score_threshold=float(rng.uniform(0, 0.6)),
                   relation_weight=float(rng.uniform()))
        c = cmd(texts[seed % len(texts)])
        res = rank(img, boxes, rng.uniform(size=n), c, enc, conf, depth=depth)
        for arr in (res.clip_prob, res.fused) + (() if res.color_score is None else (res.color_score,)):
            assert arr.shape == (n,) and arr.dtype == np.float32
            assert np.all((arr >= 0) & (arr <= 1))
        for d in res:
            assert 0.0 <= d.confidence <= 1.0 and d.score == d.confidence
            assert d.confidence >= conf.score_threshold
        if c.spatial is None and c.relation is None:
            confs = [d.confidence for d in res]
            assert confs == sorted(confs, reverse=True)


# ---------------------------------------------------------------------------------------------
# Spatial qualifiers
# ---------------------------------------------------------------------------------------------

THREE = [(100, 150, 160, 210, RED), (300, 300, 360, 360, RED), (500, 220, 560, 280, RED)]


@pytest.mark.parametrize("text,expected", [
    ("the red block on the left", 0),
    ("the leftmost block", 0),
    ("the rightmost red block", 2),
    ("the block on the right", 2),
    ("the second red block from the left", 1),
    ("the second block from the right", 1),
    ("the third block from the right", 0),
    ("the red block in the middle", 1),
    ("the top block", 0),
    ("the block at the bottom", 1),
])
def test_spatial_among_identical_objects(text, expected):
    """Case: left/right/ordinal/middle/top/bottom pick the right one of three identical red blocks."""
    img, boxes = scene(THREE)
    res = rank(img, boxes, None, cmd(text), ColorTestEncoder(), cfg())
    assert best_index(res, boxes) == expected
    assert sorted(picked(res, boxes)) == [0, 1, 2]  # the others follow


def test_spatial_with_constant_encoder_ties():
    """Case: ConstantEncoder (all CLIP scores equal): 'the cup on the right' is decided by geometry alone."""
    img, boxes = scene(THREE)
    res = rank(img, boxes[:3], None, cmd("the cup on the right"), ConstantEncoder(), cfg())
    assert best_index(res, boxes) == 2


def test_ordinal_beyond_candidates_not_found():
    """Case: 'the fourth block from the left' with three blocks -> empty (not found), with a note."""
    img, boxes = scene(THREE)
    res = rank(img, boxes, None, cmd("the fourth block from the left"), ColorTestEncoder(), cfg())
    assert res.detections == []
    assert any("only 3 candidate" in n for n in res.notes)


@pytest.mark.parametrize("text,expected", [("pick up the largest box", 1), ("the biggest red box", 1),
                                           ("the smallest box", 0), ("the second largest box", 2)])
def test_largest_smallest_by_area(text, expected):
    """Case: largest/smallest/second largest by box area (40, 80 and 60 pixel squares)."""
    img, boxes = scene([(100, 200, 140, 240, RED), (300, 200, 380, 280, RED), (500, 200, 560, 260, RED)])
    res = rank(img, boxes, None, cmd(text), ColorTestEncoder(), cfg())
    assert best_index(res, boxes) == expected


def _depth_for(boxes_depth, holes=True):
    depth = np.full((H, W), 2.0, np.float32)
    for (x1, y1, x2, y2), z in boxes_depth:
        depth[y1:y2, x1:x2] = z
        if holes:
            depth[y1:y1 + 5, x1:x2] = np.nan  # invalid pixels are ignored by the median
    return depth


@pytest.mark.parametrize("text,expected", [("bring me the nearest can", 1), ("the farthest can", 0),
                                           ("the second nearest can", 2), ("the can closest to me", 1)])
def test_nearest_farthest_by_depth(text, expected):
    """Case: three identical red cans at 1.5 / 0.8 / 1.2 m: nearest, farthest, second nearest by median depth."""
    img, boxes = scene(THREE)
    depth = _depth_for([(r[:4], z) for r, z in zip(THREE, (1.5, 0.8, 1.2))])
    res = rank(img, boxes, None, cmd(text), ColorTestEncoder(), cfg(), depth=depth)
    assert best_index(res, boxes) == expected


@pytest.mark.parametrize("depth", [None, np.full((H, W), np.nan, np.float32), np.ones((10, 10), np.float32)],
                         ids=["no-depth", "all-nan", "wrong-size"])
def test_nearest_without_depth_falls_back(depth):
    """Case: 'nearest' without usable depth keeps CLIP order (all candidates, no crash) and notes why."""
    img, boxes = scene(THREE)
    res = rank(img, boxes, np.array([0.1, 0.9, 0.5, 0, 0, 0], np.float32), cmd("the nearest can"),
               ColorTestEncoder(), cfg(), depth=depth)
    assert picked(res, boxes) == [1, 2, 0]  # ties broken by objectness
    assert any("depth" in n for n in res.notes)


def test_near_duplicates_suppressed():
    """Case: a second box on the same block (IoU 0.8) is suppressed by NMS; a half of the other block
    (IoU 0.5, not above DUPLICATE_IOU) is dropped as a part: all of it lies inside a better box."""
    img, boxes = scene([(100, 200, 200, 300, RED), (400, 200, 500, 300, RED)])
    extra = np.array([[100, 200, 180, 300], [400, 200, 450, 300]], np.float32)  # IoU 0.8 and 0.5
    all_boxes = np.concatenate([boxes, extra])
    res = rank(img, all_boxes, None, cmd("the red block"), ColorTestEncoder(), cfg(top_k=10))
    idx = picked(res, all_boxes)
    assert sorted(idx) == [0, 1]  # IoU 0.8 duplicate (5) and contained half (6) dropped


# ---------------------------------------------------------------------------------------------
# Reference objects (ReCLIP-style)
# ---------------------------------------------------------------------------------------------


def test_next_to_red_plate():
    """Case: 'the cup next to the red plate': of two blue cups the one nearer the plate; plate not reported."""
    img, boxes = scene([(100, 220, 150, 270, BLUE), (380, 200, 480, 300, RED), (520, 220, 570, 270, BLUE)])
    res = rank(img, boxes, None, cmd("grab the cup next to the red plate"), ColorTestEncoder(), cfg())
    assert best_index(res, boxes) == 2
    assert 1 not in picked(res, boxes)
    np.testing.assert_array_equal(res.reference.box, boxes[1])
    assert res.reference.label == "red plate"


@pytest.mark.parametrize("text,expected", [("the block left of the blue box", 0),
                                           ("the block to the right of the blue box", 2),
                                           ("the block near the blue box", 2)])
def test_left_right_of_blue_box(text, expected):
    """Case: 'left of' picks the block on the left even though the right one is nearer; 'near' picks the nearer."""
    img, boxes = scene([(90, 210, 150, 270, GREEN), (290, 200, 350, 280, BLUE), (390, 210, 450, 270, GREEN)])
    res = rank(img, boxes, None, cmd(text), ColorTestEncoder(), cfg())
    assert best_index(res, boxes) == expected


@pytest.mark.parametrize("text,expected", [("the block above the blue box", 0), ("the block below the blue box", 2)])
def test_above_below(text, expected):
    """Case: above/below by box centre y relative to the reference."""
    img, boxes = scene([(300, 60, 360, 120, GREEN), (290, 200, 370, 280, BLUE), (300, 380, 360, 440, GREEN)])
    res = rank(img, boxes, None, cmd(text), ColorTestEncoder(), cfg())
    assert best_index(res, boxes) == expected


def test_ball_on_the_plate():
    """Case: 'the ball on the white plate': the orange ball inside the plate, not the one on the table."""
    img, boxes = scene([(300, 250, 500, 350, WHITE), (100, 270, 140, 310, ORANGE)])
    img[270:310, 380:420] = ORANGE
    boxes = np.concatenate([boxes, np.array([[380, 270, 420, 310]], np.float32)])
    res = rank(img, boxes, None, cmd("the ball on the white plate"), ColorTestEncoder(), cfg())
    assert best_index(res, boxes) == len(boxes) - 1


def test_in_front_of_behind_depth_and_image_y():
    """Case: 'in front of': without depth the can lower in the image; with depth the nearer can (even if higher)."""
    img, boxes = scene([(300, 90, 340, 150, ORANGE), (280, 210, 360, 270, RED), (300, 360, 340, 420, ORANGE)])
    c_front, c_behind = cmd("the can in front of the red box"), cmd("the can behind the red box")
    enc = ColorTestEncoder()
    assert best_index(rank(img, boxes, None, c_front, enc, cfg()), boxes) == 2
    assert best_index(rank(img, boxes, None, c_behind, enc, cfg()), boxes) == 0
    depth = _depth_for([(boxes[0].astype(int), 0.5), (boxes[1].astype(int), 1.0), (boxes[2].astype(int), 1.5)])
    assert best_index(rank(img, boxes, None, c_front, enc, cfg(), depth=depth), boxes) == 0
    assert best_index(rank(img, boxes, None, c_behind, enc, cfg(), depth=depth), boxes) == 2


def test_missing_reference_not_found():
    """Case: 'the cup next to the purple plate' with no purple object -> empty, note names the reference."""
    img, boxes = scene([(100, 220, 150, 270, BLUE), (380, 200, 480, 300, RED)])
    res = rank(img, boxes, None, cmd("the cup next to the purple plate"), ColorTestEncoder(), cfg())
    assert res.detections == [] and res.reference is None
    assert any("purple plate" in n and "not found" in n for n in res.notes)


def test_no_candidate_on_that_side():
    """Case: 'the block left of the blue box' when the only block is on the right -> empty."""
    img, boxes = scene([(290, 200, 350, 280, BLUE), (390, 210, 450, 270, GREEN)])
    res = rank(img, boxes, None, cmd("the block left of the blue box"), ColorTestEncoder(), cfg())
    assert res.detections == []


def test_reference_detections_given():
    """Case: a supplied reference detection (e.g. from tracking) replaces scoring the reference phrase."""
    img, boxes = scene([(100, 220, 150, 270, BLUE), (380, 200, 480, 300, RED), (520, 220, 570, 270, BLUE)])
    ref = Detection(label="red plate", score=1.0, confidence=1.0, box=np.array([40, 220, 90, 270], np.float32))
    res = rank(img, boxes, None, cmd("grab the cup next to the red plate"), ColorTestEncoder(), cfg(),
               reference_detections=[ref])
    assert best_index(res, boxes) == 0
    assert res.reference is ref


# ---------------------------------------------------------------------------------------------
# Output, modes, config, errors
# ---------------------------------------------------------------------------------------------


def test_top_k_label_and_fields():
    """Case: top_k limits the list; label = target; box float32 copy; colour score None without a colour word."""
    img, boxes = scene(THREE)
    res = rank(img, boxes, None, cmd("the red block"), ColorTestEncoder(), cfg(top_k=2))
    assert len(res) == 2 and [d.label for d in res] == ["red block", "red block"]
    d = res[0]
    assert d.box.dtype == np.float32 and d.position is None and d.color_score == pytest.approx(1.0)
    res2 = rank(img, boxes, None, cmd("the block"), ColorTestEncoder(), cfg())
    assert res2.color_score is None and all(d.color_score is None for d in res2)
    np.testing.assert_array_equal(res2.fused, res2.clip_prob)
    assert len(res2.order) == 3 and res2.best is res2.detections[0]


def test_string_command_timings_and_defaults():
    """Case: a command string is parsed; timings get encode stages; config=None uses the DEFAULT_* values."""
    img, boxes = scene(THREE)
    t = Timings()
    res = rank(img, boxes, None, "pick up the red block on the right", ColorTestEncoder(), None, timings=t)
    assert best_index(res, boxes) == 2
    assert {"encode_text", "encode_boxes", "color_prior"} <= set(t.stages_ms)


def test_slow_encoder_wraps():
    """Case: SlowEncoder delegates to its inner encoder (same ranking) and counts calls."""
    img, boxes = scene(THREE)
    slow = SlowEncoder(ColorTestEncoder(), 0.0)
    res = rank(img, boxes, None, cmd("the red block on the left"), slow, cfg())
    assert best_index(res, boxes) == 0 and slow.box_calls == 1 and slow.logit_scale == 100.0


def test_no_proposals_and_errors():
    """Case: no proposals -> empty result; empty target / bad weight / bad mode / bad boxes -> ValueError."""
    img, _ = scene(THREE)
    enc = ColorTestEncoder()
    res = rank(img, np.zeros((0, 4), np.float32), None, cmd("the red block"), enc, cfg())
    assert res.detections == [] and enc.calls["boxes"] == 0
    c = cmd("the red block")
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    with pytest.raises(ValueError):
        rank(img, boxes, None, ParsedCommand(raw="", action="find", target="", noun=""), enc, cfg())
    with pytest.raises(ValueError):
        rank(img, boxes, None, c, enc, cfg(color_prior_weight=1.5))
    with pytest.raises(ValueError):
        rank(img, boxes, None, c, enc, cfg(mode="fast"))
    with pytest.raises(ValueError):
        rank(img, np.zeros((2, 3), np.float32), None, c, enc, cfg())
    with pytest.raises(ValueError):
        rank(img, boxes, np.zeros(3), c, enc, cfg())
    with pytest.raises(ValueError):
        rank(img, boxes, None, "Thank you.", enc, cfg())


def test_defaults_come_from_the_table():
    """Case: RankingConfig's defaults are the parameter table's (one source of truth; no DEFAULT_* copies)."""
    spec = PARAMETERS
    defaults = RankingConfig()
    assert tuple(spec["negative_prompts"].default) == tuple(defaults.negative_prompts)
    assert spec["score_threshold"].default == defaults.score_threshold
    assert spec["color_prior_weight"].default == defaults.color_prior_weight
    assert spec["relation_weight"].default == defaults.relation_weight
    assert spec["top_k"].default == defaults.top_k
    assert spec["cascade_top_k"].default == defaults.cascade_top_k
    assert not any(name.startswith("DEFAULT_") for name in vars(ranking))
    with pytest.raises(ParameterError):
        RankingConfig(score_threshold=-0.1)


# ---------------------------------------------------------------------------------------------
# The pure functions on hand-made embeddings (no encoder)
# ---------------------------------------------------------------------------------------------


def _unit(v):
    v = np.asarray(v, np.float64)
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def test_clip_probabilities_exact_values():
    """Case: cos 1 vs 0 at logit scale 100 -> p = 1 / (1 + e^-100); cos 0 vs 1 -> ~0; no negatives: (cos + 1) / 2."""
    img = _unit([[1, 0], [0, 1], [1, 1]])
    p = ranking.clip_probabilities(img, _unit([1, 0]), _unit([[0, 1]]), 100.0)
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-100)), 1 / (1 + np.exp(100)), 0.5], atol=1e-7)
    p0 = ranking.clip_probabilities(img, _unit([1, 0]), np.zeros((0, 2), np.float32), 100.0)
    np.testing.assert_allclose(p0, [1.0, 0.5, (np.sqrt(0.5) + 1) / 2], atol=1e-6)


def test_rank_is_pure_on_given_embeddings():
    """Case: rank() on given embeddings (no encoder): box 1 (embedding = target) is the only detection;
    the unusable NaN box and the table box are never reported; notes say why nothing else passed."""
    img, boxes = scene([(100, 200, 160, 260, RED), (300, 200, 360, 260, BLUE)])
    boxes = np.concatenate([boxes, np.array([[np.nan, 0, 10, 10]], np.float32)])
    query = ranking.make_query(cmd("the blue block"), None, ["background"])
    box_set = ranking.prepare_boxes(img, boxes, None, query)
    assert box_set.usable.tolist() == [True, True, True, True, True, False]
    np.testing.assert_array_equal(box_set.boxes[5], [0, 0, 0, 0])  # a row with a NaN becomes zeros
    texts = ranking.TextEmbeddings(target=_unit([1, 0, 0]), reference=None, negatives=_unit([[0, 1, 0]]),
                                   logit_scale=100.0)
    emb = _unit([[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0]])
    res = ranking.rank(box_set, emb, texts, query, cfg(color_prior_weight=0.0))
    assert picked(res, box_set.boxes) == [1] and res.mode == "crop"
    assert res.clip_prob[1] == pytest.approx(1.0) and res.clip_prob[5] == pytest.approx(1.0)  # scored, not reported
    empty = ranking.rank(ranking.prepare_boxes(img, np.zeros((0, 4)), None, query), None, None, query, cfg())
    assert empty.detections == [] and empty.notes == ["no proposals"]


def test_make_query_phrases_and_negatives():
    """Case: the target is dropped from the negatives; a reference naming no object gives a note and no reference."""
    from clip_perception.command import parse_object_phrase

    c = cmd("the cup next to the red plate")
    q = ranking.make_query(c, parse_object_phrase(c.reference), ["background", "Cup", "a wall"])
    assert q.phrases == ["cup", "red plate"] and q.negatives == ("background", "a wall") and q.uses_reference
    q2 = ranking.make_query(c, parse_object_phrase(""), [])
    assert q2.reference is None and q2.phrases == ["cup"] and any("names no object" in n for n in q2.notes)
    with pytest.raises(ValueError):
        ranking.make_query(ParsedCommand(raw="", action="find", target=" ", noun=""), None, [])
