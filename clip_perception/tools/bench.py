"""``clip-perception bench``: our pipeline against the naive per-crop pipeline, side by side.

One run, the same frames, the same proposals, the same model (same weights):

* **frames** -- seeded MuJoCo table-top scenes (:func:`clip_perception.sim.scene.make_scene`,
  seeds ``0 .. frames-1``) rendered at ``--width`` x ``--height``, "published" as
  ``sensor_msgs/Image`` fields (:func:`decode.image_fields_from_rgb`, ``rgb8``;
  :func:`decode.image_fields_from_depth`, ``32FC1`` metres) and decoded again in every
  timed frame (stage ``decode``);
* **proposals** -- :func:`proposals.propose` (the node's default methods) once per frame,
  then padded with grid windows (:func:`proposals.grid_proposals`, picked evenly over all
  scales and aspects) or capped so that every frame has exactly ``--proposals`` boxes; every
  mode ranks these same boxes.  Their measured time is the ``proposals`` stage of every mode
  (computed once, charged to all), and the per-method times are reported separately;
* **modes** -- ``naive``: what the usual open_clip tutorial code does (every box cropped
  with ``PIL.Image.crop`` and preprocessed on its own with open_clip's ``preprocess``, the
  model called once per crop, the text -- target + negative prompts with every template --
  tokenised and encoded again every frame, fp32, under ``torch.inference_mode`` with the
  model in ``eval``), then a per-crop softmax over the texts; ``crop`` / ``dense`` /
  ``cascade``: :class:`pipeline.Detector` (``ranking.rank``) with the ``ClipEncoder``
  (batched crops / MaskCLIP dense features / dense pre-rank + crop re-rank of the
  ``cascade_top_k`` best), fed the same proposals;
* **stages** (milliseconds per frame, median and 90th percentile over the timed frames):
  ``decode``, ``proposals``, ``crop + preprocess``, ``image encode``, ``text encode``,
  ``ranking`` (everything else inside ranking: colour prior, softmax, NMS, ordering),
  ``3D`` (:func:`geometry.box_position` of the reported detections) and ``publish``
  (:func:`messages.to_detection_array` + ``rclpy.serialization.serialize_message``; skipped
  with a note when ROS 2 is not importable).  ``end-to-end`` is the wall-clock time of the
  whole frame (decode .. publish) plus the frame's proposal time; ``frames/s`` =
  1000 / median end-to-end; ``crops/s`` = proposals ranked per second (``--proposals`` x
  frames/s); speed-up = frames/s of a mode / frames/s of ``naive``;
* **memory** -- peak resident set size per mode (``VmHWM`` of ``/proc/self/status``, reset
  between modes through ``/proc/self/clear_refs``; otherwise the process peak so far,
  ``resource.getrusage().ru_maxrss``), and ``torch.cuda.max_memory_allocated`` on CUDA.

The detector runs with ``score_threshold = 0`` so that ``3D`` and ``publish`` handle
``top_k`` detections in every mode (random weights put nothing above the node's 0.5).
On CUDA, the bench synchronises only at stage boundaries (encoder ``stage_timings``).
Percentiles over few frames are linear interpolations (``numpy.percentile``); they are
indications, not statistics.

``--age-run SECONDS`` additionally runs the ROS node in-process
(:class:`clip_perception.node.ClipPerceptionNode` with the same encoder) against a 30 Hz
camera process publishing the rendered frames (fresh stamps, ``sensor_data`` QoS) and
reports the age of the detections when the node publishes them: publish time minus
``header.stamp`` (same machine clock).

Exit codes: 0 success, 2 bad arguments, 3 weights unavailable (see ``cli.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Optional, Sequence

import numpy as np

LOG = logging.getLogger(__name__)

#: Stages reported per mode, in pipeline order (keys of ``stages_ms`` in the JSON).
STAGES: tuple[str, ...] = ("decode", "proposals", "crop_preprocess", "image_encode", "text_encode",
                           "ranking", "3d", "publish")
STAGE_LABELS = {
    "decode": "decode",
    "proposals": "proposals",
    "crop_preprocess": "crop + preprocess",
    "image_encode": "image encode",
    "text_encode": "text encode",
    "ranking": "ranking",
    "3d": "3D",
    "publish": "publish",
}
#: Modes in run order; ``naive`` is the baseline the others are compared with.
MODES: tuple[str, ...] = ("naive", "crop", "dense", "cascade")
DEFAULT_COMMAND = "pick up the red ball"
#: Boxes of frame 0 the naive baseline warms up on (keeps its warm-up cheap).
NAIVE_WARMUP_BOXES = 4
#: Camera rate of ``--age-run`` [Hz].
AGE_RUN_RATE_HZ = 30.0
#: Frames rendered for ``--age-run`` (cycled, re-stamped).
AGE_RUN_FRAMES = 3


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------

def percentiles(values: Sequence[float]) -> dict:
    """``{"p50": median, "p90": 90th percentile}`` (numpy linear interpolation; NaN if empty)."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0:
        return {"p50": float("nan"), "p90": float("nan")}
    p50, p90 = np.percentile(v, [50, 90])
    return {"p50": float(p50), "p90": float(p90)}


