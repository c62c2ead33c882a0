"""Property-based (hypothesis) tests of clip_perception.decode.

Contract under test: for ANY message, each decoder either returns a correct
array (right shape/dtype; exact values for valid rgb8/bgr8/mono8/16UC1/32FC1)
or raises ImageDecodeError -- never another exception, never a hang.

Examples per test: env var CLIP_PERCEPTION_FUZZ_EXAMPLES (default 200; `make
fuzz` sets 10000).
"""

from __future__ import annotations

import array
import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clip_perception.decode import (
    ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_compressed_depth,
    decode_depth,
    decode_image,
)

FUZZ = settings(
    max_examples=int(os.environ.get("CLIP_PERCEPTION_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VALID = sorted(ENCODINGS)
INVALID = ["", "rgb", "RGB888", "16UC3", "32FC3", "jpeg", "bayer_rggb", "yuv420", "8SC1", "64FC1", " ", "\x00"]
encodings = st.one_of(st.sampled_from(VALID), st.sampled_from(INVALID), st.text(max_size=12))
# Mostly small, occasionally negative / absurd.
dims = st.one_of(st.integers(0, 7), st.integers(-3, -1), st.sampled_from([2**31, 2**40]))
containers = st.sampled_from(["bytes", "bytearray", "memoryview", "array", "list", "numpy_ro"])


def wrap(raw: bytes, kind: str):
    if kind == "bytes":
        return raw
    if kind == "bytearray":
        return bytearray(raw)
    if kind == "memoryview":
        return memoryview(raw)
    if kind == "array":
        return array.array("B", raw)
    if kind == "list":
        return list(raw)
    a = np.frombuffer(raw, np.uint8).copy()
    a.flags.writeable = False
    return a


def check_outcome(fn, msg, expect_shape):
    """fn(msg) returns an array of the expected shape/dtype or raises ImageDecodeError."""
    try:
        out = fn(msg)
    except ImageDecodeError:
        return None
    assert isinstance(out, np.ndarray) and out.flags.c_contiguous
    if fn is decode_depth:
        assert out.dtype == np.float32 and out.shape == expect_shape[:2]
        finite = out[np.isfinite(out)]
        assert np.all(finite > 0)
    else:
        assert out.dtype == np.uint8 and out.shape == expect_shape[:2] + (3,)
    return out


@st.composite
def image_messages(draw):
    """Image messages, mostly near-valid: right/wrong step, truncated/oversized data."""
    encoding = draw(encodings)
    height, width = draw(dims), draw(dims)
    bpp = ENCODINGS[encoding].bytes_per_pixel if encoding in ENCODINGS else draw(st.integers(1, 4))
    w_ok, h_ok = max(0, min(width, 7)), max(0, min(height, 7))
    step = draw(st.one_of(st.just(w_ok * bpp), st.integers(w_ok * bpp, w_ok * bpp + 5), st.integers(-2, 40)))
    n = max(0, step) * h_ok
    length = draw(st.one_of(st.just(n), st.integers(max(0, n - 5), n + 5), st.integers(0, 64)))
    raw = draw(st.binary(min_size=length, max_size=length))
    kind = draw(containers)
    big = draw(st.sampled_from([0, 1, True, False, 2]))
    return SimpleNamespace(
        height=height, width=width, encoding=encoding, is_bigendian=big, step=step, data=wrap(raw, kind)
    ), raw


@FUZZ
@given(image_messages())
def test_fuzz_any_image_message_gives_array_or_image_decode_error(case):
    """Random encodings/sizes/steps/endianness/data: array of the right shape or ImageDecodeError;
    the message data is never modified."""
    msg, raw = case
    shape = (msg.height, msg.width) if isinstance(msg.height, int) else None
    for fn in (decode_image, decode_depth):
        check_outcome(fn, msg, shape)
    after = msg.data.tobytes() if isinstance(msg.data, np.ndarray) else bytes(bytearray(msg.data))
    assert after == raw


@FUZZ
@given(
    encoding=st.sampled_from(["rgb8", "bgr8", "mono8", "8UC1", "rgba8", "bgra8"]),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    pad=st.integers(0, 5),
    data=st.data(),
    kind=containers,
)
def test_fuzz_valid_8bit_colour_exact_values(encoding, h, w, pad, data, kind):
    """Valid rgb8/bgr8/mono8/8UC1/rgba8/bgra8 with random pixels and padding: exact RGB."""
    ch = ENCODINGS[encoding].channels
    pixels = np.frombuffer(data.draw(st.binary(min_size=h * w * ch, max_size=h * w * ch)), np.uint8)
    pixels = pixels.reshape(h, w, ch)
    rows = np.concatenate([pixels.reshape(h, w * ch), np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * ch + pad,
                          data=wrap(rows.tobytes(), kind))
    out = decode_image(msg)
    if ch == 1:
        expected = np.repeat(pixels, 3, axis=2)
    elif encoding.startswith("bgr"):
        expected = pixels[..., 2::-1]
    else:
        expected = pixels[..., :3]
    np.testing.assert_array_equal(out, expected)


@FUZZ
@given(
    encoding=st.sampled_from(["16UC1", "32FC1"]),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    pad=st.integers(0, 5),
    big=st.booleans(),
    data=st.data(),
)
def test_fuzz_valid_depth_exact_values(encoding, h, w, pad, big, data):
    """Valid 16UC1 / 32FC1 (either endianness, any padding): metres exactly, invalid -> NaN."""
    if encoding == "16UC1":
        values = np.array(data.draw(st.lists(st.integers(0, 65535), min_size=h * w, max_size=h * w)))
        dtype = ">u2" if big else "<u2"
        expected = np.where(values == 0, np.nan, values * 0.001)
    else:
        values = np.array(data.draw(st.lists(st.floats(width=32), min_size=h * w, max_size=h * w)))
        dtype = ">f4" if big else "<f4"
        with np.errstate(invalid="ignore"):
            expected = np.where(np.isfinite(values) & (values > 0), values, np.nan)
    raw = values.reshape(h, w).astype(dtype).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([raw, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(big),
                          step=raw.shape[1] + pad, data=rows.tobytes())
    out = decode_depth(msg)
    assert out.dtype == np.float32 and out.shape == (h, w)
    np.testing.assert_array_equal(out, expected.reshape(h, w).astype(np.float32))


def _valid_compressed():
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    depth = rng.integers(0, 65535, (8, 8), dtype=np.uint16)
    return [
        cv2.imencode(".jpg", colour)[1].tobytes(),
        cv2.imencode(".png", colour)[1].tobytes(),
        cv2.imencode(".png", depth)[1].tobytes(),
        b"\0" * 12 + cv2.imencode(".png", depth)[1].tobytes(),
    ]


VALID_COMPRESSED = _valid_compressed()
FORMATS = ["jpeg", "png", "rgb8; jpeg compressed bgr8", "16UC1; png compressed", "16UC1; compressedDepth png",
           "32FC1; compressedDepth png", "32FC1; compressedDepth", "bgr8; png compressed rgb8", "", "tiff"]


@st.composite
def corrupted_bytes(draw):
    """Valid JPEG/PNG/compressedDepth payloads truncated, with flipped bytes, or random."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=200))
    data = bytearray(draw(st.sampled_from(VALID_COMPRESSED)))
    if choice == 1:
        return bytes(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if choice == 3:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(fmt=st.one_of(st.sampled_from(FORMATS), st.text(max_size=30)), data=corrupted_bytes(), kind=containers)
def test_fuzz_corrupt_compressed_gives_array_or_image_decode_error(fmt, data, kind):
    """Corrupt / truncated / random JPEG, PNG and compressedDepth bytes with random formats:
    an RGB uint8 / float32 metres array or ImageDecodeError, nothing else."""
    msg = SimpleNamespace(format=fmt, data=wrap(data, kind))
    try:
        out = decode_compressed(msg)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.size > 0
    except ImageDecodeError:
        pass
    try:
        out = decode_compressed_depth(msg)
        assert out.dtype == np.float32 and out.ndim == 2 and out.size > 0
        finite = out[np.isfinite(out)]
        assert np.all(finite > 0)
    except ImageDecodeError:
        pass


@FUZZ
@given(
    h=st.integers(1, 6), w=st.integers(1, 6), data=st.data(),
    fmt=st.sampled_from(["png", "rgb8; png compressed bgr8"]),
)
def test_fuzz_png_colour_round_trip_exact(h, w, data, fmt):
    """Random RGB images through PNG decode back exactly."""
    rgb = np.frombuffer(data.draw(st.binary(min_size=h * w * 3, max_size=h * w * 3)), np.uint8).reshape(h, w, 3)
    png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()
    np.testing.assert_array_equal(decode_compressed(SimpleNamespace(format=fmt, data=png)), rgb)


@pytest.mark.parametrize("fn", [decode_image, decode_depth, decode_compressed, decode_compressed_depth])
@FUZZ
@given(junk=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(-300, 300), max_size=6),
                      st.floats(), st.binary(max_size=6)))
def test_fuzz_junk_field_values(fn, junk):
    """Any field replaced with junk (None, ints, text, out-of-range lists, floats): ImageDecodeError
    or a valid array, never AttributeError/TypeError."""
    for field in ["height", "width", "encoding", "is_bigendian", "step", "data", "format"]:
        base = dict(height=1, width=2, encoding="mono8", is_bigendian=0, step=2, data=b"\1\2", format="png")
        base[field] = junk
        try:
            out = fn(SimpleNamespace(**base))
        except ImageDecodeError:
            continue
        assert isinstance(out, np.ndarray) and out.size > 0


def _png_with_size(width: int, height: int, tail: bytes) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + tail


def _jpeg_with_size(width: int, height: int, tail: bytes) -> bytes:
    import struct

    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + tail


@FUZZ
@given(codec=st.sampled_from(["png", "jpeg"]), width=st.integers(0, 2**31 - 1), height=st.integers(0, 2**31 - 1),
       tail=st.binary(max_size=64), fmt=st.sampled_from(["png", "jpeg", "rgb8; jpeg compressed bgr8", "16UC1; png"]))
def test_fuzz_headers_announcing_any_size_never_exhaust_memory(codec, width, height, tail, fmt):
    """Decompression bombs: PNG IHDR / JPEG SOF announcing any width x height (up to 2^31 - 1
    per side for PNG) followed by junk: ImageDecodeError, or a small array -- never
    MemoryError, never an OpenCV exception, never a hang."""
    from clip_perception.decode import MAX_COMPRESSED_PIXELS

    if codec == "jpeg":
        width, height = width % 65536, height % 65536
    data = (_png_with_size if codec == "png" else _jpeg_with_size)(width, height, tail)
    for fn in (decode_compressed, decode_compressed_depth):
        try:
            out = fn(SimpleNamespace(format=fmt, data=data))
        except ImageDecodeError:
            continue
        assert out.shape[0] * out.shape[1] <= MAX_COMPRESSED_PIXELS
