"""The ROS-free detector: one frame (+ optional depth and K) and a command in, ranked targets out.

Data flow (one module per step, one way)::

    rgb ─► check_rgb ─► proposals ─► ranking.prepare_boxes ─► embed ─► ranking.rank ─► geometry ─► FrameResult
                          ▲          (clip, colour prior)       ▲        (pure)         (depth + K)
    depth, K ─────────────┘                                     │ every encoder call: crop | dense | cascade
    text ─► command.parse_command ─► ranking.make_query ────────┘ (phrases parsed once per command)

The input image is checked once, here (:func:`types.check_rgb`); the command is parsed once
per text (:meth:`Detector.parse`) and its reference phrase once per command; the mode
(``auto`` -> ``crop`` / ``cascade``) is resolved once per configuration by
:func:`embed.resolve_mode`.  The node (``node.py``) and the CLI (``cli.py``) only wrap
:class:`Detector`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np

from . import camera, placement, segment
from .command import CommandParse, ParsedCommand, parse_command, parse_object_phrase
from .embed import embed_boxes, embed_frame, embed_texts, resolve_mode
from .params import Config, DetectorConfig, RankingConfig
from .proposals import propose, support_plane
from .ranking import Query, RankResult, make_query, prepare_boxes, rank
from .boxes import box_iou
from .types import Detection, Timings, check_rgb

LOG = logging.getLogger(__name__)

__all__ = ["FrameResult", "Detector", "rank_boxes", "resolve_mode"]


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
        destination_detections: pick-and-place commands (``command.destination`` set): the
            destination's ranked detections on the same frame, best first (never the picked
            object's box); empty = the destination is not found (the pick part may be).
        place: pick-and-place: :class:`placement.PlaceResult` for the best destination (its
            ``position`` None with a reason when there is no depth / plane), else ``None``.
    """

    command: Optional[ParsedCommand]
    parse: CommandParse
    detections: list = field(default_factory=list)
    proposals: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    objectness: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    timings: Timings = field(default_factory=Timings)
    notes: list = field(default_factory=list)
    mode: str = "crop"
    destination_detections: list = field(default_factory=list)
    place: Optional[placement.PlaceResult] = None

    @property
    def intent(self) -> str:
        """``find``, ``pick_place``, ``stop`` (the text was a stop command) or ``""`` (no command)."""
        if self.command is not None:
            return "pick_place" if self.command.destination is not None else "find"
        return "stop" if self.parse.is_stop else ""

    @property
    def found(self) -> bool:
        return bool(self.detections)

    @property
    def best(self) -> Optional[Detection]:
        return self.detections[0] if self.detections else None

    def summary(self) -> str:
        """One line for voice feedback: "found red ball at 0.42 m" / "no red ball in view"."""
        if self.command is None:
            if self.parse.is_stop:
                return "stopped"
            return f"no command ({self.parse.reason})" if self.parse.reason else "no command"
        line = _found_line(self.command.target, self.best)
        dest = self.command.destination
        if dest is None:
            return line
        where = f"{self.command.destination_relation.replace('_', ' ')} the {dest.target}"
        if not self.destination_detections:
            return f"{line}; place: no {dest.target} in view"
        if self.place is not None and self.place.position is not None:
            return f"{line}; place: {where} at {float(np.linalg.norm(self.place.position)):.2f} m"
        return f"{line}; place: {where} (no 3D position)"


def _found_line(target: str, best: Optional[Detection]) -> str:
    """ "found red ball at 0.42 m" / "found red ball (no 3D position)" / "no red ball in view"."""
    if best is None:
        return f"no {target} in view"
    if best.position is not None:
        return f"found {target} at {float(np.linalg.norm(best.position)):.2f} m"
    return f"found {target} (no 3D position)"


def _query(command: ParsedCommand, negative_prompts: Sequence[str], score_reference: bool = True) -> Query:
    """The :class:`ranking.Query` of a parsed command; its reference phrase is parsed here."""
    reference = None
    if score_reference and command.relation and command.reference:
        reference = parse_object_phrase(command.reference)
    return make_query(command, reference, negative_prompts)


