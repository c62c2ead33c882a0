"""Plain data types shared by the ROS-free modules.

Box convention used everywhere in the library: a NumPy array of shape (N, 4),
dtype float32, rows ``[x1, y1, x2, y2]`` in source-image pixels, where
``(x1, y1)`` is the top-left pixel edge and ``(x2, y2)`` the bottom-right
edge (exclusive), so ``width = x2 - x1``.  This maps to
``sensor_msgs/RegionOfInterest`` as ``x_offset = x1, y_offset = y1,
width = x2 - x1, height = y2 - y1`` after rounding each edge to a whole pixel with the
one rounding rule of ``boxes.py`` (nearest, halves to even).

Images: colour frames are (H, W, 3) uint8 RGB arrays; :func:`check_rgb` is the one check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .boxes import box_to_roi


def check_rgb(rgb, allow_empty: bool = True) -> np.ndarray:
    """``rgb`` as an (H, W, 3) uint8 NumPy array, or a ``ValueError`` that says what it is instead.

    Args:
        rgb: the image to check (any object).
        allow_empty: accept H = 0 or W = 0 (a 0-size frame: nothing to find).

    Returns:
        ``np.asarray(rgb)`` (no copy).

    Raises:
        ValueError: not an array of shape (H, W, 3) and dtype uint8 (or empty when not allowed).
    """
    a = rgb if isinstance(rgb, np.ndarray) else None
    if a is None or a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or \
            (not allow_empty and (a.shape[0] == 0 or a.shape[1] == 0)):
        raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {getattr(rgb, 'shape', None)} "
                         f"{getattr(rgb, 'dtype', type(rgb).__name__)}")
    return a


@dataclass
class Detection:
    """One ranked candidate for the commanded object.

    Attributes:
        label: the phrase matched, e.g. ``"red ball"``.
        score: fused ranking score (higher is better; unitless).
        confidence: probability-like value in [0, 1] used for the
            "not found" threshold.
        box: (4,) float32 ``[x1, y1, x2, y2]`` in source-image pixels.
        position: (3,) float64 metres in the camera optical frame
            (REP 103: x right, y down, z forward), or ``None`` when there is
            no valid depth / intrinsics.  Never a made-up (0, 0, 0).
        size: (3,) float64 metres, extent estimate, or ``None`` when unknown.
        clip_score: normalised CLIP score in [0, 1] before fusion.
        color_score: colour-prior score in [0, 1] (``None`` when the phrase
            names no colour).
        track_id: identity of the tracked object across frames (uint32, > 0; ``0`` = not
            tracked; set by :class:`tracking.Tracker`).
        embedding: (D,) float32 unit-norm image embedding the ranking scored this box with
            (``embed.py``; crop or dense feature), or ``None``; the tracker compares it across frames.
        proposal_box: (4,) float32 box of the ranked region proposal (``box`` is the tight box of
            the instance mask when one was computed); ``None`` = the same as ``box``.
        orientation: (4,) float64 quaternion ``[x, y, z, w]`` of the object's axes in the optical
            frame (x = long horizontal axis, z = support-plane normal), or ``None`` when unknown.
        position_is_centre: ``position`` is the object's centre (mask + support plane), not a
            visible-surface point; ``size`` is then ``[length, width, height]`` metres along
            the axes of ``orientation``.
        mask: the instance mask (:class:`segment.InstanceMask`: crop, offset, points), or ``None``.
    """

    label: str
    score: float
    confidence: float
    box: np.ndarray
    position: Optional[np.ndarray] = None
    size: Optional[np.ndarray] = None
    clip_score: float = 0.0
    color_score: Optional[float] = None
    track_id: int = 0
    embedding: Optional[np.ndarray] = field(default=None, repr=False)
    proposal_box: Optional[np.ndarray] = None
    orientation: Optional[np.ndarray] = None
    position_is_centre: bool = False
    mask: Optional[Any] = field(default=None, repr=False)

    @property
    def roi(self) -> tuple[int, int, int, int]:
        """``(x_offset, y_offset, width, height)`` in whole pixels (RegionOfInterest; ``boxes.box_to_roi``)."""
        return box_to_roi(self.box)

    @property
    def proposal_roi(self) -> tuple[int, int, int, int]:
        """:attr:`roi` of :attr:`proposal_box` (of ``box`` when there is none)."""
        return box_to_roi(self.box if self.proposal_box is None else self.proposal_box)

    @property
    def has_position(self) -> bool:
        return self.position is not None

    def to_dict(self) -> dict:
        """JSON-friendly form used by the CLI (``--json``)."""
        x, y, w, h = self.roi
        return {
            "label": self.label,
            "score": float(self.score),
            "confidence": float(self.confidence),
            "roi": {"x_offset": x, "y_offset": y, "width": w, "height": h},
            "position": None if self.position is None else [float(v) for v in self.position],
            "size": None if self.size is None else [float(v) for v in self.size],
            "proposal_roi": dict(zip(("x_offset", "y_offset", "width", "height"), self.proposal_roi)),
            "position_is_centre": bool(self.position_is_centre),
            "orientation": None if self.orientation is None else [float(v) for v in self.orientation],
            "mask_area": None if self.mask is None else int(self.mask.area),
        }


@dataclass
class Timings:
    """Per-stage wall-clock durations of one frame, in milliseconds."""

    stages_ms: dict = field(default_factory=dict)

    def add(self, stage: str, ms: float) -> None:
        self.stages_ms[stage] = self.stages_ms.get(stage, 0.0) + float(ms)
