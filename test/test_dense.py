"""Tests for clip_perception.dense: MaskCLIP patch features and their pooling inside boxes
(CPU, ViT-B-32 with random weights, through ``ClipEncoder(mode="dense")`` and directly).

Tolerances: features vs an independent computation 1e-4 (abs and rel, float32 summation
order); pooled unit vectors 1e-4 (abs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clip_perception.dense import dense_geometry, pool_boxes, positional_embedding
from clip_perception.encoder import ClipEncoder

from test_crops import make_frame


@pytest.fixture(scope="module")
def enc() -> ClipEncoder:
    torch.manual_seed(0)  # random weights: seed so value checks are reproducible
    return ClipEncoder("ViT-B-32", pretrained="none", device="cpu", precision="fp32")  # exact math checks


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return make_frame()


def test_dense_geometry_exact_values():
    """320x240 letterboxed into a 320 square: origin (0, -40), 7x7 patches of 320/7 px."""
    g = dense_geometry((240, 320, 3), (7, 7))
    assert (g["x0"], g["y0"], g["side"], g["grid"]) == (0, -40, 320, (7, 7))
    assert g["cell"] == pytest.approx(320 / 7)


def test_pool_boxes_overlap_weights():
    """2x2 grid of orthogonal unit features on a 20x20 frame (cell 10 px): a box covering 3/4 of
    patch (0,0) and 1/4 of (0,1) gives normalise(0.75 e0 + 0.25 e1); a box outside -> nearest patch."""
    patches = torch.eye(4, dtype=torch.float32).reshape(2, 2, 4) * 3.0  # not unit: pooling normalises
    boxes = np.array([[0, 0, 10, 10], [2.5, 0, 12.5, 10], [30, 30, 40, 40], [5, 5, 5, 5]], np.float32)
    e = pool_boxes(patches, boxes, (20, 20, 3)).numpy()
    np.testing.assert_allclose(e[0], [1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(e[1], np.array([0.75, 0.25, 0, 0]) / np.hypot(0.75, 0.25), atol=1e-6)
    np.testing.assert_allclose(e[2], [0, 0, 0, 1], atol=1e-6)  # outside: nearest patch (1, 1)
    np.testing.assert_allclose(e[3], [1, 0, 0, 0], atol=1e-6)  # zero-size box widened to one pixel


def test_positional_embedding_resized_bicubically_and_cached(enc):
    """The model's own grid returns its embedding; another grid is resized (class token kept) and cached."""
    vis = enc.model.visual
    cache: dict = {}
    assert positional_embedding(vis, 7, 7, cache) is vis.positional_embedding
    pe = positional_embedding(vis, 10, 10, cache)
    assert pe.shape == (1 + 100, vis.positional_embedding.shape[1])
    assert torch.equal(pe[0], vis.positional_embedding[0])
    assert positional_embedding(vis, 10, 10, cache) is pe and len(cache) == 2


def test_dense_shape_and_unit_norm(enc, frame):
    """Dense mode returns (N, D) float32 unit rows, tiny and out-of-frame boxes included."""
    boxes = np.array([[0, 0, 320, 240], [10, 10, 12, 12], [400, 300, 420, 320], [100, 50, 220, 150]], np.float32)
    e = enc.encode_boxes(frame, boxes, mode="dense")
    assert e.shape == (4, 512) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_dense_features_equal_identity_attention_in_last_block(enc, frame):
    """MaskCLIP patch features == last block's attention output with each token attending to itself,
    then ln_post and proj (independent computation via nn.MultiheadAttention with a diagonal mask)."""
    feats, geo = enc.dense_patch_features(frame)
    vis = enc.model.visual
    assert feats.shape == (7, 7, 512) and geo["grid"] == (7, 7)
    with torch.inference_mode():
        x = enc._dense_input(torch.from_numpy(frame))
        blocks = vis.transformer.resblocks
        out = vis.forward_intermediates(x, indices=[len(blocks) - 2], output_fmt="NLC",
                                        output_extra_tokens=True, intermediates_only=True)
        tok = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], 1)
        n = tok.shape[1]
        mask = torch.full((n, n), float("-inf"))
        mask.fill_diagonal_(0.0)
        y = blocks[-1].ln_1(tok)
        att = blocks[-1].attn(y, y, y, need_weights=False, attn_mask=mask)[0][:, 1:]
        ref = (vis.ln_post(att) @ vis.proj).reshape(7, 7, -1).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-4, rtol=1e-4)


def test_dense_box_pooling_geometry(enc, frame):
    """A box exactly on patch (3, 2) gives that patch's unit feature; a 2-patch box their mean."""
    feats, geo = enc.dense_patch_features(frame)
    c, x0, y0 = geo["cell"], geo["x0"], geo["y0"]
    assert (x0, y0, geo["side"]) == (0, -40, 320)  # 320x240 letterboxed into a 320 square
    one = np.array([[x0 + 2 * c, y0 + 3 * c, x0 + 3 * c, y0 + 4 * c]], np.float32)
    two = np.array([[x0 + 2 * c, y0 + 3 * c, x0 + 4 * c, y0 + 4 * c]], np.float32)
    e = enc.encode_boxes(frame, np.concatenate([one, two]), mode="dense")
    unit = feats / np.linalg.norm(feats, axis=-1, keepdims=True)
    np.testing.assert_allclose(e[0], unit[3, 2], atol=1e-4)
    mean2 = unit[3, 2] + unit[3, 3]
    np.testing.assert_allclose(e[1], mean2 / np.linalg.norm(mean2), atol=1e-4)


