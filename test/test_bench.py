"""Tests for ``clip-perception bench`` (clip_perception.tools.bench) and the fast paths it measures.

Correctness only -- no assertion is about timing (the figures live in the bench report):

* every ranking mode (crop, dense, cascade) picks the same top-1 as ``crop`` on sim scenes
  whose answer is clear, with the colour test encoder (``fake_encoders.ColorTestEncoder``)
  through ``pipeline.Detector`` and through ``pipeline.rank_boxes`` on the bench's padded proposals;
* the real ViT-B-32 (random weights) ``ClipEncoder`` runs every mode end to end (shapes,
  ranges, stage timings);
* the crop backends (Pillow, torchvision) and their parity with open_clip's ``preprocess``
  are tested in ``test_crops.py`` (not repeated here);
* proposals are padded / capped to exactly ``--proposals`` boxes;
* ``bench --frames 3 --json`` (small settings, tiny peers) emits every field of the report, the levers'
  and the OWL-ViT / OWLv2 peer rows and ``speedup_vs_peer``;
* the peers (``bench_peers``): the transformers configs are the published sizes, the processor's
  resize / pad and box scaling;
* ``--age-run`` measures detections' age through the in-process node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_perception.device import cpu_has_native_bf16
from clip_perception.tools import bench
from clip_perception.command import parse_command
from clip_perception.encoder import ClipEncoder
from clip_perception.params import make_config
from clip_perception.pipeline import Detector, rank_boxes
from clip_perception.boxes import box_iou
from clip_perception.proposals import propose
from clip_perception.sim.scene import make_scene

from fake_encoders import ColorTestEncoder

REPO = Path(__file__).resolve().parents[1]
W, H = 320, 240
COMMAND = "pick up the red ball"
OUR_MODES = ("crop", "dense", "cascade")

#: Clear scenes: one red ball among objects of other colours (explicit table positions, metres).
CLEAR_SCENES = {
    "ball_left_of_cube_and_cup": [
        {"shape": "ball", "color": "red", "xy": (0.05, 0.15)},
        {"shape": "cube", "color": "blue", "xy": (0.0, -0.15)},
        {"shape": "cup", "color": "green", "xy": (0.15, 0.0)},
    ],
    "ball_right_among_three": [
        {"shape": "ball", "color": "red", "xy": (0.0, -0.2)},
        {"shape": "ball", "color": "blue", "xy": (0.0, 0.2)},
        {"shape": "box", "color": "yellow", "xy": (0.15, 0.0)},
        {"shape": "cylinder", "color": "purple", "xy": (-0.12, 0.02)},
    ],
}


def render(objects):
    scene = make_scene(seed=0, width=W, height=H, objects=objects)
    try:
        return scene.render()
    finally:
        scene.close()


@pytest.fixture(scope="module")
def clear_frames():
    return {name: render(objs) for name, objs in CLEAR_SCENES.items()}


@pytest.fixture(scope="module")
def clip_encoder():
    torch.manual_seed(0)
    return ClipEncoder("ViT-B-32", pretrained="none", device="cpu", precision="fp32")  # reference math in fp32


def gt_box(frame, name: str = "red ball") -> np.ndarray:
    (obj,) = frame.find(name)
    return np.asarray(obj.box, np.float32)


# ----------------------------------------------------------------------------- modes agree

@pytest.mark.parametrize("scene_name", list(CLEAR_SCENES))
def test_detector_modes_same_top1_as_crop_on_clear_scene(clear_frames, scene_name):
    """Detector (own proposals) in crop, dense, cascade and fixed cascade (cascade_margin 1) mode: same top-1 box,
    on the red ball, with 3D; the adaptive cascade crops at most cascade_top_k boxes, the fixed one exactly k."""
    fr = clear_frames[scene_name]
    best = {}
    for mode in OUR_MODES + ("cascade_fixed",):
        enc = ColorTestEncoder()
        values = {"pretrained": "none", "device": "cpu", "mode": mode.split("_")[0]}
        if mode == "cascade_fixed":
            values["cascade_margin"] = 1.0
        det = Detector(make_config(values), encoder=enc)
        res = det.detect(fr.rgb, COMMAND, depth=fr.depth, K=fr.K)
        assert res.mode == values["mode"] and res.found, (mode, res.notes)
        best[mode] = res.best
        n, k = len(res.proposals), det.config.ranking.cascade_top_k
        assert k == 3 and n > k  # more proposals than cascade_top_k (default 3): the cascade starts dense
        if mode == "cascade_fixed":
            assert enc.modes == ["dense", "crop"] and enc.calls["boxes_encoded"] == n + k
        elif mode == "cascade":
            assert enc.modes[0] == "dense" and set(enc.modes) <= {"dense", "crop"}
            assert n <= enc.calls["boxes_encoded"] <= n + k
        else:
            assert set(enc.modes) == {mode}
    for mode in OUR_MODES + ("cascade_fixed",):
        assert np.array_equal(best[mode].box, best["crop"].box), mode
    assert box_iou(best["crop"].box[None], gt_box(fr)[None])[0, 0] >= 0.5
    (ball,) = fr.find("red ball")
    # the box median depth is the visible front surface: within one ball radius + 1 cm of the centre
    assert np.linalg.norm(best["crop"].position - ball.center_optical) <= 0.5 * ball.size[0] + 0.01


@pytest.mark.parametrize("scene_name", list(CLEAR_SCENES))
def test_rank_modes_same_top1_on_padded_bench_proposals(clear_frames, scene_name):
    """pipeline.rank_boxes on the bench's exactly-N padded proposals: every mode picks the crop mode's index."""
    fr = clear_frames[scene_name]
    boxes, obj = propose(fr.rgb, depth=fr.depth, K=fr.K, methods=("selective_search", "contours", "depth"),
                         max_proposals=40)
    boxes, obj = bench.pad_proposals(boxes, obj, W, H, 40)
    cmd = parse_command(COMMAND).first
    top = {}
    for mode in OUR_MODES:
        cfg = make_config({"pretrained": "none", "mode": mode})
        res = rank_boxes(fr.rgb, boxes, obj, cmd, ColorTestEncoder(), cfg, depth=fr.depth)
        assert res.mode == mode and len(res.detections) > 0
        top[mode] = int(res.order[0])
    assert top["dense"] == top["crop"] and top["cascade"] == top["crop"]
    assert box_iou(boxes[top["crop"]][None], gt_box(fr)[None])[0, 0] >= 0.5


def test_real_clip_encoder_every_mode_end_to_end_shapes(clear_frames, clip_encoder):
    """Random-weight ViT-B-32 through Detector in every mode: shapes, ranges, 3D and encoder stage timings."""
    from clip_perception.types import Timings

    fr = clear_frames["ball_left_of_cube_and_cup"]
    boxes, obj = bench.pad_proposals(*propose(fr.rgb, methods=("selective_search", "contours"), max_proposals=12),
                                     W, H, 12)
    expected_stages = {"crop": {"encoder.crop", "encoder.image", "encoder.text"},
                       "dense": {"encoder.dense_input", "encoder.dense_forward", "encoder.pool"},
                       "cascade": {"encoder.dense_input", "encoder.dense_forward", "encoder.pool",
                                   "encoder.crop", "encoder.image"}}
    for mode in OUR_MODES:
        cfg = make_config({"pretrained": "none", "device": "cpu", "mode": mode, "score_threshold": 0.0,
                           "cascade_top_k": 4, "top_k": 5})
        clip_encoder.stage_timings = t = Timings()
        try:
            res = Detector(cfg, encoder=clip_encoder).detect(fr.rgb, COMMAND, depth=fr.depth, K=fr.K,
                                                              proposals=(boxes, obj))
        finally:
            clip_encoder.stage_timings = None
        assert res.mode == mode
        assert res.proposals.shape == (12, 4) and np.array_equal(res.proposals, boxes)
        assert 1 <= len(res.detections) <= 5  # threshold 0: up to top_k candidates (near-duplicates removed)
        for d in res.detections:
            assert d.box.shape == (4,) and d.box.dtype == np.float32
            assert 0.0 <= d.confidence <= 1.0 and 0.0 <= d.clip_score <= 1.0
            assert d.position is None or (d.position.shape == (3,) and np.all(np.isfinite(d.position)))
        assert any(d.position is not None for d in res.detections)
        assert expected_stages[mode] - {"encoder.text"} <= set(t.stages_ms), (mode, t.stages_ms)
        assert all(v >= 0.0 for v in t.stages_ms.values())
    emb = clip_encoder.encode_boxes(fr.rgb, boxes, mode="dense")
    assert emb.shape == (12, clip_encoder.embed_dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["crop", "cascade"])
def test_detect_many_batches_cameras_and_equals_per_frame_results(clear_frames, clip_encoder, mode):
    """Multi-camera case: two frames ranked through one encode_boxes_multi call give the results
    of two separate detect calls (same boxes, scores within 1e-4)."""
    frames = [clear_frames[name] for name in list(CLEAR_SCENES)[:2]]
    cfg = make_config({"pretrained": "none", "device": "cpu", "mode": mode, "score_threshold": 0.0,
                       "cascade_top_k": 3, "top_k": 3, "max_proposals": 8,
                       "proposal_methods": ["selective_search", "contours"]})
    calls = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def encode_boxes_multi(self, rgbs, boxes, mode="crop"):
            calls.append((len(rgbs), mode))
            return self.inner.encode_boxes_multi(rgbs, boxes, mode=mode)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    detector = Detector(cfg, encoder=Counting(clip_encoder))
    many = detector.detect_many([(f.rgb, COMMAND, f.depth, f.K) for f in frames])
    assert calls == [(2, "crop" if mode == "crop" else "dense")]
    single = [Detector(cfg, encoder=clip_encoder).detect(f.rgb, COMMAND, depth=f.depth, K=f.K) for f in frames]
    for got, want in zip(many, single):
        assert np.array_equal(got.proposals, want.proposals)
        # random weights leave near-ties between candidates: compare each box's score, not the order
        want_scores = {d.roi: d.score for d in want.detections}
        common = [d for d in got.detections if d.roi in want_scores]
        assert common and got.detections[0].roi in want_scores
        for d in common:
            assert d.score == pytest.approx(want_scores[d.roi], abs=1e-3)


# ----------------------------------------------------------------------------- helpers

def test_pad_proposals_exact_count_keeps_raw_boxes_first():
    """Fewer raw boxes -> padded with grid windows to exactly N; more -> the first N; all inside the image."""
    raw = np.array([[10, 10, 50, 60], [100, 80, 180, 200]], np.float32)
    b, s = bench.pad_proposals(raw, np.array([0.9, 0.8], np.float32), W, H, 25)
    assert b.shape == (25, 4) and s.shape == (25,) and b.dtype == np.float32
    assert np.array_equal(b[:2], raw) and np.allclose(s[:2], [0.9, 0.8])
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= W) and np.all(b[:, 1] >= 0) and np.all(b[:, 3] <= H)
    assert len(np.unique(b[2:], axis=0)) == 23  # distinct grid windows
    b2, s2 = bench.pad_proposals(b, s, W, H, 5)
    assert np.array_equal(b2, b[:5]) and np.array_equal(s2, s[:5])
    with pytest.raises(ValueError):
        bench.pad_proposals(raw, s[:2], W, H, 0)


def test_parse_modes():
    """'all' -> every mode in run order; a list is reordered; unknown names raise."""
    assert bench.parse_modes("all") == ["naive", "crop", "dense", "cascade"]
    assert bench.parse_modes("cascade,naive") == ["naive", "cascade"]
    with pytest.raises(ValueError):
        bench.parse_modes("crop,tiles")


LEVERS_ALL = ["cascade_fixed", "cascade_top10", "cascade_crop224", "cascade_crop160", "cascade_fp32", "cascade_int8",
              "cascade_224_top10", "cascade_previous"]


def test_parse_peers_and_levers():
    """'all' / 'none' / lists of peers and levers, in run order; unknown names raise."""
    assert bench.parse_peers("all") == ["owlvit_b32", "owlvit_b32_bf16", "owlv2_b16"]
    assert bench.parse_peers("none") == []
    assert bench.parse_peers("owlv2_b16,owlvit_b32") == ["owlvit_b32", "owlv2_b16"]
    assert bench.parse_levers("all") == LEVERS_ALL and bench.parse_levers("none") == []
    assert bench.parse_levers("cascade_int8,cascade_crop224") == ["cascade_crop224", "cascade_int8"]
    with pytest.raises(ValueError):
        bench.parse_peers("yolo")
    with pytest.raises(ValueError):
        bench.parse_levers("fp16")


def test_peer_configs_are_the_published_models():
    """transformers' OwlViTConfig() is B/32 at 768 px and Owlv2Config() B/16 (the bench sets 960 px)."""
    transformers = pytest.importorskip("transformers")
    v1, v2 = transformers.OwlViTConfig().vision_config, transformers.Owlv2Config().vision_config
    assert (v1.patch_size, v1.image_size, v1.hidden_size, v1.num_hidden_layers) == (32, 768, 768, 12)
    assert (v2.patch_size, v2.hidden_size, v2.num_hidden_layers) == (16, 768, 12)
    assert bench.PEER_SPECS["owlvit_b32"].image_size == 768 and bench.PEER_SPECS["owlv2_b16"].image_size == 960


