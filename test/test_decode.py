"""Example-based tests of clip_perception.decode (raw and compressed images).

Each test builds a tiny message by hand (types.SimpleNamespace, plus one real
sensor_msgs/msg/Image) and compares against exact expected arrays.
"""

from __future__ import annotations

import array
import struct
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from clip_perception.decode import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_compressed_depth,
    decode_depth,
    decode_image,
    image_fields_from_depth,
    image_fields_from_rgb,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
SENTINEL = 0xAB


def img(encoding, height, width, step, data, is_bigendian=0):
    return SimpleNamespace(
        height=height, width=width, encoding=encoding, is_bigendian=is_bigendian, step=step, data=data
    )


def pad_rows(rows: np.ndarray, pad: int) -> bytes:
    """(H, row_bytes) uint8 -> bytes with `pad` SENTINEL bytes after each row."""
    rows = np.asarray(rows, np.uint8).reshape(rows.shape[0], -1)
    padding = np.full((rows.shape[0], pad), SENTINEL, np.uint8)
    return np.concatenate([rows, padding], axis=1).tobytes()


def solid(h, w, rgb):
    return np.tile(np.array(rgb, np.uint8), (h, w, 1))


# A 2x3 RGB test image with distinct values in every channel.
RGB_2x3 = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7 + 3


# --------------------------------------------------------------------------- colour encodings


def test_rgb8_exact_values_and_output_layout():
    """rgb8: bytes map straight to (H, W, 3) uint8, C-contiguous, own memory."""
    out = decode_image(img("rgb8", 2, 3, 9, RGB_2x3.tobytes()))
    np.testing.assert_array_equal(out, RGB_2x3)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert out.flags.c_contiguous and out.flags.writeable


def test_bgr8_and_rgb8_of_same_red_patch_give_same_rgb():
    """bgr8 vs rgb8: the same red patch decodes to the same RGB array."""
    patch = solid(2, 2, RED)
    as_rgb = decode_image(img("rgb8", 2, 2, 6, patch.tobytes()))
    as_bgr = decode_image(img("bgr8", 2, 2, 6, patch[..., ::-1].tobytes()))
    np.testing.assert_array_equal(as_rgb, patch)
    np.testing.assert_array_equal(as_bgr, patch)


def test_bgr8_swaps_channel_order():
    """bgr8: B,G,R bytes become R,G,B."""
    out = decode_image(img("bgr8", 1, 2, 6, bytes([1, 2, 3, 4, 5, 6])))
    np.testing.assert_array_equal(out, [[[3, 2, 1], [6, 5, 4]]])


def test_rgba8_drops_alpha():
    """rgba8: alpha dropped, colours untouched."""
    out = decode_image(img("rgba8", 1, 2, 8, bytes([10, 20, 30, 40, 50, 60, 70, 0])))
    np.testing.assert_array_equal(out, [[[10, 20, 30], [50, 60, 70]]])


def test_bgra8_with_alpha_zero_keeps_colours():
    """bgra8 with alpha 0: colours kept (no premultiplication), alpha dropped."""
    out = decode_image(img("bgra8", 1, 2, 8, bytes([0, 0, 255, 0, 255, 0, 0, 0])))
    np.testing.assert_array_equal(out, [[RED, BLUE]])


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_and_8uc1_grey_replicated_to_three_channels(encoding):
    """mono8 / 8UC1: grey value copied into R, G and B."""
    out = decode_image(img(encoding, 1, 3, 3, bytes([0, 128, 255])))
    np.testing.assert_array_equal(out, [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]])