def load_average() -> Optional[list]:
    """1, 5 and 15 minute load averages (``os.getloadavg``), or None where unavailable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (``echo 5 > /proc/self/clear_refs``,
    Linux ``Documentation/filesystems/proc.rst``).  False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size in MiB: ``VmHWM`` (since the last :func:`reset_peak_rss`), else
    ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def pad_proposals(boxes: np.ndarray, objectness: np.ndarray, width: int, height: int,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n`` proposals: the first ``n`` of ``boxes``, padded with grid windows.

    Padding windows come from :func:`proposals.grid_proposals` (all scales and aspects),
    picked at evenly spaced indices so that every scale is represented, cycled if the grid
    is shorter than needed; their objectness is the grid's.

    Args:
        boxes: (M, 4) float32 xyxy pixels, best first; objectness: (M,) float32.
        width, height: image size in pixels.
        n: number of proposals wanted (>= 1).

    Returns:
        ((n, 4) float32 boxes, (n,) float32 objectness).

    Raises:
        ValueError: ``n < 1``.
    """
    from ..proposals import clamp_boxes, grid_proposals

    if n < 1:
        raise ValueError(f"need at least one proposal, got {n}")
    b = np.asarray(boxes, np.float32).reshape(-1, 4)[:n]
    s = np.asarray(objectness, np.float32).reshape(-1)[:n]
    need = n - len(b)
    if need > 0:
        gb, gs = grid_proposals(int(width), int(height))
        if len(gb) >= need:
            idx = np.unique(np.linspace(0, len(gb) - 1, need).round().astype(np.int64))
        else:
            idx = np.arange(need) % max(1, len(gb))
        b = np.concatenate([b, gb[idx]], 0)
        s = np.concatenate([s, gs[idx]], 0)
    return clamp_boxes(b, width, height).astype(np.float32), s.astype(np.float32)


@dataclass
class BenchFrame:
    """One benchmark frame: what the camera published and the proposals every mode ranks.

    Attributes:
        seed: scene seed.
        image: ``sensor_msgs/Image``-like fields of the colour image (``rgb8``).
        depth: ``sensor_msgs/Image``-like fields of the depth (``32FC1``, metres).
        K: (3, 3) float64 intrinsics.
        boxes: (N, 4) float32 xyxy pixel proposals (exactly ``--proposals``).
        objectness: (N,) float32.
        raw_proposals: how many boxes ``propose`` itself returned (before padding).
        proposal_ms: wall-clock of ``propose`` for this frame [ms].
        proposal_cpu_ms: CPU time of this process during ``propose`` [ms].
        proposal_methods_ms: per-method milliseconds (``propose``'s ``timings``).
        targets: names of the visible objects (ground truth, e.g. "red ball").
    """

    seed: int
    image: SimpleNamespace
    depth: SimpleNamespace
    K: np.ndarray
    boxes: np.ndarray
    objectness: np.ndarray
    raw_proposals: int
    proposal_ms: float
    proposal_cpu_ms: float = 0.0
    proposal_methods_ms: dict = field(default_factory=dict)
    targets: list = field(default_factory=list)


def _render_scenes(seeds: Sequence[int], width: int, height: int) -> list:
    """[(rgb, depth, K, object names)] of seeded :func:`sim.scene.make_scene` renders."""
    from ..sim.scene import make_scene

    out = []
    for seed in seeds:
        scene = make_scene(seed=int(seed), width=int(width), height=int(height))
        try:
            fr = scene.render()
        finally:
            scene.close()
        out.append((fr.rgb, fr.depth, np.asarray(fr.K, np.float64), [o.name for o in fr.objects]))
    return out


def render_scenes(seeds: Sequence[int], width: int, height: int, subprocess: bool = True) -> list:
    """Render seeded scenes, by default in a child process (``multiprocessing`` spawn).

    The child keeps MuJoCo / OSMesa (about 100 MiB resident) out of the measured process --
    the node never renders (sim/scene.py fixes the torch/mujoco import order).
    Falls back to rendering here when the child cannot be started.

    Returns:
        list of (rgb (H, W, 3) uint8, depth (H, W) float32 metres, K (3, 3) float64, names).
    """
    if subprocess:
        import multiprocessing

        try:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                return pool.apply(_render_scenes, (list(seeds), width, height))
        except Exception as exc:  # pragma: no cover - e.g. no /dev/shm
            LOG.warning("rendering in a child process failed (%s); rendering here", exc)

    return _render_scenes(seeds, width, height)


def render_frames(count: int, width: int, height: int, n_proposals: int, methods: Sequence[str],
                  max_side: int = 320, first_seed: int = 0, subprocess: bool = True,
                  ss_mode: str = "single") -> list:
    """Render ``count`` seeded scenes (:func:`render_scenes`) and compute their (padded) proposals.

    Returns:
        list of :class:`BenchFrame`.
    """
    from ..decode import image_fields_from_depth, image_fields_from_rgb
    from ..proposals import propose
    from ..types import Timings

    frames = []
    seeds = list(range(first_seed, first_seed + count))
    for seed, (rgb, depth, K, names) in zip(seeds, render_scenes(seeds, width, height, subprocess)):
        fr = SimpleNamespace(rgb=rgb, depth=depth, K=K)
        timings = Timings()
        c0 = time.process_time()
        t0 = time.perf_counter()
        boxes, obj = propose(fr.rgb, depth=fr.depth, K=fr.K, methods=tuple(methods),
                             max_proposals=n_proposals, max_side=max_side, timings=timings, ss_mode=ss_mode)
        ms = (time.perf_counter() - t0) * 1e3
        cpu_ms = (time.process_time() - c0) * 1e3
        raw = len(boxes)
        boxes, obj = pad_proposals(boxes, obj, width, height, n_proposals)
        per_method = {k.split(".", 1)[1]: v for k, v in timings.stages_ms.items() if k.startswith("proposals.")}
        frames.append(BenchFrame(
            seed=seed,
            image=SimpleNamespace(**image_fields_from_rgb(fr.rgb, "rgb8")),
            depth=SimpleNamespace(**image_fields_from_depth(fr.depth, "32FC1")),
            K=np.asarray(fr.K, np.float64),
            boxes=boxes, objectness=obj, raw_proposals=raw, proposal_ms=ms, proposal_cpu_ms=cpu_ms,
            proposal_methods_ms=per_method, targets=list(names)))
    return frames


# --------------------------------------------------------------------------------------
# publish stage
# --------------------------------------------------------------------------------------

