"""The ROS-free detector: one frame (+ optional depth and K) and a command in, ranked targets out.

Data flow (one module per step)::

    rgb ──► proposals ──► ranking (encoder: crops / dense) ──► geometry (depth + K) ──► FrameResult
              ▲                ▲
    depth, K ─┘   command text ─┘ (parsed once per command by ``command.parse_command``)

The node (``node.py``) and the CLI (``cli.py``) only wrap :class:`Detector`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

from . import geometry
from .command import CommandParse, ParsedCommand, parse_command
from .params import DetectorConfig
from .proposals import propose
from .ranking import rank
from .types import Detection, Timings

LOG = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """The outcome of :meth:`Detector.detect` for one frame.

    Attributes:
        command: the parsed command that was looked for (``None`` when the text held no command).
        parse: the full parse of the text (status ``ok`` / ``no_command`` / ``unsupported``).
        detections: ranked, best first, at most ``top_k``; empty = honest "not found".
        proposals: (N, 4) float32 xyxy boxes in source pixels that were ranked.
        objectness: (N,) float32 objectness of those proposals.
        timings: per-stage wall-clock milliseconds (``proposals``, ``rank``, ``geometry``...).
        notes: human-readable warnings for this frame (e.g. "depth not aligned: no 3D").
        mode: ranking mode used (``crop``, ``dense`` or ``cascade``).
    """

    command: Optional[ParsedCommand]
    parse: CommandParse
    detections: list = field(default_factory=list)
    proposals: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    objectness: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    timings: Timings = field(default_factory=Timings)
    notes: list = field(default_factory=list)
    mode: str = "crop"

    @property
    def found(self) -> bool:
        return bool(self.detections)

    @property
    def best(self) -> Optional[Detection]:
        return self.detections[0] if self.detections else None

    def summary(self) -> str:
        """One line for voice feedback: "found red ball at 0.42 m" / "no red ball in view"."""
        if self.command is None:
            return f"no command ({self.parse.reason})" if self.parse.reason else "no command"
        target = self.command.target
        best = self.best
        if best is None:
            return f"no {target} in view"
        if best.position is not None:
            return f"found {target} at {float(np.linalg.norm(best.position)):.2f} m"
        return f"found {target} (no 3D position)"


def resolve_mode(mode: str, device: str) -> str:
    """``auto`` -> ``crop`` on CUDA, ``cascade`` on CPU; other modes unchanged."""
    if mode != "auto":
        return mode
    return "crop" if str(device).startswith("cuda") else "cascade"


class Detector:
    """Finds the commanded object in RGB(-D) frames.

    Args:
        config: validated parameters (:func:`clip_perception.params.make_config`).
        encoder: an object with ``encode_texts``, ``encode_boxes`` and ``logit_scale``
            (``encoder.Encoder`` protocol).  ``None`` builds a :class:`encoder.ClipEncoder`
            from ``config`` (which raises ``WeightsUnavailableError`` quickly when the
            weights cannot be had offline).
    """

    def __init__(self, config: DetectorConfig, encoder=None):
        self.config = config
        if encoder is None:
            from .encoder import ClipEncoder  # torch/open_clip only when a real model is wanted

            encoder = ClipEncoder(
                model_name=config.model_name,
                pretrained=config.pretrained,
                device=config.device,
                precision=config.precision,
                prompt_templates=tuple(config.prompt_templates),
            )
            if config.warmup:
                encoder.warmup()
        self.encoder = encoder
        self._parsed_text: Optional[str] = None
        self._parsed: Optional[CommandParse] = None

    @property
    def device(self) -> str:
        return str(getattr(self.encoder, "device", "cpu"))

    @property
    def mode(self) -> str:
        return resolve_mode(self.config.mode, self.device)

    def parse(self, text: str) -> CommandParse:
        """Parse ``text`` (cached for the last text, so a standing command is parsed once)."""
        if text != self._parsed_text:
            self._parsed = parse_command(text)
            self._parsed_text = text
        return self._parsed

    def detect(
        self,
        rgb: np.ndarray,
        command: Union[str, ParsedCommand],
        depth: Optional[np.ndarray] = None,
        K: Optional[np.ndarray] = None,
        proposals: Optional[tuple] = None,
    ) -> FrameResult:
        """Rank proposals of ``rgb`` against ``command`` and locate the best ones in 3D.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            command: raw command text (parsed; the first of an "and then" list is used) or
                an already parsed command.
            depth: optional (H, W) float32 depth in metres, NaN = invalid, aligned to ``rgb``
                (same size and optical frame).  A depth of another size is ignored with a note.
            K: optional (3, 3) intrinsics of the colour camera (``CameraInfo.k``).  Invalid K
                (all zero, non-finite, fx or fy <= 0) -> no 3D, with a note.
            proposals: optional precomputed ``(boxes (N, 4) float32 xyxy pixels, objectness
                (N,) float32)`` to rank instead of running ``proposals.propose`` (the
                benchmark feeds every mode the same boxes); the ``proposals`` timing is then 0.

        Returns:
            :class:`FrameResult`; detections without valid depth have ``position is None``.

        Raises:
            ValueError: ``rgb`` is not an (H, W, 3) uint8 array; ``proposals`` of mismatched lengths.
        """
        job = self._prepare(rgb, command, depth, K, proposals)
        return self._finish(job, self.encoder)

    def detect_many(self, frames: Sequence[tuple]) -> list:
        """:meth:`detect` for several frames (e.g. one per camera) with one batched encoder call.

        The proposals of all frames are encoded in one forward pass through
        ``encoder.encode_boxes_multi`` (crops in ``crop`` mode, patch features in ``dense`` /
        ``cascade`` mode); the rest of the ranking runs per frame.  Encoders without
        ``encode_boxes_multi`` (test encoders) are called frame by frame.

        Args:
            frames: ``(rgb, command, depth, K)`` tuples, arguments as in :meth:`detect`.

        Returns:
            One :class:`FrameResult` per frame, in order.
        """
        jobs = [self._prepare(rgb, command, depth, K, None) for rgb, command, depth, K in frames]
        ready = [job for job in jobs if job.todo]
        batch = getattr(self.encoder, "encode_boxes_multi", None)
        encoders = {}
        if batch is not None and len(ready) > 1:
            first = "crop" if self.mode == "crop" else "dense"
            embeddings = batch([job.rgb for job in ready], [job.result.proposals for job in ready], mode=first)
            for job, emb in zip(ready, embeddings):
                encoders[id(job)] = _Precomputed(self.encoder, job.result.proposals, first, emb)
        return [self._finish(job, encoders.get(id(job), self.encoder)) for job in jobs]

    def _prepare(self, rgb, command, depth, K, proposals) -> "_Job":
        """Parse, check depth / K and propose regions for one frame."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {getattr(rgb, 'shape', None)} "
                             f"{getattr(rgb, 'dtype', type(rgb).__name__)}")
        cfg = self.config
        timings = Timings()
        notes: list = []
        if isinstance(command, ParsedCommand):
            parsed = command
            parse = CommandParse(status="ok", reason="", commands=[command])
        else:
            parse = self.parse(command)
            parsed = parse.commands[0] if parse.status == "ok" and parse.commands else None
        mode = self.mode
        result = FrameResult(command=parsed, parse=parse, timings=timings, notes=notes, mode=mode)
        job = _Job(rgb=rgb, result=result)
        if parsed is None or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            return job

        depth_ok = depth is not None
        if depth is not None and not geometry.depth_aligned(rgb.shape, depth.shape):
            notes.append(f"depth {depth.shape[:2]} is not aligned to the colour image {rgb.shape[:2]}: no 3D")
            depth_ok = False
        k_ok = K is not None and geometry.valid_intrinsics(K)
        if depth_ok and K is not None and not k_ok:
            notes.append("camera intrinsics K are invalid (zero or non-finite): no 3D")
        if depth_ok and K is None:
            notes.append("no camera intrinsics: no 3D")
        if depth_ok and not np.isfinite(depth).any():
            notes.append("depth has no valid pixel (all 0 / NaN): no 3D")
            depth_ok = False
        job.depth = depth if depth_ok else None
        job.K = np.asarray(K, dtype=np.float64).reshape(3, 3) if k_ok else None

        t0 = time.perf_counter()
        if proposals is not None:
            boxes = np.asarray(proposals[0], dtype=np.float32).reshape(-1, 4)
            objectness = np.asarray(proposals[1], dtype=np.float32).reshape(-1)
            if objectness.shape[0] != boxes.shape[0]:
                raise ValueError(f"{boxes.shape[0]} proposal boxes but {objectness.shape[0]} objectness values")
        else:
            boxes, objectness = propose(
                rgb,
                depth=job.depth if job.K is not None else None,
                K=job.K,
                methods=tuple(cfg.proposal_methods),
                max_proposals=cfg.max_proposals,
                nms_iou=cfg.nms_iou,
                min_box_size=cfg.min_box_size,
                max_side=cfg.proposal_max_side,
                timings=timings,
                ss_mode=cfg.selective_search_mode,
            )
        timings.add("proposals", (time.perf_counter() - t0) * 1e3)
        result.proposals, result.objectness = boxes, objectness
        job.todo = True
        return job

    def _finish(self, job: "_Job", encoder) -> FrameResult:
        """Rank the proposals of a prepared frame and locate the detections in 3D."""
        result = job.result
        if not job.todo:
            return result
        timings = result.timings
        t0 = time.perf_counter()
        ranked = rank(job.rgb, result.proposals, result.objectness, result.command, encoder,
                      _ModeConfig(self.config, result.mode), depth=job.depth, timings=timings)
        timings.add("rank", (time.perf_counter() - t0) * 1e3)
        detections = list(ranked.detections)

        t0 = time.perf_counter()
        if job.depth is not None and job.K is not None:
            for det in detections:
                geo = geometry.box_position(job.depth, det.box, job.K)
                if geo is not None:
                    det.position, det.size = geo.position, geo.size
        timings.add("geometry", (time.perf_counter() - t0) * 1e3)
        result.detections = detections
        return result