@pytest.mark.parametrize("big", [0, 1])
def test_mono16_as_colour_keeps_high_byte(big):
    """mono16 as colour: 16-bit grey >> 8, replicated; both byte orders."""
    values = np.array([[0x0000, 0x12FF, 0xFF00]], np.uint16)
    data = values.astype(">u2" if big else "<u2").tobytes()
    out = decode_image(img("mono16", 1, 3, 6, data, is_bigendian=big))
    np.testing.assert_array_equal(out[..., 0], [[0x00, 0x12, 0xFF]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_8uc3_is_read_as_bgr_like_cv_bridge():
    """8UC3: OpenCV default channel order (BGR), as in cv_bridge."""
    out = decode_image(img("8UC3", 1, 1, 3, bytes([1, 2, 3])))
    np.testing.assert_array_equal(out, [[[3, 2, 1]]])


def test_8uc4_is_read_as_bgra():
    """8UC4: BGRA, alpha dropped."""
    out = decode_image(img("8UC4", 1, 1, 4, bytes([1, 2, 3, 4])))
    np.testing.assert_array_equal(out, [[[3, 2, 1]]])


@pytest.mark.parametrize("encoding,order", [("rgb16", [0, 1, 2]), ("bgr16", [2, 1, 0])])
def test_16bit_colour_high_byte(encoding, order):
    """rgb16 / bgr16: high byte of each channel, channel order honoured, big-endian."""
    values = np.array([[[0x1100, 0x22FF, 0x3301]]], np.uint16)
    out = decode_image(img(encoding, 1, 1, 6, values.astype(">u2").tobytes(), is_bigendian=1))
    np.testing.assert_array_equal(out[0, 0], np.array([0x11, 0x22, 0x33])[order])


def test_encoding_names_are_case_insensitive():
    """'RGB8' / '8uc1': case differences are accepted."""
    np.testing.assert_array_equal(decode_image(img("RGB8", 1, 1, 3, bytes([1, 2, 3]))), [[[1, 2, 3]]])
    np.testing.assert_array_equal(decode_image(img("8uc1", 1, 1, 1, bytes([9]))), [[[9, 9, 9]]])


# --------------------------------------------------------------------------- padding (step)


def test_padded_rgb8_rows_sentinel_bytes_do_not_leak():
    """rgb8 with step > width*3: the 0xAB padding never appears in the output."""
    data = pad_rows(RGB_2x3.reshape(2, 9), pad=3)
    out = decode_image(img("rgb8", 2, 3, 12, data))
    np.testing.assert_array_equal(out, RGB_2x3)
    assert not np.any(out == SENTINEL)


def test_padded_16uc1_depth_rows_sentinel_bytes_do_not_leak():
    """16UC1 with an odd padding (step not a multiple of 2) decodes exactly."""
    mm = np.array([[1000, 2000], [3000, 0]], "<u2")
    data = pad_rows(mm.view(np.uint8).reshape(2, 4), pad=3)
    out = decode_depth(img("16UC1", 2, 2, 7, data))
    np.testing.assert_allclose(out, [[1.0, 2.0], [3.0, np.nan]], rtol=0, atol=1e-6)


def test_padded_big_endian_32fc1_rows():
    """32FC1 big-endian with 2 padding bytes per row."""
    m = np.array([[0.5, 1.25], [np.nan, 4.0]], ">f4")
    data = pad_rows(m.view(np.uint8).reshape(2, 8), pad=2)
    out = decode_depth(img("32FC1", 2, 2, 10, data, is_bigendian=1))
    np.testing.assert_array_equal(out, np.array([[0.5, 1.25], [np.nan, 4.0]], np.float32))


# --------------------------------------------------------------------------- depth


def test_16uc1_2500mm_is_2_5_metres_float32():
    """16UC1 of 2500 mm -> 2.5 m as float32 (never uint8 / integer)."""
    out = decode_depth(img("16UC1", 1, 1, 2, struct.pack("<H", 2500)))
    assert out.dtype == np.float32 and out.shape == (1, 1)
    assert out[0, 0] == pytest.approx(2.5, abs=1e-6)


def test_16uc1_big_endian():
    """16UC1 big-endian: bytes 0x09 0xC4 = 2500 mm = 2.5 m."""
    out = decode_depth(img("16UC1", 1, 2, 4, bytes([0x09, 0xC4, 0x03, 0xE8]), is_bigendian=1))
    np.testing.assert_allclose(out, [[2.5, 1.0]], atol=1e-6)


def test_16uc1_zero_is_nan_and_max_is_65_535_m():
    """16UC1: 0 mm is invalid (NaN), 65535 mm is 65.535 m."""
    out = decode_depth(img("16UC1", 1, 2, 4, np.array([0, 65535], "<u2").tobytes()))
    assert np.isnan(out[0, 0])
    assert out[0, 1] == pytest.approx(65.535, abs=1e-4)


def test_mono16_depth_is_millimetres():
    """mono16 through decode_depth: millimetres like 16UC1."""
    out = decode_depth(img("mono16", 1, 1, 2, struct.pack("<H", 750)))
    assert out[0, 0] == pytest.approx(0.75, abs=1e-6)


def test_depth_scale_override_and_zero_means_by_encoding():
    """depth_scale=0.0001 (0.1 mm units) overrides; 0 and None use 0.001."""
    msg = img("16UC1", 1, 1, 2, struct.pack("<H", 2500))
    assert decode_depth(msg, depth_scale=0.0001)[0, 0] == pytest.approx(0.25, abs=1e-6)
    assert decode_depth(msg, depth_scale=0)[0, 0] == pytest.approx(2.5, abs=1e-6)
    assert decode_depth(msg, depth_scale=None)[0, 0] == pytest.approx(2.5, abs=1e-6)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "x"])
