"""One camera model: intrinsics, lens distortion, back-projection, image-size checks (ROS-free).

Conventions (shared with the rest of the library, see ``types.py``):

* Frame: camera optical frame, REP 103 (https://www.ros.org/reps/rep-0103.html):
  x right, y down, z forward; metres.  Depth ``z`` is measured along the optical axis
  (REP 118), not along the ray.
* Intrinsics ``K``: (3, 3) float64, ``sensor_msgs/CameraInfo.k`` reshaped,
  ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
* Pixels: ``u`` = column index, ``v`` = row index; the *centre* of pixel ``(u, v)`` is at
  the integer coordinates ``(u, v)``, as in camera_info (the same convention as OpenCV's
  ``projectPoints``).  Pinhole back-projection (Hartley & Zisserman, *Multiple View
  Geometry*, eq. 6.1): ``X = (x_n) * Z``, ``Y = (y_n) * Z`` with the normalised
  coordinates ``x_n = (u - cx) / fx``, ``y_n = (v - cy) / fy`` of an undistorted pixel.
* Distortion ``D``: ``CameraInfo.d`` with ``CameraInfo.distortion_model`` (REP 104,
  ``sensor_msgs/distortion_models.hpp``):

  - ``plumb_bob``: ``k1, k2, p1, p2, k3`` (Brown-Conrady), and ``rational_polynomial``:
    ``k1, k2, p1, p2, k3, k4, k5, k6`` — both OpenCV's standard model, inverted with
    ``cv2.undistortPoints``;
  - ``equidistant``: ``k1, k2, k3, k4`` (Kannala-Brandt fisheye), inverted with
    ``cv2.fisheye.undistortPoints``;
  - an all-zero ``D`` (or an empty one) is an ideal pinhole: the pinhole formulas above
    are used unchanged, bit for bit;
  - any other model name is logged once (``logging`` warning) and treated as rectified
    (``D`` ignored), which is what an image that has already been through
    ``image_proc`` rectification needs.

``K`` and ``D`` describe the *raw* (distorted) image; ROI and binning in a CameraInfo change
``K`` as ``image_geometry.PinholeCameraModel`` does (principal point minus the ROI offset,
row 0 divided by ``binning_x``, row 1 by ``binning_y``) and leave ``D`` (defined on
normalised coordinates) unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

__all__ = [
    "CameraModel",
    "KNOWN_DISTORTION_MODELS",
    "valid_intrinsics",
    "pixel_to_point",
    "backproject_depth",
    "scale_intrinsics",
    "subsample_intrinsics",
    "subsample_camera",
    "crop_camera",
    "depth_aligned",
    "camera_info_to_K",
    "camera_info_K_for_image",
    "camera_info_to_model",
]

_LOG = logging.getLogger(__name__)

#: Distortion models understood (``sensor_msgs/distortion_models.hpp``) -> OpenCV family.
KNOWN_DISTORTION_MODELS = {"plumb_bob": "standard", "rational_polynomial": "standard", "equidistant": "fisheye"}
_WARNED_MODELS: set = set()
# undistortPoints is iterative; enough iterations to be exact to ~1e-6 px at k1 = -0.3 corners.
_CRITERIA = (3, 100, 1e-12)  # cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, max iterations, epsilon


def valid_intrinsics(K) -> bool:
    """True when ``K`` is a usable pinhole matrix.

    Args:
        K: array-like of 9 numbers ((3, 3) or flat), a :class:`CameraModel` (always valid), or None.

    Returns:
        False for None, wrong size, any NaN/Inf, or ``fx <= 0`` / ``fy <= 0``
        (so the all-zero ``CameraInfo.k`` of an uncalibrated camera is invalid).
    """
    if K is None:
        return False
    if isinstance(K, CameraModel):  # validated when it was built
        return True
    try:
        k = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if k.size != 9:
        return False
    k = k.reshape(3, 3)
    if not np.all(np.isfinite(k)):
        return False
    return bool(k[0, 0] > 0.0 and k[1, 1] > 0.0)


def _as_K(K) -> np.ndarray:
    """``K`` (or a :class:`CameraModel`'s K) as a (3, 3) float64 array.

    Raises:
        ValueError: invalid intrinsics (see :func:`valid_intrinsics`).
    """
    if isinstance(K, CameraModel):
        return K.K
    if not valid_intrinsics(K):
        raise ValueError(f"invalid intrinsics K (need finite 3x3 with fx, fy > 0): {K!r}")
    return np.asarray(K, dtype=np.float64).reshape(3, 3)


@dataclass(frozen=True)
class CameraModel:
    """A calibrated monocular camera: pinhole ``K`` plus lens distortion ``D``.

    Attributes:
        K: (3, 3) float64 intrinsics of the raw image (pixels).
        D: (N,) float64 distortion coefficients (``CameraInfo.d``); empty or all zero = none.
        distortion_model: ``plumb_bob`` | ``rational_polynomial`` | ``equidistant``; other
            names are warned about once and treated as rectified.
        width, height: image size in pixels (0 = unknown).

    Raises:
        ValueError: (at construction) invalid ``K`` or non-finite ``D``.
    """

    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = "plumb_bob"
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", _as_K(self.K).copy())
        d = np.asarray(self.D if self.D is not None else (), dtype=np.float64).reshape(-1).copy()
        if not np.all(np.isfinite(d)):
            raise ValueError(f"distortion D must be finite, got {d!r}")
        object.__setattr__(self, "D", d)
        object.__setattr__(self, "distortion_model", str(self.distortion_model or "").strip())
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @classmethod
    def from_camera_info(cls, msg, image_shape: Optional[Tuple[int, ...]] = None) -> "CameraModel":
        """Model from a ``sensor_msgs/CameraInfo``-like object (duck-typed fields ``k``, ``d``,
        ``distortion_model``, ``width``, ``height``, ``roi``, ``binning_x``, ``binning_y``).

        Args:
            msg: the CameraInfo (rclpy, rosbags or any object with those fields).
            image_shape: ``(H, W, ...)`` of the image the model is for; when given, the
                size checks of :func:`camera_info_K_for_image` apply (and ROI / binning
                adjust K).  ``None`` = K as is, size from the message.

        Raises:
            ValueError: no valid K, or the CameraInfo describes another image size (the
                message says which).
        """
        if image_shape is not None:
            K, why = camera_info_K_for_image(msg, int(image_shape[1]), int(image_shape[0]))
            if K is None:
                raise ValueError(f"camera_info {why}")
            w, h = int(image_shape[1]), int(image_shape[0])
        else:
            K = camera_info_to_K(msg)
            if K is None:
                raise ValueError("camera_info has no valid K (uncalibrated?)")
            w, h = int(getattr(msg, "width", 0) or 0), int(getattr(msg, "height", 0) or 0)
        return cls(K=K, D=np.asarray(getattr(msg, "d", ()), dtype=np.float64),
                   distortion_model=str(getattr(msg, "distortion_model", "") or ""), width=w, height=h)

    @property
    def family(self) -> Optional[str]:
        """``"standard"`` (OpenCV ``undistortPoints``), ``"fisheye"``, or ``None`` when the
        pixels are treated as undistorted (all-zero / empty D, or an unknown model)."""
        if self.D.size == 0 or not np.any(self.D):
            return None
        fam = KNOWN_DISTORTION_MODELS.get(self.distortion_model.lower())
        if fam is None and self.distortion_model not in _WARNED_MODELS:
            _WARNED_MODELS.add(self.distortion_model)
            _LOG.warning("unknown distortion_model %r (D = %s): treating the image as rectified",
                         self.distortion_model, self.D.tolist())
        return fam

    def _cv_D(self, fam: str) -> np.ndarray:
        """D padded with zeros to a length OpenCV accepts (standard: 4/5/8/12/14; fisheye: 4)."""
        if fam == "fisheye":
            return np.concatenate([self.D, np.zeros(4)])[:4]
        n = next((m for m in (4, 5, 8, 12) if m >= self.D.size), 14)
        return np.concatenate([self.D, np.zeros(14)])[:n]

    def undistort_normalised(self, u, v) -> Tuple[np.ndarray, np.ndarray]:
        """Pixel ``(u, v)`` of the raw image -> normalised undistorted ``(x_n, y_n)``
        (``X / Z``, ``Y / Z`` in the optical frame); any broadcastable shapes, float64."""
        u, v = np.broadcast_arrays(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64))
        k = self.K
        fam = self.family
        if fam is None:
            return (u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1]
        import cv2

        pts = np.stack([u.ravel(), v.ravel()], axis=-1).reshape(-1, 1, 2)
        if fam == "fisheye":
            und = cv2.fisheye.undistortPoints(pts, k, self._cv_D(fam), criteria=_CRITERIA)
        elif hasattr(cv2, "undistortPointsIter"):  # OpenCV 4.x: criteria only on this overload
            und = cv2.undistortPointsIter(pts, k, self._cv_D(fam), None, None, _CRITERIA)
        else:
            und = cv2.undistortPoints(pts, k, self._cv_D(fam), criteria=_CRITERIA)
        und = und.reshape(-1, 2)
        return und[:, 0].reshape(u.shape), und[:, 1].reshape(u.shape)

    def pixel_to_ray(self, u, v) -> np.ndarray:
        """Pixel ``(u, v)`` -> viewing ray ``(x_n, y_n, 1)`` (z = 1, REP 103 optical frame),
        distortion removed; ``(3,)`` for scalars, ``(..., 3)`` for arrays, float64."""
        x, y = self.undistort_normalised(u, v)
        return np.stack([x, y, np.ones_like(x)], axis=-1)

    def pixel_to_point(self, u, v, z) -> np.ndarray:
        """Pixel ``(u, v)`` at depth ``z`` (metres along the optical axis) -> 3D point
        ``z * pixel_to_ray(u, v)`` in metres, float64 (see :func:`pixel_to_point`)."""
        return pixel_to_point(u, v, z, self)

    def backproject_depth(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) depth of this camera -> (H, W, 3) float32 points (see :func:`backproject_depth`)."""
        return backproject_depth(depth, self)

    def subsampled(self, step: int) -> "CameraModel":
        """The model of ``img[::step, ::step]`` (K by :func:`subsample_intrinsics`, D unchanged)."""
        return CameraModel(subsample_intrinsics(self.K, step), self.D, self.distortion_model,
                           -(-self.width // int(step)), -(-self.height // int(step)))


def pixel_to_point(u, v, z, K) -> np.ndarray:
    """Back-project pixel ``(u, v)`` at depth ``z`` to a 3D point.

    Pinhole model (Hartley & Zisserman eq. 6.1), REP 103 optical frame:
    ``X = (u - cx) * Z / fx``, ``Y = (v - cy) * Z / fy``, ``Z = z``; with a distorted
    :class:`CameraModel` the pixel is first undistorted (module docstring).  The skew
    term ``K[0, 1]`` is ignored (0 for ROS cameras).

    Args:
        u, v: pixel coordinates (column, row), pixel centres at integers;
            scalars or broadcastable arrays.
        z: depth along the optical axis, metres (scalar or array).
        K: (3, 3) intrinsics, or a :class:`CameraModel`.

    Returns:
        (3,) float64 metres for scalar input, ``(..., 3)`` for array input.

    Raises:
        ValueError: ``K`` invalid (see :func:`valid_intrinsics`).
    """
    z = np.asarray(z, dtype=np.float64)
    if isinstance(K, CameraModel) and K.family is not None:
        xn, yn = K.undistort_normalised(u, v)
        x, y = xn * z, yn * z
    else:
        k = _as_K(K)
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        x = (u - cx) * z / fx
        y = (v - cy) * z / fy
    x, y, z = np.broadcast_arrays(x, y, z)
    return np.stack([x, y, z], axis=-1).astype(np.float64)


def backproject_depth(depth: np.ndarray, K) -> np.ndarray:
    """Back-project a whole depth image to an organised point image.

    Args:
        depth: (H, W) float metres along the optical axis, non-finite / <= 0 = invalid
            (stays NaN).
        K: (3, 3) intrinsics of this depth image, or a :class:`CameraModel` (distortion
            removed per pixel with OpenCV when ``D`` is non-zero).

    Returns:
        (H, W, 3) float32 points in metres (REP 103 optical frame); NaN where
        the depth is invalid.

    Raises:
        ValueError: ``K`` invalid or ``depth`` not 2-D.
    """
    k = _as_K(K)
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    h, w = d.shape
    d = np.where(np.isfinite(d) & (d > 0), d, np.nan).astype(np.float32)
    out = np.empty((h, w, 3), dtype=np.float32)
    if isinstance(K, CameraModel) and K.family is not None:
        vv, uu = np.mgrid[0:h, 0:w]
        xn, yn = K.undistort_normalised(uu, vv)
        out[..., 0] = xn.astype(np.float32) * d
        out[..., 1] = yn.astype(np.float32) * d
    else:
        xs = ((np.arange(w, dtype=np.float32) - np.float32(k[0, 2])) / np.float32(k[0, 0]))[None, :]
        ys = ((np.arange(h, dtype=np.float32) - np.float32(k[1, 2])) / np.float32(k[1, 1]))[:, None]
        out[..., 0] = xs * d
        out[..., 1] = ys * d
    out[..., 2] = d
    return out


def scale_intrinsics(K, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of an image resized (``cv2.resize``) by ``sx`` (width) and ``sy`` (height).

    With pixel centres at integers, a resize maps ``u' + 0.5 = (u + 0.5) * sx``,
    so ``fx' = fx * sx`` and ``cx' = (cx + 0.5) * sx - 0.5`` (same for y).

    Returns:
        (3, 3) float64.

    Raises:
        ValueError: ``K`` invalid.
    """
    k = _as_K(K).copy()
    k[0, 0] *= sx
    k[1, 1] *= sy
    k[0, 1] *= sx
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def subsample_intrinsics(K, step: int) -> np.ndarray:
    """Intrinsics of ``img[::step, ::step]`` (pixel ``u' = u / step`` exactly):
    ``fx' = fx / step``, ``cx' = cx / step`` (same for y).

    Returns:
        (3, 3) float64.

    Raises:
        ValueError: ``K`` invalid or ``step < 1``.
    """
    if int(step) < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    k = _as_K(K).copy()
    k[:2, :] /= float(int(step))
    return k


def subsample_camera(K, step: int):
    """The camera of ``img[::step, ::step]``: :func:`subsample_intrinsics` for a K ((3, 3)
    float64 out), :meth:`CameraModel.subsampled` for a model (D unchanged; it acts on
    normalised coordinates).

    Raises:
        ValueError: ``K`` invalid or ``step < 1``.
    """
    if isinstance(K, CameraModel):
        return K.subsampled(step)
    return subsample_intrinsics(K, step)


def crop_camera(K, x0: int, y0: int):
    """The camera of the window ``img[y0:, x0:]`` (pixel ``u' = u - x0``, ``v' = v - y0``):
    principal point minus the offset, as ``image_geometry`` does for a CameraInfo ROI.
    A (3, 3) float64 K for a K, a :class:`CameraModel` (same D and model) for a model.

    Raises:
        ValueError: ``K`` invalid.
    """
    k = _as_K(K).copy()
    k[0, 2] -= float(x0)
    k[1, 2] -= float(y0)
    if isinstance(K, CameraModel):
        return CameraModel(k, K.D, K.distortion_model, max(0, K.width - int(x0)), max(0, K.height - int(y0)))
    return k


def depth_aligned(rgb_shape, depth_shape) -> bool:
    """True when a depth image can be indexed with colour-image pixels.

    Only the (H, W) of both shapes are compared; a registered
    (``aligned_depth_to_color``) depth has the colour image's resolution.
    Returns False for missing/short shapes.
    """
    if rgb_shape is None or depth_shape is None:
        return False
    if len(rgb_shape) < 2 or len(depth_shape) < 2:
        return False
    return tuple(int(s) for s in rgb_shape[:2]) == tuple(int(s) for s in depth_shape[:2])


# ------------------------------------------------------------- CameraInfo (duck-typed)
def camera_info_to_K(msg) -> Optional[np.ndarray]:
    """``CameraInfo.k`` (any object with a ``k`` field of 9 numbers) as a (3, 3) float64
    matrix, or ``None`` when it is unusable (all zero — an uncalibrated camera —,
    non-finite, wrong size, or fx / fy <= 0; see :func:`valid_intrinsics`)."""
    try:
        k = np.asarray(msg.k, dtype=np.float64)
    except (TypeError, ValueError, AttributeError):
        return None
    if k.size != 9:
        return None
    k = k.reshape(3, 3)
    return k if valid_intrinsics(k) else None


def camera_info_K_for_image(msg, width: int, height: int) -> tuple:
    """``CameraInfo`` K for a colour image of ``width`` x ``height`` pixels.

    ``msg.width`` / ``msg.height`` are the calibrated resolution (REP 104); a non-zero ``roi``
    selects a window of it and ``binning_x`` / ``binning_y`` > 1 divide it.  The image must have
    that size, else K does not describe its pixels (e.g. the camera switched resolution and the
    CameraInfo paired with the frame is still the old one).  With an ROI or binning, K is
    adjusted as ``image_geometry.PinholeCameraModel`` does: principal point minus the ROI offset,
    then row 0 divided by ``binning_x`` and row 1 by ``binning_y``.  A CameraInfo whose width or
    height is 0 states no size and is not checked.

    Args:
        msg: ``sensor_msgs/CameraInfo``-like (fields ``k``, ``width``, ``height``, ``roi``
            with ``x_offset``/``y_offset``/``width``/``height``, ``binning_x``, ``binning_y``).
        width, height: the image's size in pixels.

    Returns:
        ``(K (3, 3) float64, "")``, or ``(None, reason)`` with the reason phrased to follow
        "camera_info for TOPIC ...": no valid K, or the size mismatch ("describes 640x480
        images but the image is 320x240").
    """
    K = camera_info_to_K(msg)
    if K is None:
        return None, "has no valid K (uncalibrated?)"
    full_w, full_h = int(msg.width), int(msg.height)
    if full_w <= 0 or full_h <= 0:
        return K, ""
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    x0, y0, w, h = 0, 0, full_w, full_h
    if int(msg.roi.width) > 0 and int(msg.roi.height) > 0:
        x0, y0, w, h = int(msg.roi.x_offset), int(msg.roi.y_offset), int(msg.roi.width), int(msg.roi.height)
    expected = (w // bx, h // by)
    if expected != (int(width), int(height)):
        return None, (f"describes {expected[0]}x{expected[1]} images but the image is {int(width)}x{int(height)}: "
                      "its K does not apply")
    if x0 or y0 or bx > 1 or by > 1:
        K = K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        K[0] /= bx
        K[1] /= by
    return K, ""


def camera_info_to_model(msg, image_shape: Tuple[int, ...]) -> Tuple[Optional[CameraModel], str]:
    """:class:`CameraModel` of a CameraInfo for an image of shape ``(H, W, ...)``.

    Same checks as :func:`camera_info_K_for_image` (K valid, size matches, ROI / binning
    applied to K) plus ``d`` / ``distortion_model``.

    Returns:
        ``(model, "")`` or ``(None, reason)`` (reason as in :func:`camera_info_K_for_image`,
        or "has non-finite distortion D").
    """
    K, why = camera_info_K_for_image(msg, int(image_shape[1]), int(image_shape[0]))
    if K is None:
        return None, why
    try:
        model = CameraModel(K=K, D=np.asarray(getattr(msg, "d", ()), dtype=np.float64),
                            distortion_model=str(getattr(msg, "distortion_model", "") or ""),
                            width=int(image_shape[1]), height=int(image_shape[0]))
    except ValueError:
        return None, "has non-finite distortion D"
    return model, ""
