"""The embedding step: every encoder call for one frame or several frames at once (ROS-free).

Nothing else in the pipeline calls the encoder for a frame.  Per frame the step gives one
(N, D) float32 unit-norm embedding per proposal, aligned with ``BoxSet.boxes``, and per
command the text embeddings of its phrases (target, reference, negative prompts):

* ``crop``: one square crop per box through the image tower (``encoder.encode_boxes(...,
  mode="crop")``);
* ``dense``: one forward pass over the frame, MaskCLIP patch features pooled per box
  (``mode="dense"``);
* ``cascade``: ``dense`` for every box, a pre-rank with the ranking's own scoring
  (``ranking.score_boxes``: CLIP + colour prior, for the target and the reference), then the
  contenders of each phrase (their union) are re-encoded as crops and replace their dense
  rows (at ``cascade_crop_size`` pixels when it is set: ``encode_boxes(..., size=...)``).
  With N <= ``cascade_top_k`` every box is simply cropped (at the model's input size).  The contenders
  (:func:`cascade_contenders`; ``m = cascade_margin``, ``t = score_threshold``, ``s`` the best
  usable pre-rank score): none when ``s <= t - m`` (nothing can reach the threshold within
  the margin: not found); else the usable boxes scoring at least ``s - m``, one per object
  (near-duplicates, IoU > ``ranking.DUPLICATE_IOU`` with a better one, dropped:
  ``boxes.nms``), at most ``cascade_top_k``; and none again when that leaves only the
  leader and ``s >= t + m`` (the dense ranking is *decisive*: no other object within the
  margin, and the found decision cannot flip within it).  ``m >= 1`` is the fixed cascade:
  always the ``cascade_top_k`` best boxes, decisive or not.  Only scores are looked at: a
  spatial qualifier chooses among the objects within the margin, which are all cropped.

Several frames (cameras): the first pass of all frames that share a mode goes through one
``encoder.encode_boxes_multi`` call (one batched forward); encoders without it (the test
encoders) are called frame by frame.  The cascade's crop re-rank runs per frame.

The encoder protocol (``encoder.Encoder``): ``encode_texts(list[str]) -> (M, D)``,
``encode_boxes(rgb, boxes, mode, size=None) -> (N, D)`` (unit-norm float32; ``size`` is passed
only when ``cascade_crop_size`` is set and the encoder takes it, :func:`accepts_size`; an
encoder of the older ``(rgb, boxes, mode)`` form gets no ``size`` and one warning),
``logit_scale``, optional
``device`` and ``encode_boxes_multi(frames, boxes, mode) -> list of (Ni, D)``.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Optional, Sequence

import numpy as np

from .boxes import nms
from .params import RankingConfig
from .ranking import DUPLICATE_IOU, BoxSet, Query, TextEmbeddings, score_boxes
from .types import Timings

__all__ = ["MODES", "resolve_mode", "embed_texts", "embed_boxes", "embed_frame", "cascade_contenders",
           "accepts_size"]

log = logging.getLogger(__name__)
#: encoder type -> whether its ``encode_boxes`` takes ``size`` (looked up once per type, warned once).
_SIZE_SUPPORT: dict = {}

#: Embedding modes after :func:`resolve_mode` (``auto`` is resolved to one of them).
MODES = ("crop", "dense", "cascade")


def resolve_mode(mode: str, device) -> str:
    """The one place ``auto`` is resolved: ``crop`` on a CUDA device, ``cascade`` otherwise.

    Args:
        mode: ``auto``, ``crop``, ``dense`` or ``cascade`` (``RankingConfig.mode``).
        device: the encoder's device (``torch.device`` or its string, e.g. ``cuda:0``, ``cpu``).

    Returns:
        ``crop``, ``dense`` or ``cascade``.

    Raises:
        ValueError: unknown mode.
    """
    mode = str(mode)
    if mode == "auto":
        return "crop" if str(device).startswith("cuda") else "cascade"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES + ('auto',)}, got {mode!r}")
    return mode


def embed_texts(encoder, query: Query, timings: Optional[Timings] = None) -> TextEmbeddings:
    """Text embeddings of the query's phrases and negative prompts, in one ``encode_texts`` call.

    Args:
        encoder: the encoder (``encode_texts``, ``logit_scale``).
        query: the command's :class:`ranking.Query`.
        timings: optional; receives ``encode_text`` milliseconds.

    Returns:
        :class:`ranking.TextEmbeddings`.
    """
    phrases = query.phrases
    t0 = time.perf_counter()
    emb = np.asarray(encoder.encode_texts(phrases + list(query.negatives)), dtype=np.float32)
    if timings is not None:
        timings.add("encode_text", (time.perf_counter() - t0) * 1e3)
    return TextEmbeddings(target=emb[0], reference=emb[1] if query.reference is not None else None,
                          negatives=emb[len(phrases):], logit_scale=float(encoder.logit_scale))


def accepts_size(encoder) -> bool:
    """Whether ``encoder.encode_boxes`` takes the ``size`` keyword (``cascade_crop_size``).

    Encoders written to the protocol before ``size`` existed (``encode_boxes(rgb, boxes, mode)``)
    do not; the cascade then crops them at their own size, with one warning per encoder type.
    """
    try:
        params = inspect.signature(encoder.encode_boxes).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume the old protocol
        return False
    return any(p.name == "size" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _crop_size_kw(encoder, config: RankingConfig) -> dict:
    """``{"size": cascade_crop_size}`` when it is set and the encoder takes it, else ``{}``."""
    if not config.cascade_crop_size:
        return {}
    kind = type(encoder)
    if kind not in _SIZE_SUPPORT:
        _SIZE_SUPPORT[kind] = accepts_size(encoder)
        if not _SIZE_SUPPORT[kind]:
            log.warning("encoder %s: encode_boxes takes no size=, so cascade_crop_size=%d is not applied "
                        "(crops at the encoder's own size)", kind.__name__, int(config.cascade_crop_size))
    return {"size": int(config.cascade_crop_size)} if _SIZE_SUPPORT[kind] else {}


def _first_mode(mode: str, n: int, cascade_top_k: int) -> str:
    """Encoder mode of the first pass: the cascade starts dense only when it has more than k boxes."""
    if mode == "cascade":
        return "dense" if n > cascade_top_k else "crop"
    return mode


def _first_pass(encoder, rgbs: Sequence[np.ndarray], box_sets: Sequence[BoxSet], modes: Sequence[str],
                timings: Sequence[Optional[Timings]]) -> list:
    """First-pass embeddings of every frame with boxes; frames sharing a mode are batched."""
    out: list = [None] * len(rgbs)
    multi = getattr(encoder, "encode_boxes_multi", None)
    for mode in dict.fromkeys(modes):
        group = [i for i, m in enumerate(modes) if m == mode and len(box_sets[i])]
        if not group:
            continue
        t0 = time.perf_counter()
        if multi is not None and len(group) > 1:
            embs = multi([rgbs[i] for i in group], [box_sets[i].boxes for i in group], mode=mode)
            ms = (time.perf_counter() - t0) * 1e3  # one batched call: every frame of it waited this long
            for i, emb in zip(group, embs):
                out[i] = np.asarray(emb, dtype=np.float32)
                if timings[i] is not None:
                    timings[i].add("encode_boxes", ms)
            continue
        for i in group:
            t0 = time.perf_counter()
            out[i] = np.asarray(encoder.encode_boxes(rgbs[i], box_sets[i].boxes, mode=mode), dtype=np.float32)
            if timings[i] is not None:
                timings[i].add("encode_boxes", (time.perf_counter() - t0) * 1e3)
    return out


def cascade_contenders(fused: np.ndarray, box_set: BoxSet, config: RankingConfig) -> np.ndarray:
    """Boxes the cascade re-ranks with crops for one phrase (module docstring): pure, no encoder.

    Args:
        fused: (N,) float32 fused dense pre-rank scores of the phrase (``ranking.score_boxes``).
        box_set: the frame's :class:`ranking.BoxSet` (boxes, ``usable``).
        config: :class:`params.RankingConfig` (``cascade_top_k``, ``cascade_margin``,
            ``score_threshold``).

    Returns:
        (K,) int64 box indices, best first, ``K <= cascade_top_k``; empty when the dense
        ranking is decisive (or no box is usable).
    """
    k, m, t = int(config.cascade_top_k), float(config.cascade_margin), float(config.score_threshold)
    if m >= 1.0:  # the fixed cascade: the k best, as ranked
        return np.argsort(-fused, kind="stable")[:k].astype(np.int64)
    scores = np.where(box_set.usable, fused, -np.inf)
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])]
    top = float(scores[order[0]]) if order.size else -np.inf
    if top <= t - m:  # nothing reaches the threshold within the margin (also: no usable box)
        return np.zeros((0,), np.int64)
    near = order[scores[order] >= top - m]
    reps = near[nms(box_set.boxes[near], scores[near] - np.arange(near.size) * 1e-9, DUPLICATE_IOU)][:k]
    if reps.size == 1 and top >= t + m:
        return np.zeros((0,), np.int64)
    return reps.astype(np.int64)


def _cascade_rerank(encoder, rgb: np.ndarray, box_set: BoxSet, dense: np.ndarray, texts: TextEmbeddings,
                    config: RankingConfig, timings: Optional[Timings]) -> np.ndarray:
    """Replace the dense rows of the contenders (target and reference) by crop embeddings."""
    t0 = time.perf_counter()
    pre = score_boxes(dense, texts, box_set, config.color_prior_weight)
    sel = set(cascade_contenders(pre.fused, box_set, config).tolist())
    if pre.reference_fused is not None:
        sel |= set(cascade_contenders(pre.reference_fused, box_set, config).tolist())
    idx = np.array(sorted(sel), dtype=np.int64)
    emb = dense.copy()
    if idx.size:
        size = _crop_size_kw(encoder, config)
        emb[idx] = np.asarray(encoder.encode_boxes(rgb, box_set.boxes[idx], mode="crop", **size), dtype=np.float32)
    if timings is not None:
        timings.add("encode_boxes", (time.perf_counter() - t0) * 1e3)
    return emb


def embed_boxes(encoder, rgbs: Sequence[np.ndarray], box_sets: Sequence[BoxSet],
                texts: Sequence[Optional[TextEmbeddings]], mode: str, config: RankingConfig,
                timings: Optional[Sequence[Optional[Timings]]] = None) -> list:
    """Image embeddings of the proposals of one or several frames (module docstring).

    Args:
        encoder: the encoder.
        rgbs: F images, (Hi, Wi, 3) uint8 RGB (checked by the caller).
        box_sets: F :class:`ranking.BoxSet`, one per image.
        texts: F text embeddings of each frame's query (the cascade's pre-rank scores with
            them; frames of one command share one object), ``None`` for a frame without boxes.
        mode: ``crop``, ``dense`` or ``cascade`` (already resolved, :func:`resolve_mode`).
        config: :class:`params.RankingConfig` (``cascade_top_k``, ``cascade_margin``, ``cascade_crop_size``,
            ``score_threshold``, ``color_prior_weight``).
        timings: optional F :class:`types.Timings` (or ``None`` entries), each receiving
            ``encode_boxes`` milliseconds (a batched call counts fully for every frame in it).

    Returns:
        F entries: (Ni, D) float32 unit-norm embeddings, or ``None`` for a frame without boxes.

    Raises:
        ValueError: unknown mode, or ``rgbs``, ``box_sets`` and ``texts`` of different lengths.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} (resolve 'auto' first), got {mode!r}")
    if not len(rgbs) == len(box_sets) == len(texts):
        raise ValueError(f"{len(rgbs)} images, {len(box_sets)} box sets and {len(texts)} text embeddings")
    timings = list(timings) if timings is not None else [None] * len(rgbs)
    first = [_first_mode(mode, len(b), config.cascade_top_k) for b in box_sets]
    out = _first_pass(encoder, rgbs, box_sets, first, timings)
    for i, (m, emb) in enumerate(zip(first, out)):
        if mode == "cascade" and m == "dense" and emb is not None:
            out[i] = _cascade_rerank(encoder, rgbs[i], box_sets[i], emb, texts[i], config, timings[i])
    return out


def embed_frame(encoder, rgb: np.ndarray, box_set: BoxSet, query: Query, mode: str, config: RankingConfig,
                timings: Optional[Timings] = None) -> tuple:
    """Text and image embeddings of one frame: :func:`embed_texts` then :func:`embed_boxes`.

    Nothing is encoded for a frame without boxes (the ranking answers "no proposals").

    Returns:
        ``(texts, image_emb)``: :class:`ranking.TextEmbeddings` and (N, D) float32, or
        ``(None, None)`` when ``box_set`` is empty.
    """
    if len(box_set) == 0:
        return None, None
    texts = embed_texts(encoder, query, timings)
    (emb,) = embed_boxes(encoder, [rgb], [box_set], [texts], mode, config, [timings])
    return texts, emb
