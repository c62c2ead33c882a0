"""Tests for clip_perception.encoder (CPU, ViT-B-32 with random weights, no network).

Tolerances used below:
* crop preprocessing: max abs difference <= 1/255 in un-normalised pixel units
  (difference of normalised tensors times std); the batched path is in fact
  bit-exact with Pillow (checked separately on uint8 values).
* embeddings: cosine >= 0.9999 where batch composition differs (float
  summation order), exact equality where the computation is identical.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from clip_perception import encoder as E
from clip_perception.encoder import (
    CheckpointError,
    ClipEncoder,
    Encoder,
    WeightsUnavailableError,
    batched_square_crops,
    resolve_device_precision,
    square_regions,
)

PIXEL_TOL = 1.0 / 255.0
COS_TOL = 0.9999


def make_frame(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """Ramps + a noise patch + a red block: structure at every scale, deterministic."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + 2 * yy) % 256], -1).astype(np.uint8)
    rng = np.random.default_rng(seed)
    img[40:120, 60:140] = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    img[150:230, 200:300] = (220, 30, 40)
    return img


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


@pytest.fixture(scope="module")
def enc() -> ClipEncoder:
    torch.manual_seed(0)  # random weights: seed so value checks are reproducible
    return ClipEncoder("ViT-B-32", pretrained="none", device="cpu", precision="auto")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return make_frame()


@pytest.fixture(autouse=True)
def _reset_hooks(enc):
    yield
    enc.fault_hook = None
    enc.fell_back_to_cpu = False
    enc.bucket_batches = False


PARITY_BOXES = {
    "tall": [100, 10, 120, 230],
    "wide": [10, 100, 310, 130],
    "corner_at_border": [300, 220, 320, 240],
    "partly_outside": [-30, -20, 40, 50],
    "tiny_fractional": [150.3, 80.6, 152.9, 82.1],
    "whole_frame_downscale": [0, 0, 320, 240],
    "side_exactly_224": [60, 20, 246.67, 120],
    "fractional_upscale": [50.5, 60.2, 170.7, 130.1],
}


# ----------------------------------------------------------------------------- geometry / preprocessing

def test_square_regions_exact_values():
    """Square side = round(max(w,h) * 1.2), centred, snapped to pixels; degenerate box -> side 1."""
    r = square_regions(np.array([[10, 20, 50, 120], [5, 5, 5, 5], [0, 0, 10, 4]], np.float32), 0.1)
    # w=40, h=100 -> side 120; cx=30 -> x0=floor(-29.5)=-30; cy=70 -> y0=floor(10.5)=10
    assert r.tolist() == [[-30, 10, 120], [5, 5, 1], [-1, -4, 12]]


@pytest.mark.parametrize("interp", ["bicubic", "bilinear"])
@pytest.mark.parametrize("side", [1, 7, 100, 224, 300, 768])
def test_batched_resize_is_bit_exact_with_pillow(interp, side):
    """Padded square of a frame resized by the batched path == PIL Image.resize, uint8 for uint8."""
    img = make_frame(480, 640)
    fill = (123, 117, 104)
    x0, y0 = -37, 400 - side // 2  # partly outside left, straddles the bottom for big sides
    sq = np.empty((side, side, 3), np.uint8)
    sq[...] = fill
    ya, yb, xa, xb = max(0, y0), min(480, y0 + side), max(0, x0), min(640, x0 + side)
    if yb > ya and xb > xa:
        sq[ya - y0:yb - y0, xa - x0:xb - x0] = img[ya:yb, xa:xb]
    resample = Image.BICUBIC if interp == "bicubic" else Image.BILINEAR
    ref = np.asarray(Image.fromarray(sq).resize((224, 224), resample))
    out = batched_square_crops(torch.from_numpy(img), np.array([[x0, y0, side]]), (224, 224), fill, interp)
    got = out[0].permute(1, 2, 0).numpy()
    assert np.array_equal(got, ref.astype(np.float32))