def _as_detector_config(config: Union[DetectorConfig, Config]) -> DetectorConfig:
    if isinstance(config, Config):
        return config.detector
    if not isinstance(config, DetectorConfig):
        raise TypeError(f"config must be a params.DetectorConfig (or params.Config), got {type(config).__name__}")
    return config


def _encoder_device(encoder) -> str:
    """The encoder's device as a string (``device`` is optional in the encoder protocol: ``cpu``)."""
    return str(getattr(encoder, "device", "cpu"))


@dataclass(frozen=True)
class _State:
    """What one frame is processed with: the config and its resolved mode (swapped as one object)."""

    config: DetectorConfig
    mode: str


@dataclass
class _Job:
    """One frame between :meth:`Detector._prepare` and the ranking."""

    rgb: np.ndarray
    result: FrameResult
    depth: Optional[np.ndarray] = None
    K: Optional[np.ndarray] = None
    query: Optional[Query] = None  # set when there is a command and an image: rank it
    destination: Optional["_Job"] = None  # pick-and-place: the destination, ranked on the same proposals
    plane: Optional[placement.SupportPlane] = None  # the frame's support plane (one fit per frame)
    exclude: Optional[Callable] = None  # "not that one": boxes -> (N,) bool of excluded objects


class Detector:
    """Finds the commanded object in RGB(-D) frames.

    Args:
        config: :class:`params.DetectorConfig` (model, proposal and ranking stages); a
            :class:`params.Config` (:func:`params.make_config`) is accepted and its
            :attr:`~params.Config.detector` part used.
        encoder: an object with ``encode_texts``, ``encode_boxes`` and ``logit_scale``
            (``encoder.Encoder`` protocol; optional ``device``, ``encode_boxes_multi``).
            ``None`` builds a :class:`encoder.ClipEncoder` from ``config.model`` (which raises
            ``WeightsUnavailableError`` quickly when the weights cannot be had offline).

    Raises:
        TypeError: ``config`` is not a ``DetectorConfig`` / ``Config``.
    """

    def __init__(self, config: Union[DetectorConfig, Config], encoder=None):
        config = _as_detector_config(config)
        if encoder is None:
            from .encoder import ClipEncoder  # torch/open_clip only when a real model is wanted

            model = config.model
            encoder = ClipEncoder(model_name=model.model_name, pretrained=model.pretrained, device=model.device,
                                  precision=model.precision, prompt_templates=tuple(model.prompt_templates),
                                  quantize_int8=model.quantize_int8)
            if model.warmup:
                cascade = resolve_mode(config.ranking.mode, encoder.device) == "cascade"
                size = (config.ranking.cascade_crop_size or None) if cascade else None
                encoder.warmup(dense=cascade, crop_size=size)  # the shapes of the first frame
        self.encoder = encoder
        self._state = _State(config, resolve_mode(config.ranking.mode, _encoder_device(encoder)))
        self._parsed: tuple = (None, None)  # (text, CommandParse) of the last parsed text
        self._queries: list = []  # [(command, negative prompts, Query)] of the last commands (pick + place)

    @property
    def config(self) -> DetectorConfig:
        """The current :class:`params.DetectorConfig` (change it with :meth:`reconfigure`)."""
        return self._state.config

    @property
    def device(self) -> str:
        """The encoder's device, e.g. ``cpu`` or ``cuda:0``."""
        return _encoder_device(self.encoder)

    @property
    def mode(self) -> str:
        """The resolved ranking mode (``crop``, ``dense`` or ``cascade``; ``auto`` never)."""
        return self._state.mode

    def reconfigure(self, config: Union[DetectorConfig, Config]) -> bool:
        """Apply run-time parameter changes from the next frame on (thread-safe: one swap).

        The proposal and ranking stages of ``config`` replace the current ones and the mode
        is resolved again.  The model stage cannot change the running encoder: it is kept,
        and the return value says whether ``config.model`` asked for another one (then
        build a new ``Detector(config)``, as the node does on its worker).

        Args:
            config: the new :class:`params.DetectorConfig` (or :class:`params.Config`).

        Returns:
            True when ``config.model`` differs from the model stage of this detector.

        Raises:
            TypeError: ``config`` is not a ``DetectorConfig`` / ``Config``.
        """
        config = _as_detector_config(config)
        current = self._state.config
        new = DetectorConfig(model=current.model, proposals=config.proposals, ranking=config.ranking)
        self._state = _State(new, resolve_mode(new.ranking.mode, self.device))
        return config.model != current.model

    def parse(self, text: str) -> CommandParse:
        """Parse ``text`` (cached for the last text, so a standing command is parsed once)."""
        last_text, parse = self._parsed
        if parse is None or text != last_text:
            parse = parse_command(text)
            self._parsed = (text, parse)
        return parse

    def query(self, command: ParsedCommand, config: RankingConfig) -> Query:
        """The ranking's :class:`ranking.Query` of ``command`` (cached for the last command).

        Raises:
            ValueError: the command has no object phrase.
        """
        wanted = tuple(config.negative_prompts)
        for last, negatives, query in self._queries:
            if (last is command or last == command) and negatives == wanted:
                return query
        query = _query(command, wanted)
        self._queries = [(command, wanted, query), *self._queries[:1]]  # the pick and the place phrase
        return query

    def detect(
        self,
        rgb: np.ndarray,
        command: Union[str, ParsedCommand],
        depth: Optional[np.ndarray] = None,
        K: Optional[np.ndarray] = None,
        proposals: Optional[tuple] = None,
        exclude=None,
    ) -> FrameResult:
        """Rank proposals of ``rgb`` against ``command`` and locate the best ones in 3D.

        A pick-and-place command ("put the apple in the bowl") also ranks its destination on
        the same proposals and computes the place point (:attr:`FrameResult.place`).

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            command: raw command text (parsed; the first of an "and then" list is used) or
                an already parsed command.
            depth: optional (H, W) float32 depth in metres, NaN = invalid, aligned to ``rgb``
                (same size and optical frame).  A depth of another size is ignored with a note.
            K: optional (3, 3) intrinsics of the colour camera (``CameraInfo.k``), or a
                :class:`camera.CameraModel` (K + lens distortion, ``camera.camera_info_to_model``):
                every pixel -> 3D step then removes the distortion.  Invalid K (all zero,
                non-finite, fx or fy <= 0) -> no 3D, with a note.
            proposals: optional precomputed ``(boxes (N, 4) float32 xyxy pixels, objectness
                (N,) float32)`` to rank instead of running ``proposals.propose`` (the
                benchmark feeds every mode the same boxes); the ``proposals`` timing is then 0.
            exclude: optional ``exclude(boxes (N, 4) float32) -> (N,) bool``: proposals it marks
                are not candidates for the picked object ("no, the other one";
                :meth:`dialogue.Dialogue.exclusion_mask`).

        Returns:
            :class:`FrameResult`; detections without valid depth have ``position is None``.

        Raises:
            ValueError: ``rgb`` is not an (H, W, 3) uint8 array; ``proposals`` of mismatched lengths.
        """
        return self._detect_jobs([(rgb, command, depth, K, proposals)], batch=False, exclude=exclude)[0]

    def detect_many(self, frames: Sequence[tuple], exclude=None) -> list:
        """:meth:`detect` for several frames (e.g. one per camera) with one batched encoder call.

        The proposals of all frames are encoded in one forward pass through
        ``encoder.encode_boxes_multi`` (crops in ``crop`` mode, patch features in ``dense`` /
        ``cascade`` mode; ``embed.py``); the rest of the ranking runs per frame.  Encoders
        without ``encode_boxes_multi`` (test encoders) are called frame by frame.

        Args:
            frames: ``(rgb, command, depth, K)`` tuples, arguments as in :meth:`detect`.
            exclude: as in :meth:`detect`, applied to every frame's proposals.

        Returns:
            One :class:`FrameResult` per frame, in order.
        """
        frames = [(rgb, command, depth, K, None) for rgb, command, depth, K in frames]
        return self._detect_jobs(frames, batch=True, exclude=exclude)

    def _detect_jobs(self, frames: Sequence[tuple], batch: bool, exclude=None) -> list:
        state = self._state  # one snapshot per call: a concurrent reconfigure applies from the next one
        jobs = [self._prepare(state, *frame, exclude=exclude) for frame in frames]
        ready = [job for job in jobs if job.query is not None]
        ready += [job.destination for job in ready if job.destination is not None]
        if ready:
            self._rank(state, ready, batch)
        for job in jobs:
            if job.destination is not None:
                _place(job, state.config.ranking)
        return [job.result for job in jobs]

    def _prepare(self, state: _State, rgb, command, depth, K, proposals, exclude=None) -> _Job:
        """Check the input, parse, check depth / K and propose regions for one frame."""
        rgb = check_rgb(rgb)
        cfg = state.config
        timings = Timings()
        if isinstance(command, ParsedCommand):
            parsed = command
            parse = CommandParse(status="ok", reason="", commands=[command])
        else:
            parse = self.parse(command)
            parsed = parse.commands[0] if parse.status == "ok" and parse.commands else None
        result = FrameResult(command=parsed, parse=parse, timings=timings, notes=[], mode=state.mode)
        job = _Job(rgb=rgb, result=result)
        if parsed is None or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            return job
        job.depth, job.K = _usable_depth_and_K(rgb, depth, K, result.notes)

        t0 = time.perf_counter()
        fit = _support_plane(job, cfg.proposals, timings)
        if proposals is not None:
            boxes = np.asarray(proposals[0], dtype=np.float32).reshape(-1, 4)
            objectness = np.asarray(proposals[1], dtype=np.float32).reshape(-1)
            if objectness.shape[0] != boxes.shape[0]:
                raise ValueError(f"{boxes.shape[0]} proposal boxes but {objectness.shape[0]} objectness values")
        else:
            p = cfg.proposals
            boxes, objectness = propose(
                rgb, depth=job.depth if job.K is not None else None, K=job.K, methods=tuple(p.proposal_methods),
                max_proposals=p.max_proposals, nms_iou=p.nms_iou, min_box_size=p.min_box_size,
                max_side=p.proposal_max_side, timings=timings, ss_mode=p.selective_search_mode, plane=fit)
        timings.add("proposals", (time.perf_counter() - t0) * 1e3)
        if parsed.destination is not None:  # the destination is ranked on every proposal
            dest = FrameResult(command=parsed.destination, parse=parse, timings=timings, notes=[], mode=state.mode,
                               proposals=boxes, objectness=objectness)
            job.destination = _Job(rgb=rgb, result=dest, depth=job.depth, K=job.K, plane=job.plane,
                                   query=self.query(parsed.destination, cfg.ranking))
        if exclude is not None and len(boxes):
            keep = ~np.asarray(exclude(boxes), dtype=bool).reshape(len(boxes))
            boxes, objectness = boxes[keep], objectness[keep]
            job.exclude = exclude
        result.proposals, result.objectness = boxes, objectness
        job.query = self.query(parsed, cfg.ranking)
        return job

    def _rank(self, state: _State, jobs: Sequence[_Job], batch: bool) -> None:
        """Embed (one batched step for all ``jobs``), rank and locate the detections in 3D."""
        cfg = state.config.ranking
        t0 = time.perf_counter()
        sets = [prepare_boxes(job.rgb, job.result.proposals, job.result.objectness, job.query, job.result.timings)
                for job in jobs]
        texts = _texts_per_frame(self.encoder, jobs, sets)
        if batch:
            embs = embed_boxes(self.encoder, [job.rgb for job in jobs], sets, texts, state.mode, cfg,
                               [job.result.timings for job in jobs])
        else:  # detect(): the frame's own time only
            embs = [embed_boxes(self.encoder, [job.rgb], [s], [t], state.mode, cfg, [job.result.timings])[0]
                    if len(s) else None for job, s, t in zip(jobs, sets, texts)]
        shared_ms = (time.perf_counter() - t0) * 1e3
        for job, box_set, text, emb in zip(jobs, sets, texts, embs):
            t1 = time.perf_counter()
            ranked = rank(box_set, emb, text, job.query, cfg, depth=job.depth, mode=state.mode)
            for det, i in zip(ranked.detections, ranked.order):  # for tracking (tracking.py)
                det.embedding = emb[int(i)]
            job.result.timings.add("rank", shared_ms + (time.perf_counter() - t1) * 1e3)
            job.result.detections = _exclude(_distinct(_locate(list(ranked.detections), job)), job.exclude)


