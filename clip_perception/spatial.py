"""Order candidate boxes by geometry: spatial qualifiers and relations to a reference (ROS-free, pure).

Used by ``ranking.py`` (steps 5 and 6 of its module docstring).  Boxes are (N, 4) float
``[x1, y1, x2, y2]`` source pixels (x2/y2 exclusive); depth is (H, W) float32 metres
(NaN / <= 0 invalid) aligned with the image.  Every function returns candidate indices
(into ``boxes``) with the chosen one first and the others in their given (fused) order,
or ``None`` for "not found", and appends human-readable remarks to ``notes``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .boxes import pixel_ranges

__all__ = ["box_median_depth", "order_spatial", "order_relation"]


def _centers(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0


def box_median_depth(depth: Optional[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """Median of the valid (finite, > 0) depth inside each box.

    Args:
        depth: (H, W) float depth in metres (NaN = invalid), or ``None``.
        boxes: (N, 4) float boxes, pixels (whole pixels by ``boxes.pixel_ranges``, clipped).

    Returns:
        (N,) float64 metres, NaN where the box has no valid depth (all NaN without depth).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.full((boxes.shape[0],), np.nan)
    if depth is None:
        return out
    d = np.asarray(depth, dtype=np.float32)
    h, w = d.shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(pixel_ranges(boxes, w, h)):  # at most ~100 candidates
        patch = d[y1:y2, x1:x2]
        valid = patch[np.isfinite(patch) & (patch > 0)]
        if valid.size:
            out[i] = float(np.median(valid))
    return out


def order_spatial(kind: str, ordinal: int, boxes: np.ndarray, cand: np.ndarray,
                  depth: Optional[np.ndarray], notes: list) -> Optional[np.ndarray]:
    """Apply a spatial qualifier among the candidates (``ranking`` docstring, step 5).

    Args:
        kind: ``left``, ``right``, ``top``, ``bottom`` (box centre x / y), ``middle`` (centre x
            closest to the candidates' median centre x), ``largest`` / ``smallest`` (box area),
            ``nearest`` / ``farthest`` (:func:`box_median_depth`; no valid depth: order kept).
        ordinal: 1-based index in that order ("the second from the left" = 2).
        boxes: (N, 4) float boxes, pixels.
        cand: (K,) int64 candidate indices into ``boxes``, best (fused) first.
        depth: optional (H, W) float32 metres.
        notes: list receiving remarks.

    Returns:
        (K,) int64 indices with the chosen one first, or ``None`` when fewer than ``ordinal``
        candidates exist.
    """
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


def order_relation(relation: str, ref_box: np.ndarray, boxes: np.ndarray, cand: np.ndarray,
                   fused: np.ndarray, depth: Optional[np.ndarray], diag: float, r: float,
                   notes: list) -> Optional[np.ndarray]:
    """Choose the candidate in ``relation`` to the reference box (``ranking`` docstring, step 6).

    Candidates on the relation's side of the reference (``command.RELATION_KINDS``: left of /
    right of by centre x, above / below by centre y, on / in: centre x inside the reference
    and centre y above its bottom edge, in front of / behind by median depth or, without
    depth, image y; next to / near: all) are ranked by ``(1 - r) * fused + r * (1 - d)``,
    ``d`` = centre distance / ``diag``.

    Args:
        relation: the relation phrase.
        ref_box: (4,) float reference box, pixels.
        boxes: (N, 4) float boxes, pixels.
        cand: (K,) int64 candidate indices, best (fused) first.
        fused: (N,) float32 fused target scores.
        depth: optional (H, W) float32 metres.
        diag: image diagonal, pixels.
        r: ``relation_weight`` in [0, 1].
        notes: list receiving remarks.

    Returns:
        (K,) int64 indices with the chosen one first, or ``None`` when no candidate qualifies.
    """
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
