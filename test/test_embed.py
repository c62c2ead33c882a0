"""embed.py: every encoder call of a frame or several frames (crop, dense, cascade, texts).

Test encoders from fake_encoders.py; the multi-frame batching is checked with a wrapper that
records every call.  The random-weights ClipEncoder path is in test_pipeline.py / test_bench.py.
"""

import numpy as np
import pytest

from clip_perception import embed, ranking
from clip_perception.command import parse_command, parse_object_phrase
from clip_perception.pipeline import rank_boxes as rank
from clip_perception.types import Timings
from fake_encoders import ColorTestEncoder

from test_ranking import H, RED, W, cfg, scene  # the synthetic scenes of test_ranking.py

THREE = [(100, 150, 160, 210, RED), (300, 300, 360, 360, RED), (500, 220, 560, 280, RED)]


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
        self.sizes = []  # the size argument of every encode_boxes call
        self.logit_scale = inner.logit_scale
        self.device = "cpu"

    def encode_texts(self, texts):
        self.calls.append(("texts", len(texts), None, 0))
        return self.inner.encode_texts(texts)

    def encode_boxes(self, rgb, boxes, mode="crop", size=None):
        self.calls.append(("boxes", 1, mode, len(boxes)))
        self.sizes.append(size)
        return self.inner.encode_boxes(rgb, boxes, mode=mode, size=size)

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
    """Case: the fixed cascade (cascade_margin 1) encodes all proposals densely, then re-encodes the cascade_top_k
    best as crops; same answer."""
    img, boxes = scene(THREE)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 400, (25, 2))
    boxes = np.concatenate([boxes, np.concatenate([xy, xy + 40], 1).astype(np.float32)])
    enc = ColorTestEncoder()
    res = rank(img, boxes, None, cmd("the leftmost red block"), enc, cfg(mode="cascade", cascade_top_k=5,
                                                                        cascade_margin=1.0))
    assert enc.modes == ["dense", "crop"]
    assert enc.calls["boxes_encoded"] == len(boxes) + 5
    assert res.mode == "cascade" and best_index(res, boxes) == 0
    enc2 = ColorTestEncoder()
    rank(img, boxes, None, cmd("the cup next to the red block"), enc2, cfg(mode="cascade", cascade_top_k=5,
                                                                         cascade_margin=1.0))
    assert 5 <= enc2.calls["boxes_encoded"] - len(boxes) <= 10  # union of target and reference top-k


def test_cascade_crop_size_reaches_only_the_rerank():
    """Case: cascade_crop_size 160 is passed as size= to the re-rank crop call only (the dense pass gets none);
    0 (the model's side) passes no size at all."""
    img, boxes = scene(THREE)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 400, (25, 2))
    boxes = np.concatenate([boxes, np.concatenate([xy, xy + 40], 1).astype(np.float32)])
    for size, expected in ((160, [None, 160]), (0, [None, None])):
        enc = Recording(ColorTestEncoder())
        res = rank(img, boxes, None, cmd("the leftmost red block"), enc,
                   cfg(mode="cascade", cascade_top_k=5, cascade_margin=1.0, cascade_crop_size=size))
        assert [c[2] for c in enc.calls if c[0] != "texts"] == ["dense", "crop"]
        assert enc.sizes == expected and best_index(res, boxes) == 0


