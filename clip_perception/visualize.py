"""Annotated images of a result: proposals, ranked detections, their instance-mask outlines,
projected oriented 3D boxes and labels (OpenCV drawing)."""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from .types import Detection

_BEST = (0, 220, 0)
_OTHER = (255, 200, 0)
_PROPOSAL = (150, 150, 150)


def draw_result(
    rgb: np.ndarray,
    detections: Sequence[Detection],
    proposals: Optional[np.ndarray] = None,
    title: str = "",
    K=None,
) -> np.ndarray:
    """Draw proposals (thin grey), detections (best green, others orange) and a title.

    Each detection: its box (``roi``, the mask's tight box), the outline of its instance mask
    (``det.mask``) and, with ``K``, its oriented 3D box (``position`` centre, ``orientation``,
    ``size`` = [length, width, height], only when ``position_is_centre``) projected with the
    pinhole K (Hartley & Zisserman eq. 6.1; lens distortion is not applied, drawing only).

    Args:
        rgb: (H, W, 3) uint8 RGB image (not modified).
        detections: ranked detections, best first; boxes xyxy in pixels.
        proposals: optional (N, 4) xyxy boxes in pixels.
        title: text drawn in the top-left corner (e.g. the command).
        K: optional (3, 3) intrinsics (or a ``camera.CameraModel``) for the 3D boxes.

    Returns:
        (H, W, 3) uint8 RGB copy with the drawing.
    """
    out = np.ascontiguousarray(rgb).copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    if proposals is not None:
        for x1, y1, x2, y2 in np.asarray(proposals, dtype=np.float32).reshape(-1, 4):
            cv2.rectangle(out, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), _PROPOSAL, 1)
    for rank, det in reversed(list(enumerate(detections))):
        color = _BEST if rank == 0 else _OTHER
        if getattr(det, "mask", None) is not None:
            _draw_mask_outline(out, det.mask, color, thickness)
        if K is not None:
            _draw_box3d(out, det, K, color, thickness)
        x, y, w, h = det.roi
        cv2.rectangle(out, (x, y), (x + max(w, 1) - 1, y + max(h, 1) - 1), color, thickness + (rank == 0))
        text = f"{rank + 1}. {det.label} {det.confidence:.2f}"
        if det.position is not None:
            text += f" z={float(det.position[2]):.2f}m"
        _label(out, text, x, max(y - 4, 12), color)
    if title:
        _label(out, title, 4, 16, (255, 255, 255))
    return out


def _draw_mask_outline(img: np.ndarray, mask, color, thickness: int) -> None:
    """Outer contours of a :class:`segment.InstanceMask` (``cv2.findContours``) at its offset."""
    contours, _ = cv2.findContours(mask.crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=tuple(int(v) for v in mask.offset))
    cv2.drawContours(img, contours, -1, color, thickness, cv2.LINE_AA)


#: Corner signs of a box (x, y, z in units of the half extents) and its 12 edges.
_CORNERS = np.array([[sx, sy, sz] for sz in (-1, 1) for sy in (-1, 1) for sx in (-1, 1)], np.float64)
_EDGES = ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7))


def box3d_corners(position, orientation, size) -> np.ndarray:
    """(8, 3) float64 corners [m] of the oriented box: ``position`` (3,) its centre,
    ``orientation`` (4,) ``[x, y, z, w]`` its axes, ``size`` (3,) its full extents along them."""
    from .segment import quaternion_to_rotation

    R = quaternion_to_rotation(orientation)
    half = 0.5 * np.asarray(size, np.float64).reshape(3)
    return np.asarray(position, np.float64).reshape(3) + (_CORNERS * half) @ R.T


def _draw_box3d(img: np.ndarray, det, K, color, thickness: int) -> None:
    """The detection's oriented 3D box projected into ``img`` (nothing unless it is an object centre)."""
    if not getattr(det, "position_is_centre", False) or det.orientation is None or det.size is None:
        return
    k = np.asarray(getattr(K, "K", K), np.float64).reshape(3, 3)
    pts = box3d_corners(det.position, det.orientation, det.size)
    if np.any(pts[:, 2] <= 1e-6):
        return
    uv = (pts @ k.T)[:, :2] / pts[:, 2:3]
    px = np.round(uv).astype(int)
    for a, b in _EDGES:
        cv2.line(img, tuple(int(v) for v in px[a]), tuple(int(v) for v in px[b]), color, thickness, cv2.LINE_AA)


def _label(img: np.ndarray, text: str, x: int, y: int, color) -> None:
    scale = max(0.4, max(img.shape[:2]) / 1400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (x, y - th - base), (x + tw, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def save_rgb(path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image to ``path`` (PNG/JPEG by extension). Raises OSError on failure."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")
