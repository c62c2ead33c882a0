"""Tests for clip_perception.encoder: ClipEncoder model calls, text cache, batching, OOM fallback
(CPU, ViT-B-32 with random weights, no network).  Crops: test_crops.py; dense mode:
test_dense.py; weights: test_weights.py; device/threads: test_device.py.

Tolerances used below:
* embeddings: cosine >= 0.9999 where batch composition differs (float
  summation order), exact equality where the computation is identical.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from clip_perception import encoder as E
from clip_perception.encoder import ClipEncoder, Encoder, EncoderOptions

from test_crops import PARITY_BOXES, make_frame

COS_TOL = 0.9999


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


@pytest.fixture(scope="module")
def enc() -> ClipEncoder:
    torch.manual_seed(0)  # random weights: seed so value checks are reproducible
    return ClipEncoder("ViT-B-32", pretrained="none", device="cpu", precision="fp32")  # exact parity checks


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return make_frame()


@pytest.fixture(autouse=True)
def _reset_hooks(enc):
    yield
    enc.fault_hook = None
    enc.fell_back_to_cpu = False
    enc.bucket_batches = False


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

        def encode_boxes(self, rgb, boxes, mode="crop", size=None):
            return np.eye(len(boxes), 4, dtype=np.float32)

    assert isinstance(Fake(), Encoder)


def test_warmup_runs(enc):
    """warmup() runs text and the bucket(s) used (CPU: batch of 1) without error."""
    seen = []
    enc.fault_hook = lambda x: seen.append(tuple(x.shape))
    enc.warmup()
    assert (1, 3, 224, 224) in seen


# ----------------------------------------------------------------------------- options / backends

def test_encoder_backend_selection_and_cpu_batch_cap(enc):
    """auto -> pillow on CPU; CPU forwards are chunked to CPU_MAX_BATCH; bad values raise."""
    assert enc.crop_backend == "pillow"
    assert enc.max_batch == E.CPU_MAX_BATCH
    seen = []
    enc.fault_hook = lambda x: seen.append(int(x.shape[0]))
    rgb = np.full((64, 64, 3), 90, np.uint8)
    enc.encode_boxes(rgb, np.tile(np.array([[4, 4, 40, 40]], np.float32), (E.CPU_MAX_BATCH + 3, 1)))
    assert seen == [E.CPU_MAX_BATCH, 3]
    with pytest.raises(ValueError):
        ClipEncoder("ViT-B-32", pretrained="none", device="cpu", crop_backend="opencv")


def test_encoder_options_validate_and_normalise():
    """Options are checked before any model is built; values are normalised (sorted buckets, tuples)."""
    o = EncoderOptions(prompt_templates=[], batch_buckets=[8, 0, 2, 2], cache_dir=None, max_batch="4")
    assert o.prompt_templates == ("{}",) and o.batch_buckets == (2, 8) and o.max_batch == 4
    assert EncoderOptions().prompt_templates == E.DEFAULT_PROMPT_TEMPLATES
    for bad in ({"prompt_templates": ["no placeholder"]}, {"batch_buckets": [0]}, {"context_margin": 2.5},
                {"crop_backend": "matmul"}, {"max_batch": 0}):
        with pytest.raises(ValueError):
            EncoderOptions(**bad)


def test_encoder_takes_options_or_keywords_not_both():
    """ClipEncoder(options=...) == the same fields as keywords; both together or a typo -> TypeError."""
    torch.manual_seed(0)
    e = ClipEncoder("ViT-B-32", pretrained="none", device="cpu",
                    options=EncoderOptions(prompt_templates=["a {}."], context_margin=0.25, max_batch=3))
    assert e.prompt_templates == ("a {}.",) and e.context_margin == 0.25 and e.max_batch == 3
    with pytest.raises(TypeError):
        ClipEncoder("ViT-B-32", pretrained="none", device="cpu", options=EncoderOptions(), max_batch=3)
    with pytest.raises(TypeError):
        ClipEncoder("ViT-B-32", pretrained="none", device="cpu", crop_margin=0.1)
