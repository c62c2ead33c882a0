"""Tests for clip_perception.weights: offline-first resolution, fail-fast errors, checkpoints,
and the public ``weights_problem`` / ``weights_caches`` (CPU, no network: every test either
sets an offline variable, passes ``allow_download=False``, or fails the network probe).
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest
import torch

from clip_perception import weights as W
from clip_perception.encoder import ClipEncoder
from clip_perception.weights import (CheckpointError, WeightsUnavailableError, resolve_weights, weights_caches,
                                     weights_problem)

from test_crops import make_frame


@pytest.fixture(scope="module")
def enc() -> ClipEncoder:
    torch.manual_seed(0)
    return ClipEncoder("ViT-B-32", pretrained="none", device="cpu")


@pytest.fixture()
def no_network(monkeypatch):
    monkeypatch.setattr(W, "_host_reachable", lambda *a, **k: pytest.fail("network probed"))


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


def test_allow_download_false_fails_fast_without_env(tmp_path, monkeypatch, no_network):
    """allow_download=False never touches the network, with no offline env var set."""
    for v in W.OFFLINE_ENV_VARS:
        monkeypatch.delenv(v, raising=False)
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
    with caplog.at_level(logging.WARNING, logger="clip_perception"):
        e = ClipEncoder("ViT-B-32", pretrained="none", device="cpu", precision="fp16")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "random weights" in text and "meaningless" in text and "fp32" in text
    assert e.dtype == torch.float32 and e.precision == "fp32"


def test_resolve_weights_plans_without_loading(tmp_path, monkeypatch, no_network):
    """none -> kind 'none'; an existing file -> 'file' with its path; local-dir that is missing -> error."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights("ViT-B-32", "none").kind == "none"
    assert resolve_weights("ViT-B-32", None).source == "none"
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"x")
    plan = resolve_weights("ViT-B-32", str(ckpt))
    assert (plan.kind, plan.path, plan.source) == ("file", str(ckpt), str(ckpt))
    with pytest.raises(WeightsUnavailableError, match="not found"):
        resolve_weights(f"local-dir:{tmp_path / 'missing'}", None)
    with pytest.raises(ValueError, match="empty Hugging Face Hub id"):
        resolve_weights("ViT-B-32", "hf-hub:")


def test_weights_problem_says_what_is_missing_and_how_to_fix(tmp_path, monkeypatch, no_network):
    """None for random weights and for an existing checkpoint; else the message names model, tag,
    cache and the remedy; an unknown model or tag is a ValueError."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights_problem("ViT-B-32", "none") is None
    assert weights_problem("ViT-B-32", "") is None
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x")
    assert weights_problem("ViT-B-32", str(ckpt)) is None
    msg = weights_problem("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert msg is not None and "ViT-B-32" in msg and "'openai'" in msg and str(tmp_path) in msg
    assert "offline mode set by HF_HUB_OFFLINE" in msg and "--checkpoint PATH" in msg
    assert "not found" in weights_problem("ViT-B-32", str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="unknown open_clip model"):
        weights_problem("ViT-B-33", "openai")
    with pytest.raises(ValueError, match="known tags"):
        weights_problem("ViT-B-32", "not_a_tag")


def test_weights_caches_names_both_caches(tmp_path, monkeypatch):
    """With cache_dir both caches are that folder; without it, huggingface_hub's cache and ~/.cache/clip."""
    import huggingface_hub.constants as hfc

    assert weights_caches(str(tmp_path)) == f"{tmp_path}, {tmp_path}"
    assert weights_caches() == f"{hfc.HF_HUB_CACHE}, {os.path.expanduser('~/.cache/clip')}"


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
def test_checkpoint_roundtrip_identical_embeddings(enc, saved_checkpoints, kind):
    """A checkpoint saved from the random model loads and reproduces its embeddings exactly."""
    frame = make_frame()
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


def test_tag_loads_offline_from_local_hf_cache(enc, saved_checkpoints, tmp_path, monkeypatch, no_network):
    """pretrained='openai' found in a local Hugging Face cache loads with the network off,
    with the tag's QuickGELU and preprocessing config."""
    from open_clip.transformer import QuickGELU

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    os.symlink(saved_checkpoints[0], snap / "open_clip_pytorch_model.bin")
    assert weights_problem("ViT-B-32", "openai", cache_dir=str(tmp_path)) is None
    loaded = ClipEncoder("ViT-B-32", pretrained="openai", device="cpu", cache_dir=str(tmp_path))
    try:
        assert loaded.weights_source.endswith("open_clip_pytorch_model.bin")
        assert isinstance(loaded.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
        assert torch.equal(loaded.model.visual.proj, enc.model.visual.proj)
        assert loaded.fill_u8 == (123, 117, 104)
    finally:
        del loaded