@pytest.mark.parametrize("name", list(PARITY_BOXES))
def test_crop_batch_matches_open_clip_preprocess(enc, frame, name):
    """Batched crop tensor == open_clip preprocess(square-padded PIL crop) within 1/255 (max abs, pixel units)."""
    boxes = np.array(list(PARITY_BOXES.values()), np.float32)
    i = list(PARITY_BOXES).index(name)
    batch = enc.crop_batch(frame, boxes)
    assert batch.shape == (len(boxes), 3, 224, 224) and batch.dtype == torch.float32
    ref = enc.reference_crop_tensor(frame, boxes[i])
    std = torch.tensor(enc.std, dtype=torch.float32).view(3, 1, 1)
    diff = ((batch[i] - ref) * std).abs().max().item()
    assert diff <= PIXEL_TOL
    assert diff <= 1e-3 / 255  # in practice identical uint8 values


def test_preprocess_config_comes_from_model(enc):
    """Mean/std/size/interpolation are the model's open_clip preprocess config."""
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(enc.model)
    assert tuple(enc.mean) == tuple(cfg["mean"]) and tuple(enc.std) == tuple(cfg["std"])
    assert enc.input_size == (224, 224) and enc.interpolation == cfg["interpolation"] == "bicubic"
    assert enc.fill_u8 == (123, 117, 104)  # floor(255 * OpenAI mean + 0.5)


def test_padding_normalises_to_about_zero(enc, frame):
    """Pixels of the square outside the image are the mean colour (normalised |x| < 0.01)."""
    x = enc.crop_batch(frame, np.array([[-100, -100, -60, -60]], np.float32))  # fully outside
    assert x.abs().max().item() < 0.01


def test_tall_box_keeps_both_ends(enc):
    """A tall thin bar is square-padded, not centre-cropped: its top and bottom stay in the crop."""
    img = np.zeros((240, 320, 3), np.uint8)
    img[10:230, 150:170] = 255  # 20 x 220 white bar
    x = enc.crop_batch(img, np.array([[150, 10, 170, 230]], np.float32))[0]
    px = (x * torch.tensor(enc.std, dtype=torch.float32).view(3, 1, 1)
          + torch.tensor(enc.mean, dtype=torch.float32).view(3, 1, 1)) * 255
    # bar spans rows 22..202 of 224 (220/264 of the side, centred); column 112 is the centre
    assert px[:, 25, 112].min() > 250 and px[:, 199, 112].min() > 250
    assert px[:, 112, 40].max() < 130  # left of the bar: black image or mean-colour padding


# ----------------------------------------------------------------------------- image embeddings

def test_encode_boxes_shape_dtype_unit_norm(enc, frame):
    """(N, D) float32 unit rows; no boxes -> (0, D)."""
    e = enc.encode_boxes(frame, np.array([[10, 10, 60, 90], [100, 50, 200, 120]], np.float32))
    assert e.shape == (2, 512) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert enc.encode_boxes(frame, np.zeros((0, 4), np.float32)).shape == (0, 512)


def test_batched_equals_one_at_a_time(enc, frame):
    """One batched forward gives the same embeddings as encoding each box alone (cos >= 0.9999)."""
    boxes = np.array([PARITY_BOXES[k] for k in ("tall", "wide", "corner_at_border", "tiny_fractional")], np.float32)
    batched = enc.encode_boxes(frame, boxes)
    single = np.concatenate([enc.encode_boxes(frame, boxes[i:i + 1]) for i in range(len(boxes))])
    assert cos_rows(batched, single).min() >= COS_TOL
    sims = batched @ batched.T
    assert sims[~np.eye(len(boxes), dtype=bool)].max() < 0.99  # different crops really differ