@dataclass
class _Job:
    """One frame between :meth:`Detector._prepare` and :meth:`Detector._finish`."""

    rgb: np.ndarray
    result: FrameResult
    depth: Optional[np.ndarray] = None
    K: Optional[np.ndarray] = None
    todo: bool = False  # a command and an image: rank it


class _Precomputed:
    """The encoder for one frame of a batch: answers the batched call from ``embeddings``.

    ``encode_boxes`` with the same boxes and mode returns the embeddings computed for the
    whole batch; anything else (the cascade's crop re-ranking, texts) goes to ``inner``.
    """

    def __init__(self, inner, boxes: np.ndarray, mode: str, embeddings: np.ndarray):
        self._inner, self._boxes, self._mode, self._embeddings = inner, boxes, mode, embeddings

    def encode_boxes(self, rgb: np.ndarray, boxes: np.ndarray, mode: str = "crop") -> np.ndarray:
        if mode == self._mode and np.array_equal(np.asarray(boxes, np.float32), self._boxes):
            return self._embeddings
        return self._inner.encode_boxes(rgb, boxes, mode=mode)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _ModeConfig:
    """``config`` seen by the ranking with ``mode`` resolved (``auto`` replaced)."""

    def __init__(self, config: DetectorConfig, mode: str):
        self._config = config
        self.mode = mode

    def __getattr__(self, name):
        return getattr(self._config, name)

