"""Rank region proposals against a parsed command (CLIP + colour prior + geometry).

Per proposal ``i`` and object phrase ``t`` (``command.target``):

1. **CLIP score** -- image embedding ``v_i`` (``encoder.encode_boxes``) and
   text embeddings of ``[t] + negative_prompts`` (``encoder.encode_texts``),
   all unit-norm.  Logits ``z_ij = logit_scale * cos(v_i, u_j)`` (CLIP,
   Radford et al. 2021, eq. of the zero-shot classifier) and a softmax *per
   crop across the texts*::

       clip_score_i = exp(z_i0) / sum_j exp(z_ij)        in [0, 1]

   Each crop is compared against background prompts, not against the other
   crops, so a frame without the object yields low scores ("not found")
   instead of a softmax over candidates that always picks something.  With
   no negative prompts configured the score is ``(cos + 1) / 2``.
2. **Colour prior** (only when the phrase names colours) -- ``color_score_i``
   = purity x completeness (``colors.color_purity_completeness``): purity is
   the fraction of the box's pixels whose HSV colour names as one of the named
   colours (names are mutually exclusive, so for "red and white" it is the
   fraction of pixels that are red or white); completeness is the share of the
   matching pixels around the box (box grown by 25 % per side) that lie inside
   it, so a box cut inside a coloured object (its bright centre) loses to the
   box around the whole object.  In [0, 1].
3. **Fusion** -- convex blend with ``w = config.color_prior_weight`` in
   [0, 1]: ``fused = (1 - w) * clip_score + w * color_score`` (w = 0: pure
   CLIP; w = 1: colour prior only); ``fused = clip_score`` when no colour is
   named.  ``Detection.confidence = Detection.score = fused`` (in [0, 1]).
4. **Not found** -- proposals with ``fused < config.score_threshold`` are
   dropped; then near-duplicates (IoU > :data:`DUPLICATE_IOU` with a better
   candidate) and parts (> :data:`CONTAINED_FRACTION` of the area inside a better
   candidate) are suppressed (``proposals.nms``, torchvision).  Nothing left
   -> empty result.
5. **Spatial qualifier** among the remaining candidates: left/right/top/
   bottom by box centre x/y, middle = centre x closest to the candidates'
   median centre x, nearest/farthest by the median valid depth inside the box
   (no depth -> CLIP order kept, with a note), largest/smallest by box area;
   the ordinal picks index ``ordinal - 1`` of that order (fewer candidates ->
   empty: not found).  The chosen one goes first, the others follow in fused
   order.
6. **Reference relation** (ReCLIP-style: Subramanian et al., "ReCLIP: A
   Strong Zero-Shot Baseline for Referring Expression Comprehension", ACL
   2022 -- score target and reference separately, resolve the relation with
   geometry): the reference phrase is scored with steps 1-3; its best
   proposal above the threshold is the reference (none -> not found);
   target candidates overlapping it (IoU > :data:`REFERENCE_OVERLAP_IOU`) are
   excluded; candidates must lie on the relation's side of the reference
   (left of / right of: centre x; above / below: centre y; on / in: centre x
   inside the reference box and centre y above its bottom edge; in front of /
   behind: median depth, or image y when no depth -- lower in the image is
   nearer); next to / near accept every candidate.  They are ranked by
   ``(1 - r) * fused + r * (1 - d)`` with ``d`` the centre distance divided
   by the image diagonal and ``r = config.relation_weight``.  When both a
   relation and a spatial qualifier are given, the relation decides (note).

Config attributes are read by name with ``getattr`` (defaults below, same
values as ``params.DetectorConfig``): ``score_threshold``,
``color_prior_weight``, ``negative_prompts``, ``top_k``, ``relation_weight``,
``mode``, ``cascade_top_k``.

Modes: ``crop`` / ``dense`` are passed to ``encoder.encode_boxes``;
``cascade`` encodes all proposals densely, then re-encodes the
``cascade_top_k`` best (by fused score, for the target and the reference)
as crops; ``auto`` = ``crop`` on a CUDA encoder, ``cascade`` otherwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from . import colors as colormod
from .command import ParsedCommand, parse_command, parse_object_phrase
from .proposals import box_iou, clamp_boxes, nms
from .types import Detection, Timings

from .params import PARAMETERS

LOG = logging.getLogger(__name__)

# Defaults used when ``config`` lacks a field: the parameter table's (params.py) values.
#: Background prompts each crop is compared against (per-crop softmax).
DEFAULT_NEGATIVE_PROMPTS: tuple[str, ...] = tuple(PARAMETERS["negative_prompts"].default)
DEFAULT_SCORE_THRESHOLD = PARAMETERS["score_threshold"].default
DEFAULT_COLOR_PRIOR_WEIGHT = PARAMETERS["color_prior_weight"].default
DEFAULT_RELATION_WEIGHT = PARAMETERS["relation_weight"].default
DEFAULT_TOP_K = PARAMETERS["top_k"].default
DEFAULT_CASCADE_TOP_K = PARAMETERS["cascade_top_k"].default
#: Ranking mode without a config: crop | dense | cascade | auto.
DEFAULT_MODE = "crop"
#: Candidates overlapping a better candidate by more than this IoU are near-duplicates.
DUPLICATE_IOU = 0.5
#: A candidate with more than this share of its area inside a better candidate is a part of it.
CONTAINED_FRACTION = 0.8
#: Target candidates overlapping the reference box by more than this IoU are excluded.
REFERENCE_OVERLAP_IOU = 0.5

MODES = ("crop", "dense", "cascade", "auto")


@dataclass
class RankResult:
    """Output of :func:`rank`.

    Behaves like the list of detections (``len``, iteration, indexing, truth).

    Attributes:
        detections: at most ``top_k`` :class:`types.Detection` (no 3D), best
            first; empty = not found.
        clip_prob: (N,) float32 per-proposal CLIP score for the target in [0, 1].
        color_score: (N,) float32 colour-prior score in [0, 1], or ``None``
            when the phrase names no colour.
        fused: (N,) float32 fused confidence in [0, 1].
        order: (K,) int64 proposal indices of the ranked candidates (the
            detections before ``top_k``), best first.
        reference: the reference object used for a relation, or ``None``.
        reference_fused: (N,) float32 fused scores for the reference phrase, or ``None``.
        mode: ranking mode used (``crop``, ``dense`` or ``cascade``).
        notes: human-readable remarks (fallbacks, ignored qualifiers, reasons for not found).
    """

    detections: list = field(default_factory=list)
    clip_prob: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    color_score: Optional[np.ndarray] = None
    fused: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    order: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    reference: Optional[Detection] = None
    reference_fused: Optional[np.ndarray] = None
    mode: str = "crop"
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.detections)

    def __iter__(self):
        return iter(self.detections)

    def __getitem__(self, i):
        return self.detections[i]

    def __bool__(self) -> bool:
        return bool(self.detections)

    @property
    def best(self) -> Optional[Detection]:
        return self.detections[0] if self.detections else None


def _cfg(config: Any, name: str, default):
    value = getattr(config, name, None) if config is not None else None
    return default if value is None else value


def _unit_interval(name: str, value) -> float:
    v = float(value)
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {v}")
    return v


def clip_probabilities(image_emb: np.ndarray, target_emb: np.ndarray, negative_emb: np.ndarray,
                       logit_scale: float) -> np.ndarray:
    """Per-crop softmax probability of the target text against negative texts.

    Args:
        image_emb: (N, D) unit-norm image embeddings.
        target_emb: (D,) unit-norm text embedding of the object phrase.
        negative_emb: (K, D) unit-norm embeddings of the negative prompts (K may be 0).
        logit_scale: CLIP's learned temperature (100 for OpenAI CLIP).

    Returns:
        (N,) float32 in [0, 1]: ``softmax([z_target, z_neg...])[0]`` per crop,
        ``z = logit_scale * cos``; ``(cos + 1) / 2`` when K = 0.
    """
    img = np.asarray(image_emb, dtype=np.float64)
    tgt = np.asarray(target_emb, dtype=np.float64).reshape(-1)
    neg = np.asarray(negative_emb, dtype=np.float64).reshape(-1, tgt.shape[0]) if np.size(negative_emb) else \
        np.zeros((0, tgt.shape[0]))
    if img.shape[0] == 0:
        return np.zeros((0,), np.float32)
    cos_t = img @ tgt
    if neg.shape[0] == 0:
        return np.clip((cos_t + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
    logits = float(logit_scale) * np.concatenate([cos_t[:, None], img @ neg.T], axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    p = e[:, 0] / e.sum(axis=1)
    return np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0).astype(np.float32)


def _color_score(rgb: np.ndarray, boxes: np.ndarray, color_words: Sequence[str]) -> Optional[np.ndarray]:
    names = []
    for c in color_words:
        name = colormod.canonical_color(c)
        if name is not None and name not in names:
            names.append(name)
    if not names:
        return None
    purity, completeness = colormod.color_purity_completeness(rgb, boxes, names)
    return (purity * completeness).astype(np.float32)


def _fuse(clip: np.ndarray, color: Optional[np.ndarray], w: float) -> np.ndarray:
    if color is None:
        return clip.astype(np.float32)
    return np.clip((1.0 - w) * clip + w * color, 0.0, 1.0).astype(np.float32)


def _centers(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0


def box_median_depth(depth: Optional[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """Median of the valid (finite, > 0) depth inside each box.

    Args:
        depth: (H, W) float depth in metres (NaN = invalid), or ``None``.
        boxes: (N, 4) float boxes, pixels (rounded to whole pixels, clipped).

    Returns:
        (N,) float64 metres, NaN where the box has no valid depth (all NaN without depth).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.full((boxes.shape[0],), np.nan)
    if depth is None:
        return out
    d = np.asarray(depth, dtype=np.float32)
    h, w = d.shape[:2]
    b = np.rint(np.nan_to_num(boxes)).astype(np.int64)
    for i, (x1, y1, x2, y2) in enumerate(b):  # at most ~100 candidates; NumPy inside
        x1, x2 = np.clip([x1, x2], 0, w)
        y1, y2 = np.clip([y1, y2], 0, h)
        patch = d[y1:y2, x1:x2]
        valid = patch[np.isfinite(patch) & (patch > 0)]
        if valid.size:
            out[i] = float(np.median(valid))
    return out