def test_bad_depth_scale_raises(bad):
    """depth_scale negative / NaN / Inf / not a number -> ImageDecodeError."""
    with pytest.raises(ImageDecodeError, match="depth_scale"):
        decode_depth(img("16UC1", 1, 1, 2, b"\x01\x00"), depth_scale=bad)


@pytest.mark.parametrize("big", [0, 1])
def test_32fc1_metres_with_invalid_values_nan(big):
    """32FC1 (REP 118): metres; 0, NaN, +Inf, -Inf and negatives become NaN."""
    values = np.array([[1.5, 0.0, np.nan, np.inf, -np.inf, -2.0, 3.25]], np.float32)
    data = values.astype(">f4" if big else "<f4").tobytes()
    out = decode_depth(img("32FC1", 1, 7, 28, data, is_bigendian=big))
    assert out.dtype == np.float32 and out.shape == (1, 7)
    np.testing.assert_array_equal(out, [[1.5, np.nan, np.nan, np.nan, np.nan, np.nan, 3.25]])


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "bayer_rggb8", "yuv422"])
def test_colour_encoding_passed_to_decode_depth_raises(encoding):
    """decode_depth refuses colour encodings (naming the encoding field)."""
    bpp = {"rgb8": 3, "bgr8": 3, "mono8": 1, "bayer_rggb8": 1, "yuv422": 2}[encoding]
    with pytest.raises(ImageDecodeError, match="encoding"):
        decode_depth(img(encoding, 2, 2, 2 * bpp, bytes(4 * bpp)))


@pytest.mark.parametrize("encoding,bpp", [("16UC1", 2), ("32FC1", 4)])
def test_depth_encoding_passed_to_decode_image_raises(encoding, bpp):
    """decode_image refuses depth-only encodings and points at decode_depth."""
    with pytest.raises(ImageDecodeError, match="decode_depth"):
        decode_image(img(encoding, 1, 1, bpp, bytes(bpp)))