class Publisher:
    """The ``publish`` stage: ``FrameResult`` -> ``TargetDetectionArray`` -> serialised bytes.

    ``available`` is False (and :meth:`__call__` returns 0 bytes) when ROS 2 / the
    generated messages are not importable; ``reason`` says why.
    """

    def __init__(self, frame_id: str = "sim_camera_color_optical_frame"):
        self.available = False
        self.reason = ""
        try:
            from rclpy.serialization import serialize_message
            from std_msgs.msg import Header

            from .. import messages
        except Exception as exc:  # ImportError, or a broken ROS environment
            self.reason = f"ROS 2 messages not importable ({type(exc).__name__}: {exc}): publish stage skipped"
            return
        self._serialize = serialize_message
        self._messages = messages
        self._header_cls = Header
        self.frame_id = frame_id
        self.available = True

    def __call__(self, result, command_text: str) -> int:
        """Build and serialise the detections message; returns its size in bytes."""
        if not self.available:
            return 0
        header = self._header_cls(frame_id=self.frame_id)
        header.stamp = self._messages.ns_to_stamp(time.time_ns())
        msg = self._messages.to_detection_array(result, header, command_text)
        return len(self._serialize(msg))


# --------------------------------------------------------------------------------------
# the naive baseline
# --------------------------------------------------------------------------------------

class NaiveBaseline:
    """What the usual open_clip tutorial does, per frame (the honest baseline).

    Per frame: the texts (target and every negative prompt, each with every prompt
    template) are tokenised and encoded with ``model.encode_text`` (one batch),
    normalised and averaged per phrase; then for every box: ``PIL.Image.crop`` of the
    box, open_clip's ``preprocess`` (resize shortest side + centre crop + normalise),
    ``unsqueeze(0)``, ``model.encode_image`` (batch of one), normalisation and a softmax
    of ``logit_scale * cos`` over the texts, ``.item()`` of the target's probability.
    fp32, ``model.eval()``, ``torch.inference_mode()`` -- nothing slowed down on purpose.

    Args:
        model: the open_clip model (fp32; the bench passes the encoder's own model on CPU).
        preprocess: open_clip's inference transform for that model.
        tokenizer: open_clip tokenizer.
        device: torch device of ``model``.
        templates: prompt templates with ``{}``.
        negatives: negative / background prompts.
        logit_scale: CLIP temperature (float).
    """

    def __init__(self, model, preprocess, tokenizer, device, templates: Sequence[str],
                 negatives: Sequence[str], logit_scale: float):
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.templates = list(templates)
        self.negatives = list(negatives)
        self.logit_scale = float(logit_scale)

    def _sync(self) -> None:
        import torch

        if getattr(self.device, "type", str(self.device)) == "cuda":
            torch.cuda.synchronize(self.device)

    def rank(self, rgb: np.ndarray, boxes: np.ndarray, target: str, stages: dict) -> np.ndarray:
        """(N,) float32 probability of ``target`` per box; adds ms to ``stages``
        (``text_encode``, ``crop_preprocess``, ``image_encode``, ``ranking``)."""
        import torch
        from PIL import Image

        phrases = [target] + [p for p in self.negatives if p.strip().lower() != target.lower()]
        with torch.inference_mode():
            t0 = time.perf_counter()
            texts = [t.replace("{}", p) for p in phrases for t in self.templates]
            tf = self.model.encode_text(self.tokenizer(texts).to(self.device)).float()
            tf = tf / tf.norm(dim=-1, keepdim=True)
            tf = tf.view(len(phrases), len(self.templates), -1).mean(dim=1)
            tf = tf / tf.norm(dim=-1, keepdim=True)
            self._sync()
            stages["text_encode"] = stages.get("text_encode", 0.0) + (time.perf_counter() - t0) * 1e3
            image = Image.fromarray(rgb)
            probs = np.zeros(len(boxes), np.float32)
            prep = enc = rank = 0.0
            for i, box in enumerate(boxes):
                t0 = time.perf_counter()
                crop = image.crop(tuple(int(round(float(v))) for v in box))
                x = self.preprocess(crop).unsqueeze(0).to(self.device)
                t1 = time.perf_counter()
                f = self.model.encode_image(x).float()
                f = f / f.norm(dim=-1, keepdim=True)
                self._sync()
                t2 = time.perf_counter()
                probs[i] = (self.logit_scale * f @ tf.T).softmax(dim=-1)[0, 0].item()
                t3 = time.perf_counter()
                prep += t1 - t0
                enc += t2 - t1
                rank += t3 - t2
        stages["crop_preprocess"] = stages.get("crop_preprocess", 0.0) + prep * 1e3
        stages["image_encode"] = stages.get("image_encode", 0.0) + enc * 1e3
        stages["ranking"] = stages.get("ranking", 0.0) + rank * 1e3
        return probs

    def detect(self, rgb: np.ndarray, boxes: np.ndarray, target: str, threshold: float, top_k: int,
               stages: dict) -> list:
        """Top-``top_k`` :class:`types.Detection` (score >= ``threshold``), best first."""
        from ..types import Detection

        probs = self.rank(rgb, boxes, target, stages)
        t0 = time.perf_counter()
        order = [int(i) for i in np.argsort(-probs, kind="stable") if probs[i] >= threshold][:top_k]
        dets = [Detection(label=target, score=float(probs[i]), confidence=float(probs[i]),
                          box=boxes[i].astype(np.float32).copy(), clip_score=float(probs[i])) for i in order]
        stages["ranking"] = stages.get("ranking", 0.0) + (time.perf_counter() - t0) * 1e3
        return dets


# --------------------------------------------------------------------------------------
# running the modes
# --------------------------------------------------------------------------------------