def test_encoder_without_size_keyword_still_cascades(caplog):
    """Case: an encoder of the protocol before ``size`` (encode_boxes(rgb, boxes, mode)) in the default cascade:
    no TypeError, the re-rank crops are made without size, and one warning names the encoder."""
    import logging

    class OldProtocol:
        logit_scale = 100.0

        def __init__(self):
            self.inner = ColorTestEncoder()
            self.modes = []

        def encode_texts(self, texts):
            return self.inner.encode_texts(texts)

        def encode_boxes(self, rgb, boxes, mode="crop"):
            self.modes.append(mode)
            return self.inner.encode_boxes(rgb, boxes, mode=mode)

    img, boxes = scene(THREE)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 400, (25, 2))
    boxes = np.concatenate([boxes, np.concatenate([xy, xy + 40], 1).astype(np.float32)])
    enc = OldProtocol()
    assert not embed.accepts_size(enc) and embed.accepts_size(Recording(ColorTestEncoder()))
    with caplog.at_level(logging.WARNING, logger="clip_perception.embed"):
        for _ in range(2):
            res = rank(img, boxes, None, cmd("the leftmost red block"), enc,
                       cfg(mode="cascade", cascade_top_k=5, cascade_margin=1.0, cascade_crop_size=128))
    assert enc.modes == ["dense", "crop"] * 2 and best_index(res, boxes) == 0
    warned = [r.getMessage() for r in caplog.records if "takes no size=" in r.getMessage()]
    assert len(warned) == 1 and "OldProtocol" in warned[0] and "cascade_crop_size=128" in warned[0]


def _box_set(boxes, usable=None):
    boxes = np.asarray(boxes, np.float32)
    usable = np.ones(len(boxes), bool) if usable is None else np.asarray(usable, bool)
    return ranking.BoxSet(boxes=boxes, objectness=np.zeros(len(boxes), np.float32), usable=usable,
                          color_target=None, color_reference=None, image_shape=(H, W))


# three objects (A, B, C) and a near-duplicate of A (IoU 0.81 with A)
OBJECTS = [[100, 100, 200, 200], [300, 100, 400, 200], [500, 300, 600, 400], [105, 105, 205, 205]]


@pytest.mark.parametrize("fused,threshold,k,expected", [
    ([0.90, 0.20, 0.10, 0.85], 0.5, 10, []),          # decisive: only A (and its duplicate) within 0.1, far above t
    ([0.30, 0.20, 0.10, 0.25], 0.5, 10, []),          # decisive not-found: 0.30 <= t - m
    ([0.55, 0.20, 0.10, 0.50], 0.5, 10, [0]),         # only A, but within m of t: A is cropped (duplicate not)
    ([0.90, 0.85, 0.83, 0.88], 0.5, 10, [0, 1, 2]),   # three objects within m: one crop each, best first
    ([0.90, 0.85, 0.83, 0.88], 0.5, 2, [0, 1]),       # ... at most cascade_top_k
    ([0.90, 0.85, 0.83, 0.88], 0.0, 10, [0, 1, 2]),
])
def test_cascade_contenders_adaptive(fused, threshold, k, expected):
    """Case: cascade_contenders with margin 0.1 (the default): decisive rankings need no crops; otherwise one
    crop per object within the margin of the best, best first, at most k (rule in embed's docstring)."""
    config = cfg(mode="cascade", cascade_top_k=k, cascade_margin=0.1, score_threshold=threshold)
    got = embed.cascade_contenders(np.array(fused, np.float32), _box_set(OBJECTS), config)
    assert got.dtype == np.int64 and got.tolist() == expected


def test_cascade_contenders_fixed_and_unusable():
    """Case: margin 1 = the fixed cascade (the k best, duplicates included); unusable boxes are never contenders."""
    fused = np.array([0.90, 0.20, 0.10, 0.85], np.float32)
    fixed = embed.cascade_contenders(fused, _box_set(OBJECTS), cfg(cascade_top_k=3, cascade_margin=1.0))
    assert fixed.tolist() == [0, 3, 1]
    got = embed.cascade_contenders(np.array([0.90, 0.85, 0.83, 0.88], np.float32),
                                   _box_set(OBJECTS, usable=[False, True, True, True]),
                                   cfg(cascade_margin=0.1, score_threshold=0.5))
    assert got.tolist() == [3, 1, 2]  # the duplicate of A stands for A; A itself is unusable
    assert embed.cascade_contenders(fused, _box_set(OBJECTS, usable=[False] * 4), cfg()).size == 0