#: Two detections whose final boxes overlap this much are one object (segmentation grows several
#: proposals of one object into the same mask): the better-ranked one is kept.
SAME_OBJECT_IOU = 0.8


def _distinct(detections: list) -> list:
    """Ranked detections, one per object: a detection whose final box has IoU >= SAME_OBJECT_IOU
    with a better-ranked one is dropped (order kept)."""
    if len(detections) < 2:
        return detections
    iou = box_iou(np.stack([d.box for d in detections]).astype(np.float32),
                  np.stack([d.box for d in detections]).astype(np.float32))
    keep: list = []
    for i in range(len(detections)):
        if all(iou[i, j] < SAME_OBJECT_IOU for j in keep):
            keep.append(i)
    return [detections[i] for i in keep]


def _exclude(detections: list, exclude: Optional[Callable]) -> list:
    """Drop detections whose final box (after segmentation: the mask's tight box) is an excluded
    object: a proposal covering part of an excluded object can grow into all of it."""
    if exclude is None or not detections:
        return detections
    gone = np.asarray(exclude(np.stack([d.box for d in detections]).astype(np.float32)), dtype=bool)
    return [d for d, out in zip(detections, gone.reshape(len(detections))) if not out]


def _texts_per_frame(encoder, jobs: Sequence[_Job], sets: Sequence) -> list:
    """Text embeddings per frame (``None`` without boxes), one ``encode_texts`` call per distinct query.

    Every frame of a query gets the call's ``encode_text`` milliseconds (it waited for it).
    """
    done: dict = {}
    out = []
    for job, box_set in zip(jobs, sets):
        if len(box_set) == 0:
            out.append(None)
            continue
        key = id(job.query)
        if key not in done:
            t = Timings()
            done[key] = (embed_texts(encoder, job.query, t), t.stages_ms["encode_text"])
        texts, ms = done[key]
        job.result.timings.add("encode_text", ms)
        out.append(texts)
    return out