@dataclass
class ModeRun:
    """Timed frames of one mode."""

    mode: str
    e2e_ms: list = field(default_factory=list)
    cpu_ms: list = field(default_factory=list)
    stages: dict = field(default_factory=lambda: {s: [] for s in STAGES})
    peak_rss_mb: float = 0.0
    cuda_peak_mb: Optional[float] = None
    top1: list = field(default_factory=list)  # best box per frame (list of 4 floats) or None
    crops_encoded: list = field(default_factory=list)

    def add(self, e2e: float, stages: dict) -> None:
        self.e2e_ms.append(float(e2e))
        self.cpu_ms.append(float(stages.get("cpu", float("nan"))))
        for s in STAGES:
            self.stages[s].append(float(stages.get(s, 0.0)))

    def summary(self, n_proposals: int) -> dict:
        p = percentiles(self.e2e_ms)
        fps = 1000.0 / p["p50"] if self.e2e_ms and p["p50"] > 0 else 0.0
        out = {
            "mode": self.mode,
            "frames": len(self.e2e_ms),
            "fps": fps,
            "crops_per_s": fps * n_proposals,
            "crops_encoded_per_frame": float(np.median(self.crops_encoded)) if self.crops_encoded else 0.0,
            "p50_ms": p["p50"],
            "p90_ms": p["p90"],
            "min_ms": float(min(self.e2e_ms)) if self.e2e_ms else float("nan"),
            "e2e_ms_per_frame": [float(v) for v in self.e2e_ms],
            "cpu_ms": percentiles(self.cpu_ms),
            "stages_ms": {s: percentiles(self.stages[s]) for s in STAGES},
            "peak_rss_mb": self.peak_rss_mb,
            "top1_boxes": self.top1,
        }
        if self.cuda_peak_mb is not None:
            out["cuda_peak_mb"] = self.cuda_peak_mb
        return out


class Bench:
    """Runs the modes over the same frames (see the module docstring).

    Args:
        encoder: a ``ClipEncoder`` (the real one: ``stage_timings`` is used).
        config: ``params.DetectorConfig`` for our modes (``mode`` is replaced per mode).
        frames: :class:`BenchFrame` list.
        command: command text.
        naive_frames: how many of the frames the naive mode runs.
    """

    def __init__(self, encoder, config, frames: list, command: str, naive_frames: int):
        from ..command import parse_command
        from ..pipeline import Detector

        self.encoder = encoder
        self.config = config
        self.frames = frames
        self.command = command
        parsed = parse_command(command)
        if parsed.status != "ok" or not parsed.commands:
            raise ValueError(f"--command {command!r} holds no command ({parsed.reason})")
        self.parsed = parsed.commands[0]
        self.naive_frames = max(0, min(int(naive_frames), len(frames)))
        self.publisher = Publisher()
        self.detectors = {m: Detector(config.replace(mode=m), encoder=encoder) for m in ("crop", "dense", "cascade")}
        self._naive: Optional[NaiveBaseline] = None
        self.is_cuda = getattr(getattr(encoder, "device", None), "type", "cpu") == "cuda"

    # -- naive model: the encoder's own model when it is fp32 (CPU), else an fp32 copy
    @property
    def naive(self) -> NaiveBaseline:
        if self._naive is None:
            model = self.encoder.model
            if getattr(self.encoder, "precision", "fp32") != "fp32":
                import copy

                model = copy.deepcopy(model).float()
            self._naive = NaiveBaseline(model, self.encoder.preprocess, self.encoder.tokenizer, self.encoder.device,
                                        self.config.prompt_templates, self.config.negative_prompts,
                                        self.encoder.logit_scale)
        return self._naive

    def _sync(self) -> None:
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.encoder.device)

    def run_frame(self, mode: str, frame: BenchFrame, boxes: Optional[np.ndarray] = None) -> tuple[float, dict, Any]:
        """One frame of ``mode``: (end-to-end ms, stage ms dict, FrameResult).

        ``stages["cpu"]`` is the process CPU time of the frame (all threads, ms, proposals included).
        """
        from ..decode import decode_depth, decode_image
        from ..pipeline import FrameResult
        from ..command import CommandParse
        from ..types import Timings
        from .. import geometry

        boxes = frame.boxes if boxes is None else boxes
        obj = frame.objectness[:len(boxes)]
        stages: dict = {"proposals": frame.proposal_ms}
        self._sync()
        c_start = time.process_time()
        t_start = time.perf_counter()
        rgb = decode_image(frame.image)
        depth = decode_depth(frame.depth)
        t = time.perf_counter()
        stages["decode"] = (t - t_start) * 1e3
        if mode == "naive":
            dets = self.naive.detect(rgb, boxes, self.parsed.target, self.config.score_threshold,
                                     self.config.top_k, stages)
            t0 = time.perf_counter()
            for det in dets:
                geo = geometry.box_position(depth, det.box, frame.K)
                if geo is not None:
                    det.position, det.size = geo.position, geo.size
            stages["3d"] = (time.perf_counter() - t0) * 1e3
            result = FrameResult(command=self.parsed, parse=CommandParse(status="ok", reason="", commands=[self.parsed]),
                                 detections=dets, proposals=boxes, objectness=obj, mode="naive")
        else:
            enc_t = Timings()
            self.encoder.stage_timings = enc_t
            try:
                result = self.detectors[mode].detect(rgb, self.command, depth=depth, K=frame.K,
                                                     proposals=(boxes, obj))
            finally:
                self.encoder.stage_timings = None
            e = enc_t.stages_ms
            r = result.timings.stages_ms
            stages["crop_preprocess"] = e.get("encoder.crop", 0.0) + e.get("encoder.dense_input", 0.0)
            stages["image_encode"] = (e.get("encoder.image", 0.0) + e.get("encoder.dense_forward", 0.0)
                                      + e.get("encoder.pool", 0.0))
            stages["text_encode"] = r.get("encode_text", 0.0)
            stages["ranking"] = max(0.0, r.get("rank", 0.0) - stages["crop_preprocess"] - stages["image_encode"]
                                    - stages["text_encode"])
            stages["3d"] = r.get("geometry", 0.0)
        t0 = time.perf_counter()
        self.publisher(result, self.command)
        t_end = time.perf_counter()
        stages["publish"] = (t_end - t0) * 1e3
        stages["cpu"] = (time.process_time() - c_start) * 1e3 + frame.proposal_cpu_ms
        e2e = (t_end - t_start) * 1e3 + frame.proposal_ms
        return e2e, stages, result

    def warmup(self, modes: Sequence[str], passes: int) -> None:
        """Untimed passes on frame 0 (naive: its first :data:`NAIVE_WARMUP_BOXES` boxes)."""
        if passes <= 0 or not self.frames:
            return
        for _ in range(passes):
            for mode in modes:
                if mode == "naive":
                    if self.naive_frames:
                        self.run_frame(mode, self.frames[0], boxes=self.frames[0].boxes[:NAIVE_WARMUP_BOXES])
                else:
                    self.run_frame(mode, self.frames[0])

    def run(self, modes: Sequence[str], progress: Optional[Callable[[str], None]] = None) -> dict:
        """Time every mode on every frame (naive: the first ``naive_frames``), frames outer,
        modes inner, so that machine-load drifts hit every mode alike.  Returns mode -> ModeRun."""
        runs = {m: ModeRun(m) for m in modes}
        rss_per_mode = reset_peak_rss()
        self.rss_scope = "per mode (VmHWM reset between modes)" if rss_per_mode else "process peak so far"
        for i, frame in enumerate(self.frames):
            for mode in modes:
                if mode == "naive" and i >= self.naive_frames:
                    continue
                run = runs[mode]
                if rss_per_mode:
                    reset_peak_rss()
                if self.is_cuda:
                    import torch

                    torch.cuda.reset_peak_memory_stats(self.encoder.device)
                e2e, stages, result = self.run_frame(mode, frame)
                run.add(e2e, stages)
                run.peak_rss_mb = max(run.peak_rss_mb, peak_rss_mb())
                if self.is_cuda:
                    import torch

                    mb = torch.cuda.max_memory_allocated(self.encoder.device) / 2 ** 20
                    run.cuda_peak_mb = max(run.cuda_peak_mb or 0.0, mb)
                best = result.best
                run.top1.append(None if best is None else [float(v) for v in best.box])
                run.crops_encoded.append(self._crops_encoded(mode, len(frame.boxes)))
                if progress is not None:
                    progress(f"frame {i} (seed {frame.seed}) {mode}: {e2e:.0f} ms")
        return runs

    def _crops_encoded(self, mode: str, n: int) -> int:
        if mode in ("naive", "crop"):
            return n
        if mode == "dense":
            return 0
        k = int(self.config.cascade_top_k)
        return n if n <= k else k * (2 if self.parsed.reference else 1)


