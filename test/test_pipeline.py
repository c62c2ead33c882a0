"""pipeline.py: the Detector end to end (input check, parse once, proposals -> embed -> rank -> 3D,
several frames, run-time reconfiguration) with the test encoders, and with a random-weights
ViT-B-32 ClipEncoder on a MuJoCo render."""

import numpy as np
import pytest

from clip_perception.command import parse_command
from clip_perception.params import Config, DetectorConfig, make_config
from clip_perception.pipeline import Detector, FrameResult, rank_boxes, resolve_mode
from fake_encoders import ColorTestEncoder, ConstantEncoder

K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])


def red_block_scene():
    rgb = np.full((120, 160, 3), 128, np.uint8)
    rgb[40:80, 60:100] = (220, 20, 20)
    return rgb


def contour_detector(encoder=None, **values):
    config = make_config(dict({"color_prior_weight": 1.0, "proposal_methods": ["contours"]}, **values))
    return Detector(config.detector, encoder=encoder or ColorTestEncoder())


def test_all_invalid_depth_gives_a_note_and_no_3d():
    """Case: a depth image without one valid pixel -> detections without position, with a note.
    (moved from test_params.py)"""
    rgb = red_block_scene()
    det = Detector(make_config({"color_prior_weight": 1.0, "proposal_methods": ["contours"]}),
                   encoder=ColorTestEncoder())
    res = det.detect(rgb, "the red block", depth=np.full((120, 160), np.nan, np.float32), K=K)
    assert res.detections and all(d.position is None for d in res.detections)
    assert any("no valid pixel" in note for note in res.notes)
    good = det.detect(rgb, "the red block", depth=np.full((120, 160), 1.0, np.float32), K=K)
    assert good.detections[0].position is not None and good.detections[0].position[2] == pytest.approx(1.0)


