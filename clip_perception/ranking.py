"""Score and select region proposals for a parsed command: pure functions (CLIP + colour prior + geometry).

Nothing here calls the encoder or parses text: the embeddings come from ``embed.py``, the
parsed phrases from the caller (:func:`make_query`), the values from a
:class:`params.RankingConfig`.

Per proposal ``i`` and object phrase ``t`` (``command.target``):

1. **CLIP score** -- image embedding ``v_i`` and text embeddings of
   ``[t] + negative_prompts`` (both from ``embed.py``),
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

Steps: :func:`make_query` (once per command) -> :func:`prepare_boxes` (clamp, degenerate
boxes, colour prior; once per frame) -> embeddings (``embed.py``, which calls
:func:`score_boxes` for the cascade's dense pre-rank) -> :func:`rank` (scores, reference,
candidates, spatial / relation order, ``top_k``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from . import colors as colormod
from .boxes import box_iou, clamp_boxes, nms, usable_boxes
from .command import ParsedCommand
from .params import RankingConfig
from .spatial import order_relation, order_spatial
from .types import Detection, Timings

LOG = logging.getLogger(__name__)

#: Candidates overlapping a better candidate by more than this IoU are near-duplicates.
DUPLICATE_IOU = 0.5
#: A candidate with more than this share of its area inside a better candidate is a part of it.
CONTAINED_FRACTION = 0.8
#: Target candidates overlapping the reference box by more than this IoU are excluded.
REFERENCE_OVERLAP_IOU = 0.5


@dataclass(frozen=True)
class Query:
    """The phrases of one parsed command that are scored (build with :func:`make_query`).

    Attributes:
        command: the parsed command (``command.target`` is the object phrase).
        target: the stripped object phrase, e.g. ``"red ball"``.
        reference: the parsed reference object phrase to score (``command.reference``,
            parsed by the caller), or ``None``: no relation, reference detections given by
            the caller, or the phrase names no object (then :attr:`notes` says so).
        negatives: background prompts, the target phrase itself removed.
        notes: remarks found while building the query (copied into the result).
    """

    command: ParsedCommand
    target: str
    reference: Optional[ParsedCommand] = None
    negatives: tuple = ()
    notes: tuple = ()

    @property
    def uses_reference(self) -> bool:
        """The command relates the target to a reference object (``relation`` and ``reference``)."""
        return bool(self.command.relation and self.command.reference)

    @property
    def phrases(self) -> list:
        """Object phrases to embed: ``[target]`` plus the reference's target when scored."""
        return [self.target] + ([self.reference.target] if self.reference is not None else [])


def make_query(command: ParsedCommand, reference: Optional[ParsedCommand],
               negative_prompts: Sequence[str]) -> Query:
    """The :class:`Query` of a parsed command.

    Args:
        command: the parsed command.
        reference: ``command.reference`` parsed as an object phrase
            (``command.parse_object_phrase``), or ``None`` when the reference is not to be
            scored (no relation, or the caller supplies reference detections).
        negative_prompts: background prompts (``RankingConfig.negative_prompts``); a prompt
            equal to the target (case-insensitive) is dropped.

    Returns:
        :class:`Query`.

    Raises:
        ValueError: the command has no object phrase (empty ``target``).
    """
    target = (command.target or "").strip()
    if not target:
        raise ValueError("the command has no object phrase (target)")
    notes = []
    if reference is not None and not reference.target:
        notes.append(f"reference '{command.reference}' names no object: not found")
        reference = None
    negatives = tuple(str(p) for p in negative_prompts if str(p).strip().lower() != target.lower())
    return Query(command=command, target=target, reference=reference, negatives=negatives, notes=tuple(notes))


@dataclass
class TextEmbeddings:
    """Unit-norm text embeddings of a :class:`Query` (built by ``embed.embed_texts``).

    Attributes:
        target: (D,) float32 embedding of the target phrase.
        reference: (D,) float32 embedding of the reference phrase, or ``None``.
        negatives: (K, D) float32 embeddings of the negative prompts (K may be 0).
        logit_scale: CLIP's learned temperature (``encoder.logit_scale``; 100 for OpenAI CLIP).
    """

    target: np.ndarray
    reference: Optional[np.ndarray]
    negatives: np.ndarray
    logit_scale: float


@dataclass
class BoxSet:
    """The proposals of one frame, ready to be scored (build with :func:`prepare_boxes`).

    Attributes:
        boxes: (N, 4) float32 xyxy source pixels, clipped to the image (non-finite rows -> 0).
        objectness: (N,) float32 proposal scores (tie-breaker only).
        usable: (N,) bool: finite and at least one pixel wide and high inside the image;
            unusable boxes are embedded (indices stay aligned) but never candidates.
        color_target: (N,) float32 colour prior of the target's colours, or ``None`` (no colour).
        color_reference: (N,) float32 colour prior of the reference's colours, or ``None``.
        image_shape: ``(H, W)`` of the frame, pixels.
    """

    boxes: np.ndarray
    objectness: np.ndarray
    usable: np.ndarray
    color_target: Optional[np.ndarray]
    color_reference: Optional[np.ndarray]
    image_shape: tuple

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class Scores:
    """Per-proposal scores from one set of image embeddings (:func:`score_boxes`).

    Attributes:
        clip: (N,) float32 CLIP probability of the target in [0, 1].
        fused: (N,) float32 target score fused with the colour prior, in [0, 1].
        reference_fused: (N,) float32 fused score of the reference phrase, or ``None``.
    """

    clip: np.ndarray
    fused: np.ndarray
    reference_fused: Optional[np.ndarray] = None


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
        mode: embedding mode used (``crop``, ``dense`` or ``cascade``).
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