@pytest.mark.parametrize("name", ["owlvit_b32", "owlv2_b16"])
def test_peer_processor_and_detections(clear_frames, name):
    """Tiny peer: OWL-ViT stretches the frame to the square input, OWLv2 pads it (grey 0.5) first; boxes come
    back in frame pixels inside the frame; stages are accounted."""
    pytest.importorskip("transformers")
    from clip_perception.tools.bench_peers import CLIP_MEAN, CLIP_STD

    peer = bench.PeerDetector(name, tiny=True)
    fr = clear_frames["ball_left_of_cube_and_cup"]
    x, scale = peer.preprocess(fr.rgb)
    assert tuple(x.shape) == (1, 3, 64, 64) and x.dtype == torch.float32
    if name == "owlv2_b16":
        assert scale == (float(W), float(W))  # the 320 x 240 frame padded to 320 x 320
        grey = [(0.5 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)]  # bottom rows: padding only
        np.testing.assert_allclose(x[0, :, -1, :].mean(dim=1).numpy(), grey, atol=1e-4)
    else:
        assert scale == (float(W), float(H))
    stages: dict = {}
    dets = peer.detect(fr.rgb, ["red ball"], 0.0, 5, stages)
    patches = (64 // peer.model.config.vision_config.patch_size) ** 2  # one box per patch: 4 (B/32), 16 (B/16)
    assert len(dets) == min(5, patches) and set(stages) == {"crop_preprocess", "image_encode", "ranking"}
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    for d in dets:
        assert d.box.dtype == np.float32 and np.all(d.box >= 0) and d.box[2] <= W and d.box[3] <= H
        assert 0.0 <= d.score <= 1.0
    ids, mask = peer.tokens(["red ball"])
    assert ids.shape == (1, 16) and int(mask.sum()) == 8  # <sot> a photo of a red ball <eot>


def test_bf16_peer_runs_model_and_input_in_bf16(clear_frames):
    """owlvit_b32_bf16: the OWL-ViT peer with weights and input in bf16 on a CPU with native bf16 (else fp32,
    as resolve_device_precision decides); detections come back as float32 frame-pixel boxes."""
    pytest.importorskip("transformers")
    peer = bench.PeerDetector("owlvit_b32_bf16", tiny=True)
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    fr = clear_frames["ball_left_of_cube_and_cup"]
    x, _ = peer.preprocess(fr.rgb)
    assert x.dtype == expected and next(peer.model.parameters()).dtype == expected
    dets = peer.detect(fr.rgb, ["red ball"], 0.0, 5, {})
    assert len(dets) == 4 and all(d.box.dtype == np.float32 and 0.0 <= d.score <= 1.0 for d in dets)


def test_naive_baseline_scores_every_box_with_text_reencoded(clear_frames, clip_encoder):
    """Naive baseline: one probability per box, text encoded per call, stages accounted."""
    fr = clear_frames["ball_left_of_cube_and_cup"]
    boxes = np.array([[10, 10, 60, 70], [100, 50, 200, 150], [250, 180, 320, 240]], np.float32)
    nb = bench.NaiveBaseline(clip_encoder.model, clip_encoder.preprocess, clip_encoder.tokenizer, clip_encoder.device,
                             ["a photo of a {}."], ["background", "a wall"], clip_encoder.logit_scale)
    stages: dict = {}
    p = nb.rank(fr.rgb, boxes, "red ball", stages)
    assert p.shape == (3,) and p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))
    assert set(stages) == {"text_encode", "crop_preprocess", "image_encode", "ranking"}
    # the per-crop model call on open_clip's preprocess equals a batched call on the same inputs
    from PIL import Image

    with torch.inference_mode():
        x = torch.stack([clip_encoder.preprocess(Image.fromarray(fr.rgb).crop(tuple(int(v) for v in b)))
                         for b in boxes])
        f = torch.nn.functional.normalize(clip_encoder.model.encode_image(x).float(), dim=-1)
        texts = ["a photo of a red ball.", "a photo of a background.", "a photo of a a wall."]
        t = torch.nn.functional.normalize(clip_encoder.model.encode_text(clip_encoder.tokenizer(texts)).float(), dim=-1)
        ref = (clip_encoder.logit_scale * f @ t.T).softmax(-1)[:, 0].numpy()
    np.testing.assert_allclose(p, ref, atol=1e-4)