def test_dense_same_content_similar_different_content_differs(enc):
    """Two boxes over the same uniform blue region agree far better than blue vs grey regions."""
    img = np.full((240, 320, 3), 200, np.uint8)
    img[:, :160] = (30, 60, 200)
    boxes = np.array([[0, 0, 80, 120], [80, 120, 160, 240], [240, 0, 320, 120]], np.float32)
    e = enc.encode_boxes(img, boxes, mode="dense")
    same, diff = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert same > 0.9 and same - diff > 0.2


def test_dense_not_supported_for_non_vit(enc, frame):
    """Dense mode on a non-ViT vision tower raises NotImplementedError naming crop mode."""
    orig = enc.model.visual  # (pytest's monkeypatch cannot restore nn.Module children)
    enc.model.visual = torch.nn.Identity()
    try:
        with pytest.raises(NotImplementedError, match="crop"):
            enc.encode_boxes(frame, np.array([[0, 0, 10, 10]], np.float32), mode="dense")
    finally:
        enc.model.visual = orig
    assert enc.model.visual is orig


def test_pooled_embedding_is_the_model_forward_at_its_size_and_open_clips_resize_at_another(enc):
    """pooled_embedding == visual(x) at 224; at 160 px == an open_clip ViT-B-32 built for 160 px
    (force_image_size) loading the 224 model's weights through open_clip.model.resize_pos_embed."""
    import open_clip

    from clip_perception.dense import pooled_embedding

    vis = enc.model.visual
    g = torch.Generator().manual_seed(5)
    with torch.inference_mode():
        x224 = torch.randn(2, 3, 224, 224, generator=g)
        assert torch.equal(pooled_embedding(vis, x224, {}), vis(x224))
        small = open_clip.create_model("ViT-B-32", pretrained=None, force_image_size=160).eval()
        state = {k: v.clone() for k, v in enc.model.state_dict().items()}
        open_clip.model.resize_pos_embed(state, small)
        small.load_state_dict(state)
        assert small.visual.positional_embedding.shape == (1 + 25, 768)
        x160 = torch.randn(3, 3, 160, 160, generator=g)
        ours = pooled_embedding(vis, x160, {})
        ref = small.visual(x160)
        assert ours.shape == (3, 512)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_crops_at_another_side(enc, frame):
    """encode_boxes(size=S): crops of S px rounded down to whole 32-px patches (at least one), embedded by
    pooled_embedding of exactly those crops; None / 224 is the model's own crop path."""
    from clip_perception.dense import pooled_embedding

    assert enc.crop_side(None) == enc.crop_side(224) == (224, 224)
    assert enc.crop_side(160) == (160, 160) and enc.crop_side(150) == (128, 128) and enc.crop_side(20) == (32, 32)
    with pytest.raises(ValueError):
        enc.crop_side(0)
    boxes = np.array([[10, 10, 120, 90], [200, 100, 300, 230], [0, 0, 320, 240]], np.float32)
    e160 = enc.encode_boxes(frame, boxes, mode="crop", size=160)
    with torch.inference_mode():
        x = enc.crops.boxes(torch.from_numpy(frame), boxes, (160, 160))
        assert tuple(x.shape) == (3, 3, 160, 160)
        ref = torch.nn.functional.normalize(pooled_embedding(enc.model.visual, x, {}), dim=-1).numpy()
    np.testing.assert_allclose(e160, ref, atol=1e-5)
    e224 = enc.encode_boxes(frame, boxes, mode="crop")
    np.testing.assert_array_equal(enc.encode_boxes(frame, boxes, mode="crop", size=224), e224)
    assert e160.shape == e224.shape == (3, 512) and not np.allclose(e160, e224, atol=1e-3)


def test_crops_at_another_side_need_a_vit():
    """A ResNet CLIP (RN50, random weights) has no resizable patch grid: crop_side(None) / its own 224 work,
    another side is NotImplementedError naming crop mode (the cascade needs a ViT anyway)."""
    rn = ClipEncoder("RN50", pretrained="none", device="cpu", precision="fp32")
    assert rn.crop_side(None) == rn.crop_side(224) == (224, 224)
    with pytest.raises(NotImplementedError, match="crop"):
        rn.crop_side(128)


def test_warmup_runs_the_resized_crop_shape(enc):
    """warmup(crop_size=128) also runs one 128-px crop batch: the 4x4 positional embedding is then cached."""
    enc._pos_cache.clear()
    enc.warmup(crop_size=128)
    assert [k[:2] for k in enc._pos_cache] == [(4, 4)]
    enc.warmup(crop_size=224)  # the model's own side: nothing resized
    assert [k[:2] for k in enc._pos_cache] == [(4, 4)]