def color_scores(rgb: np.ndarray, boxes: np.ndarray, color_words: Sequence[str]) -> Optional[np.ndarray]:
    """Colour prior (module docstring, step 2) of each box for the named colours.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        boxes: (N, 4) float32 xyxy pixels inside the image.
        color_words: colour words of the phrase (``ParsedCommand.colors``).

    Returns:
        (N,) float32 purity x completeness in [0, 1], or ``None`` when no colour is named.
    """
    names = []
    for c in color_words:
        name = colormod.canonical_color(c)
        if name is not None and name not in names:
            names.append(name)
    if not names:
        return None
    purity, completeness = colormod.color_purity_completeness(rgb, boxes, names)
    return (purity * completeness).astype(np.float32)


def fuse(clip: np.ndarray, color: Optional[np.ndarray], w: float) -> np.ndarray:
    """Convex blend ``(1 - w) * clip + w * color`` clipped to [0, 1]; ``clip`` when ``color`` is ``None``."""
    if color is None:
        return clip.astype(np.float32)
    return np.clip((1.0 - w) * clip + w * color, 0.0, 1.0).astype(np.float32)


def prepare_boxes(rgb: np.ndarray, boxes: np.ndarray, objectness: Optional[np.ndarray], query: Query,
                  timings: Optional[Timings] = None) -> BoxSet:
    """Clip the proposals to the image, mark degenerate ones and compute the colour priors.

    Boxes are clipped to the image (outside it there are no pixels; this also bounds the
    crop size of absurd boxes).  Non-finite boxes and boxes with less than one pixel of
    width or height inside the image stay (indices aligned) but are never candidates.

    Args:
        rgb: (H, W, 3) uint8 RGB image (checked by the caller).
        boxes: (N, 4) float32 ``[x1, y1, x2, y2]`` proposals, source-image pixels.
        objectness: (N,) float proposal scores (tie-breaker only), or ``None`` (zeros).
        query: the command's :class:`Query` (its colours and the reference's).
        timings: optional; receives ``color_prior`` milliseconds (when N > 0).

    Returns:
        :class:`BoxSet`.

    Raises:
        ValueError: boxes not (N, 4); objectness of another length.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4), got {boxes.shape}")
    n = boxes.shape[0]
    obj = np.zeros((n,), np.float32) if objectness is None else np.asarray(objectness, np.float32).reshape(-1)
    if obj.shape[0] != n:
        raise ValueError(f"{n} boxes but {obj.shape[0]} objectness values")
    finite = np.all(np.isfinite(boxes), axis=1)
    boxes = clamp_boxes(np.where(finite[:, None], boxes, 0.0), rgb.shape[1], rgb.shape[0])
    usable = finite & usable_boxes(boxes, 1.0)
    color_t = color_r = None
    if n:
        t0 = time.perf_counter()
        color_t = color_scores(rgb, boxes, query.command.colors)
        color_r = color_scores(rgb, boxes, query.reference.colors) if query.reference is not None else None
        if timings is not None:
            timings.add("color_prior", (time.perf_counter() - t0) * 1e3)
    return BoxSet(boxes=boxes, objectness=obj, usable=usable, color_target=color_t, color_reference=color_r,
                  image_shape=tuple(int(v) for v in rgb.shape[:2]))


def score_boxes(image_emb: np.ndarray, texts: TextEmbeddings, box_set: BoxSet, color_prior_weight: float) -> Scores:
    """CLIP probabilities and fused scores of every box (module docstring, steps 1-3).

    Args:
        image_emb: (N, D) float32 unit-norm image embeddings, aligned with ``box_set.boxes``.
        texts: :class:`TextEmbeddings` of the query.
        box_set: the frame's :class:`BoxSet` (its colour priors).
        color_prior_weight: ``w`` of the convex blend, in [0, 1].

    Returns:
        :class:`Scores` (``reference_fused`` only when the reference is scored).
    """
    clip_t = clip_probabilities(image_emb, texts.target, texts.negatives, texts.logit_scale)
    fused_t = fuse(clip_t, box_set.color_target, color_prior_weight)
    if texts.reference is None:
        return Scores(clip=clip_t, fused=fused_t)
    clip_r = clip_probabilities(image_emb, texts.reference, texts.negatives, texts.logit_scale)
    return Scores(clip=clip_t, fused=fused_t, reference_fused=fuse(clip_r, box_set.color_reference,
                                                                   color_prior_weight))


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


def _reference_box(query: Query, box_set: BoxSet, scores: Scores, image_emb: np.ndarray,
                   texts: TextEmbeddings, threshold: float, reference_detections, result: RankResult):
    """The reference box for a relation (or ``None``: not found, with a note); sets ``result.reference``."""
    if reference_detections:
        ref_det = reference_detections[0]
        result.reference = ref_det
        return np.asarray(ref_det.box, dtype=np.float32).reshape(4)
    if query.reference is None:
        return None
    fused_r, usable, boxes = scores.reference_fused, box_set.usable, box_set.boxes
    j = int(np.argmax(np.where(~usable, -1.0, fused_r)))
    if fused_r[j] >= threshold and usable[j]:
        clip_r = clip_probabilities(image_emb[j:j + 1], texts.reference, texts.negatives, texts.logit_scale)
        color_r = box_set.color_reference
        result.reference = _make_detection(query.reference.target, 0, boxes[j:j + 1], fused_r[j:j + 1], clip_r,
                                           None if color_r is None else color_r[j:j + 1])
        return boxes[j]
    result.notes.append(f"reference '{query.reference.target}' not found (best {fused_r[j]:.2f} < {threshold:.2f})")
    return None


def _order(query: Query, box_set: BoxSet, cand: np.ndarray, fused: np.ndarray, ref_box: Optional[np.ndarray],
           depth: Optional[np.ndarray], relation_weight: float, notes: list) -> Optional[np.ndarray]:
    """Candidates with the chosen one first (relation, else spatial qualifier, else fused order)."""
    command = query.command
    if ref_box is not None:
        if command.spatial is not None:
            notes.append(f"spatial qualifier '{command.spatial}' ignored: the relation to the reference decides")
        h, w = box_set.image_shape
        return order_relation(command.relation, ref_box, box_set.boxes, cand, fused, depth,
                               float(np.hypot(h, w)), relation_weight, notes)
    if command.spatial is not None:
        return order_spatial(command.spatial.kind, command.spatial.ordinal, box_set.boxes, cand, depth, notes)
    return cand


def rank(box_set: BoxSet, image_emb: Optional[np.ndarray], texts: Optional[TextEmbeddings], query: Query,
         config: RankingConfig, depth: Optional[np.ndarray] = None,
         reference_detections: Optional[Sequence[Detection]] = None, mode: str = "crop") -> RankResult:
    """Score and select the proposals of one frame (formulae in the module docstring).

    Args:
        box_set: the frame's proposals (:func:`prepare_boxes`).
        image_emb: (N, D) float32 unit-norm image embeddings aligned with ``box_set.boxes``
            (``embed.py``); ignored (may be ``None``) when N = 0.
        texts: the query's :class:`TextEmbeddings` (may be ``None`` when N = 0).
        query: the command's :class:`Query`.
        config: :class:`params.RankingConfig` (``score_threshold``, ``color_prior_weight``,
            ``relation_weight``, ``top_k``; values already validated).
        depth: optional (H, W) float32 metres (NaN invalid) aligned to the image; used for
            nearest/farthest and in front of/behind.  Another size is ignored with a note.
        reference_detections: optional ranked detections of the reference object (e.g. from
            tracking); when given and non-empty, the first one is the reference instead of
            the best-scoring proposal for ``query.reference``.
        mode: the embedding mode that produced ``image_emb`` (recorded in the result).

    Returns:
        :class:`RankResult` (list-like over its detections; empty = not found).
    """
    notes: list = []
    result = RankResult(mode=mode, notes=notes)
    if len(box_set) == 0:
        notes.append("no proposals")
        return result
    if depth is not None and np.asarray(depth).shape[:2] != box_set.image_shape:
        notes.append(f"depth {np.asarray(depth).shape[:2]} not aligned to the image {box_set.image_shape}: ignored")
        depth = None
    notes.extend(query.notes)
    threshold = config.score_threshold
    scores = score_boxes(image_emb, texts, box_set, config.color_prior_weight)
    result.clip_prob, result.color_score, result.fused = scores.clip, box_set.color_target, scores.fused
    result.reference_fused = scores.reference_fused

    exclude = ~box_set.usable
    ref_box = None
    if query.uses_reference:
        ref_box = _reference_box(query, box_set, scores, image_emb, texts, threshold, reference_detections, result)
        if ref_box is None:
            return result
        exclude = exclude | (box_iou(box_set.boxes, ref_box[None])[:, 0] > REFERENCE_OVERLAP_IOU)

    cand = _candidates(box_set.boxes, scores.fused, box_set.objectness, threshold, exclude)
    if cand.size == 0:
        notes.append(f"no proposal reaches score_threshold {threshold:.2f} for '{query.target}'")
        return result
    order = _order(query, box_set, cand, scores.fused, ref_box, depth, config.relation_weight, notes)
    if order is None:
        return result
    result.order = order
    result.detections = [_make_detection(query.target, int(i), box_set.boxes, scores.fused, scores.clip,
                                         box_set.color_target) for i in order[:config.top_k]]
    return result