def _place(job: _Job, config: RankingConfig) -> None:
    """Attach the destination's detections (never the picked object's box) and the place point."""
    result, dest = job.result, job.destination.result
    pick = result.best
    dets = list(dest.detections)
    if pick is not None and dets:
        overlap = box_iou(np.stack([d.box for d in dets]), pick.box[None])[:, 0]
        dets = [d for d, iou in zip(dets, overlap) if iou < PICK_IS_DESTINATION_IOU]
    result.destination_detections = dets
    if not dets:
        return
    half = 0.0
    if pick is not None and pick.size is not None:
        half = 0.5 * float(max(pick.size[0], pick.size[1]))
    t0 = time.perf_counter()
    result.place = placement.locate_place(
        result.command.destination_relation, job.depth, job.K, dets[0].box, picked_half_extent=half,
        margin=config.place_margin, picked_position=None if pick is None else pick.position, plane=job.plane)
    result.timings.add("place", (time.perf_counter() - t0) * 1e3)


#: A destination candidate overlapping the picked object's box this much is the picked object.
PICK_IS_DESTINATION_IOU = 0.5


def _usable_depth_and_K(rgb: np.ndarray, depth, K, notes: list) -> tuple:
    """``(depth or None, camera or None)`` usable for 3D, with a note for each reason not; the camera is a
    :class:`camera.CameraModel` as given (lens distortion kept), else K as (3, 3) float64."""
    depth_ok = depth is not None
    if depth is not None and not camera.depth_aligned(rgb.shape, depth.shape):
        notes.append(f"depth {depth.shape[:2]} is not aligned to the colour image {rgb.shape[:2]}: no 3D")
        depth_ok = False
    k_ok = K is not None and camera.valid_intrinsics(K)
    if depth_ok and K is not None and not k_ok:
        notes.append("camera intrinsics K are invalid (zero or non-finite): no 3D")
    if depth_ok and K is None:
        notes.append("no camera intrinsics: no 3D")
    if depth_ok and not np.isfinite(depth).any():
        notes.append("depth has no valid pixel (all 0 / NaN): no 3D")
        depth_ok = False
    cam = (K if isinstance(K, camera.CameraModel) else camera._as_K(K)) if k_ok else None
    return (depth if depth_ok else None), cam