def _order_spatial(kind: str, ordinal: int, boxes: np.ndarray, cand: np.ndarray,
                   depth: Optional[np.ndarray], notes: list) -> Optional[np.ndarray]:
    """Candidate indices (into boxes) with the chosen one first; ``None`` = not found."""
    b = boxes[cand].astype(np.float64)
    cx, cy = _centers(b)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    if kind == "left":
        key = cx
    elif kind == "right":
        key = -cx
    elif kind == "top":
        key = cy
    elif kind == "bottom":
        key = -cy
    elif kind == "middle":
        key = np.abs(cx - np.median(cx))
    elif kind == "largest":
        key = -area
    elif kind == "smallest":
        key = area
    elif kind in ("nearest", "farthest"):
        z = box_median_depth(depth, b)
        if not np.isfinite(z).any():
            notes.append(f"'{kind}' needs depth; none valid in the candidates: CLIP order kept")
            key = np.zeros(len(cand))
        else:
            key = np.where(np.isfinite(z), z if kind == "nearest" else -z, np.inf)
    else:
        notes.append(f"unknown spatial qualifier '{kind}' ignored")
        key = np.zeros(len(cand))
    sorted_cand = cand[np.argsort(key, kind="stable")]  # stable: ties keep the fused order
    k = max(int(ordinal), 1) - 1
    if k >= len(sorted_cand):
        notes.append(f"only {len(sorted_cand)} candidate(s): no {k + 1}. in '{kind}' order")
        return None
    chosen = sorted_cand[k]
    return np.concatenate([[chosen], cand[cand != chosen]]).astype(np.int64)