# --------------------------------------------------------------------------------------
# output age under a 30 Hz camera (ROS node in-process)
# --------------------------------------------------------------------------------------

def _camera_process(ns: str, frames: list, seconds: float, rate_hz: float, frame_id: str) -> dict:
    """Child process: a camera driver publishing ``frames`` cyclically at ``rate_hz`` for ``seconds``.

    Publishes ``depth`` and ``camera_info`` then ``image`` under ``ns`` with ``sensor_data``
    QoS and a fresh ``time.time_ns()`` stamp per frame; starts its clock once the node's
    image subscription is matched (at most 15 s).

    Args:
        frames: list of (image fields dict, depth fields dict, K (9,) list).

    Returns:
        {"published": int, "seconds": float (actual publishing time), "matched": bool}.
    """
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from ..messages import ns_to_stamp

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f"bench_camera_{uuid.uuid4().hex[:6]}", context=ctx)
    try:
        pub_img = node.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
        pub_depth = node.create_publisher(Image, f"{ns}/depth", qos_profile_sensor_data)
        pub_info = node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
        msgs = []
        for img_f, dep_f, k in frames:
            info = CameraInfo(width=int(img_f["width"]), height=int(img_f["height"]))
            info.k = [float(v) for v in k]
            msgs.append((Image(**img_f), Image(**dep_f), info))
        end = time.monotonic() + 15.0
        while time.monotonic() < end and (pub_img.get_subscription_count() == 0
                                          or pub_depth.get_subscription_count() == 0):
            time.sleep(0.02)
        matched = pub_img.get_subscription_count() > 0
        time.sleep(0.5)  # let discovery settle on both sides
        n = 0
        t0 = time.monotonic()
        period = 1.0 / float(rate_hz)
        while True:
            due = t0 + n * period
            now = time.monotonic()
            if due - t0 >= seconds:
                break
            if due > now:
                time.sleep(due - now)
            img, dep, info = msgs[n % len(msgs)]
            header = Header(stamp=ns_to_stamp(time.time_ns()), frame_id=frame_id)
            for m in (dep, info, img):
                m.header = header
            pub_depth.publish(dep)
            pub_info.publish(info)
            pub_img.publish(img)
            n += 1
        return {"published": n, "seconds": time.monotonic() - t0, "matched": matched}
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def age_run(encoder, frames: list, seconds: float, config, command: str,
            rate_hz: float = AGE_RUN_RATE_HZ) -> dict:
    """Output age of the ROS node (in this process, with ``encoder``) under a ``rate_hz`` camera.

    The camera is a separate process (:func:`_camera_process`, like a real driver) that
    publishes ``frames`` cyclically with fresh stamps on ``image`` / ``depth`` /
    ``camera_info``.  The node's ``detections`` publisher is wrapped so that every message
    records ``age = time.time_ns() - header.stamp`` at the moment it is published (the time
    from capture to answer: waiting in the depth-1 slot plus processing).

    Returns:
        dict with ``seconds``, ``rate_hz``, ``camera_rate_hz`` (achieved), ``mode``,
        ``cpu_threads`` (torch threads the node set, as the executable does; the caller's
        setting is restored afterwards), ``published`` (camera frames), ``processed`` (frames
        the node answered),
        ``age_ms`` ({p50, p90, max}); or ``{"skipped": reason}`` when ROS 2 or the node is
        not importable or the camera process fails.
    """
    try:
        import multiprocessing

        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter

        from .. import messages
        from ..node import ClipPerceptionNode
    except Exception as exc:
        return {"skipped": f"ROS 2 node not available ({type(exc).__name__}: {exc})"}

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    frame_id = "sim_camera_color_optical_frame"
    ns = f"/bench_{uuid.uuid4().hex[:8]}"
    payload = [(vars(fr.image), vars(fr.depth), [float(v) for v in np.asarray(fr.K).ravel()]) for fr in frames]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = executor = thread = None
    ages: list = []
    lock = threading.Lock()
    cam: Optional[dict] = None
    error = None
    resolved_mode = str(config.mode)
    import torch

    threads_before = torch.get_num_threads()
    node_threads = threads_before
    try:
        overrides = [
            Parameter("command", value=command),
            Parameter("mode", value=str(config.mode)),
            Parameter("score_threshold", value=float(config.score_threshold)),
            Parameter("cascade_top_k", value=int(config.cascade_top_k)),
            Parameter("warmup", value=False),
        ]
        # as the clip_perception_node executable does: cpu_threads (auto: one core left to ROS 2)
        node = ClipPerceptionNode(encoder=encoder, context=ctx, namespace=ns, parameter_overrides=overrides,
                                  owns_process=True)
        resolved_mode = node.detector.mode
        node_threads = torch.get_num_threads()
        for camera in node.cameras:
            publish = camera.det_pub.publish

            def timed_publish(msg, _publish=publish) -> None:
                age = (time.time_ns() - messages.stamp_to_ns(msg.header.stamp)) / 1e6
                with lock:
                    ages.append(age)
                _publish(msg)

            camera.det_pub.publish = timed_publish
        executor = MultiThreadedExecutor(num_threads=4, context=ctx)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        mp = multiprocessing.get_context("spawn")
        with mp.Pool(1) as pool:
            job = pool.apply_async(_camera_process, (ns, payload, float(seconds), float(rate_hz), frame_id))
            try:
                cam = job.get(timeout=float(seconds) + 120.0)
            except Exception as exc:
                error = f"camera process failed ({type(exc).__name__}: {exc})"
        time.sleep(0.2)
        node.stop()  # the frame in progress finishes and is published
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if thread is not None:
            thread.join(5.0)
        processed = int(getattr(node, "frames_processed", 0)) if node is not None else 0
        if node is not None:
            node.destroy_node()
        try:
            rclpy.shutdown(context=ctx)
        except Exception:  # already shut down
            pass
        torch.set_num_threads(threads_before)
    if error is not None or cam is None:
        return {"skipped": error or "camera process returned nothing"}
    with lock:
        got = list(ages)
    p = percentiles(got)
    return {
        "seconds": float(seconds),
        "rate_hz": float(rate_hz),
        "camera_rate_hz": cam["published"] / cam["seconds"] if cam["seconds"] > 0 else 0.0,
        "mode": str(config.mode),
        "resolved_mode": resolved_mode,
        "cpu_threads": int(node_threads),
        "published": int(cam["published"]),
        "processed": processed,
        "age_ms": {"p50": p["p50"], "p90": p["p90"], "max": float(max(got)) if got else float("nan")},
    }


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------

