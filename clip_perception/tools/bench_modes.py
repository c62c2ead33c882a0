"""The timed modes of ``clip-perception bench``: the naive baseline, our detector, the stages.

See :mod:`clip_perception.tools.bench` for what is measured and how.  :class:`Bench` runs
every mode over the same :class:`~clip_perception.tools.bench_frames.BenchFrame` list
(frames outer, modes inner) and returns one :class:`ModeRun` per mode;
:class:`NaiveBaseline` is the per-crop open_clip tutorial pipeline, :class:`Publisher` the
``publish`` stage.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .bench_frames import BenchFrame

__all__ = ["STAGES", "MODES", "LEVERS", "NAIVE_WARMUP_BOXES", "percentiles", "reset_peak_rss", "peak_rss_mb",
           "Publisher", "NaiveBaseline", "ModeRun", "CropCounter", "Bench"]

#: Stages reported per mode, in pipeline order (keys of ``stages_ms`` in the JSON).
STAGES: tuple[str, ...] = ("decode", "proposals", "crop_preprocess", "image_encode", "text_encode",
                           "ranking", "3d", "publish")
#: Modes in run order; ``naive`` is the baseline the others are compared with.
MODES: tuple[str, ...] = ("naive", "crop", "dense", "cascade")
#: Speed levers, each ``cascade`` (the CPU default) with one thing changed, measured on its own:
#: name -> (RankingConfig overrides, twin encoder or None).  ``cascade_fixed``: the fixed
#: cascade (``cascade_margin`` 1: always the ``cascade_top_k`` best as crops, decisive or not);
#: ``cascade_top10``: up to 10 contenders re-ranked instead of ``cascade_top_k``;
#: ``cascade_crop224`` / ``cascade_crop160``: re-rank crops at 224 px (the model's side) /
#: 160 px instead of ``cascade_crop_size``; ``cascade_fp32``: the encoder in fp32 (a twin
#: encoder, same weights; the CPU default is bf16 where the CPU has native bf16);
#: ``cascade_int8``: int8 linear layers (``quantize_int8``, fp32 elsewhere; a twin encoder);
#: ``cascade_224_top10``: both re-rank settings of before (224-px crops, up to 10) in the
#: default's precision; ``cascade_previous``: the CPU default before these levers (fp32,
#: 224-px crops, up to 10).
LEVER_SPECS: dict = {
    "cascade_fixed": ({"cascade_margin": 1.0}, None),
    "cascade_top10": ({"cascade_top_k": 10}, None),
    "cascade_crop224": ({"cascade_crop_size": 224}, None),
    "cascade_crop160": ({"cascade_crop_size": 160}, None),
    "cascade_fp32": ({}, "fp32"),
    "cascade_int8": ({}, "int8"),
    "cascade_224_top10": ({"cascade_crop_size": 0, "cascade_top_k": 10}, None),
    "cascade_previous": ({"cascade_crop_size": 0, "cascade_top_k": 10}, "fp32"),
}
#: Lever names, in run order.
LEVERS: tuple[str, ...] = tuple(LEVER_SPECS)
#: Boxes of frame 0 the naive baseline warms up on (keeps its warm-up cheap).
NAIVE_WARMUP_BOXES = 4


def percentiles(values: Sequence[float]) -> dict:
    """``{"p50": median, "p90": 90th percentile}`` (numpy linear interpolation; NaN if empty)."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0:
        return {"p50": float("nan"), "p90": float("nan")}
    p50, p90 = np.percentile(v, [50, 90])
    return {"p50": float(p50), "p90": float(p90)}


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
        model: the open_clip model in fp32 (the bench passes the encoder's own model when it is fp32,
            else an fp32 copy, e.g. on a CPU whose default is bf16).
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