def _order_relation(relation: str, ref_box: np.ndarray, boxes: np.ndarray, cand: np.ndarray,
                    fused: np.ndarray, depth: Optional[np.ndarray], diag: float, r: float,
                    notes: list) -> Optional[np.ndarray]:
    b = boxes[cand].astype(np.float64)
    cx, cy = _centers(b)
    rb = np.asarray(ref_box, dtype=np.float64)
    rcx, rcy = (rb[0] + rb[2]) / 2.0, (rb[1] + rb[3]) / 2.0
    dist = np.hypot(cx - rcx, cy - rcy) / max(diag, 1e-9)
    combined = (1.0 - r) * fused[cand] + r * (1.0 - np.clip(dist, 0.0, 1.0))
    rel = relation
    if rel in ("next to", "near"):
        ok = np.ones(len(cand), bool)
    elif rel == "left of":
        ok = cx < rcx
    elif rel == "right of":
        ok = cx > rcx
    elif rel == "above":
        ok = cy < rcy
    elif rel == "below":
        ok = cy > rcy
    elif rel in ("on", "in"):
        ok = (cx >= rb[0]) & (cx <= rb[2]) & (cy <= rb[3])
    elif rel in ("in front of", "behind"):
        z = box_median_depth(depth, b)
        zr = box_median_depth(depth, rb[None])[0]
        if np.isfinite(zr) and np.isfinite(z).any():
            ok = np.isfinite(z) & ((z < zr) if rel == "in front of" else (z > zr))
        else:
            notes.append(f"'{rel}' without valid depth: decided by image y (lower = nearer)")
            ok = (cy > rcy) if rel == "in front of" else (cy < rcy)
    else:
        notes.append(f"unknown relation '{rel}': treated as 'near'")
        ok = np.ones(len(cand), bool)
    if not ok.any():
        notes.append(f"no candidate {rel} the reference")
        return None
    sel = np.flatnonzero(ok)
    chosen = cand[sel[np.argsort(-combined[sel], kind="stable")[0]]]
    return np.concatenate([[chosen], cand[cand != chosen]]).astype(np.int64)