def _fmt(v: Optional[float], digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def format_table(report: dict) -> str:
    """The human-readable report (modes as columns)."""
    cfg = report["config"]
    res = report["results"]
    modes = [r["mode"] for r in res]
    w0, w = 20, 19
    lines = []
    weights = ("RANDOM weights (--pretrained none): timings are valid, rankings are meaningless"
               if cfg["random_weights"] else f"weights {cfg['pretrained']}")
    lines.append(f"clip-perception bench: {cfg['model']} ({weights})")
    lines.append(f"  device {cfg['device']} / {cfg['precision']} (naive: fp32), image {cfg['width']}x{cfg['height']}, "
                 f"{cfg['proposals']} proposals/frame, {cfg['frames']} frames (naive: {cfg['naive_frames']}), "
                 f"warm-up {cfg['warmup']}, torch threads {cfg['torch_threads']}/{cfg['cpus']} CPUs, "
                 f"cascade_top_k {cfg['cascade_top_k']}, crop backend {cfg.get('crop_backend')}")
    lines.append(f"  load average before/after: {cfg.get('load_avg_before')} / {cfg.get('load_avg_after')}")
    lines.append("")
    lines.append("ms per frame, p50 / p90".ljust(w0) + "".join(m.rjust(w) for m in modes))
    for s in STAGES:
        row = STAGE_LABELS[s].ljust(w0)
        for r in res:
            st = r["stages_ms"][s]
            row += f"{_fmt(st['p50'])} / {_fmt(st['p90'])}".rjust(w)
        lines.append(row)
    lines.append("end-to-end".ljust(w0) + "".join(f"{_fmt(r['p50_ms'])} / {_fmt(r['p90_ms'])}".rjust(w) for r in res))
    lines.append("fastest frame".ljust(w0) + "".join(_fmt(r["min_ms"]).rjust(w) for r in res))
    lines.append("CPU ms/frame".ljust(w0) + "".join(f"{_fmt(r['cpu_ms']['p50'], 0)}".rjust(w) for r in res))
    lines.append("frames/s".ljust(w0) + "".join(_fmt(r["fps"], 3).rjust(w) for r in res))
    lines.append("crops/s".ljust(w0) + "".join(_fmt(r["crops_per_s"], 1).rjust(w) for r in res))
    lines.append("crops encoded/frame".ljust(w0) + "".join(_fmt(r["crops_encoded_per_frame"], 0).rjust(w) for r in res))
    lines.append("peak RSS (MiB)".ljust(w0) + "".join(_fmt(r["peak_rss_mb"], 0).rjust(w) for r in res))
    if any("cuda_peak_mb" in r for r in res):
        lines.append("CUDA peak (MiB)".ljust(w0) + "".join(_fmt(r.get("cuda_peak_mb"), 0).rjust(w) for r in res))
    sp = report["speedup_vs_naive"]
    lines.append("speed-up vs naive".ljust(w0) + "".join(
        (_fmt(sp.get(m), 2) + "x" if sp.get(m) is not None else "-").rjust(w) for m in modes))
    spb = report.get("best_frame_speedup_vs_naive", {})
    lines.append("  (fastest frames)".ljust(w0) + "".join(
        (_fmt(spb.get(m), 2) + "x" if spb.get(m) is not None else "-").rjust(w) for m in modes))
    spc = report.get("cpu_time_speedup_vs_naive", {})
    lines.append("CPU-time ratio".ljust(w0) + "".join(
        (_fmt(spc.get(m), 2) + "x" if spc.get(m) is not None else "-").rjust(w) for m in modes))
    lines.append("timed frames".ljust(w0) + "".join(str(r["frames"]).rjust(w) for r in res))
    lines.append("")
    pm = report["proposal_methods_ms"]
    lines.append("proposals per method, ms p50 / p90 (same boxes for every mode; propose() once per frame):")
    for name, st in pm.items():
        lines.append(f"  {name.ljust(18)}{_fmt(st['p50'])} / {_fmt(st['p90'])}")
    lines.append(f"  raw proposals per frame (before padding to {cfg['proposals']}): {report['raw_proposals']}")
    lines.append(f"peak RSS scope: {report['peak_rss_scope']}; set-up (model load, warm-up) peak "
                 f"{_fmt(report['setup_peak_rss_mb'], 0)} MiB; process peak {_fmt(report['process_peak_rss_mb'], 0)} MiB "
                 "(frames rendered in a child process, not counted)")
    if report.get("age_run") is not None:
        a = report["age_run"]
        if "skipped" in a:
            lines.append(f"output age under a 30 Hz camera: skipped: {a['skipped']}")
        else:
            lines.append(f"output age under a {a['rate_hz']:g} Hz camera ({a['seconds']:g} s, node mode {a['resolved_mode']}, "
                         f"{a['cpu_threads']} CPU threads): "
                         f"p50 {_fmt(a['age_ms']['p50'])} ms, p90 {_fmt(a['age_ms']['p90'])} ms, "
                         f"max {_fmt(a['age_ms']['max'])} ms at publish; {a['processed']} frames answered of "
                         f"{a['published']} published ({_fmt(a['camera_rate_hz'])} Hz achieved by the camera process)")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("note: speed-up = median frames/s ratio; on a shared CPU the naive mode's batch-1 forwards suffer "
                 "most from other processes (each of its ~150 small parallel regions per crop waits for a "
                 "descheduled thread), so compare the load averages and the fastest-frame ratio")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clip-perception bench",
                                description="Benchmark our pipeline against the naive per-crop pipeline.")
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name (default ViT-B-32)")
    p.add_argument("--pretrained", default="none",
                   help="open_clip tag, hf-hub:NAME or checkpoint path; default none = RANDOM weights "
                        "(timings are valid, rankings are not)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", default="auto", help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16; "
                                                       "the naive baseline is always fp32")
    p.add_argument("--width", type=int, default=640, help="image width in pixels (default 640)")
    p.add_argument("--height", type=int, default=480, help="image height in pixels (default 480)")
    p.add_argument("--proposals", type=int, default=100, help="proposals per frame, exactly (default 100)")
    p.add_argument("--mode", default="all", help="all, or a comma list of naive,crop,dense,cascade (default all)")
    p.add_argument("--frames", type=int, default=5, help="timed frames per mode (default 5)")
    p.add_argument("--naive-frames", dest="naive_frames", type=int, default=None,
                   help="timed frames of the naive mode (default min(frames, 2): it costs seconds per frame)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed passes per mode on frame 0 before timing (naive: on its first 4 boxes); default 1")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: every usable CPU, torch.set_num_threads once)")
    p.add_argument("--cascade-top-k", dest="cascade_top_k", type=int, default=None,
                   help="cascade mode: proposals re-encoded as crops (default: the parameter's default)")
    p.add_argument("--command", default=DEFAULT_COMMAND, help=f"command text (default {DEFAULT_COMMAND!r})")
    p.add_argument("--age-run", dest="age_run", type=float, default=0.0, metavar="SECONDS",
                   help="also run the ROS node in-process against a 30 Hz camera for SECONDS and report the "
                        "age of its detections (0 = off)")
    p.add_argument("--age-mode", dest="age_mode", default="auto",
                   help="ranking mode of the node in --age-run (default auto: cascade on CPU, crop on CUDA)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout (table on stderr)")
    return p