def test_adaptive_cascade_decisive_frame_needs_no_crops():
    """Case: one red block among grey table boxes (more than k): the default cascade encodes densely only and
    answers like crop mode; an absent colour is not found without crops either; three red blocks are cropped."""
    img, boxes = scene([THREE[0]])
    boxes = np.concatenate([boxes, boxes[:1] + 2, np.array([[400, 50, 460, 110], [20, 300, 80, 360]], np.float32)])
    answers = {}
    for mode in ("crop", "cascade"):
        enc = ColorTestEncoder()
        res = rank(img, boxes, None, cmd("the red block"), enc, cfg(mode=mode, cascade_top_k=3))
        answers[mode] = best_index(res, boxes)
        assert enc.modes == ([mode] if mode == "crop" else ["dense"])
    assert answers["cascade"] == answers["crop"] in (0, 4)
    enc = ColorTestEncoder()
    res = rank(img, boxes, None, cmd("the blue block"), enc, cfg(mode="cascade", cascade_top_k=3))
    assert not res.detections and enc.modes == ["dense"]
    img3, boxes3 = scene(THREE)
    enc = ColorTestEncoder()
    rank(img3, boxes3, None, cmd("the leftmost red block"), enc, cfg(mode="cascade", cascade_top_k=5))
    assert enc.modes == ["dense", "crop"] and enc.calls["boxes_encoded"] == len(boxes3) + 3


def _fp32_and(**kw):
    """(fp32 ClipEncoder, ClipEncoder(**kw)), ViT-B-32 with the same random weights (seed 0)."""
    import torch
    from clip_perception.encoder import ClipEncoder

    torch.manual_seed(0)
    fp32 = ClipEncoder("ViT-B-32", pretrained="none", device="cpu", precision="fp32")
    torch.manual_seed(0)
    return fp32, ClipEncoder("ViT-B-32", pretrained="none", device="cpu", **kw)


def _assert_within_cosine(fp32, other, tol):
    """Crop (224 and 128 px) and dense embeddings of 4 boxes of a random 320x240 frame agree within cosine ``tol``."""
    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 100, 120], [50, 60, 300, 200], [0, 0, 320, 240], [200, 100, 260, 180]], np.float32)
    for mode, size in (("crop", None), ("crop", 128), ("dense", None)):
        a, b = fp32.encode_boxes(rgb, boxes, mode, size=size), other.encode_boxes(rgb, boxes, mode, size=size)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (4, 512)
        cos = (a * b).sum(1)
        assert np.all(cos >= tol) and not np.array_equal(a, b), (mode, cos)


def test_int8_encoder_embeddings_within_cosine_0999_of_fp32():
    """Case: quantize_int8 (ViT-B-32, random weights, same seed): crop and dense embeddings within cosine
    0.999 of fp32; the MLP layers are int8, attention stays fp32 (the MaskCLIP value path reads it);
    precision auto gives fp32 around the int8 layers (never bf16)."""
    import torch

    fp32, int8 = _fp32_and(quantize_int8=True)
    assert int8.precision == "fp32" and int8.dtype == torch.float32
    block = int8.model.visual.transformer.resblocks[0]
    assert type(block.mlp.c_fc).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert isinstance(block.attn, torch.nn.MultiheadAttention) and block.attn.in_proj_weight.dtype == torch.float32
    _assert_within_cosine(fp32, int8, 0.999)


def test_bf16_cpu_encoder_embeddings_within_cosine_0999_of_fp32():
    """Case: bf16 on a CPU with native bf16 (the CPU default there): weights of the image tower in bf16,
    crop and dense embeddings (float32 out) within cosine 0.999 of fp32 (measured: 0.9999)."""
    import torch
    from clip_perception.device import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 instructions: bf16 falls back to fp32 (test_device.py)")
    fp32, bf16 = _fp32_and(precision="auto")
    assert bf16.precision == "bf16" and bf16.model.visual.conv1.weight.dtype == torch.bfloat16
    _assert_within_cosine(fp32, bf16, 0.999)


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