def test_supported_encoding_tables():
    """COLOR_ENCODINGS / DEPTH_ENCODINGS list every required encoding."""
    for enc in ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "8UC4",
                "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8", "bayer_rggb16",
                "yuv422", "yuv422_yuy2"]:
        assert enc in COLOR_ENCODINGS
    assert DEPTH_ENCODINGS == {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


# --------------------------------------------------------------------------- Bayer


def mosaic(pattern: str, scene_rgb, h=6, w=6, dtype=np.uint8) -> np.ndarray:
    """Sample a uniform scene through a ROS Bayer pattern (top-left 2x2, row-major)."""
    raw = np.zeros((h, w), dtype)
    for y in range(h):
        for x in range(w):
            raw[y, x] = scene_rgb["RGB".index(pattern[(y % 2) * 2 + (x % 2)].upper())]
    return raw


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("scene", [RED, GREEN, BLUE, (10, 100, 200)])
def test_bayer8_pure_colour_demosaics_to_that_colour(pattern, scene):
    """bayer_<pattern>8: a uniform scene's mosaic demosaics to the scene colour everywhere.

    Guards the ROS-name -> OpenCV-code mapping (OpenCV's BayerXY names are offset).
    """
    raw = mosaic(pattern, scene)
    out = decode_image(img(f"bayer_{pattern}8", 6, 6, 6, raw.tobytes()))
    np.testing.assert_array_equal(out, solid(6, 6, scene))


def test_bayer_rggb8_2x2_red_is_red():
    """bayer_rggb8 hand-built 2x2 pure red: [[255, 0], [0, 0]] -> all red."""
    out = decode_image(img("bayer_rggb8", 2, 2, 2, bytes([255, 0, 0, 0])))
    np.testing.assert_array_equal(out, solid(2, 2, RED))


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer16_pure_red_big_endian(pattern):
    """bayer_<pattern>16 big-endian: pure red (0xFFFF) -> RGB (255, 0, 0)."""
    raw = mosaic(pattern, (0xFFFF, 0, 0), 4, 4, np.uint16)
    out = decode_image(img(f"bayer_{pattern}16", 4, 4, 8, raw.astype(">u2").tobytes(), is_bigendian=1))
    np.testing.assert_array_equal(out, solid(4, 4, RED))


# --------------------------------------------------------------------------- YUV 4:2:2


def test_yuv422_uyvy_black_and_white():
    """yuv422 (UYVY: U Y0 V Y1): Y=16 -> black, Y=235 -> white with U=V=128 (BT.601)."""
    out = decode_image(img("yuv422", 1, 2, 4, bytes([128, 16, 128, 235])))
    np.testing.assert_array_equal(out, [[[0, 0, 0], [255, 255, 255]]])


def test_yuv422_yuy2_black_and_white():
    """yuv422_yuy2 (YUYV: Y0 U Y1 V): same pixels as the UYVY case."""
    out = decode_image(img("yuv422_yuy2", 1, 2, 4, bytes([16, 128, 235, 128])))
    np.testing.assert_array_equal(out, [[[0, 0, 0], [255, 255, 255]]])


def test_yuv422_red():
    """yuv422: BT.601 red (Y=81, U=90, V=240) -> ~(255, 0, 0)."""
    out = decode_image(img("yuv422", 1, 2, 4, bytes([90, 81, 240, 81])))
    np.testing.assert_allclose(out.astype(int), [[RED, RED]], atol=2)


def test_yuv422_odd_width_raises():
    """yuv422 with odd width: U/V pairs are incomplete -> ImageDecodeError naming width."""
    with pytest.raises(ImageDecodeError, match="width"):
        decode_image(img("yuv422", 1, 3, 6, bytes(6)))


# --------------------------------------------------------------------------- data containers


def _buffers():
    raw = bytes(RGB_2x3.tobytes())
    ro = np.frombuffer(raw, np.uint8).copy()
    ro.flags.writeable = False
    return {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview_readonly": memoryview(raw),
        "array_B": array.array("B", raw),
        "list_of_ints": list(raw),
        "numpy_readonly": ro,
    }


@pytest.mark.parametrize("kind", list(_buffers()))
def test_data_containers_and_read_only_buffers_are_not_modified(kind):
    """data as bytes / bytearray / read-only memoryview / array('B') / list / read-only
    numpy: decodes the same and the buffer is unchanged; output is an independent copy."""
    data = _buffers()[kind]
    before = bytes(bytearray(data)) if not isinstance(data, np.ndarray) else data.tobytes()
    out = decode_image(img("rgb8", 2, 3, 9, data))
    np.testing.assert_array_equal(out, RGB_2x3)
    out[...] = 0  # writing to the result must not touch the message
    after = bytes(bytearray(data)) if not isinstance(data, np.ndarray) else data.tobytes()
    assert after == before
    if isinstance(data, np.ndarray):
        assert not np.shares_memory(out, data)


def test_read_only_depth_buffer_unchanged():
    """32FC1 from a read-only memoryview: NaN replacement happens in a copy."""
    raw = np.array([[0.0, 2.0]], "<f4").tobytes()
    mv = memoryview(raw)
    out = decode_depth(img("32FC1", 1, 2, 8, mv))
    assert np.isnan(out[0, 0]) and out[0, 1] == 2.0
    assert bytes(mv) == raw


def test_list_data_out_of_byte_range_raises():
    """data list with 300 -> ImageDecodeError naming data."""
    with pytest.raises(ImageDecodeError, match="data"):
        decode_image(img("mono8", 1, 2, 2, [1, 300]))


def test_real_sensor_msgs_image_from_rclpy_wheels():
    """A real sensor_msgs.msg.Image (data is array.array('B')) decodes like the namespace."""
    msg_mod = pytest.importorskip("sensor_msgs.msg")
    rgb = RGB_2x3
    msg = msg_mod.Image(**image_fields_from_rgb(rgb, "bgr8"))
    assert isinstance(msg.data, (array.array, bytes, list))
    np.testing.assert_array_equal(decode_image(msg), rgb)

    depth = msg_mod.Image(**image_fields_from_depth(np.array([[2.5, np.nan]]), "16UC1"))
    out = decode_depth(depth)
    assert out.dtype == np.float32
    assert out[0, 0] == pytest.approx(2.5, abs=1e-6) and np.isnan(out[0, 1])

    comp = msg_mod.CompressedImage(format="png", data=cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
    np.testing.assert_array_equal(decode_compressed(comp), rgb)


# --------------------------------------------------------------------------- inconsistent messages


@pytest.mark.parametrize(
    "fields,field_name",
    [
        (dict(step=8), "step"),  # step < width * 3
        (dict(data=bytes(17)), "data"),  # truncated
        (dict(data=bytes(19)), "data"),  # oversized
        (dict(encoding="rgb9"), "encoding"),  # unknown
        (dict(encoding=""), "encoding"),
        (dict(encoding=None), "encoding"),
        (dict(height=-1), "height"),
        (dict(width=-3), "width"),
        (dict(width=2**40), "width"),  # absurd
        (dict(height=2.0), "height"),  # not an integer
        (dict(step="9"), "step"),
        (dict(data="abc"), "data"),
        (dict(data=None), "data"),
    ],
)
def test_inconsistent_messages_raise_with_field_name(fields, field_name):
    """Bad step / data length / encoding / sizes -> ImageDecodeError naming the field."""
    base = dict(height=2, width=3, encoding="rgb8", is_bigendian=0, step=9, data=bytes(18))
    base.update(fields)
    with pytest.raises(ImageDecodeError, match=field_name):
        decode_image(SimpleNamespace(**base))


def test_missing_field_raises():
    """A message without `step` -> ImageDecodeError naming step."""
    with pytest.raises(ImageDecodeError, match="step"):
        decode_image(SimpleNamespace(height=1, width=1, encoding="mono8", is_bigendian=0, data=b"\0"))


@pytest.mark.parametrize("h,w", [(0, 0), (0, 5), (5, 0)])
def test_empty_image_raises(h, w):
    """0x0, 0xN, Nx0 images -> ImageDecodeError('empty image') for colour and depth."""
    with pytest.raises(ImageDecodeError, match="empty image"):
        decode_image(img("rgb8", h, w, w * 3, b""))
    with pytest.raises(ImageDecodeError, match="empty image"):
        decode_depth(img("16UC1", h, w, w * 2, b""))


def test_image_decode_error_is_value_error():
    """ImageDecodeError subclasses ValueError."""
    assert issubclass(ImageDecodeError, ValueError)


def test_1xn_and_nx1_images():
    """1xN and Nx1 images decode (rgb8, mono8)."""
    out = decode_image(img("rgb8", 1, 4, 12, bytes(range(12))))
    np.testing.assert_array_equal(out.reshape(-1), np.arange(12))
    out = decode_image(img("mono8", 3, 1, 1, bytes([1, 2, 3])))
    np.testing.assert_array_equal(out[:, 0, 1], [1, 2, 3])


# --------------------------------------------------------------------------- compressed colour


def cimg(fmt, data):
    return SimpleNamespace(format=fmt, data=data)


def encode(ext, arr, *params):
    ok, buf = cv2.imencode(ext, arr, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"])
def test_jpeg_red_patch_to_rgb(fmt):
    """JPEG (OpenCV stores BGR): a red 16x16 patch decodes to ~(255, 0, 0) RGB."""
    data = encode(".jpg", solid(16, 16, RED)[..., ::-1], cv2.IMWRITE_JPEG_QUALITY, 100)
    out = decode_compressed(cimg(fmt, data))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out.astype(int), solid(16, 16, RED).astype(int), atol=3)


@pytest.mark.parametrize("fmt", ["png", "rgb8; png compressed bgr8"])
def test_png_colour_exact(fmt):
    """PNG colour: lossless, exact RGB values."""
    out = decode_compressed(cimg(fmt, encode(".png", RGB_2x3[..., ::-1])))
    np.testing.assert_array_equal(out, RGB_2x3)


def test_png_compressed_rgb_order_not_swapped():
    """'rgb8; png compressed rgb8': channels were stored as RGB, so no swap."""
    out = decode_compressed(cimg("rgb8; png compressed rgb8", encode(".png", RGB_2x3)))
    np.testing.assert_array_equal(out, RGB_2x3)


def test_png_mono8_and_bgra_png():
    """mono8 PNG -> grey replicated; BGRA PNG with alpha 0 -> colours kept."""
    grey = np.array([[0, 100, 255]], np.uint8)
    out = decode_compressed(cimg("mono8; png compressed mono8", encode(".png", grey)))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    bgra = np.array([[[0, 0, 255, 0], [255, 0, 0, 255]]], np.uint8)
    out = decode_compressed(cimg("bgra8; png compressed bgra8", encode(".png", bgra)))
    np.testing.assert_array_equal(out, [[RED, BLUE]])


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0" + b"\x00" * 40,  # JPEG header then garbage
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # PNG signature then garbage
        b"hello world",  # not an image
        b"",  # empty
    ],
)
def test_corrupt_compressed_colour_raises(data):
    """Corrupt / non-image / empty data -> ImageDecodeError."""
    with pytest.raises(ImageDecodeError, match="data"):
        decode_compressed(cimg("jpeg", data))