def test_same_crop_twice_identical(enc, frame):
    """The same box twice in a batch and across calls gives bit-identical embeddings."""
    b = np.array([[30, 40, 130, 200], [30, 40, 130, 200]], np.float32)
    e1 = enc.encode_boxes(frame, b)
    e2 = enc.encode_boxes(frame, b)
    assert np.array_equal(e1[0], e1[1]) and np.array_equal(e1, e2)


def test_bucketing_pads_batch_and_keeps_results(enc, frame):
    """5 crops are padded to the 8-bucket (one forward) and the result does not change."""
    boxes = np.array(list(PARITY_BOXES.values())[:5], np.float32)
    plain = enc.encode_boxes(frame, boxes)
    seen = []
    enc.bucket_batches = True
    enc.fault_hook = lambda x: seen.append(int(x.shape[0]))
    bucketed = enc.encode_boxes(frame, boxes)
    assert seen == [8]
    assert bucketed.shape == (5, 512)
    assert cos_rows(plain, bucketed).min() >= COS_TOL


def test_batched_crop_path_embeddings_equal_reference_crops(enc, frame):
    """Embeddings from the batched crop path == model(open_clip preprocess of each PIL crop)."""
    boxes = np.array([PARITY_BOXES[k] for k in ("wide", "partly_outside", "whole_frame_downscale")], np.float32)
    ours = enc.encode_boxes(frame, boxes)
    ref_in = torch.stack([enc.reference_crop_tensor(frame, b) for b in boxes])
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(enc.model.encode_image(ref_in).float(), dim=-1).numpy()
    assert cos_rows(ours, ref).min() >= COS_TOL


def test_multi_frame_batch_equals_per_frame(enc, frame):
    """Crops of two frames (different sizes) in one batch == each frame encoded alone."""
    f2 = make_frame(120, 200, seed=3)
    b1 = np.array([[10, 10, 80, 60], [200, 100, 300, 230]], np.float32)
    b2 = np.array([[0, 0, 50, 120], [120, 30, 190, 90], [60, 60, 70, 65]], np.float32)
    multi = enc.encode_boxes_multi([frame, f2], [b1, b2])
    assert [m.shape for m in multi] == [(2, 512), (3, 512)]
    assert cos_rows(multi[0], enc.encode_boxes(frame, b1)).min() >= COS_TOL
    assert cos_rows(multi[1], enc.encode_boxes(f2, b2)).min() >= COS_TOL
    empty = enc.encode_boxes_multi([frame, f2], [np.zeros((0, 4), np.float32), b2[:1]])
    assert empty[0].shape == (0, 512) and cos_rows(empty[1], multi[1][:1]).min() >= COS_TOL


def test_invalid_inputs_raise(enc, frame):
    """Wrong image dtype/shape, NaN boxes and unknown modes are ValueErrors."""
    with pytest.raises(ValueError):
        enc.encode_boxes(frame.astype(np.float32), np.array([[0, 0, 10, 10]], np.float32))
    with pytest.raises(ValueError):
        enc.encode_boxes(frame[..., 0], np.array([[0, 0, 10, 10]], np.float32))
    with pytest.raises(ValueError):
        enc.encode_boxes(frame, np.array([[0, 0, np.nan, 10]], np.float32))
    with pytest.raises(ValueError):
        enc.encode_boxes(frame, np.array([[0, 0, 10, 10]], np.float32), mode="tiles")


# ----------------------------------------------------------------------------- OOM handling

def test_oom_once_retries_with_smaller_batches(enc, frame, caplog):
    """First forward raises torch.OutOfMemoryError -> halved batches, same result, warning logged."""
    boxes = np.array(list(PARITY_BOXES.values())[:4], np.float32)
    normal = enc.encode_boxes(frame, boxes)
    seen = []
    enc.inject_oom(1)
    inner = enc.fault_hook

    def hook(x):
        seen.append(int(x.shape[0]))
        inner(x)

    enc.fault_hook = hook
    with caplog.at_level(logging.WARNING, logger="clip_perception.encoder"):
        out = enc.encode_boxes(frame, boxes)
    assert seen == [4, 2, 2]
    assert cos_rows(out, normal).min() >= COS_TOL
    assert any("out of memory" in r.getMessage() for r in caplog.records)
    assert not enc.fell_back_to_cpu