def _candidates(boxes: np.ndarray, fused: np.ndarray, objectness: np.ndarray, threshold: float,
                exclude: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices passing the threshold, near-duplicates suppressed, by fused desc (objectness breaks ties)."""
    idx = np.flatnonzero(fused >= threshold)
    if exclude is not None:
        idx = idx[~exclude[idx]]
    if idx.size == 0:
        return idx.astype(np.int64)
    order = np.lexsort((-objectness[idx], -fused[idx]))
    idx = idx[order]
    # tiny rank-based epsilon makes the NMS order deterministic for tied scores
    scores = fused[idx].astype(np.float64) - np.arange(idx.size) * 1e-9
    keep = nms(boxes[idx], scores.astype(np.float32), DUPLICATE_IOU)
    kept = idx[np.sort(keep)]  # keep the fused/objectness order
    return _drop_contained(boxes, kept).astype(np.int64)


def _drop_contained(boxes: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Drop candidates lying mostly (> :data:`CONTAINED_FRACTION` of their area) inside a better one.

    A part of an object (a cube's top face) overlaps the whole object's box by a small IoU
    and survives NMS; left in, it competes with its own object in the spatial rules.
    ``kept`` is ordered best first.
    """
    if kept.size < 2:
        return kept
    b = boxes[kept].astype(np.float64)
    ix = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    inside = (ix * iy) / area[:, None]  # inside[j, i]: share of box j's area that lies in box i
    alive = np.ones(kept.size, dtype=bool)
    for j in range(1, kept.size):
        better = np.flatnonzero(alive[:j])
        if better.size and inside[j, better].max() > CONTAINED_FRACTION:
            alive[j] = False
    return kept[alive]


def _make_detection(label: str, i: int, boxes: np.ndarray, fused: np.ndarray, clip: np.ndarray,
                    color: Optional[np.ndarray]) -> Detection:
    return Detection(
        label=label,
        score=float(fused[i]),
        confidence=float(fused[i]),
        box=boxes[i].astype(np.float32).copy(),
        clip_score=float(clip[i]),
        color_score=None if color is None else float(color[i]),
    )


def _resolve_mode(mode: str, encoder) -> str:
    mode = str(mode)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "crop" if str(getattr(encoder, "device", "cpu")).startswith("cuda") else "cascade"
    return mode


def rank(
    rgb: np.ndarray,
    boxes: np.ndarray,
    objectness: Optional[np.ndarray],
    command: ParsedCommand,
    encoder,
    config: Any = None,
    depth: Optional[np.ndarray] = None,
    reference_detections: Optional[Sequence[Detection]] = None,
    timings: Optional[Timings] = None,
) -> RankResult:
    """Rank proposals for the commanded object (formulae in the module docstring).

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        boxes: (N, 4) float32 ``[x1, y1, x2, y2]`` proposals, source-image pixels;
            clipped to the image (detections carry the clipped box); non-finite boxes
            and boxes less than one pixel wide or high inside the image are never reported.
        objectness: (N,) float proposal scores (tie-breaker only), or ``None``.
        command: parsed command (``command.target`` is the object phrase); a
            ``str`` is parsed with :func:`command.parse_command` (first command).
        encoder: ``encode_texts(list[str]) -> (M, D)``, ``encode_boxes(rgb,
            boxes, mode=...) -> (N, D)`` (unit-norm float32) and ``logit_scale``.
        config: object with the attributes listed in the module docstring
            (missing ones take the ``DEFAULT_*`` values); ``None`` = defaults.
        depth: optional (H, W) float32 metres (NaN invalid) aligned to ``rgb``;
            used for nearest/farthest and in front of/behind.  Another size is
            ignored with a note.
        reference_detections: optional ranked detections of the reference
            object (e.g. from tracking); when given and non-empty, the first
            one is the reference instead of scoring ``command.reference``.
        timings: optional :class:`types.Timings` receiving ``encode_text``,
            ``encode_boxes`` and ``color_prior`` milliseconds.

    Returns:
        :class:`RankResult` (list-like over its detections; empty = not found).

    Raises:
        ValueError: bad image / boxes shape, empty object phrase, a weight or
            threshold outside [0, 1], unknown mode.
    """
    if isinstance(command, str):
        parsed = parse_command(command).first
        if parsed is None:
            raise ValueError(f"no command in {command!r}")
        command = parsed
    target = (command.target or "").strip()
    if not target:
        raise ValueError("the command has no object phrase (target)")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4), got {boxes.shape}")
    n = boxes.shape[0]
    obj = np.zeros((n,), np.float32) if objectness is None else np.asarray(objectness, np.float32).reshape(-1)
    if obj.shape[0] != n:
        raise ValueError(f"{n} boxes but {obj.shape[0]} objectness values")
    # Boxes are clipped to the image (outside it there are no pixels; this also bounds the crop
    # size of absurd boxes).  Non-finite boxes and boxes with less than one pixel of width or
    # height inside the image are encoded (indices stay aligned) but never candidates.
    finite = np.all(np.isfinite(boxes), axis=1)
    boxes = clamp_boxes(np.where(finite[:, None], boxes, 0.0), rgb.shape[1], rgb.shape[0])
    unusable = ~finite | (boxes[:, 2] - boxes[:, 0] < 1.0) | (boxes[:, 3] - boxes[:, 1] < 1.0)

    threshold = _unit_interval("score_threshold", _cfg(config, "score_threshold", DEFAULT_SCORE_THRESHOLD))
    w = _unit_interval("color_prior_weight", _cfg(config, "color_prior_weight", DEFAULT_COLOR_PRIOR_WEIGHT))
    r = _unit_interval("relation_weight", _cfg(config, "relation_weight", DEFAULT_RELATION_WEIGHT))
    negatives = [str(p) for p in _cfg(config, "negative_prompts", DEFAULT_NEGATIVE_PROMPTS)]
    top_k = int(_cfg(config, "top_k", DEFAULT_TOP_K))
    cascade_k = max(1, int(_cfg(config, "cascade_top_k", DEFAULT_CASCADE_TOP_K)))
    mode = _resolve_mode(_cfg(config, "mode", DEFAULT_MODE), encoder)

    notes: list = []
    result = RankResult(mode=mode, notes=notes)
    if n == 0:
        notes.append("no proposals")
        return result
    if depth is not None and np.asarray(depth).shape[:2] != rgb.shape[:2]:
        notes.append(f"depth {np.asarray(depth).shape[:2]} not aligned to the image {rgb.shape[:2]}: ignored")
        depth = None

    # ---- which phrases -------------------------------------------------------------------------
    use_reference = bool(command.relation and command.reference)
    ref_given = bool(reference_detections)
    ref_cmd: Optional[ParsedCommand] = None
    if use_reference and not ref_given:
        ref_cmd = parse_object_phrase(command.reference)
        if not ref_cmd.target:
            notes.append(f"reference '{command.reference}' names no object: not found")
            ref_cmd = None
    negatives = [p for p in negatives if p.strip().lower() != target.lower()]
    phrases = [target] + ([ref_cmd.target] if ref_cmd is not None else [])

    t0 = time.perf_counter()
    text_emb = np.asarray(encoder.encode_texts(phrases + negatives), dtype=np.float32)
    if timings is not None:
        timings.add("encode_text", (time.perf_counter() - t0) * 1e3)
    neg_emb = text_emb[len(phrases):]
    logit_scale = float(encoder.logit_scale)

    t0 = time.perf_counter()
    color_t = _color_score(rgb, boxes, command.colors)
    color_r = _color_score(rgb, boxes, ref_cmd.colors) if ref_cmd is not None else None
    if timings is not None:
        timings.add("color_prior", (time.perf_counter() - t0) * 1e3)

    def score_all(img_emb: np.ndarray):
        clip_t = clip_probabilities(img_emb, text_emb[0], neg_emb, logit_scale)
        fused_t = _fuse(clip_t, color_t, w)
        if ref_cmd is None:
            return clip_t, fused_t, None
        clip_r = clip_probabilities(img_emb, text_emb[1], neg_emb, logit_scale)
        return clip_t, fused_t, _fuse(clip_r, color_r, w)

    t0 = time.perf_counter()
    if mode == "cascade" and n > cascade_k:
        emb = np.asarray(encoder.encode_boxes(rgb, boxes, mode="dense"), dtype=np.float32)
        _, fused_t, fused_r = score_all(emb)
        sel = set(np.argsort(-fused_t, kind="stable")[:cascade_k].tolist())
        if fused_r is not None:
            sel |= set(np.argsort(-fused_r, kind="stable")[:cascade_k].tolist())
        sel_idx = np.array(sorted(sel), dtype=np.int64)
        emb = emb.copy()
        emb[sel_idx] = np.asarray(encoder.encode_boxes(rgb, boxes[sel_idx], mode="crop"), dtype=np.float32)
    else:
        emb = np.asarray(encoder.encode_boxes(rgb, boxes, mode="crop" if mode == "cascade" else mode),
                         dtype=np.float32)
    if timings is not None:
        timings.add("encode_boxes", (time.perf_counter() - t0) * 1e3)
    clip_t, fused_t, fused_r = score_all(emb)
    result.clip_prob, result.color_score, result.fused = clip_t, color_t, fused_t
    result.reference_fused = fused_r

    # ---- reference -----------------------------------------------------------------------------
    exclude = unusable
    ref_box = None
    if use_reference:
        if ref_given:
            ref_det = reference_detections[0]
            ref_box = np.asarray(ref_det.box, dtype=np.float32).reshape(4)
            result.reference = ref_det
        elif ref_cmd is not None:
            j = int(np.argmax(np.where(unusable, -1.0, fused_r)))
            if fused_r[j] >= threshold and not unusable[j]:
                ref_box = boxes[j]
                clip_r = clip_probabilities(emb[j:j + 1], text_emb[1], neg_emb, logit_scale)
                result.reference = _make_detection(
                    ref_cmd.target, 0, boxes[j:j + 1], fused_r[j:j + 1], clip_r,
                    None if color_r is None else color_r[j:j + 1])
            else:
                notes.append(f"reference '{ref_cmd.target}' not found (best {fused_r[j]:.2f} < {threshold:.2f})")
        if ref_box is None:
            return result
        exclude = unusable | (box_iou(boxes, ref_box[None])[:, 0] > REFERENCE_OVERLAP_IOU)

    # ---- candidates ----------------------------------------------------------------------------
    cand = _candidates(boxes, fused_t, obj, threshold, exclude)
    if cand.size == 0:
        notes.append(f"no proposal reaches score_threshold {threshold:.2f} for '{target}'")
        return result

    order: Optional[np.ndarray] = cand
    if ref_box is not None:
        if command.spatial is not None:
            notes.append(f"spatial qualifier '{command.spatial}' ignored: the relation to the reference decides")
        h, wd = rgb.shape[:2]
        order = _order_relation(command.relation, ref_box, boxes, cand, fused_t, depth,
                                float(np.hypot(h, wd)), r, notes)
    elif command.spatial is not None:
        order = _order_spatial(command.spatial.kind, command.spatial.ordinal, boxes, cand, depth, notes)
    if order is None:
        return result
    result.order = order
    keep = order if top_k <= 0 else order[:top_k]
    result.detections = [_make_detection(target, int(i), boxes, fused_t, clip_t, color_t) for i in keep]
    return result
