"""Decode ``sensor_msgs/CompressedImage`` messages to NumPy arrays (ROS-free).

The compressed half of :mod:`clip_perception.decode` (same conventions, same
:class:`~clip_perception.decode.ImageDecodeError`): colour JPEG / PNG to (H, W, 3) uint8 RGB
and compressed depth to (H, W) float32 metres, NaN = invalid.  Works on any object with
``format`` and ``data`` fields (rclpy, rosbags, ``SimpleNamespace``).

Sources:

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

import math
import struct
from typing import Any, Optional

import cv2
import numpy as np

from .decode import (
    _BY_FOLDED,
    DEPTH_ENCODINGS,
    ImageDecodeError,
    _bgr,
    _bytes_view,
    _depth_from_raw,
    _field,
    _grey,
    _resolve_scale,
    _rgb,
    _str_field,
)

__all__ = ["MAX_COMPRESSED_PIXELS", "decode_compressed", "decode_compressed_depth"]

#: Largest pixel count a compressed image's header may announce (checked before
#: decoding so corrupt headers cannot make OpenCV allocate gigabytes);
#: 2**26 = 67 M pixels, more than an 8K frame.
MAX_COMPRESSED_PIXELS = 2**26

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# compressed_depth_image_transport ConfigHeader: int32 enum + float32[2], native
# (little-endian on every ROS platform).
_CDEPTH_HEADER = struct.Struct("<iff")


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