def test_persistent_oom_halves_to_one_then_falls_back_to_cpu(enc, frame, caplog):
    """OOM at every size -> 4, 2, 1, then the CPU fallback re-runs the full batch with a warning."""
    boxes = np.array(list(PARITY_BOXES.values())[:4], np.float32)
    normal = enc.encode_boxes(frame, boxes)
    seen = []

    def hook(x):
        seen.append(int(x.shape[0]))
        if not enc.fell_back_to_cpu:
            raise torch.OutOfMemoryError("simulated CUDA out of memory")

    enc.fault_hook = hook
    with caplog.at_level(logging.WARNING, logger="clip_perception.encoder"):
        out = enc.encode_boxes(frame, boxes)
    assert seen == [4, 2, 1, 4]
    assert enc.fell_back_to_cpu and enc.device.type == "cpu" and enc.dtype == torch.float32
    assert any("falling back to CPU" in r.getMessage() for r in caplog.records)
    assert cos_rows(out, normal).min() >= COS_TOL


def test_oom_after_cpu_fallback_is_raised(enc, frame):
    """If even the CPU fallback runs out of memory, the error propagates (no endless retry)."""
    def hook(x):
        raise torch.OutOfMemoryError("always")

    enc.fault_hook = hook
    with pytest.raises(torch.OutOfMemoryError):
        enc.encode_boxes(frame, np.array([[0, 0, 20, 20], [5, 5, 30, 30]], np.float32))


# ----------------------------------------------------------------------------- text

def test_text_unit_norm_and_cache_hit(enc):
    """Unit rows; a second call for cached phrases returns identical values (no new forward)."""
    a = enc.encode_texts(["red ball", "blue cup"])
    assert a.shape == (2, 512) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    calls = []
    enc.fault_hook = lambda x: calls.append(1)
    b = enc.encode_texts(["blue cup", "red ball"])
    assert calls == [] and np.array_equal(b, a[::-1])
    b[0, 0] = 123.0  # callers get a fresh array; the cache is not modified
    assert np.array_equal(enc.encode_texts(["blue cup"])[0], a[1])


def test_text_prompt_ensemble_is_mean_of_normalised_templates(enc):
    """encode_texts = normalise(mean_t normalise(text_feature(template_t(phrase)))) (CLIP §3.1.4)."""
    phrase = "green bottle"
    texts = [t.format(phrase) for t in enc.prompt_templates]
    with torch.inference_mode():
        f = torch.nn.functional.normalize(enc.model.encode_text(enc.tokenizer(texts)).float(), dim=-1)
        ref = torch.nn.functional.normalize(f.mean(0), dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_texts([phrase])[0], ref, atol=1e-6)
    assert len(enc.prompt_templates) == 4 and enc.prompt_templates[0] == "a photo of a {}."


def test_long_text_truncated_with_warning(enc, caplog):
    """Text over the 77-token context is truncated (still a unit vector) and a warning is logged."""
    assert enc.context_length == 77
    long = " ".join(["word"] * 100)
    with caplog.at_level(logging.WARNING, logger="clip_perception.encoder"):
        e = enc.encode_texts([long])
    assert any("truncated" in r.getMessage() and "77" in r.getMessage() for r in caplog.records)
    assert abs(float(np.linalg.norm(e[0])) - 1.0) < 1e-5


def test_text_cache_is_bounded(enc):
    """The phrase cache is an LRU of text_cache_size entries."""
    old = enc.text_cache_size
    try:
        enc.text_cache_size = 2
        enc.encode_texts(["p1", "p2", "p3"])
        assert list(enc._text_cache) == ["p2", "p3"]
    finally:
        enc.text_cache_size = old