def test_truncated_png_raises():
    """A PNG cut in half -> ImageDecodeError."""
    data = encode(".png", np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    with pytest.raises(ImageDecodeError):
        decode_compressed(cimg("png", data[: len(data) // 2]))


def test_jpeg_header_announcing_huge_size_raises_before_decoding():
    """A JPEG whose SOF0 header claims 65535x65535 px is refused without allocating."""
    data = bytearray(encode(".jpg", solid(8, 8, RED)))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", 65535, 65535)
    with pytest.raises(ImageDecodeError, match="MAX_COMPRESSED_PIXELS"):
        decode_compressed(cimg("jpeg", bytes(data)))


def test_decode_compressed_refuses_depth_formats():
    """decode_compressed on a 16UC1 / compressedDepth message points to decode_compressed_depth."""
    png16 = encode(".png", np.array([[1000]], np.uint16))
    for fmt in ["16UC1; png compressed", "16UC1; compressedDepth png"]:
        with pytest.raises(ImageDecodeError, match="decode_compressed_depth"):
            decode_compressed(cimg(fmt, png16))


# --------------------------------------------------------------------------- compressed depth


DEPTH_MM = np.array([[2500, 0], [1000, 65535]], np.uint16)
DEPTH_M = np.array([[2.5, np.nan], [1.0, 65.535]], np.float32)


@pytest.mark.parametrize("fmt", ["16UC1; png compressed", "16UC1; png compressed mono16", "png"])
def test_16bit_png_depth(fmt):
    """16-bit PNG depth (compressed_image_transport): millimetres -> metres, 0 -> NaN."""
    out = decode_compressed_depth(cimg(fmt, encode(".png", DEPTH_MM)))
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_allclose(out, DEPTH_M, rtol=0, atol=1e-4)


def cdepth_header(fmt_enum=0, a=0.0, b=0.0) -> bytes:
    return struct.pack("<iff", fmt_enum, a, b)


@pytest.mark.parametrize("fmt", ["16UC1; compressedDepth png", "16UC1; compressedDepth", "png"])
def test_compressed_depth_16uc1_with_header(fmt):
    """compressedDepth 16UC1: 12-byte ConfigHeader then a 16-bit PNG of millimetres
    (also found by the PNG signature at byte 12 when the format is just 'png')."""
    data = cdepth_header() + encode(".png", DEPTH_MM)
    np.testing.assert_allclose(decode_compressed_depth(cimg(fmt, data)), DEPTH_M, atol=1e-4)


def test_compressed_depth_32fc1_inverse_depth():
    """compressedDepth 32FC1: PNG holds v = A/d + B (uint16); depth = A / (v - B); v=0 NaN.

    Quantisation as in compressed_depth_image_transport codec.cpp with
    depth_quantization z0 = 100 and depth_max = 10 m.
    """
    z0, dmax = np.float32(100.0), np.float32(10.0)
    a = np.float32(z0 * (z0 + np.float32(1.0)))
    b = np.float32(np.float32(1.0) - a / dmax)
    depth = np.array([[0.5, 1.0], [2.0, 20.0]], np.float32)  # 20 m >= depth_max -> 0
    inv = np.where(depth < dmax, a / depth + b, 0).astype(np.uint16)
    data = cdepth_header(0, float(a), float(b)) + encode(".png", inv)
    out = decode_compressed_depth(cimg("32FC1; compressedDepth png", data))
    assert out.dtype == np.float32
    expected = np.where(inv > 0, a / (inv.astype(np.float32) - b), np.nan)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(out[:, :1], [[0.5], [2.0]], rtol=1e-3)  # near the true depths
    assert np.isnan(out[1, 1])


def test_lossy_depth_refused():
    """JPEG depth and 8-bit PNG depth are lossy -> ImageDecodeError."""
    jpeg = encode(".jpg", np.full((8, 8), 100, np.uint8))
    for fmt in ["16UC1; jpeg compressed mono8", "jpeg", "png"]:
        with pytest.raises(ImageDecodeError, match="(?i)lossy|jpeg"):
            decode_compressed_depth(cimg(fmt, jpeg))
    png8 = encode(".png", np.full((4, 4), 100, np.uint8))
    with pytest.raises(ImageDecodeError, match="8-bit"):
        decode_compressed_depth(cimg("16UC1; png compressed", png8))
    with pytest.raises(ImageDecodeError, match="8-bit"):
        decode_compressed_depth(cimg("16UC1; compressedDepth png", cdepth_header() + png8))


@pytest.mark.parametrize(
    "fmt,data,match",
    [
        ("16UC1; compressedDepth png", b"\0" * 12, "too short"),
        ("16UC1; compressedDepth png", b"\0" * 12 + b"garbage!", "no PNG"),
        ("16UC1; compressedDepth rvl", b"\0" * 40, "RVL"),
        ("rgb8; png compressed bgr8", b"\x89PNG\r\n\x1a\n", "not a depth"),
        ("32FC1; png compressed", b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "32FC1"),
        ("png", b"not a png", "not PNG"),
    ],
)
def test_bad_compressed_depth_raises(fmt, data, match):
    """Short header, missing PNG, RVL, colour encoding, bare 32FC1 PNG, non-PNG -> errors."""
    with pytest.raises(ImageDecodeError, match=match):
        decode_compressed_depth(cimg(fmt, data))


def test_colour_png_as_depth_refused():
    """A 3-channel 16-bit PNG is not depth."""
    data = encode(".png", np.zeros((2, 2, 3), np.uint16))
    with pytest.raises(ImageDecodeError, match="channels"):
        decode_compressed_depth(cimg("png", data))


# --------------------------------------------------------------------------- message builders


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_image_fields_from_rgb_round_trip(encoding):
    """image_fields_from_rgb -> decode_image returns the original RGB array."""
    fields = image_fields_from_rgb(RGB_2x3, encoding)
    assert fields["step"] == 3 * (4 if "a" in encoding[3:] else 3)
    assert isinstance(fields["data"], bytes) and fields["is_bigendian"] == 0
    np.testing.assert_array_equal(decode_image(SimpleNamespace(**fields)), RGB_2x3)


def test_image_fields_from_rgb_mono8():
    """mono8 builder: OpenCV grey of pure red = 76 (BT.601 0.299 * 255)."""
    fields = image_fields_from_rgb(solid(1, 2, RED), "mono8")
    assert fields["step"] == 2 and fields["data"] == bytes([76, 76])


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
@pytest.mark.parametrize("big", [False, True])
def test_image_fields_from_depth_round_trip(encoding, big):
    """image_fields_from_depth -> decode_depth: metres back (1 mm for 16UC1), invalid NaN."""
    depth = np.array([[0.5, np.nan, 0.0], [1.234, -1.0, 2.5]])
    fields = image_fields_from_depth(depth, encoding, is_bigendian=big)
    out = decode_depth(SimpleNamespace(**fields))
    expected = np.array([[0.5, np.nan, np.nan], [1.234, np.nan, 2.5]], np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-6 if encoding == "32FC1" else 5e-4)


# --------------------------------------------------------------------------- YUV (image_encodings.hpp)
RNG = np.random.default_rng(12)


@pytest.mark.parametrize("encoding, alias, code", [
    ("uyvy", "yuv422", cv2.COLOR_YUV2RGB_UYVY),
    ("yuyv", "yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2),
])
@pytest.mark.parametrize("pad", [0, 6])
def test_packed_yuv422_matches_opencv_with_padded_rows(encoding, alias, code, pad):
    """uyvy / yuyv (and their deprecated names) = cv2.cvtColor of the packed (H, W, 2) bytes,
    also with step > 2 * width (row padding skipped)."""
    h, w = 4, 6
    packed = RNG.integers(0, 256, (h, w, 2), dtype=np.uint8)
    expected = cv2.cvtColor(packed, code)
    for name in (encoding, alias):
        out = decode_image(img(name, h, w, 2 * w + pad, pad_rows(packed.reshape(h, -1), pad)))
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("encoding, code", [("nv12", cv2.COLOR_YUV2RGB_NV12), ("nv21", cv2.COLOR_YUV2RGB_NV21)])
@pytest.mark.parametrize("pad", [0, 5])
def test_nv12_nv21_match_opencv_with_padded_rows(encoding, code, pad):
    """nv12 / nv21: Y plane (H rows) + interleaved chroma (H / 2 rows), each row padded to step;
    equals cv2.cvtColor of the unpadded (3 H / 2, W) buffer."""
    h, w = 6, 8
    planes = RNG.integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    out = decode_image(img(encoding, h, w, w + pad, pad_rows(planes, pad)))
    np.testing.assert_array_equal(out, cv2.cvtColor(planes, code))


@pytest.mark.parametrize("pad", [0, 3])
def test_nv24_full_resolution_chroma(pad):
    """nv24: Y plane + full-resolution UV plane (rows of 2 W bytes padded to 2 * step).  With the
    chroma constant over 2x2 blocks it equals cv2.cvtColor of the NV12 image with that chroma;
    a black / white / BT.601 red pixel check pins the per-pixel chroma (not subsampled)."""
    h, w = 4, 6
    y = RNG.integers(16, 236, (h, w), dtype=np.uint8)
    uv = RNG.integers(16, 241, (h // 2, w // 2, 2), dtype=np.uint8)
    nv12 = np.concatenate([y, uv.reshape(h // 2, w)], axis=0)
    full_uv = np.repeat(np.repeat(uv, 2, axis=0), 2, axis=1).reshape(h, 2 * w)
    data = pad_rows(y, pad) + pad_rows(full_uv, 2 * pad)
    np.testing.assert_array_equal(decode_image(img("nv24", h, w, w + pad, data)),
                                  cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12))
    # one row of 3 pixels: black (16, 128, 128), white (235, 128, 128), red (81, 90, 240)
    out = decode_image(img("nv24", 1, 3, 3, bytes([16, 235, 81, 128, 128, 128, 128, 90, 240])))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2, 0] >= 250 and out[0, 2, 1] <= 5 and out[0, 2, 2] <= 5


@pytest.mark.parametrize("encoding", ["uyvy", "yuyv", "nv12", "nv21"])
def test_yuv_odd_width_rejected(encoding):
    """Chroma shared by two pixels: an odd width -> ImageDecodeError naming the width."""
    bpp = 2 if encoding in ("uyvy", "yuyv") else 1
    rows = 2 if bpp == 2 else 3
    with pytest.raises(ImageDecodeError, match="width: .*even width"):
        decode_image(img(encoding, 2, 3, 3 * bpp, bytes(3 * bpp * rows)))


def test_nv12_odd_height_and_wrong_length_rejected():
    """nv12: odd height (no whole chroma row) and data != step * H * 3 / 2 -> clear errors."""
    with pytest.raises(ImageDecodeError, match="height: .*even height"):
        decode_image(img("nv12", 3, 4, 4, bytes(4 * 3 + 8)))
    with pytest.raises(ImageDecodeError, match=r"data: length 32 != .* = 24"):
        decode_image(img("nv12", 4, 4, 4, bytes(32)))
    with pytest.raises(ImageDecodeError, match=r"data: length 24 != .* = 36"):
        decode_image(img("nv24", 3, 4, 4, bytes(24)))


def test_every_colour_encoding_of_image_encodings_hpp_is_accepted():
    """The colour / mono / Bayer / YUV names of sensor_msgs image_encodings.hpp are all decodable."""
    hpp = {"rgb8", "rgba8", "rgb16", "rgba16", "bgr8", "bgra8", "bgr16", "bgra16", "mono8", "mono16",
           "uyvy", "yuv422", "yuyv", "yuv422_yuy2", "nv12", "nv21", "nv24"}
    hpp |= {f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)}
    assert hpp <= COLOR_ENCODINGS
