"""Depth images stored as files -> (H, W) float32 metres (ROS-free; the one loader).

Used by the CLI (``clip-perception detect --depth``), replay of RGB-D folders and the
evaluation tools.  The units are those of REP 118 and of :func:`clip_perception.decode.decode_depth`
(the same conversion, :func:`clip_perception.decode._depth_from_raw`):

* integer files (16-bit PNG / TIFF, integer ``.npy``): millimetres unless ``depth_scale``
  (metres per unit) says otherwise; 0 = no measurement;
* float files (``.npy``, 32-bit TIFF / EXR): metres; 0, negative, NaN and Inf = no
  measurement; ``depth_scale`` multiplies them only with ``scale_float=True`` (the CLI's
  ``depth_scale`` parameter means "metres per unit" for every encoding, as in the node);
* 8-bit files are refused: they are depth *visualisations* (quantised, no metric range).

Shapes: (H, W), (H, W, 1), or (H, W, C) whose channels are all equal (some tools save depth
as a grey 3-channel image); anything else is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from .decode import _depth_from_raw

__all__ = ["DepthFileError", "DEFAULT_DEPTH_SCALE", "DEPTH_FILE_EXTS", "load_depth_file", "depth_from_array"]

#: Metres per unit of integer depth files by default (millimetres; REP 118).
DEFAULT_DEPTH_SCALE = 0.001
#: File suffixes read as depth (``.npy`` with NumPy, the rest with ``cv2.imread``).
DEPTH_FILE_EXTS = (".png", ".npy", ".tif", ".tiff", ".exr")


class DepthFileError(ValueError):
    """A depth file could not be read or is not metric depth (the message names the file)."""


def depth_from_array(raw: np.ndarray, depth_scale: Optional[float] = None, *, scale_float: bool = False,
                     name: str = "depth") -> np.ndarray:
    """A depth array as read from a file -> (H, W) float32 metres, NaN = invalid.

    Args:
        raw: (H, W), (H, W, 1) or equal-channel (H, W, C) integer or float array.
        depth_scale: metres per unit; ``None`` or 0 = :data:`DEFAULT_DEPTH_SCALE` for
            integers, 1 for floats.
        scale_float: also multiply float data by ``depth_scale`` (when given).
        name: used in error messages (the file name).

    Raises:
        DepthFileError: wrong shape (e.g. differing channels), 8-bit data, bool / complex data,
            negative or non-finite ``depth_scale``.
    """
    arr = np.asarray(raw)
    if arr.ndim == 3:
        if arr.shape[2] != 1 and not np.array_equal(arr, np.broadcast_to(arr[..., :1], arr.shape), equal_nan=True):
            raise DepthFileError(f"depth {name} has {arr.shape[2]} differing channels, got shape {arr.shape}: "
                                 "must be single-channel")
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise DepthFileError(f"depth {name} must be single-channel (H, W) or (H, W, 1), got shape {arr.shape}")
    if arr.dtype in (np.uint8, np.int8):
        raise DepthFileError(f"depth {name} is 8-bit: a depth visualisation, not metric depth "
                             "(use 16-bit millimetres or float metres)")
    if arr.dtype.kind not in "uif":
        raise DepthFileError(f"depth {name} has unsupported element type {arr.dtype}")
    if depth_scale is not None and (not np.isfinite(depth_scale) or depth_scale < 0):
        raise DepthFileError(f"depth_scale must be finite and > 0, got {depth_scale!r}")
    if arr.dtype.kind == "f":
        scale = float(depth_scale) if (scale_float and depth_scale) else 1.0
    else:
        scale = float(depth_scale) if depth_scale else DEFAULT_DEPTH_SCALE
    return _depth_from_raw(arr, scale)


def load_depth_file(path: Union[str, Path], depth_scale: Optional[float] = None, *,
                    scale_float: bool = False) -> np.ndarray:
    """Read a depth file (``.npy`` via ``np.load(allow_pickle=False)``, images via
    ``cv2.imread(IMREAD_UNCHANGED)``) as (H, W) float32 metres, NaN = invalid.

    Args:
        path: the file.
        depth_scale, scale_float: see :func:`depth_from_array`.

    Raises:
        DepthFileError: unreadable file, or not metric depth (see :func:`depth_from_array`).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DepthFileError(f"cannot read depth {path}: {exc}") from exc
    else:
        import cv2

        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DepthFileError(f"cannot read depth {path}")
    return depth_from_array(raw, depth_scale, scale_float=scale_float, name=str(path))