def test_attributes(enc):
    """logit_scale = exp(init log(1/0.07)) clamped <= 100; embed_dim, device, dtype."""
    assert enc.logit_scale == pytest.approx(1 / 0.07, rel=1e-5) and enc.logit_scale <= 100
    assert enc.embed_dim == 512 and enc.device.type == "cpu" and enc.dtype == torch.float32
    assert isinstance(enc, Encoder)


def test_encoder_protocol_accepts_custom_encoders():
    """Tests/pipeline can plug in any object with encode_texts / encode_boxes / logit_scale."""
    class Fake:
        logit_scale = 100.0

        def encode_texts(self, phrases):
            return np.eye(len(phrases), 4, dtype=np.float32)

        def encode_boxes(self, rgb, boxes, mode="crop"):
            return np.eye(len(boxes), 4, dtype=np.float32)

    assert isinstance(Fake(), Encoder)


def test_warmup_runs(enc):
    """warmup() runs text and the bucket(s) used (CPU: batch of 1) without error."""
    seen = []
    enc.fault_hook = lambda x: seen.append(tuple(x.shape))
    enc.warmup()
    assert (1, 3, 224, 224) in seen


# ----------------------------------------------------------------------------- dense mode

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
        x = enc._dense_input(torch.from_numpy(frame), frame.shape)
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


# ----------------------------------------------------------------------------- weights / loading

def test_offline_tag_without_cache_fails_fast(tmp_path, monkeypatch):
    """pretrained='openai' with empty caches and HF_HUB_OFFLINE=1 -> WeightsUnavailableError in seconds,
    naming model, tag and the cache paths checked."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as ei:
        ClipEncoder("ViT-B-32", pretrained="openai", device="cpu", cache_dir=str(tmp_path))
    assert time.monotonic() - t0 < 5.0
    msg = str(ei.value)
    assert "ViT-B-32" in msg and "openai" in msg and str(tmp_path) in msg and "--checkpoint" in msg


def test_allow_download_false_fails_fast_without_env(tmp_path, monkeypatch):
    """allow_download=False never touches the network, with no offline env var set."""
    for v in E.OFFLINE_ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(E, "_host_reachable", lambda *a, **k: pytest.fail("network probed"))
    with pytest.raises(WeightsUnavailableError, match="laion2b_s34b_b79k"):
        ClipEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu", cache_dir=str(tmp_path),
                    allow_download=False)


def test_missing_checkpoint_path(tmp_path):
    """A checkpoint path that does not exist -> WeightsUnavailableError naming the path."""
    p = tmp_path / "nope.pt"
    with pytest.raises(WeightsUnavailableError, match="nope.pt"):
        ClipEncoder("ViT-B-32", pretrained=str(p), device="cpu")


def test_unknown_model_and_tag_are_value_errors():
    """Unknown architecture -> ValueError listing valid names; unknown tag -> ValueError listing tags."""
    with pytest.raises(ValueError, match="ViT-B-32"):
        ClipEncoder("ViT-B-33", pretrained="none", device="cpu")
    with pytest.raises(ValueError, match="laion2b_s34b_b79k"):
        ClipEncoder("ViT-B-32", pretrained="not_a_tag", device="cpu")


def test_random_weights_warn_and_cpu_half_precision_falls_back(caplog):
    """pretrained='none' logs the 'random weights' warning; fp16 on CPU -> fp32 with a warning."""
    with caplog.at_level(logging.WARNING, logger="clip_perception.encoder"):
        e = ClipEncoder("ViT-B-32", pretrained="none", device="cpu", precision="fp16")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "random weights" in text and "meaningless" in text and "fp32" in text
    assert e.dtype == torch.float32 and e.precision == "fp32"


def test_resolve_device_precision():
    """auto -> cuda/fp16 when CUDA exists, else cpu/fp32; unknown precision is a ValueError."""
    dev, prec = resolve_device_precision("auto", "auto")
    if torch.cuda.is_available():
        assert (dev.type, prec) == ("cuda", "fp16")
    else:
        assert (dev.type, prec) == ("cpu", "fp32")
    assert resolve_device_precision("cpu", "bf16") == (torch.device("cpu"), "fp32")
    with pytest.raises(ValueError):
        resolve_device_precision("cpu", "int4")


@pytest.fixture(scope="module")
def saved_checkpoints(enc, tmp_path_factory):
    """state_dict of the random model saved with torch.save (.pt) and safetensors."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("ckpt")
    sd = {k: v.detach().contiguous() for k, v in enc.model.state_dict().items()}
    pt, st = d / "random_vitb32.pt", d / "random_vitb32.safetensors"
    torch.save(sd, pt)
    save_file(sd, str(st))
    return pt, st