# ----------------------------------------------------------------------------- the CLI report

def _run_bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "osmesa"))
    return subprocess.run([sys.executable, "-m", "clip_perception.tools.bench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_bench_json_report_has_every_field():
    """`bench --frames 3 --json` (small settings, tiny peers) -> JSON with results per mode, lever and peer,
    speed-ups against naive and the peers, config, proposals."""
    proc = _run_bench("--frames", "3", "--json", "--proposals", "20", "--naive-frames", "1",
                      "--width", "320", "--height", "240", "--device", "cpu", "--tiny-peers")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(proc.stdout)
    assert "end-to-end" in proc.stderr and "speed-up vs naive" in proc.stderr  # the table goes to stderr

    cfg = rep["config"]
    for key, typ in (("model", str), ("device", str), ("precision", str), ("proposals", int), ("frames", int),
                     ("naive_frames", int), ("torch_threads", int), ("random_weights", bool), ("width", int),
                     ("height", int), ("image_size", list), ("cascade_top_k", int)):
        assert isinstance(cfg[key], typ), key
    native_bf16 = cpu_has_native_bf16()
    assert cfg["model"] == "ViT-B-32" and cfg["device"] == "cpu" and cfg["precision"] == ("bf16" if native_bf16 else "fp32")
    assert cfg["random_weights"] is True and cfg["image_size"] == [320, 240]
    assert cfg["proposals"] == 20 and cfg["frames"] == 3 and cfg["naive_frames"] == 1 and cfg["torch_threads"] >= 1

    results = {r["mode"]: r for r in rep["results"]}
    levers = [m for m in LEVERS_ALL if native_bf16 or m != "cascade_fp32"]  # without bf16 the default is fp32
    peers = ["owlvit_b32", "owlvit_b32_bf16", "owlv2_b16"]
    rows = ["naive", "crop", "dense", "cascade", *levers, *peers]
    assert list(results) == rows
    assert cfg["levers"] == levers and list(cfg["peers"]) == peers
    assert cfg["cascade_margin"] == 0.1 and cfg["cascade_crop_size"] == 128 and rep["default_mode"] == "cascade"
    for mode, r in results.items():
        assert r["frames"] == (1 if mode == "naive" else 3)
        for key in ("fps", "p50_ms", "p90_ms", "peak_rss_mb", "crops_per_s"):
            assert isinstance(r[key], float) and r[key] > 0, (mode, key)
        assert r["p90_ms"] >= r["p50_ms"] >= r["min_ms"] > 0
        assert len(r["e2e_ms_per_frame"]) == r["frames"]
        assert isinstance(r["cpu_ms"]["p50"], float) and r["cpu_ms"]["p50"] > 0
        assert set(r["stages_ms"]) == set(bench.STAGES)
        for stage, v in r["stages_ms"].items():
            assert set(v) == {"p50", "p90"} and all(isinstance(x, float) and x >= 0 for x in v.values()), stage
        assert r["stages_ms"]["image_encode"]["p50"] > 0 and r["stages_ms"]["decode"]["p50"] > 0
        assert "cuda_peak_mb" not in r  # CPU run
        # peers run no proposals; ours are charged the same proposal time
        assert (r["stages_ms"]["proposals"]["p50"] == 0) == (mode in peers)
    assert results["naive"]["stages_ms"]["text_encode"]["p50"] > 0  # re-encoded every frame
    assert results["naive"]["crops_encoded_per_frame"] == 20 and results["crop"]["crops_encoded_per_frame"] == 20
    assert results["dense"]["crops_encoded_per_frame"] == 0
    assert cfg["cascade_top_k"] == 3 and results["cascade_fixed"]["crops_encoded_per_frame"] == 3
    assert 0 <= results["cascade"]["crops_encoded_per_frame"] <= 3
    assert all(results[p]["crops_encoded_per_frame"] == 0 for p in peers)

    sp = rep["speedup_vs_naive"]
    assert set(sp) == set(rows) | {"default"}
    assert sp["naive"] == pytest.approx(1.0) and sp["default"] == sp["cascade"]
    assert all(isinstance(v, float) and v > 0 for v in sp.values())
    assert sp["crop"] == pytest.approx(results["crop"]["fps"] / results["naive"]["fps"])
    for key in ("best_frame_speedup_vs_naive", "cpu_time_speedup_vs_naive"):
        assert set(rep[key]) == set(rows) and all(isinstance(v, float) and v > 0 for v in rep[key].values())
    spp = rep["speedup_vs_peer"]
    assert list(spp) == peers
    for peer, per in spp.items():
        assert set(per) == set(rows) - set(peers) | {"default"} and per["default"] == per["cascade"]
        assert per["dense"] == pytest.approx(results["dense"]["fps"] / results[peer]["fps"])
    assert "speed-up vs owlvit_b32" in proc.stderr and "OWL-ViT B/32 @ 768 px" in proc.stderr

    pm = rep["proposal_methods_ms"]
    assert {"selective_search", "contours", "depth", "total"} <= set(pm)
    assert all(isinstance(v["p50"], float) and v["p50"] >= 0 for v in pm.values())
    assert len(rep["raw_proposals"]) == 3
    assert rep["age_run"] is None


def test_bench_bad_mode_is_exit_code_2_through_cli():
    """`clip-perception bench -- --mode tiles` -> exit code 2 before any model is loaded."""
    from clip_perception import cli

    assert cli.main(["bench", "--", "--mode", "tiles"]) == 2


def test_age_run_with_in_process_node():
    """--age-run machinery: camera process at 30 Hz -> in-process node answers; ages at publish are positive."""
    pytest.importorskip("rclpy")
    pytest.importorskip("clip_perception.node")
    frames = bench.render_frames(2, W, H, 10, ("contours",))
    cfg = make_config({"pretrained": "none", "device": "cpu", "mode": "crop", "score_threshold": 0.0})
    import torch

    from clip_perception.device import resolve_cpu_threads

    before = torch.get_num_threads()
    out = bench.age_run(ColorTestEncoder(), frames, 2.0, cfg, COMMAND)
    assert "skipped" not in out, out
    assert out["cpu_threads"] == resolve_cpu_threads(0)  # the node's auto setting, as in the executable
    assert torch.get_num_threads() == before  # restored for the caller
    assert out["published"] > 10 and out["processed"] >= 1 and out["resolved_mode"] == "crop"
    assert 0.0 < out["age_ms"]["p50"] <= out["age_ms"]["max"] < 30_000
