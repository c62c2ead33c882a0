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
* ``yuv422`` is UYVY and ``yuv422_yuy2`` is YUYV (image_encodings.hpp);
  converted with ``cv2.COLOR_YUV2RGB_UYVY`` / ``cv2.COLOR_YUV2RGB_YUY2``
  (OpenCV BT.601 limited range).
* Bayer: ROS names give the 2x2 pattern starting at the top-left pixel
  (``bayer_rggb8``: row 0 = R G, row 1 = G B).  OpenCV's historical
  ``COLOR_Bayer<XY>2RGB`` names are offset from that (they name the second row's
  second/third pixels), so ``rggb -> COLOR_BayerBG2RGB``, ``bggr -> BayerRG``,
  ``gbrg -> BayerGR``, ``grbg -> BayerGB`` -- the same mapping cv_bridge uses,
  and verified in the tests with hand-built pure-colour mosaics
  (OpenCV >= 5 also has the explicit aliases ``COLOR_BayerRGGB2RGB`` etc. with the
  same numeric values).
* compressed images: ``image_transport_plugins`` --
  ``compressed_image_transport`` (format ``"<enc>; jpeg compressed bgr8"`` /
  ``"<enc>; png compressed mono16"``; older publishers just ``"jpeg"``/``"png"``)
  and ``compressed_depth_image_transport`` (format
  ``"<enc>; compressedDepth png"``; the data starts with a 12-byte
  ``ConfigHeader`` {int32 format, float32 depthQuantA, float32 depthQuantB},
  then a 16-bit PNG.  For ``16UC1`` the PNG holds raw millimetres; for
  ``32FC1`` it holds quantised inverse depth ``v`` with
  ``depth = depthQuantA / (v - depthQuantB)`` and ``v == 0`` meaning invalid,
  see ``compressed_depth_image_transport/src/codec.cpp``).
