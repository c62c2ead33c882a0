"""Decode ROS image messages to NumPy arrays without cv_bridge (ROS-free).

Works on any object with the fields of ``sensor_msgs/msg/Image``
(``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``)
or ``sensor_msgs/msg/CompressedImage`` (``format``, ``data``); no ``rclpy``
import is needed, so ``types.SimpleNamespace`` objects, rosbags messages and
real rclpy messages all work.

Outputs (the library-wide conventions):

* colour: ``np.ndarray`` (H, W, 3) ``uint8`` RGB, C-contiguous, a fresh copy;
* depth: ``np.ndarray`` (H, W) ``float32`` metres, C-contiguous, invalid
  pixels ``NaN`` (never 0, never a made-up value).

Every bad input (unknown encoding, inconsistent sizes, truncated data,
corrupt JPEG/PNG bytes, lossy depth) raises :class:`ImageDecodeError`, a
``ValueError`` subclass, whose message names the offending field.  The
message buffer is never written to (it may be read-only); data is viewed with
``np.frombuffer`` and copied.

Empty images: a message with ``height == 0`` or ``width == 0`` (including
0 x 0) raises ``ImageDecodeError("empty image ...")`` -- no camera publishes
them and every later stage (proposals, CLIP crops) needs pixels.

Sources:

* encoding names, channel counts and bit depths:
  ``sensor_msgs/include/sensor_msgs/image_encodings.hpp`` (ROS 2 common_interfaces);
  ``8UC3``/``8UC4`` carry no colour order there; like cv_bridge (which treats
  them as OpenCV's default) they are read as BGR / BGRA.
* depth units: REP 118 "Depth Images" -- ``32FC1`` in metres, ``16UC1`` in
  millimetres; 0 (and for floats NaN/Inf) marks "no measurement".
* YUV (image_encodings.hpp; byte layouts from the Linux V4L2 pixel-format pages it cites),
  all 8-bit, converted by OpenCV with BT.601 limited-range coefficients:

  - ``uyvy`` (deprecated alias ``yuv422``) and ``yuyv`` (deprecated ``yuv422_yuy2``): packed
    4:2:2, 2 bytes per pixel (``U0 Y0 V0 Y1`` / ``Y0 U0 Y1 V0``), ``step >= 2 * width``;
    ``cv2.COLOR_YUV2RGB_UYVY`` / ``cv2.COLOR_YUV2RGB_YUY2``; the width must be even;
  - ``nv12`` / ``nv21``: 4:2:0 semi-planar, a Y plane of ``height`` rows then an
    interleaved ``UV`` (nv12) / ``VU`` (nv21) plane of ``height / 2`` rows, each row
    ``width`` bytes padded to ``step``; ``len(data) == step * height * 3 / 2``
    (``getHeightScaling`` 1.5); ``cv2.COLOR_YUV2RGB_NV12`` / ``_NV21``; width and height
    must be even;
  - ``nv24``: 4:4:4 semi-planar, a Y plane (``height`` rows of ``width`` bytes padded to
    ``step``) then a full-resolution interleaved ``UV`` plane (``height`` rows of
    ``2 * width`` bytes padded to ``2 * step``); ``len(data) == 3 * step * height``.
    OpenCV has no NV24 code: each pixel is expanded to a 2x2 block, which makes a valid
    NV12 image of twice the size with the NV24 UV plane unchanged, converted with
    ``COLOR_YUV2RGB_NV12`` and subsampled back (the same coefficients as nv12, exactly).
* Bayer: ROS names give the 2x2 pattern starting at the top-left pixel
  (``bayer_rggb8``: row 0 = R G, row 1 = G B).  OpenCV's historical
  ``COLOR_Bayer<XY>2RGB`` names are offset from that (they name the second row's
  second/third pixels), so ``rggb -> COLOR_BayerBG2RGB``, ``bggr -> BayerRG``,
  ``gbrg -> BayerGR``, ``grbg -> BayerGB`` -- the same mapping cv_bridge uses,
  and verified in the tests with hand-built pure-colour mosaics
  (OpenCV >= 5 also has the explicit aliases ``COLOR_BayerRGGB2RGB`` etc. with the
  same numeric values).
* compressed images: see :mod:`clip_perception.compressed` (``decode_compressed``,
  ``decode_compressed_depth``, re-exported here).
"""

