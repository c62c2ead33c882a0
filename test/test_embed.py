"""embed.py: every encoder call of a frame or several frames (crop, dense, cascade, texts).

Test encoders from fake_encoders.py; the multi-frame batching is checked with a wrapper that
records every call.  The random-weights ClipEncoder path is in test_pipeline.py / test_bench.py.
"""

import numpy as np
import pytest

from clip_perception import embed, ranking
from clip_perception.command import parse_command, parse_object_phrase
from clip_perception.params import PARAMETERS, RankingConfig
from clip_perception.pipeline import rank_boxes as rank
from clip_perception.types import Timings
from fake_encoders import ColorTestEncoder

H, W = 480, 640
TABLE = (128, 128, 128)
RED, BLUE = (255, 0, 0), (0, 0, 255)
THREE = [(100, 150, 160, 210, RED), (300, 300, 360, 360, RED), (500, 220, 560, 280, RED)]
TABLE_BOXES = [[0, 0, 60, 60], [560, 400, 640, 480], [250, 420, 330, 470]]


def cfg(**kw):
    base = dict(score_threshold=0.5, color_prior_weight=0.3, relation_weight=0.5, top_k=5, mode="crop",
                cascade_top_k=10, negative_prompts=list(PARAMETERS["negative_prompts"].default))
    base.update(kw)
    return RankingConfig(**base)


def scene(rects):
    img = np.full((H, W, 3), TABLE, np.uint8)
    for x1, y1, x2, y2, c in rects:
        img[y1:y2, x1:x2] = c
    return img, np.array([r[:4] for r in rects] + TABLE_BOXES, np.float32)


def cmd(text):
    res = parse_command(text)
    assert res.status == "ok", res
    return res.first


def best_index(result, boxes):
    assert result.detections, result.notes
    return int(np.flatnonzero((boxes == result.detections[0].box).all(1))[0])


