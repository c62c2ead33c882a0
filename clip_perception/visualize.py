"""Annotated images of a result: proposals, ranked detections, labels (OpenCV drawing)."""

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
) -> np.ndarray:
    """Draw proposals (thin grey), detections (best green, others orange) and a title.

    Args:
        rgb: (H, W, 3) uint8 RGB image (not modified).
        detections: ranked detections, best first; boxes xyxy in pixels.
        proposals: optional (N, 4) xyxy boxes in pixels.
        title: text drawn in the top-left corner (e.g. the command).

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
        x, y, w, h = det.roi
        cv2.rectangle(out, (x, y), (x + max(w, 1) - 1, y + max(h, 1) - 1), color, thickness + (rank == 0))
        text = f"{rank + 1}. {det.label} {det.confidence:.2f}"
        if det.position is not None:
            text += f" z={float(det.position[2]):.2f}m"
        _label(out, text, x, max(y - 4, 12), color)
    if title:
        _label(out, title, 4, 16, (255, 255, 255))
    return out


def _label(img: np.ndarray, text: str, x: int, y: int, color) -> None:
    scale = max(0.4, max(img.shape[:2]) / 1400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (x, y - th - base), (x + tw, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def save_rgb(path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image to ``path`` (PNG/JPEG by extension). Raises OSError on failure."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")