def test_red_block_found_with_exact_box_and_position():
    """Case: red 40x40 block on grey at 1.0 m: best box [60, 40, 100, 80], position = back-projection of the box
    centre (79.5, 59.5) = the principal point -> (0, 0, 1.0); size 0.4 x 0.4 m; the stage timings are all there."""
    det = contour_detector()
    res = det.detect(red_block_scene(), "pick up the red block", depth=np.full((120, 160), 1.0, np.float32), K=K)
    assert res.found and res.mode == "cascade" and res.command.target == "red block"
    np.testing.assert_array_equal(res.best.box, [60, 40, 100, 80])
    np.testing.assert_allclose(res.best.position, [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(res.best.size, [0.4, 0.4, 0.0], atol=1e-12)
    assert res.best.roi == (60, 40, 40, 40) and res.summary() == "found red block at 1.00 m"
    assert {"proposals", "color_prior", "encode_text", "encode_boxes", "rank", "geometry"} <= set(res.timings.stages_ms)


def test_input_checked_once_at_the_entry():
    """Case: a float image, a grey image and a list are rejected with one message; a 0-size image is 'nothing'."""
    det = contour_detector()
    for bad in (np.zeros((120, 160, 3), np.float32), np.zeros((120, 160), np.uint8), [[0, 0, 0]]):
        with pytest.raises(ValueError, match=r"rgb must be an \(H, W, 3\) uint8 array"):
            det.detect(bad, "the red block")
    res = det.detect(np.zeros((0, 0, 3), np.uint8), "the red block")
    assert not res.found and res.proposals.shape == (0, 4)


def test_text_without_command_and_parse_cache():
    """Case: 'Thank you.' holds no command: no encoder call, no command in the result; a standing command is
    parsed once (the same CommandParse object comes back)."""
    enc = ColorTestEncoder()
    det = contour_detector(enc)
    res = det.detect(red_block_scene(), "Thank you.")
    assert res.command is None and res.parse.status != "ok" and not res.found
    assert enc.calls == {"texts": 0, "boxes": 0, "boxes_encoded": 0}
    assert det.parse("the red block") is det.parse("the red block")
    parsed = parse_command("the red block").first
    assert det.detect(red_block_scene(), parsed).found
    with pytest.raises(ValueError, match="no command"):
        rank_boxes(red_block_scene(), np.zeros((1, 4), np.float32), None, "Thank you.", enc)


def test_precomputed_proposals_mismatch_raises():
    det = contour_detector()
    with pytest.raises(ValueError, match="3 proposal boxes but 2"):
        det.detect(red_block_scene(), "the red block", proposals=(np.zeros((3, 4)), np.zeros(2)))


def test_detect_equals_rank_boxes_on_the_same_proposals():
    """Case: detect() with given proposals and rank_boxes() take the same path: the same boxes and scores."""
    rgb = red_block_scene()
    boxes = np.array([[60, 40, 100, 80], [0, 0, 40, 40], [55, 35, 105, 85]], np.float32)
    obj = np.array([0.5, 0.4, 0.3], np.float32)
    det = contour_detector()
    res = det.detect(rgb, "the red block", proposals=(boxes, obj))
    ranked = rank_boxes(rgb, boxes, obj, "the red block", ColorTestEncoder(), det.config.ranking)
    assert [d.box.tolist() for d in res.detections] == [d.box.tolist() for d in ranked.detections]
    assert [d.score for d in res.detections] == [d.score for d in ranked.detections]
    assert res.mode == ranked.mode == "cascade"


def test_config_types_accepted():
    """Case: Detector takes a DetectorConfig or a Config (its .detector part); anything else is a TypeError."""
    cfg = make_config({"mode": "dense"})
    assert isinstance(cfg, Config)
    assert Detector(cfg, encoder=ColorTestEncoder()).config == cfg.detector
    assert Detector(cfg.detector, encoder=ColorTestEncoder()).mode == "dense"
    with pytest.raises(TypeError):
        Detector({"mode": "dense"}, encoder=ColorTestEncoder())


def test_reconfigure_applies_from_the_next_frame():
    """Case: ConstantEncoder(target_cos=0): every box scores p = 1 / 7 (six negatives); threshold 0.5 -> nothing
    found; reconfigure(threshold 0.1) -> found; mode auto resolves once per config (cascade on CPU); a model
    change is reported, not applied (the encoder stays)."""
    enc = ConstantEncoder(target_cos=0.0)
    det = contour_detector(enc, score_threshold=0.5, color_prior_weight=0.0)
    first = det.detect(red_block_scene(), "the red block")
    assert not first.found and det.mode == "cascade"
    cfg = det.config
    assert det.reconfigure(cfg.replace(score_threshold=0.1, mode="crop")) is False
    assert det.mode == "crop" and det.config.ranking.score_threshold == 0.1
    enc.modes.clear()
    res = det.detect(red_block_scene(), "the red block")
    assert res.found and enc.modes == ["crop"] and res.best.confidence == pytest.approx(1 / 7, abs=1e-6)
    assert det.reconfigure(det.config.replace(model_name="ViT-B-16", mode="auto")) is True
    assert det.config.model.model_name == "ViT-B-32" and det.encoder is enc and det.mode == "cascade"
    assert resolve_mode("auto", "cuda:0") == "crop"


def test_detect_many_equals_detect_per_frame_with_test_encoder():
    """Case: two frames (the second mirrored) through detect_many with an encoder without encode_boxes_multi:
    the same detections as two detect calls; one encode_texts call for the shared command."""
    rgb = red_block_scene()
    frames = [(rgb, "the red block", None, None), (rgb[:, ::-1].copy(), "the red block", None, None)]
    enc = ColorTestEncoder()
    many = contour_detector(enc).detect_many(frames)
    assert enc.calls["texts"] == 1
    for (img, text, _, _), got in zip(frames, many):
        want = contour_detector().detect(img, text)
        assert isinstance(got, FrameResult) and got.found
        assert [d.box.tolist() for d in got.detections] == [d.box.tolist() for d in want.detections]
        assert [d.score for d in got.detections] == [d.score for d in want.detections]
        assert {"encode_text", "encode_boxes", "rank"} <= set(got.timings.stages_ms)
    np.testing.assert_array_equal(many[1].best.box, [60, 40, 100, 80])  # mirrored: 160 - 100 = 60


def test_constant_encoder_spatial_rule_through_detector():
    """Case: ConstantEncoder (CLIP ties): 'the block on the right' through the Detector picks the right block."""
    rgb = np.full((120, 160, 3), 128, np.uint8)
    rgb[40:70, 10:40] = (220, 20, 20)
    rgb[40:70, 110:140] = (220, 20, 20)
    res = contour_detector(ConstantEncoder(), color_prior_weight=0.0, mode="crop").detect(
        rgb, "the block on the right")
    assert res.found and res.best.box[0] >= 100


# ---------------------------------------------------------------------------------------------
# Random-weights ViT-B-32 on a MuJoCo render
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_frame():
    from clip_perception.sim.scene import make_scene

    scene = make_scene(seed=0, width=320, height=240, num_objects=4)
    try:
        return scene.render()
    finally:
        scene.close()


@pytest.fixture(scope="module")
def clip_encoder():
    import torch

    from clip_perception.encoder import ClipEncoder

    torch.manual_seed(0)
    return ClipEncoder("ViT-B-32", pretrained="none", device="cpu")


@pytest.mark.parametrize("mode", ["crop", "dense", "cascade"])
def test_clip_encoder_on_mujoco_render(sim_frame, clip_encoder, mode):
    """Case: a random-weights ViT-B-32 on a rendered scene in each mode: finite scores in [0, 1], boxes inside the
    image, 3D positions in front of the camera, and detect() equal to rank_boxes() on its own proposals."""
    fr = sim_frame
    cfg = make_config({"pretrained": "none", "device": "cpu", "mode": mode, "score_threshold": 0.0,
                       "max_proposals": 12, "cascade_top_k": 4, "top_k": 5})
    det = Detector(cfg.detector, encoder=clip_encoder)
    res = det.detect(fr.rgb, "pick up the red ball", depth=fr.depth, K=fr.K)
    assert res.mode == mode and 1 <= len(res.detections) <= 5
    for d in res.detections:
        assert 0.0 <= d.confidence <= 1.0 and np.isfinite(d.confidence)
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
    assert any(d.position is not None and d.position[2] > 0 for d in res.detections)
    ranked = rank_boxes(fr.rgb, res.proposals, res.objectness, "pick up the red ball", clip_encoder,
                        cfg.ranking, depth=fr.depth)
    # the ranked box is kept as proposal_box; box is the instance mask's tight box (segment.py); detect()
    # keeps rank_boxes()' order and scores, less the proposals whose mask is an object already reported
    ranked_boxes = [d.box.tolist() for d in ranked.detections]
    got = [d.proposal_box.tolist() for d in res.detections]
    assert got[0] == ranked_boxes[0]
    order = [ranked_boxes.index(b) for b in got]
    assert order == sorted(order)
    assert [d.score for d in res.detections] == [ranked.detections[i].score for i in order]
    for d in res.detections:
        if d.mask is not None:
            assert d.box.tolist() == d.mask.box.tolist()


# ---------------------------------------------------------------------------- masks and object centres (issue 14)
SEG_OBJECTS = [
    dict(shape="box", color="blue", xy=(0.05, 0.08), size=(0.07, 0.04, 0.02), yaw=0.5, name="blue box"),
    dict(shape="ball", color="red", xy=(-0.10, -0.05), size=(0.035,), name="red ball"),
    dict(shape="cube", color="yellow", xy=(-0.05, 0.20), size=(0.03, 0.03, 0.03), yaw=-0.3, name="yellow cube"),
]


@pytest.fixture(scope="module")
def seg_frame():
    from clip_perception.sim.scene import make_scene

    scene = make_scene(objects=SEG_OBJECTS)
    try:
        return scene.render()
    finally:
        scene.close()


@pytest.mark.parametrize("name", [o["name"] for o in SEG_OBJECTS])
def test_detector_reports_mask_tight_box_and_object_centre(seg_frame, name, monkeypatch):
    """Case: a rendered RGB-D frame through the Detector (colour test encoder): the best detection's box is its
    instance mask's tight box (IoU >= 0.9 with the GT box), the ranked proposal is kept as proposal_box, the
    position is the object's centre within 1 cm (position_is_centre), size[2] its height within 1 cm, and
    the support plane is fitted once per frame (one RANSAC for the depth proposals and the masks)."""
    import clip_perception.proposals as proposals
    from clip_perception.boxes import box_iou

    calls = []
    real = proposals.fit_plane_ransac
    monkeypatch.setattr(proposals, "fit_plane_ransac", lambda *a, **k: calls.append(1) or real(*a, **k))
    fr = seg_frame
    (obj,) = fr.find(name)
    det = contour_detector(proposal_methods=["contours", "depth"])
    res = det.detect(fr.rgb, f"pick up the {name}", depth=fr.depth, K=fr.K)
    assert len(calls) == 1 and "proposals.plane" in res.timings.stages_ms
    best = res.best
    assert best is not None and best.proposal_box is not None and best.mask is not None
    assert best.box.tolist() == best.mask.box.tolist()
    assert float(box_iou(best.box[None], obj.box[None])[0, 0]) >= 0.9
    assert best.position_is_centre and np.linalg.norm(best.position - obj.center_optical) < 0.01
    assert abs(best.size[2] - obj.size[2]) < 0.01 and best.orientation is not None
    d = best.to_dict()
    assert d["position_is_centre"] is True and len(d["orientation"]) == 4 and d["mask_area"] == best.mask.area
    assert set(d["proposal_roi"]) == {"x_offset", "y_offset", "width", "height"}
    assert not res.notes


def test_detector_without_depth_segments_with_grabcut_and_without_plane_says_so(seg_frame):
    """Case: RGB only -> GrabCut masks, the red ball's tight box (IoU >= 0.8 with the GT box), no 3D, no note;
    depth of a flat wall (no object above the plane) -> visible-surface positions, position_is_centre false,
    with the note."""
    from clip_perception.boxes import box_iou
    from clip_perception.segment import NOTE_NOT_ABOVE

    fr = seg_frame
    (obj,) = fr.find("red ball")
    det = contour_detector()
    res = det.detect(fr.rgb, "pick up the red ball")
    best = res.best
    assert best.mask is not None and best.mask.method == "grabcut" and best.position is None
    assert float(box_iou(best.box[None], obj.box[None])[0, 0]) >= 0.8 and not res.notes
    flat = det.detect(fr.rgb, "pick up the red ball", depth=np.full(fr.depth.shape, 0.8, np.float32), K=fr.K)
    assert flat.best.position is not None and not flat.best.position_is_centre
    assert NOTE_NOT_ABOVE in flat.notes


def test_two_proposals_on_one_object_give_one_detection():
    """Segmentation grows a proposal on the upper half of the ball into the whole ball: the
    object is reported once (the better-ranked detection), not twice."""
    from clip_perception.sim.scene import make_scene

    scene = make_scene(objects=[SEG_OBJECTS[1]])
    try:
        fr = scene.render()
    finally:
        scene.close()
    (ball,) = fr.objects
    b = ball.box.astype(np.float32)
    half = np.array([b[0], b[1], b[2], (b[1] + b[3]) / 2], np.float32)
    proposals = (np.stack([b, half]), np.array([1.0, 0.9], np.float32))
    cfg = make_config({"mode": "crop", "score_threshold": 0.0, "color_prior_weight": 0.5})
    res = Detector(cfg.detector, encoder=ColorTestEncoder()).detect(fr.rgb, "pick up the red ball", depth=fr.depth,
                                                                  K=fr.K, proposals=proposals)
    assert len(res.detections) == 1
    assert np.abs(res.detections[0].box - ball.box).max() <= 3.0


def test_rgb_only_box_is_never_a_grabcut_speck():
    """Regression (make demo, seed 5, first frame before depth): GrabCut on the red ball's proposal
    left a 2x3-pixel speck that became the reported box.  A mask covering almost nothing of its box
    is no object: the ranked box is kept."""
    from clip_perception.boxes import box_iou
    from clip_perception.sim.scene import make_scene

    scene = make_scene(seed=5, num_objects=6)
    try:
        fr = scene.render()
    finally:
        scene.close()
    (ball,) = fr.find("red ball")
    cfg = make_config({"color_prior_weight": 1.0})
    res = Detector(cfg.detector, encoder=ColorTestEncoder()).detect(fr.rgb, "pick up the red ball")
    best = res.best
    assert best is not None and float(box_iou(best.box[None], ball.box[None])[0, 0]) >= 0.5
    assert (best.box[2] - best.box[0]) * (best.box[3] - best.box[1]) >= 0.3 * (
        (best.proposal_box[2] - best.proposal_box[0]) * (best.proposal_box[3] - best.proposal_box[1]))