def _support_plane(job: _Job, config, timings: Timings) -> Optional[tuple]:
    """Fit the frame's support plane once (``proposals.support_plane``, as the depth proposals do)
    into ``job.plane``; returns the ``(n, d)`` fit for ``propose`` (None without depth + K)."""
    if job.depth is None or job.K is None:
        return None
    t0 = time.perf_counter()
    fit = support_plane(job.depth, job.K, max_side=config.proposal_max_side)
    if fit is not None:
        job.plane = placement.SupportPlane(normal=np.asarray(fit[0], np.float64), offset=float(fit[1]))
    timings.add("proposals.plane", (time.perf_counter() - t0) * 1e3)
    return fit


def _locate(detections: list, job: _Job) -> list:
    """The 3D step: mask, tight box and 3D of each reported detection (:func:`segment.locate_object`).

    ``box`` becomes the mask's tight box (``proposal_box`` keeps the ranked one); ``position`` /
    ``size`` / ``orientation`` are the object's centre, oriented extent and axes with depth, K and
    a support plane, else the visible-surface point (``position_is_centre`` False, with a note).
    """
    t0 = time.perf_counter()
    notes = job.result.notes
    for det in detections:
        est = segment.locate_object(job.rgb, det.box, job.depth, job.K, job.plane)
        det.proposal_box = det.box
        if est.box is not None:
            det.box = est.box
        det.mask = est.mask
        det.position, det.size, det.orientation = est.position, est.size, est.orientation
        det.position_is_centre = est.is_centre
        if est.note and est.note not in notes:
            notes.append(est.note)
    job.result.timings.add("geometry", (time.perf_counter() - t0) * 1e3)
    return detections