"""

from __future__ import annotations

import array
import math
import numbers
import struct
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
    "rgb_to_image_fields",
    "depth_to_image_fields",
]


class ImageDecodeError(ValueError):
    """An image message could not be decoded (bad field, bad data, unsupported encoding)."""


#: Largest accepted ``height`` / ``width`` (OpenCV uses int32 sizes).
MAX_DIMENSION = 2**31 - 1

#: Largest pixel count a compressed image's header may announce (checked before
#: decoding so corrupt headers cannot make OpenCV allocate gigabytes);
#: 2**26 = 67 M pixels, more than an 8K frame.
MAX_COMPRESSED_PIXELS = 2**26

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# compressed_depth_image_transport ConfigHeader: int32 enum + float32[2], native
# (little-endian on every ROS platform).
_CDEPTH_HEADER = struct.Struct("<iff")


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


def _yuv422(code: int) -> Callable[[np.ndarray], np.ndarray]:
    def convert(a: np.ndarray) -> np.ndarray:
        if a.shape[1] % 2:
            raise ImageDecodeError(
                f"width: YUV 4:2:2 needs an even width (two pixels share U/V), got {a.shape[1]}"
            )
        return cv2.cvtColor(np.ascontiguousarray(a), code)

    return convert


@dataclass(frozen=True)
class _Encoding:
    """One row of the encoding table.

    dtype: element type of one channel in the buffer (before endianness).
    channels: elements per pixel in the buffer (YUV 4:2:2: 2 bytes per pixel).
    to_rgb: converter to RGB uint8, or None when not a colour encoding.
    depth_scale: metres per raw unit for depth encodings, or None.
    """

    dtype: np.dtype
    channels: int
    to_rgb: Optional[Callable[[np.ndarray], np.ndarray]]
    depth_scale: Optional[float] = None

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
    "yuv422": _Encoding(_U8, 2, _yuv422(cv2.COLOR_YUV2RGB_UYVY)),  # UYVY
    "yuv422_yuy2": _Encoding(_U8, 2, _yuv422(cv2.COLOR_YUV2RGB_YUY2)),  # YUYV
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
    row_bytes = width * spec.bytes_per_pixel
    if step < row_bytes:
        raise ImageDecodeError(
            f"step: {step} < width * bytes per pixel = {width} * {spec.bytes_per_pixel} "
            f"= {row_bytes} for encoding {name!r}"
        )
    if data.size != step * height:
        raise ImageDecodeError(
            f"data: length {data.size} != step * height = {step} * {height} = {step * height}"
        )

    rows = data.reshape(height, step)[:, :row_bytes]
    dtype = spec.dtype.newbyteorder(">" if big else "<") if spec.dtype.itemsize > 1 else spec.dtype
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, spec.channels)
    return name, spec, pixels.astype(spec.dtype, copy=True)  # native order, own copy


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
        (bilinear, OpenCV), YUV 4:2:2 converted with BT.601 (OpenCV).

    Raises:
        ImageDecodeError: unknown or depth-only encoding (``16UC1``, ``32FC1``),
            empty image, ``step`` smaller than a row, ``len(data) != step *
            height``, odd width for YUV 4:2:2, unreadable ``data``.
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
# CompressedImage messages
# ---------------------------------------------------------------------------


def _compressed_fields(msg: Any) -> tuple[str, np.ndarray]:
    fmt = _str_field(msg, "format")
    data = _bytes_view(_field(msg, "data"))
    if data.size == 0:
        raise ImageDecodeError("data: empty compressed image")
    return fmt, data


def _sniff(data: np.ndarray, offset: int = 0) -> Optional[str]:
    head = data[offset : offset + 8].tobytes()
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(_JPEG_SIGNATURE):
        return "jpeg"
    return None


def _announced_size(data: np.ndarray, codec: str) -> Optional[tuple[int, int]]:
    """(height, width) from a PNG IHDR / JPEG SOF header, or None if not found."""
    buf = data.tobytes() if data.size < 65536 else data[:65536].tobytes()
    if codec == "png":
        if len(buf) < 24 or buf[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", buf[16:24])
        return height, width
    i = 2  # JPEG: walk the marker segments up to start-of-scan
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = (buf[i + 2] << 8) | buf[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(buf):
                return None
            height, width = struct.unpack(">HH", buf[i + 5 : i + 9])
            return height, width
        if marker == 0xDA or length < 2:
            return None
        i += 2 + length
    return None


def _imdecode(data: np.ndarray, codec: str) -> np.ndarray:
    size = _announced_size(data, codec)
    if size is not None and size[0] * size[1] > MAX_COMPRESSED_PIXELS:
        raise ImageDecodeError(
            f"data: {codec} header announces {size[1]}x{size[0]} pixels, more than "
            f"MAX_COMPRESSED_PIXELS={MAX_COMPRESSED_PIXELS}"
        )
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageDecodeError(f"data: corrupt {codec} data ({exc})") from None
    if img is None or img.size == 0:
        raise ImageDecodeError(f"data: corrupt or truncated {codec} data (OpenCV imdecode failed)")
    return img


def _format_encoding(fmt: str) -> Optional[str]:
    """Encoding named before ';' in a CompressedImage format ("rgb8; jpeg ..."), if any.

    A format without ';' is an encoding only when it is a known encoding name
    (very old compressedDepth publishers wrote just e.g. "16UC1").
    """
    if ";" not in fmt:
        return _BY_FOLDED.get(fmt.strip().casefold())
    prefix = fmt.split(";", 1)[0].strip()
    name = _BY_FOLDED.get(prefix.casefold())
    return name if name is not None else (prefix or None)


def decode_compressed(msg: Any) -> np.ndarray:
    """Decode a colour ``sensor_msgs/CompressedImage`` (JPEG or PNG) to RGB.

    Args:
        msg: object with ``format`` (e.g. ``"jpeg"``, ``"png"``,
            ``"rgb8; jpeg compressed bgr8"``, ``"mono8; png compressed mono8"``;
            image_transport_plugins compressed_image_transport) and ``data``
            (JPEG/PNG bytes).  The codec is taken from the data's magic bytes.

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous.  OpenCV decodes to BGR(A) order,
        which is swapped to RGB unless the format says ``"compressed rgb..."``;
        grey is replicated; 16-bit PNG keeps the high byte; alpha is dropped.

    Raises:
        ImageDecodeError: empty/corrupt/truncated data, data neither JPEG nor
            PNG, a depth image (format ``16UC1``/``32FC1``/``compressedDepth``:
            use :func:`decode_compressed_depth`).
    """
    fmt, data = _compressed_fields(msg)
    enc = _format_encoding(fmt)
    if "compresseddepth" in fmt.casefold() or enc in ("16UC1", "32FC1"):
        raise ImageDecodeError(
            f"format: {fmt!r} is a depth image; use decode_compressed_depth()"
        )
    codec = _sniff(data)
    if codec is None:
        raise ImageDecodeError(f"data: not JPEG or PNG data (format {fmt!r})")
    img = _imdecode(data, codec)
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageDecodeError(f"data: unsupported {codec} sample type {img.dtype}")
    rgb_order = "compressed rgb" in fmt.casefold()
    if img.ndim == 2 or img.shape[2] in (1, 2):
        img2 = img if img.ndim == 2 else img[..., 0]
        return np.ascontiguousarray(_grey(img2[..., None]))
    if img.shape[2] not in (3, 4):
        raise ImageDecodeError(f"data: unsupported channel count {img.shape[2]}")
    rgb = _rgb(img) if rgb_order else _bgr(img)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _decoded_depth_png(png: np.ndarray, what: str) -> np.ndarray:
    img = _imdecode(png, "png")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim != 2:
        raise ImageDecodeError(f"data: {what} PNG has {img.shape[2]} channels; depth needs 1")
    if img.dtype != np.uint16:
        raise ImageDecodeError(
            f"data: {what} PNG is {img.dtype} ({img.dtype.itemsize * 8}-bit); 8-bit depth is "
            "lossy (quantised), refusing it -- publish 16UC1 or 32FC1 depth"
        )
    return img


def decode_compressed_depth(msg: Any, depth_scale: Optional[float] = None) -> np.ndarray:
    """Decode a compressed depth ``sensor_msgs/CompressedImage`` to metres.

    Supported (image_transport_plugins):

    * compressed_image_transport PNG: format ``"16UC1; png compressed"`` (any
      suffix) or plain ``"png"``; a 16-bit single-channel PNG in millimetres.
    * compressed_depth_image_transport: format ``"16UC1; compressedDepth png"``
      or ``"32FC1; compressedDepth png"`` (``"...; compressedDepth"`` in older
      releases): 12-byte ConfigHeader (little-endian int32 format, float32
      depthQuantA, float32 depthQuantB) then a 16-bit PNG.  16UC1: millimetres.
      32FC1: inverse depth ``v``, ``depth = depthQuantA / (v - depthQuantB)``
      metres, ``v == 0`` invalid.  A header is also recognised by the PNG
      signature at byte 12 when the format string does not say so.

    Args:
        msg: object with ``format`` and ``data``.
        depth_scale: metres per raw unit for 16-bit millimetre PNGs
            (``None`` or 0 = 0.001); not applied to the 32FC1 inverse-depth form.

    Returns:
        (H, W) float32 metres, C-contiguous, invalid pixels NaN.

    Raises:
        ImageDecodeError: lossy depth (JPEG, 8-bit PNG), RVL compressedDepth
            (unsupported), colour PNG, missing/short header, corrupt data,
            unsupported encoding in the format string.
    """
    fmt, data = _compressed_fields(msg)
    folded = fmt.casefold()
    enc = _format_encoding(fmt)
    if enc is not None and enc not in DEPTH_ENCODINGS:
        raise ImageDecodeError(
            f"format: encoding {enc!r} is not a depth encoding ({sorted(DEPTH_ENCODINGS)})"
        )
    if "rvl" in folded:
        raise ImageDecodeError(f"format: RVL compressedDepth is not supported ({fmt!r})")
    if "jpeg" in folded or "jpg" in folded or _sniff(data) == "jpeg":
        raise ImageDecodeError(
            f"format: JPEG depth ({fmt!r}) is lossy 8-bit; refusing it -- use png / compressedDepth"
        )

    has_header = "compresseddepth" in folded or (
        _sniff(data) is None and _sniff(data, _CDEPTH_HEADER.size) == "png"
    )
    if not has_header:
        if _sniff(data) != "png":
            raise ImageDecodeError(f"data: not PNG data (format {fmt!r})")
        if enc == "32FC1":
            raise ImageDecodeError("format: '32FC1' PNG without a compressedDepth header")
        raw = _decoded_depth_png(data, "depth")
        return _depth_from_raw(raw, _resolve_scale(depth_scale, 0.001))

    if data.size <= _CDEPTH_HEADER.size:
        raise ImageDecodeError(
            f"data: {data.size} bytes, too short for the {_CDEPTH_HEADER.size}-byte "
            "compressedDepth header plus PNG"
        )
    _fmt_enum, quant_a, quant_b = _CDEPTH_HEADER.unpack(data[: _CDEPTH_HEADER.size].tobytes())
    png = data[_CDEPTH_HEADER.size :]
    if _sniff(png) != "png":
        raise ImageDecodeError("data: no PNG after the 12-byte compressedDepth header")
    raw = _decoded_depth_png(png, "compressedDepth")
    if enc == "32FC1":
        if not (math.isfinite(quant_a) and math.isfinite(quant_b)):
            raise ImageDecodeError(
                f"data: compressedDepth header has non-finite depthQuantA/B ({quant_a}, {quant_b})"
            )
        # Same float32 arithmetic as compressed_depth_image_transport codec.cpp.
        v = raw.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            depth = np.float32(quant_a) / (v - np.float32(quant_b))
        depth[raw == 0] = np.nan
        return _depth_from_raw(depth, 1.0)
    return _depth_from_raw(raw, _resolve_scale(depth_scale, 0.001))


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


# Names used in the module contract (/tmp/contract.md).
rgb_to_image_fields = image_fields_from_rgb
depth_to_image_fields = image_fields_from_depth