class CropCounter:
    """Delegates to an encoder and counts the boxes it encodes as crops (attribute ``crops``)."""

    def __init__(self, inner):
        self.inner = inner
        self.crops = 0

    def encode_boxes(self, rgb, boxes, mode: str = "crop", **size):
        self.crops += len(boxes) if mode == "crop" else 0
        return self.inner.encode_boxes(rgb, boxes, mode=mode, **size)

    def encode_boxes_multi(self, frames, boxes, mode: str = "crop"):
        self.crops += sum(len(b) for b in boxes) if mode == "crop" else 0
        return self.inner.encode_boxes_multi(frames, boxes, mode=mode)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


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
        peers: name -> :class:`~clip_perception.tools.bench_peers.PeerDetector` (rows of their own).
        twins: twin encoders of the levers (:data:`LEVER_SPECS`): ``"fp32"`` / ``"int8"`` -> encoder
            with the same weights; a lever whose twin is missing is not built.
    """

    def __init__(self, encoder, config, frames: list, command: str, naive_frames: int,
                 peers: Optional[dict] = None, twins: Optional[dict] = None):
        from ..command import parse_command, parse_object_phrase
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
        ours = {m: (config.replace(mode=m), encoder) for m in ("crop", "dense", "cascade")}
        twins = dict(twins or {})
        for lever, (overrides, twin) in LEVER_SPECS.items():
            if twin is None or twin in twins:
                ours[lever] = (config.replace(mode="cascade", **overrides), twins[twin] if twin else encoder)
        self.detectors = {m: Detector(c, encoder=CropCounter(e)) for m, (c, e) in ours.items()}
        self.peers = dict(peers or {})
        ref = self.parsed.reference if self.parsed.relation else None
        self.phrases = [self.parsed.target] + ([parse_object_phrase(ref).target] if ref else [])
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
        """One frame of ``mode`` (ours, a lever, ``naive`` or a peer): (end-to-end ms, stage ms dict, FrameResult).

        ``stages["cpu"]`` is the process CPU time of the frame (all threads, ms, proposals
        included); ``stages["crops"]`` the boxes encoded as crops.  Peers run no proposals:
        neither their time nor their CPU time is added to a peer's frame.
        """
        from ..decode import decode_depth, decode_image

        boxes = frame.boxes if boxes is None else boxes
        peer = mode in self.peers
        stages: dict = {"proposals": 0.0 if peer else frame.proposal_ms}
        self._sync()
        c_start = time.process_time()
        t_start = time.perf_counter()
        rgb = decode_image(frame.image)
        depth = decode_depth(frame.depth)
        stages["decode"] = (time.perf_counter() - t_start) * 1e3
        if mode == "naive" or peer:
            result = self._external(mode, rgb, depth, frame, boxes, stages)
        else:
            result = self._ours(mode, rgb, depth, frame, boxes, stages)
        t0 = time.perf_counter()
        self.publisher(result, self.command)
        t_end = time.perf_counter()
        stages["publish"] = (t_end - t0) * 1e3
        stages["cpu"] = (time.process_time() - c_start) * 1e3 + (0.0 if peer else frame.proposal_cpu_ms)
        e2e = (t_end - t_start) * 1e3 + stages["proposals"]
        return e2e, stages, result

    def _external(self, mode: str, rgb, depth, frame: BenchFrame, boxes: np.ndarray, stages: dict):
        """``naive`` or a peer: their detections, 3D like ours (``geometry.box_position``)."""
        from .. import geometry
        from ..command import CommandParse
        from ..pipeline import FrameResult

        threshold, top_k = self.config.score_threshold, self.config.top_k
        if mode == "naive":
            dets = self.naive.detect(rgb, boxes, self.parsed.target, threshold, top_k, stages)
            stages["crops"] = len(boxes)
        else:
            dets = self.peers[mode].detect(rgb, self.phrases, threshold, top_k, stages)
            boxes = np.zeros((0, 4), np.float32)
        t0 = time.perf_counter()
        for det in dets:
            geo = geometry.box_position(depth, det.box, frame.K)
            if geo is not None:
                det.position, det.size = geo.position, geo.size
        stages["3d"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(command=self.parsed, parse=CommandParse(status="ok", reason="", commands=[self.parsed]),
                           detections=dets, proposals=boxes, objectness=frame.objectness[:len(boxes)], mode=mode)

    def _ours(self, mode: str, rgb, depth, frame: BenchFrame, boxes: np.ndarray, stages: dict):
        """One of our modes / levers through :class:`pipeline.Detector` with the encoder's stage timings."""
        from ..types import Timings

        detector = self.detectors[mode]
        counter = detector.encoder
        crops_before = counter.crops
        enc_t = Timings()
        counter.inner.stage_timings = enc_t
        try:
            result = detector.detect(rgb, self.command, depth=depth, K=frame.K,
                                     proposals=(boxes, frame.objectness[:len(boxes)]))
        finally:
            counter.inner.stage_timings = None
        e = enc_t.stages_ms
        r = result.timings.stages_ms
        stages["crops"] = counter.crops - crops_before
        stages["crop_preprocess"] = e.get("encoder.crop", 0.0) + e.get("encoder.dense_input", 0.0)
        stages["image_encode"] = (e.get("encoder.image", 0.0) + e.get("encoder.dense_forward", 0.0)
                                  + e.get("encoder.pool", 0.0))
        stages["text_encode"] = r.get("encode_text", 0.0)
        stages["ranking"] = max(0.0, r.get("rank", 0.0) - stages["crop_preprocess"] - stages["image_encode"]
                                - stages["text_encode"])
        stages["3d"] = r.get("geometry", 0.0)
        return result

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
                run.crops_encoded.append(int(stages.get("crops", 0)))
                if progress is not None:
                    progress(f"frame {i} (seed {frame.seed}) {mode}: {e2e:.0f} ms")
        return runs