from __future__ import annotations

import array
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Optional

import cv2
import numpy as np

__all__ = [
    "ImageDecodeError",
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "ENCODINGS",
    "MAX_DIMENSION",
    "MAX_COMPRESSED_PIXELS",
    "decode_image",
    "decode_depth",
    "decode_compressed",
    "decode_compressed_depth",
    "image_fields_from_rgb",
    "image_fields_from_depth",
    "stamp_to_ns",
]


class ImageDecodeError(ValueError):
    """An image message could not be decoded (bad field, bad data, unsupported encoding)."""


#: Largest accepted ``height`` / ``width`` (OpenCV uses int32 sizes).
MAX_DIMENSION = 2**31 - 1



# ---------------------------------------------------------------------------
# Converters: raw (H, W, C) array in the encoding's dtype -> RGB uint8 (H, W, 3)
# ---------------------------------------------------------------------------


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """16-bit -> 8-bit by keeping the high byte (``v >> 8``); 8-bit unchanged."""
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    return a


def _grey(a: np.ndarray) -> np.ndarray:
    g = _to_uint8(a[..., 0])
    return np.repeat(g[..., None], 3, axis=2)


def _rgb(a: np.ndarray) -> np.ndarray:
    return _to_uint8(a[..., :3])


def _bgr(a: np.ndarray) -> np.ndarray:
    return _to_uint8(a[..., 2::-1])


