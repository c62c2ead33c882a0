"""Depth noise of a structured-light sensor (Kinect v1 / PrimeSense-type) for simulated frames (ROS-free).

:class:`StructuredLightNoise` turns a perfect rendered depth image into one that looks like a
structured-light camera's, in three steps, each a parameter:

1. **Axial random error** growing with the square of the distance:
   ``z' = z + N(0, (k z^2)^2)`` with ``k = 1.5e-3`` /m by default; with ``correlation_px > 0``
   the unit normal field is first blurred with a Gaussian of that std (pixels) and rescaled to
   unit std, since the sensor matches the pattern over a window of pixels, so neighbouring
   errors are not independent (and do not average out over an object).  Source: Khoshelham &
   Elberink, "Accuracy and Resolution of Kinect Depth Data for Indoor Mapping Applications",
   Sensors 12(2), 2012: the random error is proportional to the squared distance (their
   eq. 10, from disparity error propagation) and reaches about 4 cm at 5 m, i.e.
   ``k ~ 0.04 / 25 = 1.6e-3`` /m.
2. **Disparity quantisation**: the sensor measures disparity ``d = f b / z`` in steps of
   ``disparity_step_px`` (1/8 pixel for Kinect v1) with its IR camera's focal length ``f``
   (``focal_px``, 580 px) and the projector baseline ``b`` (``baseline_m``, 7.5 cm); so
   ``z_q = f b / (step * round(f b / (z' step)))``, a depth resolution of
   ``z^2 step / (f b)``: 7 cm at 5 m as reported by Khoshelham & Elberink (same paper).
3. **Edge dropout**: structured light loses the pattern at depth discontinuities; a pixel
   whose depth differs from a 4-neighbour by more than ``edge_threshold_m`` (or that borders
   a pixel without depth) is set to NaN with probability ``edge_dropout``; every other
   valid pixel with probability ``dropout``.

Depth images are (H, W) float32 metres along the optical axis, NaN = no return (the
project's one depth convention, ``decode.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["StructuredLightNoise", "depth_edges"]


def depth_edges(depth: np.ndarray, threshold_m: float) -> np.ndarray:
    """(H, W) bool: pixels whose depth differs from a 4-neighbour by more than ``threshold_m``
    metres, or that border a pixel without depth (NaN); NaN pixels themselves are False.

    Args:
        depth: (H, W) float metres, NaN = invalid.
        threshold_m: depth jump (metres) that counts as a discontinuity.
    """
    z = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(z)
    edge = np.zeros(z.shape, dtype=bool)
    for axis in (0, 1):
        a = np.swapaxes(z, 0, axis)
        va = np.swapaxes(valid, 0, axis)
        jump = ~(va[1:] & va[:-1]) | (np.abs(np.where(va[1:] & va[:-1], a[1:] - a[:-1], 0.0)) > threshold_m)
        e = np.swapaxes(edge, 0, axis)  # a view: writes go to ``edge``
        e[1:] |= jump
        e[:-1] |= jump
    return edge & valid


@dataclass(frozen=True)
class StructuredLightNoise:
    """Structured-light depth noise (module docstring for the model and its sources).

    Attributes:
        k: axial random error coefficient [1/m]: ``sigma_z = k z^2`` (0 = none).
        focal_px: focal length of the sensor's IR camera [pixels] (quantisation only).
        baseline_m: projector-camera baseline [m] (quantisation only).
        disparity_step_px: disparity quantum [pixels]; 0 = no quantisation.
        edge_threshold_m: depth jump that marks a discontinuity [m].
        edge_dropout: probability that a discontinuity pixel has no depth, in [0, 1].
        dropout: probability that any other valid pixel has no depth, in [0, 1].
        correlation_px: std [pixels] of the Gaussian that correlates the axial noise (0 = white).

    Raises:
        ValueError: a negative value or a probability outside [0, 1].
    """

    k: float = 1.5e-3
    focal_px: float = 580.0
    baseline_m: float = 0.075
    disparity_step_px: float = 0.125
    edge_threshold_m: float = 0.02
    edge_dropout: float = 0.5
    dropout: float = 0.0
    correlation_px: float = 0.0

    def __post_init__(self) -> None:
        for name in ("k", "focal_px", "baseline_m", "disparity_step_px", "edge_threshold_m", "correlation_px"):
            if not float(getattr(self, name)) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("edge_dropout", "dropout"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def sigma(self, z) -> np.ndarray:
        """Axial noise std [m] at depth ``z`` [m]: ``k z^2``."""
        z = np.asarray(z, dtype=np.float64)
        return self.k * z * z

    def resolution(self, z) -> np.ndarray:
        """Depth quantum [m] at depth ``z`` [m]: ``z^2 step / (f b)`` (0 without quantisation)."""
        z = np.asarray(z, dtype=np.float64)
        fb = self.focal_px * self.baseline_m
        return z * z * self.disparity_step_px / fb if fb > 0 else np.zeros_like(z)

    def _unit_field(self, shape: tuple, rng: np.random.Generator) -> np.ndarray:
        """(H, W) float64 zero-mean unit-std normal field, correlated over ``correlation_px``."""
        field = rng.standard_normal(shape)
        if self.correlation_px > 0 and field.size > 1:
            import cv2  # OpenCV: already a dependency of the proposals

            field = cv2.GaussianBlur(field, (0, 0), float(self.correlation_px), borderType=cv2.BORDER_REFLECT)
            field /= max(float(field.std()), 1e-12)
        return field

    def apply(self, depth: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """A noisy copy of ``depth``.

        Args:
            depth: (H, W) float32 metres, NaN = no return (not modified).
            rng: random generator (``None``: a fresh unseeded one).

        Returns:
            (H, W) float32 metres, NaN where the sensor gives no depth.
        """
        rng = np.random.default_rng() if rng is None else rng
        z = np.asarray(depth, dtype=np.float64)
        valid = np.isfinite(z) & (z > 0)
        out = np.where(valid, z, np.nan)
        if self.k > 0:
            out = out + self._unit_field(z.shape, rng) * self.sigma(np.where(valid, z, 0.0))
        fb, step = self.focal_px * self.baseline_m, self.disparity_step_px
        if step > 0 and fb > 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.rint(fb / (out * step)) * step
                out = np.where(d > 0, fb / d, np.nan)
        drop = np.zeros(z.shape, dtype=bool)
        if self.edge_dropout > 0:
            drop |= depth_edges(z, self.edge_threshold_m) & (rng.random(z.shape) < self.edge_dropout)
        if self.dropout > 0:
            drop |= rng.random(z.shape) < self.dropout
        out[drop | ~valid] = np.nan
        return out.astype(np.float32)