def parse_modes(text: str) -> list:
    """``"all"`` or a comma list -> modes in :data:`MODES` order.  Raises ValueError."""
    text = (text or "all").strip().lower()
    if text == "all":
        return list(MODES)
    asked = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in asked if m not in MODES]
    if bad or not asked:
        raise ValueError(f"--mode: unknown mode(s) {bad or [text]}; use all or a comma list of {', '.join(MODES)}")
    return [m for m in MODES if m in asked]


def run_bench(args: argparse.Namespace, progress: Optional[Callable[[str], None]] = None) -> dict:
    """Run the benchmark described by parsed ``args``; returns the report dict (see ``--json``)."""
    import torch

    from .. import proposals as _proposals  # noqa: F401
    from ..encoder import ClipEncoder, usable_cpus
    from ..params import make_config

    modes = parse_modes(args.mode)
    if args.frames < 1:
        raise ValueError("--frames must be >= 1")
    if args.proposals < 1:
        raise ValueError("--proposals must be >= 1")
    if args.width < 32 or args.height < 32:
        raise ValueError("--width/--height must be >= 32 pixels")
    naive_frames = min(args.frames, 2) if args.naive_frames is None else max(0, min(args.naive_frames, args.frames))
    if "naive" in modes and naive_frames == 0:
        modes.remove("naive")
    load_before = load_average()
    threads = int(args.threads) if args.threads else usable_cpus()
    torch.set_num_threads(threads)

    values = {"model_name": args.model, "pretrained": args.pretrained, "device": args.device,
              "precision": args.precision, "max_proposals": args.proposals, "score_threshold": 0.0,
              "warmup": False}
    if args.cascade_top_k is not None:
        values["cascade_top_k"] = args.cascade_top_k
    config = make_config(values)
    notes = []
    random_weights = str(args.pretrained).strip().lower() in ("", "none")
    if random_weights:
        torch.manual_seed(0)
        notes.append("random weights (--pretrained none): speed figures are valid, rankings/top-1 boxes are not")

    t0 = time.perf_counter()
    encoder = ClipEncoder(model_name=args.model, pretrained=args.pretrained, device=args.device,
                          precision=args.precision, prompt_templates=tuple(config.prompt_templates))
    load_s = time.perf_counter() - t0
    dev = encoder.device
    if dev.type == "cuda":
        notes.append(f"CUDA run on {torch.cuda.get_device_name(dev)}")
    else:
        notes.append("no GPU used: CPU figures only (run with --device cuda on a GPU machine for GPU figures)")

    if progress:
        progress(f"rendering {args.frames} frames {args.width}x{args.height} and computing proposals")
    frames = render_frames(args.frames, args.width, args.height, args.proposals, config.proposal_methods,
                           max_side=config.proposal_max_side, ss_mode=config.selective_search_mode)
    bench = Bench(encoder, config, frames, args.command, naive_frames)
    if not bench.publisher.available:
        notes.append(bench.publisher.reason)
    encoder.warmup(dense=any(m in modes for m in ("dense", "cascade")))
    if progress:
        progress(f"warm-up ({args.warmup} pass(es) per mode)")
    bench.warmup(modes, args.warmup)
    setup_peak = peak_rss_mb()
    runs = bench.run(modes, progress=progress)

    results = [runs[m].summary(args.proposals) for m in modes]
    naive_fps = next((r["fps"] for r in results if r["mode"] == "naive"), None)
    speedup = {r["mode"]: (r["fps"] / naive_fps if naive_fps else None) for r in results}
    naive_min = next((r["min_ms"] for r in results if r["mode"] == "naive"), None)
    speedup_best = {r["mode"]: (naive_min / r["min_ms"] if naive_min and r["min_ms"] > 0 else None) for r in results}
    naive_cpu = next((r["cpu_ms"]["p50"] for r in results if r["mode"] == "naive"), None)
    speedup_cpu = {r["mode"]: (naive_cpu / r["cpu_ms"]["p50"] if naive_cpu and r["cpu_ms"]["p50"] > 0 else None)
                   for r in results}
    method_ms: dict = {}
    for fr in frames:
        for k, v in fr.proposal_methods_ms.items():
            method_ms.setdefault(k, []).append(v)
    proposal_methods_ms = {k: percentiles(v) for k, v in method_ms.items()}
    proposal_methods_ms["total"] = percentiles([fr.proposal_ms for fr in frames])

    age = None
    if args.age_run and args.age_run > 0:
        age_cfg = config.replace(mode=args.age_mode)
        if progress:
            progress(f"age run: node in-process, {AGE_RUN_RATE_HZ:g} Hz camera, {args.age_run:g} s")
        age = age_run(encoder, frames[:AGE_RUN_FRAMES], args.age_run, age_cfg, args.command)

    import open_clip

    report = {
        "config": {
            "model": args.model,
            "pretrained": args.pretrained,
            "random_weights": random_weights,
            "device": str(dev),
            "precision": encoder.precision,
            "naive_precision": "fp32",
            "width": int(args.width),
            "height": int(args.height),
            "image_size": [int(args.width), int(args.height)],
            "proposals": int(args.proposals),
            "proposal_methods": list(config.proposal_methods),
            "frames": int(args.frames),
            "naive_frames": int(naive_frames),
            "warmup": int(args.warmup),
            "modes": modes,
            "command": args.command,
            "cascade_top_k": int(config.cascade_top_k),
            "score_threshold": float(config.score_threshold),
            "crop_backend": getattr(encoder, "crop_backend", None),
            "torch_threads": int(torch.get_num_threads()),
            "cpus": usable_cpus(),
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "open_clip": getattr(open_clip, "__version__", "?"),
            "model_load_s": load_s,
            "load_avg_before": load_before,
            "load_avg_after": load_average(),
            "gpu_run": dev.type == "cuda",
        },
        "results": results,
        "speedup_vs_naive": speedup,
        "cpu_time_speedup_vs_naive": speedup_cpu,
        "best_frame_speedup_vs_naive": speedup_best,
        "proposal_methods_ms": proposal_methods_ms,
        "raw_proposals": [fr.raw_proposals for fr in frames],
        "peak_rss_scope": getattr(bench, "rss_scope", "process"),
        "setup_peak_rss_mb": setup_peak,
        "process_peak_rss_mb": max([setup_peak] + [r["peak_rss_mb"] for r in results]),
        "age_run": age,
        "notes": notes,
    }
    return report


def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``clip-perception bench`` (``cli.py`` delegates here).

    Returns:
        0 on success, 2 on bad arguments; ``WeightsUnavailableError`` propagates (cli -> 3).
    """
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # ``clip-perception bench -- --frames 3`` (argparse REMAINDER passes the "--")
        argv = argv[1:]
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
    out = sys.stderr if args.json else sys.stdout

    def progress(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    try:
        report = run_bench(args, progress=progress)
    except ValueError as exc:
        print(f"clip-perception bench: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report), file=out, flush=True)
    if args.json:
        print(json.dumps(_json_safe(report), indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