class Recording:
    """Wraps a test encoder, adds ``encode_boxes_multi`` and records ``(call, frames, mode, boxes)``."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []
        self.logit_scale = inner.logit_scale
        self.device = "cpu"

    def encode_texts(self, texts):
        self.calls.append(("texts", len(texts), None, 0))
        return self.inner.encode_texts(texts)

    def encode_boxes(self, rgb, boxes, mode="crop"):
        self.calls.append(("boxes", 1, mode, len(boxes)))
        return self.inner.encode_boxes(rgb, boxes, mode=mode)

    def encode_boxes_multi(self, rgbs, boxes, mode="crop"):
        self.calls.append(("multi", len(rgbs), mode, sum(len(b) for b in boxes)))
        return [self.inner.encode_boxes(r, b, mode=mode) for r, b in zip(rgbs, boxes)]


def _prepared(img, boxes, text, config):
    c = cmd(text)
    ref = parse_object_phrase(c.reference) if c.relation and c.reference else None
    query = ranking.make_query(c, ref, config.negative_prompts)
    return query, ranking.prepare_boxes(img, boxes, None, query)


# ---------------------------------------------------------------------------------------------
# Modes (moved from test_ranking.py)
# ---------------------------------------------------------------------------------------------


def test_cascade_mode_dense_then_crop():
    """Case: cascade encodes all proposals densely, then re-encodes the cascade_top_k best as crops; same answer."""
    img, boxes = scene(THREE)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 400, (25, 2))
    boxes = np.concatenate([boxes, np.concatenate([xy, xy + 40], 1).astype(np.float32)])
    enc = ColorTestEncoder()
    res = rank(img, boxes, None, cmd("the leftmost red block"), enc, cfg(mode="cascade", cascade_top_k=5))
    assert enc.modes == ["dense", "crop"]
    assert enc.calls["boxes_encoded"] == len(boxes) + 5
    assert res.mode == "cascade" and best_index(res, boxes) == 0
    enc2 = ColorTestEncoder()
    rank(img, boxes, None, cmd("the cup next to the red block"), enc2, cfg(mode="cascade", cascade_top_k=5))
    assert 5 <= enc2.calls["boxes_encoded"] - len(boxes) <= 10  # union of target and reference top-k


@pytest.mark.parametrize("mode,expected", [("crop", ["crop"]), ("dense", ["dense"]), ("auto", ["dense", "crop"])])
def test_modes_passed_to_encoder(mode, expected):
    """Case: crop/dense are passed through; auto on a CPU encoder means cascade."""
    img, boxes = scene(THREE)
    enc = ColorTestEncoder()
    rank(img, boxes, None, cmd("the red block"), enc, cfg(mode=mode, cascade_top_k=2))
    assert enc.modes == expected


# ---------------------------------------------------------------------------------------------
# resolve_mode, texts, boxes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,device,expected", [("auto", "cuda:0", "crop"), ("auto", "cuda", "crop"),
                                                  ("auto", "cpu", "cascade"), ("dense", "cuda", "dense"),
                                                  ("crop", "cpu", "crop"), ("cascade", "cuda", "cascade")])
def test_resolve_mode(mode, device, expected):
    assert embed.resolve_mode(mode, device) == expected


def test_resolve_mode_rejects_unknown():
    with pytest.raises(ValueError, match="fast"):
        embed.resolve_mode("fast", "cpu")


def test_texts_one_call_target_reference_negatives():
    """Case: 'the cup next to the red plate': one encode_texts call with [cup, red plate] + negatives (the target
    removed from them); rows land in target / reference / negatives; logit scale copied."""
    enc = Recording(ColorTestEncoder(logit_scale=50.0))
    c = cmd("the cup next to the red plate")
    query = ranking.make_query(c, parse_object_phrase(c.reference), ["background", "cup", "a wall"])
    t = Timings()
    texts = embed.embed_texts(enc, query, t)
    assert enc.calls == [("texts", 4, None, 0)]
    inner = enc.inner
    np.testing.assert_array_equal(texts.target, inner.text_vector("cup"))
    np.testing.assert_array_equal(texts.reference, inner.text_vector("red plate"))
    np.testing.assert_array_equal(texts.negatives, np.stack([inner.text_vector("background"),
                                                              inner.text_vector("a wall")]))
    assert texts.logit_scale == 50.0 and "encode_text" in t.stages_ms


def test_several_frames_one_batched_call_per_mode():
    """Case: three frames (one without boxes) in crop mode -> one encode_boxes_multi call with the two frames
    that have boxes; embeddings equal per-frame encode_boxes; the empty frame gets None and no call."""
    enc = Recording(ColorTestEncoder())
    config = cfg(mode="crop")
    img, boxes = scene(THREE)
    q, s1 = _prepared(img, boxes, "the red block", config)
    _, s2 = _prepared(img[:, ::-1].copy(), boxes[:4], "the red block", config)
    _, s0 = _prepared(img, np.zeros((0, 4), np.float32), "the red block", config)
    texts = embed.embed_texts(enc, q)
    enc.calls.clear()
    out = embed.embed_boxes(enc, [img, img[:, ::-1].copy(), img], [s1, s2, s0], [texts] * 3, "crop", config)
    assert enc.calls == [("multi", 2, "crop", len(boxes) + 4)]
    assert out[2] is None and out[0].shape == (len(boxes), enc.inner.dim) and out[1].shape == (4, enc.inner.dim)
    np.testing.assert_array_equal(out[0], enc.inner.encode_boxes(img, s1.boxes))


def test_several_frames_cascade_dense_batched_then_crops_per_frame():
    """Case: cascade with k = 2 on two frames of six boxes: one multi dense call, then one crop call of 2 boxes
    per frame; a frame with <= k boxes is cropped directly (no dense pass)."""
    enc = Recording(ColorTestEncoder())
    config = cfg(mode="cascade", cascade_top_k=2)
    img, boxes = scene(THREE)
    q, s1 = _prepared(img, boxes, "the red block", config)
    _, s_small = _prepared(img, boxes[:2], "the red block", config)
    texts = embed.embed_texts(enc, q)
    enc.calls.clear()
    t = [Timings(), Timings(), Timings()]
    out = embed.embed_boxes(enc, [img, img, img], [s1, s1, s_small], [texts] * 3, "cascade", config, t)
    assert enc.calls == [("multi", 2, "dense", 12), ("boxes", 1, "crop", 2), ("boxes", 1, "crop", 2),
                         ("boxes", 1, "crop", 2)]
    assert all("encode_boxes" in ti.stages_ms for ti in t)
    # the two red blocks best in the dense pre-rank (boxes 0..2 are red; ties kept in index order) got crops
    crops = enc.inner.encode_boxes(img, s1.boxes[[0, 1]], mode="crop")
    np.testing.assert_array_equal(out[0][[0, 1]], crops)


def test_encoder_without_multi_called_per_frame():
    """Case: a test encoder without encode_boxes_multi: one encode_boxes call per frame, same embeddings."""
    enc = ColorTestEncoder()
    config = cfg(mode="dense")
    img, boxes = scene(THREE)
    q, s1 = _prepared(img, boxes, "the red block", config)
    texts = embed.embed_texts(enc, q)
    out = embed.embed_boxes(enc, [img, img], [s1, s1], [texts, texts], "dense", config)
    assert enc.modes == ["dense", "dense"] and enc.calls["boxes"] == 2
    np.testing.assert_array_equal(out[0], out[1])


def test_embed_boxes_rejects_unresolved_mode_and_mismatched_lengths():
    enc = ColorTestEncoder()
    config = cfg()
    img, boxes = scene(THREE)
    q, s1 = _prepared(img, boxes, "the red block", config)
    texts = embed.embed_texts(enc, q)
    with pytest.raises(ValueError, match="resolve"):
        embed.embed_boxes(enc, [img], [s1], [texts], "auto", config)
    with pytest.raises(ValueError):
        embed.embed_boxes(enc, [img, img], [s1], [texts], "crop", config)


def test_embed_frame_without_boxes_calls_nothing():
    enc = ColorTestEncoder()
    img, _ = scene(THREE)
    q, s0 = _prepared(img, np.zeros((0, 4), np.float32), "the red block", cfg())
    assert embed.embed_frame(enc, img, s0, q, "crop", cfg()) == (None, None)
    assert enc.calls == {"texts": 0, "boxes": 0, "boxes_encoded": 0}