def _bayer(code: int) -> Callable[[np.ndarray], np.ndarray]:
    """Bilinear demosaic with OpenCV.

    The mosaic is first padded by 2 pixels with ``BORDER_REFLECT_101`` (a
    mirror that keeps every pixel's row/column parity, hence its colour in
    the pattern) and cropped afterwards: OpenCV leaves tiny (2x2) images black
    and guesses at borders otherwise.
    """

    def convert(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        padded = cv2.copyMakeBorder(np.ascontiguousarray(a[..., 0]), 2, 2, 2, 2, cv2.BORDER_REFLECT_101)
        return _to_uint8(cv2.cvtColor(padded, code)[2 : 2 + h, 2 : 2 + w])

    return convert


def _yuv(code: int) -> Callable[[np.ndarray], np.ndarray]:
    """OpenCV YUV -> RGB: packed 4:2:2 ``a`` is (H, W, 2); NV12 / NV21 ``a`` is (H * 3 / 2, W, 1),
    the Y rows then the interleaved chroma rows (even width checked by :func:`_raw_pixels`)."""

    def convert(a: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(np.ascontiguousarray(a if a.shape[2] > 1 else a[..., 0]), code)

    return convert


def _nv24(a: np.ndarray) -> np.ndarray:
    """NV24: ``a`` is (3 * H, W, 1): H rows of Y, then the (H, 2 W) UV plane as 2 H rows of W."""
    h = a.shape[0] // 3
    y, uv = a[:h, :, 0], a[h:, :, 0].reshape(h, -1)
    nv12 = np.concatenate([np.repeat(np.repeat(y, 2, axis=0), 2, axis=1), uv], axis=0)
    return cv2.cvtColor(np.ascontiguousarray(nv12), cv2.COLOR_YUV2RGB_NV12)[::2, ::2]


@dataclass(frozen=True)
class _Encoding:
    """One row of the encoding table.

    dtype: element type of one channel in the buffer (before endianness).
    channels: elements per pixel in the buffer (YUV 4:2:2: 2 bytes per pixel; semi-planar
        YUV: 1, the Y plane).
    to_rgb: converter to RGB uint8, or None when not a colour encoding.
    depth_scale: metres per raw unit for depth encodings, or None.
    planar: semi-planar YUV: ``"420"`` (nv12 / nv21) or ``"444"`` (nv24), else None.
    even_width: pixels share chroma horizontally (4:2:2, 4:2:0): an odd width is refused.
    """

    dtype: np.dtype
    channels: int
    to_rgb: Optional[Callable[[np.ndarray], np.ndarray]]
    depth_scale: Optional[float] = None
    planar: Optional[str] = None
    even_width: bool = False

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


_U8 = np.dtype(np.uint8)
_U16 = np.dtype(np.uint16)
_F32 = np.dtype(np.float32)

# Bayer: ROS pattern (top-left 2x2, row-major) -> OpenCV's offset-named code.
_BAYER = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}

#: encoding -> (dtype, channels, converter, depth scale).  Names as in
#: sensor_msgs/image_encodings.hpp.
ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(_U8, 3, _rgb),
    "bgr8": _Encoding(_U8, 3, _bgr),
    "rgba8": _Encoding(_U8, 4, _rgb),
    "bgra8": _Encoding(_U8, 4, _bgr),
    "rgb16": _Encoding(_U16, 3, _rgb),
    "bgr16": _Encoding(_U16, 3, _bgr),
    "rgba16": _Encoding(_U16, 4, _rgb),
    "bgra16": _Encoding(_U16, 4, _bgr),
    "mono8": _Encoding(_U8, 1, _grey),
    "mono16": _Encoding(_U16, 1, _grey, depth_scale=0.001),
    "8UC1": _Encoding(_U8, 1, _grey),
    "8UC3": _Encoding(_U8, 3, _bgr),  # cv_bridge: OpenCV default order (BGR)
    "8UC4": _Encoding(_U8, 4, _bgr),
    "16UC1": _Encoding(_U16, 1, None, depth_scale=0.001),  # REP 118: millimetres
    "32FC1": _Encoding(_F32, 1, None, depth_scale=1.0),  # REP 118: metres
    "uyvy": _Encoding(_U8, 2, _yuv(cv2.COLOR_YUV2RGB_UYVY), even_width=True),
    "yuv422": _Encoding(_U8, 2, _yuv(cv2.COLOR_YUV2RGB_UYVY), even_width=True),  # deprecated: uyvy
    "yuyv": _Encoding(_U8, 2, _yuv(cv2.COLOR_YUV2RGB_YUY2), even_width=True),
    "yuv422_yuy2": _Encoding(_U8, 2, _yuv(cv2.COLOR_YUV2RGB_YUY2), even_width=True),  # deprecated: yuyv
    "nv12": _Encoding(_U8, 1, _yuv(cv2.COLOR_YUV2RGB_NV12), planar="420", even_width=True),
    "nv21": _Encoding(_U8, 1, _yuv(cv2.COLOR_YUV2RGB_NV21), planar="420", even_width=True),
    "nv24": _Encoding(_U8, 1, _nv24, planar="444"),
}
for _pattern, _code in _BAYER.items():
    ENCODINGS[f"bayer_{_pattern}8"] = _Encoding(_U8, 1, _bayer(_code))
    ENCODINGS[f"bayer_{_pattern}16"] = _Encoding(_U16, 1, _bayer(_code))

#: Encodings :func:`decode_image` accepts.
COLOR_ENCODINGS: frozenset[str] = frozenset(k for k, v in ENCODINGS.items() if v.to_rgb)
#: Encodings :func:`decode_depth` accepts, with their default metres per unit.
DEPTH_ENCODINGS: dict[str, float] = {
    k: v.depth_scale for k, v in ENCODINGS.items() if v.depth_scale is not None
}

_BY_FOLDED = {k.casefold(): k for k in ENCODINGS}


# ---------------------------------------------------------------------------
# Field access and validation
# ---------------------------------------------------------------------------