def rank_boxes(
    rgb: np.ndarray,
    boxes: np.ndarray,
    objectness: Optional[np.ndarray],
    command: Union[str, ParsedCommand],
    encoder,
    config: Union[RankingConfig, DetectorConfig, Config, None] = None,
    depth: Optional[np.ndarray] = None,
    reference_detections: Optional[Sequence[Detection]] = None,
    timings: Optional[Timings] = None,
) -> RankResult:
    """Rank given boxes of one frame (no proposals, no 3D): prepare, embed, rank.

    The path :class:`Detector` takes for one frame, for callers that bring their own boxes
    (the benchmark, tests).

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        boxes: (N, 4) float32 ``[x1, y1, x2, y2]`` proposals, source-image pixels (clipped
            to the image; non-finite and sub-pixel boxes are never reported).
        objectness: (N,) float proposal scores (tie-breaker only), or ``None``.
        command: a parsed command, or text (parsed; the first command is used).
        encoder: the encoder (``encoder.Encoder`` protocol).
        config: :class:`params.RankingConfig`, or a ``DetectorConfig`` / ``Config`` whose
            ranking stage is used (``None`` = the table's defaults); its mode is resolved
            against the encoder's device (:func:`embed.resolve_mode`).
        depth: optional (H, W) float32 metres aligned to ``rgb`` (another size: ignored, note).
        reference_detections: optional detections of the reference object (the first one is
            the reference; the reference phrase is then not scored).
        timings: optional :class:`types.Timings` receiving ``color_prior``, ``encode_text``
            and ``encode_boxes`` milliseconds.

    Returns:
        :class:`ranking.RankResult`.

    Raises:
        ValueError: bad image or boxes, no command in the text, an empty object phrase.
    """
    rgb = check_rgb(rgb)
    if config is None:
        config = RankingConfig()
    elif isinstance(config, (DetectorConfig, Config)):
        config = config.ranking
    if isinstance(command, str):
        parsed = parse_command(command).first
        if parsed is None:
            raise ValueError(f"no command in {command!r}")
        command = parsed
    query = _query(command, config.negative_prompts, score_reference=not reference_detections)
    mode = resolve_mode(config.mode, _encoder_device(encoder))
    box_set = prepare_boxes(rgb, boxes, objectness, query, timings)
    texts, emb = embed_frame(encoder, rgb, box_set, query, mode, config, timings)
    return rank(box_set, emb, texts, query, config, depth=depth, reference_detections=reference_detections,
                mode=mode)