@pytest.mark.parametrize("kind", ["pt", "safetensors"])
def test_checkpoint_roundtrip_identical_embeddings(enc, frame, saved_checkpoints, kind):
    """A checkpoint saved from the random model loads and reproduces its embeddings exactly."""
    path = saved_checkpoints[0 if kind == "pt" else 1]
    boxes = np.array([[10, 10, 90, 150], [150, 60, 310, 200]], np.float32)
    loaded = ClipEncoder("ViT-B-32", pretrained=str(path), device="cpu")
    try:
        assert loaded.weights_source == str(path)
        np.testing.assert_array_equal(loaded.encode_boxes(frame, boxes), enc.encode_boxes(frame, boxes))
        np.testing.assert_array_equal(loaded.encode_texts(["mug"]), enc.encode_texts(["mug"]))
    finally:
        del loaded


def test_truncated_and_garbage_checkpoints_give_clear_errors(saved_checkpoints, tmp_path):
    """Truncated .pt and garbage .safetensors -> CheckpointError (a WeightsUnavailableError) naming the file."""
    pt, _ = saved_checkpoints
    trunc = tmp_path / "truncated.pt"
    with open(pt, "rb") as f:
        trunc.write_bytes(f.read(1 << 20))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    for p in (trunc, garbage):
        with pytest.raises(CheckpointError) as ei:
            ClipEncoder("ViT-B-32", pretrained=str(p), device="cpu")
        assert isinstance(ei.value, WeightsUnavailableError)
        assert str(p) in str(ei.value) and "truncated" in str(ei.value)


def test_tag_loads_offline_from_local_hf_cache(enc, saved_checkpoints, tmp_path, monkeypatch):
    """pretrained='openai' found in a local Hugging Face cache loads with the network off,
    with the tag's QuickGELU and preprocessing config."""
    from open_clip.transformer import QuickGELU

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(E, "_host_reachable", lambda *a, **k: pytest.fail("network probed"))
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    os.symlink(saved_checkpoints[0], snap / "open_clip_pytorch_model.bin")
    loaded = ClipEncoder("ViT-B-32", pretrained="openai", device="cpu", cache_dir=str(tmp_path))
    try:
        assert loaded.weights_source.endswith("open_clip_pytorch_model.bin")
        assert isinstance(loaded.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
        assert torch.equal(loaded.model.visual.proj, enc.model.visual.proj)
        assert loaded.fill_u8 == (123, 117, 104)
    finally:
        del loaded


@pytest.mark.parametrize("requested,cpus,expected", [(0, 2, 1), (0, 1, 1), (0, 16, 15), (3, 2, 3), (1, 64, 1)])
def test_resolve_cpu_threads_auto_leaves_one_core(requested, cpus, expected):
    """cpu_threads: 0 = usable CPUs - 1 (at least 1); a positive value is used as given."""
    assert E.resolve_cpu_threads(requested, cpus=cpus) == expected


def test_resolve_cpu_threads_rejects_negative():
    with pytest.raises(ValueError, match="cpu_threads must be >= 0"):
        E.resolve_cpu_threads(-1, cpus=4)


def test_set_cpu_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert E.set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        assert E.set_cpu_threads(0) == max(1, E.usable_cpus() - 1) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