def _field(msg: Any, name: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageDecodeError(f"{name}: message has no field '{name}'") from None


def _int_field(msg: Any, name: str) -> int:
    value = _field(msg, name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ImageDecodeError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if value < 0:
        raise ImageDecodeError(f"{name}: must be >= 0, got {value}")
    if value > MAX_DIMENSION and name != "step":
        raise ImageDecodeError(f"{name}: {value} exceeds the maximum {MAX_DIMENSION}")
    return value


def _str_field(msg: Any, name: str) -> str:
    value = _field(msg, name)
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise ImageDecodeError(f"{name}: not ASCII text: {value!r}") from None
    if not isinstance(value, str):
        raise ImageDecodeError(f"{name}: expected a string, got {type(value).__name__}")
    return value.strip()


def _lookup_encoding(encoding: str) -> tuple[str, _Encoding]:
    name = _BY_FOLDED.get(encoding.casefold())
    if name is None:
        raise ImageDecodeError(
            f"encoding: unsupported encoding {encoding!r}; supported: {sorted(ENCODINGS)}"
        )
    return name, ENCODINGS[name]


def _bytes_view(data: Any, field: str = "data") -> np.ndarray:
    """1-D read-only-safe uint8 view (or copy) of a message ``data`` field.

    Buffers with 1-byte items (bytes, bytearray, memoryview, ``array.array('B')``,
    uint8/int8 NumPy arrays) are viewed without copying; other sequences (list
    of ints, wider NumPy/array types) are treated as one byte value per item
    and must lie in [0, 255].
    """
    if data is None:
        raise ImageDecodeError(f"{field}: is None")
    if isinstance(data, str):
        raise ImageDecodeError(f"{field}: expected bytes, got str")
    try:
        if isinstance(data, np.ndarray):
            if data.dtype in (np.uint8, np.int8):
                return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        elif isinstance(data, (bytes, bytearray)):
            return np.frombuffer(data, dtype=np.uint8)
        elif isinstance(data, memoryview):
            if data.c_contiguous:
                return np.frombuffer(data.cast("B") if data.format != "B" else data, dtype=np.uint8)
            return np.frombuffer(data.tobytes(), dtype=np.uint8)
        elif isinstance(data, array.array) and data.itemsize == 1:
            return np.frombuffer(data, dtype=np.uint8)
        values = np.asarray(data)
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any odd object must become our error
        raise ImageDecodeError(f"{field}: cannot read as bytes ({exc})") from None
    if values.size == 0:
        return np.zeros(0, dtype=np.uint8)
    if values.dtype == np.bool_ or values.dtype.kind not in "iu":
        raise ImageDecodeError(
            f"{field}: expected byte values, got elements of type {values.dtype}"
        )
    if values.min() < 0 or values.max() > 255:
        raise ImageDecodeError(f"{field}: byte values must be in [0, 255]")
    return values.reshape(-1).astype(np.uint8)


def _raw_pixels(msg: Any) -> tuple[str, _Encoding, np.ndarray]:
    """Validate an Image message and return (encoding, spec, pixels).

    pixels: (H, W, C) array of ``spec.dtype`` in native byte order, a
    contiguous copy with row padding removed.
    """
    name, spec = _lookup_encoding(_str_field(msg, "encoding"))
    height = _int_field(msg, "height")
    width = _int_field(msg, "width")
    step = _int_field(msg, "step")
    big = _field(msg, "is_bigendian")
    try:
        big = bool(big)
    except Exception:  # noqa: BLE001
        raise ImageDecodeError(f"is_bigendian: expected 0/1, got {big!r}") from None
    data = _bytes_view(_field(msg, "data"))

    if height == 0 or width == 0:
        raise ImageDecodeError(f"empty image: height={height}, width={width}")
    if spec.even_width and width % 2:
        raise ImageDecodeError(
            f"width: {name!r} needs an even width (two pixels share U/V), got {width}"
        )
    row_bytes = width * spec.bytes_per_pixel
    if step < row_bytes:
        raise ImageDecodeError(
            f"step: {step} < width * bytes per pixel = {width} * {spec.bytes_per_pixel} "
            f"= {row_bytes} for encoding {name!r}"
        )
    if spec.planar is not None:
        return name, spec, _semi_planar(name, spec, data, height, width, step)
    if data.size != step * height:
        raise ImageDecodeError(
            f"data: length {data.size} != step * height = {step} * {height} = {step * height}"
        )

    rows = data.reshape(height, step)[:, :row_bytes]
    dtype = spec.dtype.newbyteorder(">" if big else "<") if spec.dtype.itemsize > 1 else spec.dtype
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, spec.channels)
    return name, spec, pixels.astype(spec.dtype, copy=True)  # native order, own copy


def _semi_planar(name: str, spec: _Encoding, data: np.ndarray, height: int, width: int, step: int) -> np.ndarray:
    """Y plane + interleaved chroma plane (module docstring) -> (rows, W, 1) uint8 copy without
    padding: nv12 / nv21 ``H + H / 2`` rows, nv24 ``3 H`` rows (the UV plane as 2 rows per line)."""
    if spec.planar == "420":
        if height % 2:
            raise ImageDecodeError(f"height: {name!r} needs an even height (4:2:0 chroma rows), got {height}")
        c_rows, c_step, c_bytes = height // 2, step, width
    else:
        c_rows, c_step, c_bytes = height, 2 * step, 2 * width
    expected = step * height + c_step * c_rows
    if data.size != expected:
        raise ImageDecodeError(
            f"data: length {data.size} != Y plane step * height + chroma plane {c_step} * {c_rows} "
            f"= {step} * {height} + {c_step * c_rows} = {expected} for encoding {name!r}"
        )
    y = data[: step * height].reshape(height, step)[:, :width]
    c = data[step * height :].reshape(c_rows, c_step)[:, :c_bytes].reshape(-1, width)
    return np.concatenate([y, c], axis=0)[..., None]


def _resolve_scale(depth_scale: Optional[float], default: float) -> float:
    if depth_scale is None or depth_scale == 0:
        return default
    try:
        scale = float(depth_scale)
    except (TypeError, ValueError):
        raise ImageDecodeError(f"depth_scale: expected a number, got {depth_scale!r}") from None
    if not math.isfinite(scale) or scale < 0:
        raise ImageDecodeError(f"depth_scale: must be finite and > 0, got {depth_scale!r}")
    return scale


def _depth_from_raw(raw: np.ndarray, scale: float) -> np.ndarray:
    """Raw (H, W) depth values -> float32 metres; 0, NaN, +-Inf, < 0 -> NaN (REP 118)."""
    metres = raw.astype(np.float64) * scale
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(metres) | (metres <= 0)
    metres[invalid] = np.nan
    out = metres.astype(np.float32)
    out[~np.isfinite(out)] = np.nan  # float64 values beyond float32 range
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------
# Raw Image messages
# ---------------------------------------------------------------------------


def decode_image(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/Image``-like message to RGB.

    Args:
        msg: object with ``height``, ``width`` (pixels), ``encoding`` (one of
            :data:`COLOR_ENCODINGS`), ``is_bigendian`` (for 16-bit data),
            ``step`` (bytes per row, may include padding) and ``data``.

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous copy.  Grey encodings are replicated
        to 3 channels; 16-bit data keeps the high byte (``v >> 8``); alpha is
        dropped (colours kept even where alpha is 0); Bayer is demosaiced
        (bilinear, OpenCV), YUV (4:2:2 packed, NV12 / NV21 / NV24 semi-planar) converted
        with BT.601 limited range (OpenCV); see the module docstring for the layouts.

    Raises:
        ImageDecodeError: unknown or depth-only encoding (``16UC1``, ``32FC1``),
            empty image, ``step`` smaller than a row, ``len(data) != step *
            height`` (for NV12 / NV21 ``step * height * 3 / 2``, NV24 ``3 * step * height``),
            odd width for YUV 4:2:2 / 4:2:0, odd height for 4:2:0, unreadable ``data``.
    """
    name, spec, pixels = _raw_pixels(msg)
    if spec.to_rgb is None:
        raise ImageDecodeError(
            f"encoding: {name!r} is a depth encoding, not colour; use decode_depth()"
        )
    try:
        rgb = spec.to_rgb(pixels)
    except cv2.error as exc:
        raise ImageDecodeError(f"data: OpenCV could not convert {name!r}: {exc}") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def decode_depth(msg: Any, depth_scale: Optional[float] = None) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` depth message to metres.

    Args:
        msg: Image-like message with encoding ``16UC1`` or ``mono16``
            (millimetres, REP 118) or ``32FC1`` (metres).  ``is_bigendian`` and
            ``step`` padding are honoured.
        depth_scale: metres per raw unit, overriding the encoding default
            (0.001 for 16-bit, 1.0 for ``32FC1``); ``None`` or 0 = by encoding.

    Returns:
        (H, W) float32 metres, C-contiguous; invalid pixels (raw 0, NaN, +-Inf,
        negative) are NaN.

    Raises:
        ImageDecodeError: colour / unknown encoding, inconsistent sizes or
            data (see :func:`decode_image`), bad ``depth_scale``.
    """
    name, spec, pixels = _raw_pixels(msg)
    if spec.depth_scale is None:
        raise ImageDecodeError(
            f"encoding: {name!r} is not a depth encoding; expected one of {sorted(DEPTH_ENCODINGS)}"
        )
    return _depth_from_raw(pixels[..., 0], _resolve_scale(depth_scale, spec.depth_scale))


# ---------------------------------------------------------------------------
# Building messages (tests, simulator, replay)
# ---------------------------------------------------------------------------


def image_fields_from_rgb(rgb: np.ndarray, encoding: str = "rgb8") -> dict:
    """Image message fields for an RGB array.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        encoding: ``"rgb8"``, ``"bgr8"``, ``"rgba8"``, ``"bgra8"`` (alpha 255)
            or ``"mono8"`` (OpenCV RGB2GRAY, BT.601 weights).

    Returns:
        dict with ``height``, ``width``, ``encoding``, ``is_bigendian`` (0),
        ``step`` (bytes per row, no padding) and ``data`` (bytes), ready for
        ``sensor_msgs.msg.Image(**fields)``.

    Raises:
        ValueError: wrong shape/dtype or unsupported encoding.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if encoding == "rgb8":
        out = rgb
    elif encoding == "bgr8":
        out = rgb[..., ::-1]
    elif encoding in ("rgba8", "bgra8"):
        colour = rgb if encoding == "rgba8" else rgb[..., ::-1]
        alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
        out = np.concatenate([colour, alpha], axis=2)
    elif encoding == "mono8":
        out = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"encoding: unsupported for image_fields_from_rgb: {encoding!r}")
    out = np.ascontiguousarray(out)
    height, width = rgb.shape[:2]
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(width * (1 if out.ndim == 2 else out.shape[2])),
        "data": out.tobytes(),
    }


def image_fields_from_depth(
    depth_m: np.ndarray, encoding: str = "32FC1", is_bigendian: bool = False
) -> dict:
    """Image message fields for a depth map in metres (REP 118).

    Args:
        depth_m: (H, W) float metres; NaN / Inf / <= 0 mean "no measurement".
        encoding: ``"32FC1"`` (float32 metres, invalid stored as NaN) or
            ``"16UC1"`` (uint16 millimetres, rounded; invalid and values beyond
            65.535 m stored as 0).
        is_bigendian: write the data big-endian (for tests of that path).

    Returns:
        dict of Image fields (``height``, ``width``, ``encoding``,
        ``is_bigendian``, ``step``, ``data`` bytes).

    Raises:
        ValueError: wrong shape or unsupported encoding.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth_m: expected (H, W), got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    order = ">" if is_bigendian else "<"
    if encoding == "32FC1":
        out = np.where(valid, depth, np.nan).astype(order + "f4")
    elif encoding == "16UC1":
        mm = np.where(valid, np.round(depth * 1000.0), 0.0)
        mm[mm > 65535] = 0
        out = mm.astype(order + "u2")
    else:
        raise ValueError(f"encoding: unsupported for image_fields_from_depth: {encoding!r}")
    height, width = depth.shape
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": int(bool(is_bigendian)),
        "step": int(width * out.dtype.itemsize),
        "data": np.ascontiguousarray(out).tobytes(),
    }


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time``-like (fields ``sec``, ``nanosec``) -> integer nanoseconds
    ``sec * 1_000_000_000 + nanosec`` (the one copy; :mod:`clip_perception.messages`
    re-exports it with :func:`~clip_perception.messages.ns_to_stamp`, the inverse)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# The compressed half lives in its own module; re-exported so ``decode`` stays the one entry point.
from .compressed import MAX_COMPRESSED_PIXELS, decode_compressed, decode_compressed_depth  # noqa: E402
