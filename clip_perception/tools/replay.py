"""Replay recorded camera data: rosbag2 files, image folders and RGB-D folders.

Two halves:

* ROS-free loaders (no rclpy needed): :func:`iter_bag` (rosbag2 ``.db3`` /
  ``.mcap`` via the pure-Python ``rosbags`` library: ``rosbags.rosbag2.Reader``
  and ``rosbags.typesys`` CDR deserialisation), :func:`iter_bag_frames`,
  :func:`load_rgbd_folder`, :func:`load_image_folder`, the message-to-array
  helpers, and :func:`write_test_bag` (``rosbags.rosbag2.Writer``) for tests.
* :class:`ReplayPublisher` (rclpy node) and :func:`main` (console entry point
  ``clip_perception_replay``) that publish them, with the original stamps or
  fresh ones at a chosen rate.

Units: RGB (H, W, 3) uint8; depth (H, W) float32 metres, NaN = invalid
(REP 118: 16UC1 depth is millimetres, 32FC1 is metres); K (3, 3) float64.

RGB-D folder layouts understood by :func:`load_rgbd_folder` (checked against
``shared/data/real/*/PROVENANCE.md``):

* ``NNNNNN-color.png`` + ``NNNNNN-depth.png`` (uint16 mm, 0 = invalid), with
  intrinsics in ``camera_params.json`` (``fx``, ``fy``, ``x_offset`` = cx,
  ``y_offset`` = cy; UnseenObjectClustering demo) or ``meta.yml``
  (``INTRINSICS``: row-major 3x3; PoseCNN demo).  ``_color`` / ``_depth`` and
  ``.npy`` depth (float = metres, integer = millimetres) work too.
* sub-folders ``image_color/`` (or ``rgb/``, ``color/``) + ``disparity/`` (or
  ``depth/``) with the same file names: the OSD sample in the UOAIS repo,
  whose ``disparity`` PNGs are uint16 depth in millimetres despite the name
  (UOAIS ``tools/run_on_OSD.py`` treats them as mm); no intrinsics (K None).
* a folder of images only: frames with ``depth_m = None``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import cv2
import numpy as np

__all__ = [
    "RgbdFrame",
    "BagMessage",
    "COLOR_TOPIC",
    "DEPTH_TOPIC",
    "INFO_TOPIC",
    "parse_remaps",
    "iter_bag",
    "iter_bag_frames",
    "image_to_rgb",
    "image_to_depth_m",
    "camera_info_to_K",
    "load_image_folder",
    "load_rgbd_folder",
    "load_intrinsics",
    "is_bag",
    "write_test_bag",
    "ReplayPublisher",
    "main",
]

COLOR_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")
#: Default metres per unit of integer depth images (millimetres; REP 118).
DEFAULT_DEPTH_SCALE = 0.001


# ====================================================================== data
@dataclass
class RgbdFrame:
    """One colour frame with optional registered depth and intrinsics.

    Attributes:
        rgb: (H, W, 3) uint8 RGB.
        depth_m: (H, W) float32 metres, NaN = invalid, or ``None``.
        K: (3, 3) float64 intrinsics, or ``None`` when unknown.
        name: file stem or ``"<topic>@<stamp_ns>"``.
        stamp_ns: header stamp (ns) for bag frames, else ``None``.
        frame_id: header frame id for bag frames, else ``None``.
    """

    rgb: np.ndarray
    depth_m: Optional[np.ndarray]
    K: Optional[np.ndarray]
    name: str
    stamp_ns: Optional[int] = None
    frame_id: Optional[str] = None


@dataclass
class BagMessage:
    """One deserialised rosbag2 message.

    Attributes:
        topic: topic after remapping.
        source_topic: topic as recorded.
        msgtype: e.g. ``"sensor_msgs/msg/Image"``.
        stamp_ns: ``header.stamp`` in ns when the message has a header,
            else the log (receive) time.
        log_time_ns: time the recorder logged it (ns).
        msg: the ``rosbags`` message object (dataclass; arrays are NumPy).
    """

    topic: str
    source_topic: str
    msgtype: str
    stamp_ns: int
    log_time_ns: int
    msg: object


def parse_remaps(items: Optional[Iterable[str]]) -> dict:
    """``["old:=new", ...]`` -> ``{"old": "new"}``.

    Raises:
        ValueError: an item without ``:=`` or with an empty side.
    """
    out = {}
    for item in items or ():
        old, sep, new = str(item).partition(":=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"bad remap {item!r}; expected old:=new")
        out[old.strip()] = new.strip()
    return out


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# ============================================================= bag reading
def is_bag(path: Union[str, Path]) -> bool:
    """True for a rosbag2 folder (``metadata.yaml``) or a ``.db3`` / ``.mcap`` file."""
    p = Path(path)
    if p.is_dir():
        return (p / "metadata.yaml").exists()
    return p.suffix in (".db3", ".mcap")


def _typestore_for(connections):
    """A rosbags typestore with the bag's own message definitions registered
    for any type the built-in (latest distro) store lacks."""
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    store = get_typestore(Stores.LATEST)
    for c in connections:
        if c.msgtype in store.fielddefs or c.msgdef is None or not c.msgdef.data:
            continue
        try:
            fmt = getattr(c.msgdef.format, "name", str(c.msgdef.format)).upper()
            types = get_types_from_idl(c.msgdef.data) if "IDL" in fmt else get_types_from_msg(c.msgdef.data, c.msgtype)
            store.register(types)
        except Exception:  # unknown / broken definition: the topic is skipped when read
            pass
    return store


def iter_bag(
    path: Union[str, Path],
    topics: Optional[Iterable[str]] = None,
    remap: Optional[dict] = None,
) -> Iterator[BagMessage]:
    """Yield the messages of a rosbag2 bag in log-time order.

    Args:
        path: bag folder (with ``metadata.yaml``) or a single ``.db3`` /
            ``.mcap`` file.
        topics: recorded topic names to read (before remapping); ``None`` = all.
        remap: ``{recorded_topic: new_topic}``; see :func:`parse_remaps`.

    Raises:
        FileNotFoundError: no such path.  ``rosbags`` errors for unreadable bags.
    """
    from rosbags.rosbag2 import Reader

    remap = dict(remap or {})
    wanted = None if topics is None else set(topics)
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        store = _typestore_for(conns)
        conns = [c for c in conns if c.msgtype in store.fielddefs]
        for conn, log_ns, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            header = getattr(msg, "header", None)
            stamp = _stamp_ns(header.stamp) if header is not None and hasattr(header, "stamp") else int(log_ns)
            yield BagMessage(
                topic=remap.get(conn.topic, conn.topic),
                source_topic=conn.topic,
                msgtype=conn.msgtype,
                stamp_ns=stamp,
                log_time_ns=int(log_ns),
                msg=msg,
            )


# ===================================================== message -> arrays
def _rows(msg, bytes_per_px: int, dtype: np.dtype) -> np.ndarray:
    """(H, W * channels) view of an Image's data honouring ``step`` padding."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.tobytes(), dtype=np.uint8)
    if step < w * bytes_per_px or buf.size < step * h:
        raise ValueError(f"image data too short: {buf.size} bytes for {h}x{w}, step {step}")
    rows = buf[: step * h].reshape(h, step)[:, : w * bytes_per_px]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    return np.ascontiguousarray(rows).view(dt).astype(np.dtype(dtype).newbyteorder("="))


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rosbags or rclpy object) -> (H, W, 3) uint8 RGB.

    Encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 / 16UC1 (scaled to 8 bit).

    Raises:
        ValueError: unsupported encoding or short data.
    """
    enc = str(msg.encoding).lower()
    h, w = int(msg.height), int(msg.width)
    if enc in ("rgb8", "bgr8"):
        img = _rows(msg, 3, np.uint8).reshape(h, w, 3)
        return img[..., ::-1].copy() if enc == "bgr8" else img
    if enc in ("rgba8", "bgra8"):
        img = _rows(msg, 4, np.uint8).reshape(h, w, 4)[..., :3]
        return np.ascontiguousarray(img[..., ::-1] if enc == "bgra8" else img)
    if enc in ("mono8", "8uc1"):
        g = _rows(msg, 1, np.uint8).reshape(h, w)
        return np.repeat(g[..., None], 3, axis=2)
    if enc in ("mono16", "16uc1"):
        g = (_rows(msg, 2, np.uint16).reshape(h, w) >> 8).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    raise ValueError(f"unsupported colour encoding {msg.encoding!r}")


def image_to_depth_m(msg, depth_scale: Optional[float] = None) -> np.ndarray:
    """sensor_msgs/Image depth -> (H, W) float32 metres, NaN = invalid.

    ``16UC1`` / ``mono16``: millimetres (REP 118) unless ``depth_scale``
    (metres per unit) is given; 0 = invalid.  ``32FC1``: metres; 0, negative
    and non-finite values = invalid.

    Raises:
        ValueError: unsupported encoding or short data.
    """
    enc = str(msg.encoding).lower()
    h, w = int(msg.height), int(msg.width)
    if enc in ("16uc1", "mono16"):
        raw = _rows(msg, 2, np.uint16).reshape(h, w)
        d = raw.astype(np.float32) * np.float32(depth_scale or DEFAULT_DEPTH_SCALE)
        d[raw == 0] = np.nan
        return d
    if enc == "32fc1":
        d = _rows(msg, 4, np.float32).reshape(h, w).astype(np.float32)
        if depth_scale:
            d = d * np.float32(depth_scale)
        d[~np.isfinite(d) | (d <= 0)] = np.nan
        return d
    raise ValueError(f"unsupported depth encoding {msg.encoding!r}")


def camera_info_to_K(msg) -> Optional[np.ndarray]:
    """sensor_msgs/CameraInfo -> (3, 3) float64 K, or ``None`` when K is all
    zero or not finite (an uncalibrated camera)."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        return None
    return K


def iter_bag_frames(
    path: Union[str, Path],
    color_topic: str = COLOR_TOPIC,
    depth_topic: Optional[str] = DEPTH_TOPIC,
    info_topic: Optional[str] = INFO_TOPIC,
    remap: Optional[dict] = None,
    depth_scale: Optional[float] = None,
    max_pending: int = 30,
) -> Iterator[RgbdFrame]:
    """Yield :class:`RgbdFrame` s from a bag: each colour image with the depth
    image of the same ``header.stamp`` and the camera_info K of that stamp
    (else the latest valid K seen).

    Topic names are the names *after* ``remap``.  A colour image is held back
    until its depth (when the bag has the depth topic) and a K (when the bag
    has the info topic) are known, or until a newer frame is complete or
    ``max_pending`` frames wait; then it is yielded with ``depth_m = None``
    (unmatched depth) and the K known so far.  Frames come out in stamp order.

    Raises:
        FileNotFoundError: no such bag.
    """
    from rosbags.rosbag2 import Reader

    remap = dict(remap or {})
    with Reader(Path(path)) as reader:
        present = {remap.get(c.topic, c.topic) for c in reader.connections}
    need_depth = bool(depth_topic) and depth_topic in present
    need_info = bool(info_topic) and info_topic in present
    wanted = {t for t in (color_topic, depth_topic, info_topic) if t}
    pending: dict[int, dict] = {}
    K_last: Optional[np.ndarray] = None

    def complete(e: dict) -> bool:
        return (
            "color" in e
            and (not need_depth or "depth" in e)
            and (not need_info or e.get("K") is not None or K_last is not None)
        )

    def make(stamp: int, e: dict) -> RgbdFrame:
        m = e["color"]
        K = e.get("K") if e.get("K") is not None else K_last
        return RgbdFrame(
            rgb=image_to_rgb(m.msg), depth_m=e.get("depth"), K=None if K is None else K.copy(),
            name=f"{m.topic}@{stamp}", stamp_ns=stamp, frame_id=str(m.msg.header.frame_id),
        )

    for bm in iter_bag(path, remap=remap):
        if bm.topic not in wanted:
            continue
        e = pending.setdefault(bm.stamp_ns, {})
        if bm.topic == color_topic:
            e["color"] = bm
        elif bm.topic == depth_topic:
            e["depth"] = image_to_depth_m(bm.msg, depth_scale)
        elif bm.topic == info_topic:
            e["K"] = camera_info_to_K(bm.msg)
            if e["K"] is not None:
                K_last = e["K"]
        ready = [s for s, v in pending.items() if complete(v)]
        limit = max(ready) if ready else None
        if len(pending) > max_pending:
            limit = max(limit or 0, sorted(pending)[len(pending) - max_pending - 1])
        if limit is None:
            continue
        for s in sorted(pending):
            if s > limit:
                break
            v = pending.pop(s)
            if "color" in v:  # depth / info without colour are dropped
                yield make(s, v)
    for s in sorted(pending):
        if "color" in pending[s]:
            yield make(s, pending[s])


# =================================================================== folders
def _imread_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _list_images(folder: Path) -> list:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS), key=_natural_key)


def load_image_folder(path: Union[str, Path]) -> list:
    """Load every image (png/jpg/...) in a folder, sorted by name (numbers
    compared as numbers), as :class:`RgbdFrame` with ``depth_m = K = None``.

    Raises:
        FileNotFoundError: not a folder or no images in it.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    files = _list_images(folder)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return [RgbdFrame(rgb=_imread_rgb(f), depth_m=None, K=None, name=f.stem) for f in files]


def load_intrinsics(folder: Union[str, Path]) -> tuple[Optional[np.ndarray], Optional[float]]:
    """Find intrinsics (and a depth scale, metres per unit) in a folder.

    Files tried: ``camera_params.json`` / ``intrinsics.json`` (keys ``fx``,
    ``fy``, ``cx``/``x_offset``, ``cy``/``y_offset``, or ``K`` 9 numbers;
    optional ``depth_scale`` metres per unit or ``factor_depth`` units per
    metre), ``meta.yml`` / ``meta.yaml`` (``INTRINSICS`` or ``K``, 9 numbers
    row-major; optional ``factor_depth``), ``camera_info.yaml`` (ROS
    ``camera_calibration`` format, ``camera_matrix.data``).

    Returns:
        (K (3, 3) float64 or None, depth_scale or None).

    Raises:
        ValueError: a file is present but malformed.
    """
    import yaml

    folder = Path(folder)

    def from_dict(d: dict) -> tuple[Optional[np.ndarray], Optional[float]]:
        K = None
        for key in ("K", "k", "INTRINSICS", "intrinsics", "intrinsic_matrix", "camera_matrix"):
            if key in d:
                v = d[key]
                if isinstance(v, dict):
                    v = v.get("data")
                K = np.asarray(v, dtype=np.float64).reshape(3, 3)
                break
        if K is None and "fx" in d:
            cx = d.get("cx", d.get("x_offset"))
            cy = d.get("cy", d.get("y_offset"))
            if cx is None or cy is None:
                raise ValueError(f"intrinsics in {folder} have fx but no cx/cy")
            K = np.array([[float(d["fx"]), 0.0, float(cx)], [0.0, float(d.get("fy", d["fx"])), float(cy)], [0.0, 0.0, 1.0]])
        scale = None
        if "depth_scale" in d:
            scale = float(d["depth_scale"])
        elif "factor_depth" in d:
            scale = 1.0 / float(np.asarray(d["factor_depth"]).ravel()[0])
        return K, scale

    for name in ("camera_params.json", "intrinsics.json", "camera_info.json"):
        f = folder / name
        if f.exists():
            return from_dict(json.loads(f.read_text()))
    for name in ("meta.yml", "meta.yaml", "camera_info.yaml", "camera_info.yml", "intrinsics.yaml"):
        f = folder / name
        if f.exists():
            d = yaml.safe_load(f.read_text()) or {}
            if not isinstance(d, dict):
                raise ValueError(f"{f} is not a YAML mapping")
            return from_dict(d)
    return None, None


_PAIR_RE = re.compile(r"^(?P<stem>.*?)[-_](?P<kind>color|colour|rgb|depth)$", re.IGNORECASE)
_COLOR_DIRS = ("image_color", "rgb", "color", "colour", "images", "image")
_DEPTH_DIRS = ("depth", "disparity", "aligned_depth", "depth_registered")


def _read_depth(path: Path, scale: float) -> np.ndarray:
    """Depth file -> float32 metres, NaN invalid.  Integer data (PNG/NPY) is
    multiplied by ``scale`` (metres per unit); float NPY is taken as metres."""
    if path.suffix.lower() == ".npy":
        raw = np.load(path, allow_pickle=False)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise ValueError(f"cannot read depth image {path}")
    if raw.ndim == 3:
        if raw.shape[2] != 1 and not np.all(raw == raw[..., :1]):
            raise ValueError(f"{path} has {raw.shape[2]} differing channels: not a depth image")
        raw = raw[..., 0]
    if np.issubdtype(raw.dtype, np.floating):
        d = raw.astype(np.float32)
    else:
        if raw.dtype == np.uint8:
            raise ValueError(f"{path} is 8-bit: a depth visualisation, not metric depth")
        d = raw.astype(np.float32) * np.float32(scale)
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d


def load_rgbd_folder(
    path: Union[str, Path],
    depth_scale: Optional[float] = None,
    K: Optional[np.ndarray] = None,
) -> list:
    """Load an RGB-D folder (layouts in the module docstring) as :class:`RgbdFrame` s.

    Args:
        path: the folder.
        depth_scale: metres per unit of integer depth; default from the
            intrinsics file, else 0.001 (millimetres).
        K: (3, 3) intrinsics overriding any file in the folder.

    Returns:
        frames sorted by name; ``depth_m`` None when the folder has no depth,
        ``K`` None when no intrinsics are known.

    Raises:
        FileNotFoundError: not a folder / no images.
        ValueError: depth and colour sizes differ, unreadable files.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    file_K, file_scale = load_intrinsics(folder)
    K_use = np.asarray(K, dtype=np.float64).reshape(3, 3) if K is not None else file_K
    scale = float(depth_scale or file_scale or DEFAULT_DEPTH_SCALE)

    pairs: list[tuple[str, Path, Optional[Path]]] = []
    # layout 1: <stem>-color.png + <stem>-depth.png|npy in one folder
    colors, depths = {}, {}
    for f in sorted(folder.iterdir(), key=_natural_key):
        if not f.is_file():
            continue
        m = _PAIR_RE.match(f.stem)
        if not m:
            continue
        kind = m.group("kind").lower()
        if kind == "depth" and f.suffix.lower() in (".png", ".npy", ".tif", ".tiff", ".exr"):
            depths[m.group("stem")] = f
        elif kind != "depth" and f.suffix.lower() in IMAGE_EXTS:
            colors[m.group("stem")] = f
    if colors:
        pairs = [(s, colors[s], depths.get(s)) for s in sorted(colors, key=lambda s: _natural_key(Path(s)))]
    else:
        # layout 2: colour and depth sub-folders with matching names
        cdir = next((folder / d for d in _COLOR_DIRS if (folder / d).is_dir()), None)
        ddir = next((folder / d for d in _DEPTH_DIRS if (folder / d).is_dir()), None)
        if cdir is not None:
            if K is None and file_K is None:
                K_use, sub_scale = load_intrinsics(cdir)
                scale = float(depth_scale or sub_scale or file_scale or DEFAULT_DEPTH_SCALE)
            for f in _list_images(cdir):
                dfile = None
                if ddir is not None:
                    for ext in (f.suffix, ".png", ".npy", ".tif", ".tiff"):
                        if (ddir / (f.stem + ext)).exists():
                            dfile = ddir / (f.stem + ext)
                            break
                pairs.append((f.stem, f, dfile))
    if not pairs:
        frames = load_image_folder(folder)
        for fr in frames:
            fr.K = None if K_use is None else K_use.copy()
        return frames

    frames = []
    for stem, cfile, dfile in pairs:
        rgb = _imread_rgb(cfile)
        depth = None
        if dfile is not None:
            depth = _read_depth(dfile, scale)
            if depth.shape != rgb.shape[:2]:
                raise ValueError(f"{dfile.name} is {depth.shape}, colour {cfile.name} is {rgb.shape[:2]}: not registered")
        frames.append(RgbdFrame(rgb=rgb, depth_m=depth, K=None if K_use is None else K_use.copy(), name=stem))
    return frames


# ============================================================ bag writing
def write_test_bag(
    path: Union[str, Path],
    frames: Sequence,
    K: np.ndarray,
    fmt: str = "sqlite3",
    stamps_ns: Optional[Sequence[int]] = None,
    frame_id: str = "camera_color_optical_frame",
    color_topic: str = COLOR_TOPIC,
    depth_topic: str = DEPTH_TOPIC,
    info_topic: str = INFO_TOPIC,
) -> Path:
    """Write a small rosbag2 (rosbag2 metadata version 8) for tests and demos.

    Per frame: ``rgb8`` Image on ``color_topic``, ``16UC1`` depth in
    millimetres (NaN -> 0) on ``depth_topic`` when the frame has depth, and a
    CameraInfo (K, P = [K | 0], plumb_bob, D = 0) on ``info_topic``; all with
    the same header stamp (log time = stamp).

    Args:
        path: bag folder to create (must not exist).
        frames: :class:`RgbdFrame` s or ``(rgb, depth_m_or_None)`` tuples.
        K: (3, 3) intrinsics.
        fmt: ``"sqlite3"`` (``.db3``) or ``"mcap"``.
        stamps_ns: per-frame stamps; default 1_700_000_000 s + i * 0.1 s.

    Returns:
        the bag folder path.

    Raises:
        ValueError: unknown fmt or bad frame arrays; FileExistsError (rosbags)
        if ``path`` exists.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    plugins = {"sqlite3": StoragePlugin.SQLITE3, "db3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if fmt not in plugins:
        raise ValueError(f"fmt must be 'sqlite3' or 'mcap', got {fmt!r}")
    store = get_typestore(Stores.LATEST)
    T = store.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Image, CameraInfo, Roi = T["sensor_msgs/msg/Image"], T["sensor_msgs/msg/CameraInfo"], T["sensor_msgs/msg/RegionOfInterest"]
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    path = Path(path)
    if stamps_ns is None:
        stamps_ns = [1_700_000_000 * 1_000_000_000 + i * 100_000_000 for i in range(len(frames))]
    if len(stamps_ns) != len(frames):
        raise ValueError("stamps_ns must have one stamp per frame")

    with Writer(path, version=8, storage_plugin=plugins[fmt]) as writer:
        c_rgb = writer.add_connection(color_topic, Image.__msgtype__, typestore=store)
        c_dep = None
        c_inf = writer.add_connection(info_topic, CameraInfo.__msgtype__, typestore=store)
        for fr, ns in zip(frames, stamps_ns):
            rgb, depth = (fr.rgb, fr.depth_m) if isinstance(fr, RgbdFrame) else (fr[0], fr[1])
            rgb = np.asarray(rgb)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
            h, w = rgb.shape[:2]
            ns = int(ns)
            hdr = Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame_id)
            img = Image(header=hdr, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                        data=np.ascontiguousarray(rgb).reshape(-1).copy())
            writer.write(c_rgb, ns, store.serialize_cdr(img, Image.__msgtype__))
            if depth is not None:
                if c_dep is None:
                    c_dep = writer.add_connection(depth_topic, Image.__msgtype__, typestore=store)
                d = np.asarray(depth, dtype=np.float64)
                if d.shape != (h, w):
                    raise ValueError(f"depth {d.shape} does not match rgb {(h, w)}")
                mm = np.where(np.isfinite(d), np.round(d * 1000.0), 0.0)
                mm[(mm < 0) | (mm > 65535)] = 0
                dimg = Image(header=hdr, height=h, width=w, encoding="16UC1", is_bigendian=0, step=w * 2,
                             data=np.frombuffer(mm.astype("<u2").tobytes(), dtype=np.uint8).copy())
                writer.write(c_dep, ns, store.serialize_cdr(dimg, Image.__msgtype__))
            info = CameraInfo(header=hdr, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
                              k=K.ravel().copy(), r=np.eye(3).ravel(), p=P.ravel().copy(), binning_x=0, binning_y=0,
                              roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            writer.write(c_inf, ns, store.serialize_cdr(info, CameraInfo.__msgtype__))
    return path


# ====================================================== rosbags -> rclpy
def _ros_class(msgtype: str):
    """rclpy message class for ``"pkg/msg/Name"`` (or ``"pkg/Name"``)."""
    parts = msgtype.split("/")
    return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[-1])


_SEQ_MSG_RE = re.compile(r"^sequence<([\w]+)/([\w]+)(?:, \d+)?>$|^([\w]+)/([\w]+)\[\d*\]$")


def to_rclpy(obj, msgtype: Optional[str] = None):
    """Convert a ``rosbags`` message dataclass to the rclpy message of the
    same type (field by field; NumPy arrays become ``array.array`` / NumPy as
    the generated Python class expects).

    Raises:
        ImportError: the message package is not installed for rclpy.
    """
    import array as _array

    cls = _ros_class(msgtype or obj.__msgtype__)
    out = cls()
    for fname, ftype in out.get_fields_and_field_types().items():
        val = getattr(obj, fname)
        cur = getattr(out, fname)
        if hasattr(val, "__msgtype__"):
            setattr(out, fname, to_rclpy(val))
        elif isinstance(val, list) and val and hasattr(val[0], "__msgtype__"):
            setattr(out, fname, [to_rclpy(v) for v in val])
        elif isinstance(val, np.ndarray):
            if isinstance(cur, _array.array):
                setattr(out, fname, _array.array(cur.typecode, np.ascontiguousarray(val, dtype=np.dtype(cur.typecode)).tobytes()))
            elif isinstance(cur, np.ndarray):
                setattr(out, fname, np.asarray(val, dtype=cur.dtype).reshape(cur.shape))
            else:
                setattr(out, fname, val.tolist())
        elif isinstance(val, np.generic):
            setattr(out, fname, val.item())
        else:
            setattr(out, fname, val)
    return out


# ================================================================ publisher
try:  # the publisher half needs rclpy; the loaders above do not
    from rclpy.node import Node

    from .executables import run_single_threaded

    _HAVE_RCLPY = True
except ImportError:  # pragma: no cover - exercised only without ROS 2
    Node = object
    _HAVE_RCLPY = False


class _Group:
    """Messages published together (one camera frame): list of (topic, rclpy msg)."""

    __slots__ = ("stamp_ns", "log_time_ns", "items")

    def __init__(self, stamp_ns: Optional[int], log_time_ns: Optional[int], items: list) -> None:
        self.stamp_ns = stamp_ns
        self.log_time_ns = log_time_ns
        self.items = items


def _bag_groups(path, topics, remap) -> Iterator[_Group]:
    """Consecutive bag messages with the same header stamp form one group."""
    group = None
    for bm in iter_bag(path, topics=topics, remap=remap):
        try:
            msg = to_rclpy(bm.msg, bm.msgtype)
        except (ImportError, AttributeError):
            continue  # type not available to rclpy: skip
        if group is not None and group.stamp_ns == bm.stamp_ns:
            group.items.append((bm.topic, msg))
            continue
        if group is not None:
            yield group
        group = _Group(bm.stamp_ns, bm.log_time_ns, [(bm.topic, msg)])
    if group is not None:
        yield group


def _folder_groups(frames: list, remap: dict, frame_id: str) -> Iterator[_Group]:
    from std_msgs.msg import Header

    from ..sim.camera_node import make_camera_info_msg, make_depth_msg, make_image_msg

    def t(name):
        return remap.get(name, name)

    for fr in frames:
        items = [(t("image"), make_image_msg(fr.rgb, Header(frame_id=frame_id)))]
        if fr.depth_m is not None:
            items.append((t("depth"), make_depth_msg(fr.depth_m, Header(frame_id=frame_id))))
        if fr.K is not None:
            h, w = fr.rgb.shape[:2]
            items.append((t("camera_info"), make_camera_info_msg(fr.K, w, h, Header(frame_id=frame_id))))
        yield _Group(None, None, items)


class ReplayPublisher(Node):
    """rclpy node that replays a bag, an RGB-D folder or an image folder.

    Bags: every recorded topic (optionally filtered by ``topics``) is
    published under its remapped name with its recorded message type;
    messages sharing a header stamp are published together as one group.
    Folders: ``image`` (rgb8), ``depth`` (32FC1 metres, when present) and
    ``camera_info`` (when K is known) per frame, stamped with the node clock.

    Args:
        path: bag folder / ``.db3`` / ``.mcap``, or a folder of images.
        rate: groups (frames) per second; ``None`` = recorded timing for
            bags, 1 Hz for folders.
        loop: start again at the end.
        fresh_stamps: replace bag stamps by the node clock's now() (all
            messages of a group get the same new stamp).  Folders always
            get fresh stamps.
        remap: ``{old_topic: new_topic}`` (see :func:`parse_remaps`).
        frame_id: override ``header.frame_id`` (folders default to
            ``camera_color_optical_frame``).
        topics: recorded bag topics to replay (``None`` = all).
        qos: ``reliable`` (default; keep last 10) or ``sensor_data``.
        publish_clock: also publish ``/clock`` with each group's stamp.
        autostart: start the timer; tests pass False and call :meth:`step`.
        depth_scale: metres per unit for integer folder depth.
        **node_kwargs: passed to ``rclpy.node.Node``.

    Raises:
        FileNotFoundError: path missing; ValueError: bad rate / qos.
    """

    def __init__(
        self,
        path: Union[str, Path],
        *,
        rate: Optional[float] = None,
        loop: bool = False,
        fresh_stamps: bool = False,
        remap: Optional[dict] = None,
        frame_id: Optional[str] = None,
        topics: Optional[Sequence[str]] = None,
        qos: str = "reliable",
        publish_clock: bool = False,
        autostart: bool = True,
        depth_scale: Optional[float] = None,
        node_name: str = "clip_perception_replay",
        **node_kwargs,
    ) -> None:
        if not _HAVE_RCLPY:  # pragma: no cover
            raise ImportError("ReplayPublisher needs rclpy (ROS 2)")
        super().__init__(node_name, **node_kwargs)
        from rosgraph_msgs.msg import Clock as ClockMsg
        from rclpy.clock import Clock, ClockType

        from ..sim.camera_node import CLOCK_QOS, qos_from_name

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such bag or folder: {self.path}")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.is_bag = is_bag(self.path)
        self.rate = rate if (rate is not None or self.is_bag) else 1.0
        self.loop = bool(loop)
        self.fresh_stamps = bool(fresh_stamps) or not self.is_bag
        self.remap = dict(remap or {})
        self.frame_id = frame_id if frame_id else (None if self.is_bag else "camera_color_optical_frame")
        self.topics = list(topics) if topics else None
        self._qos = qos_from_name(qos)
        self._pubs: dict = {}
        self._clock_pub = self.create_publisher(ClockMsg, "/clock", CLOCK_QOS) if publish_clock else None
        self._ClockMsg = ClockMsg
        self._frames = None if self.is_bag else load_rgbd_folder(self.path, depth_scale=depth_scale)
        self._create_publishers()
        self._iter = self._groups()
        self._pending: Optional[_Group] = None
        self._t0_wall = None
        self._t0_bag = None
        self.published_groups = 0
        self.done = False
        self._timer = None
        if autostart:
            period = 1.0 / self.rate if self.rate else 0.005
            self._timer = self.create_timer(period, self._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME))
        kind = "bag" if self.is_bag else f"folder ({len(self._frames)} frames)"
        self.get_logger().info(f"replaying {kind} {self.path} at {'recorded timing' if not self.rate else f'{self.rate:g} Hz'}")

    def _create_publishers(self) -> None:
        """Create every output publisher up front so that subscribers can match
        before the first message (bags: from the recorded connections)."""
        if self.is_bag:
            from rosbags.rosbag2 import Reader

            with Reader(self.path) as reader:
                for c in reader.connections:
                    if self.topics is not None and c.topic not in self.topics:
                        continue
                    try:
                        cls = _ros_class(c.msgtype)
                    except (ImportError, AttributeError):
                        self.get_logger().warning(f"skipping {c.topic}: {c.msgtype} not available to rclpy")
                        continue
                    topic = self.remap.get(c.topic, c.topic)
                    if topic not in self._pubs:
                        self._pubs[topic] = self.create_publisher(cls, topic, self._qos)
            return
        from sensor_msgs.msg import CameraInfo, Image

        def t(name):
            return self.remap.get(name, name)

        self._pubs[t("image")] = self.create_publisher(Image, t("image"), self._qos)
        if any(f.depth_m is not None for f in self._frames):
            self._pubs[t("depth")] = self.create_publisher(Image, t("depth"), self._qos)
        if any(f.K is not None for f in self._frames):
            self._pubs[t("camera_info")] = self.create_publisher(CameraInfo, t("camera_info"), self._qos)

    @property
    def topic_publishers(self) -> dict:
        """``{output topic: rclpy Publisher}``."""
        return dict(self._pubs)

    def _groups(self) -> Iterator[_Group]:
        if self.is_bag:
            return _bag_groups(self.path, self.topics, self.remap)
        return _folder_groups(self._frames, self.remap, self.frame_id)

    def _next_group(self) -> Optional[_Group]:
        if self._pending is not None:
            g, self._pending = self._pending, None
            return g
        g = next(self._iter, None)
        if g is None and self.loop:
            self._iter = self._groups()
            self._t0_wall = None
            g = next(self._iter, None)
        return g

    def _publisher(self, topic: str, msg):
        pub = self._pubs.get(topic)
        if pub is None:
            pub = self._pubs[topic] = self.create_publisher(type(msg), topic, self._qos)
        return pub

    def _publish(self, g: _Group) -> None:
        from builtin_interfaces.msg import Time

        if self.fresh_stamps:
            ns = self.get_clock().now().nanoseconds
        else:
            ns = g.stamp_ns
        stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000) if ns is not None else None
        if self._clock_pub is not None and stamp is not None:
            self._clock_pub.publish(self._ClockMsg(clock=stamp))
        for topic, msg in g.items:
            header = getattr(msg, "header", None)
            if header is not None:
                if self.fresh_stamps and stamp is not None:
                    header.stamp = stamp
                if self.frame_id:
                    header.frame_id = self.frame_id
            self._publisher(topic, msg).publish(msg)
        self.published_groups += 1

    def step(self) -> bool:
        """Publish the next group now.  Returns False (and sets ``done``) when
        there is nothing left (never with ``loop``)."""
        g = self._next_group()
        if g is None:
            self.done = True
            return False
        self._publish(g)
        return True

    def _on_timer(self) -> None:
        if self.done:
            return
        if self.rate:
            self.step()
            return
        # recorded timing: publish each group when its log time is due
        g = self._next_group()
        if g is None:
            self.done = True
            return
        now = time.monotonic()
        if self._t0_wall is None or g.log_time_ns is None:
            self._t0_wall, self._t0_bag = now, g.log_time_ns
        elif (g.log_time_ns - self._t0_bag) * 1e-9 > now - self._t0_wall:
            self._pending = g
            return
        self._publish(g)


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clip_perception_replay",
        description="Replay a rosbag2 (.db3/.mcap), an RGB-D folder or an image folder as ROS 2 camera topics.",
    )
    p.add_argument("path", help="bag folder / .db3 / .mcap file, or a folder of images (RGB-D pairs)")
    p.add_argument("--rate", type=float, default=None, help="frames per second (default: recorded timing for bags, 1 Hz for folders)")
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.add_argument("--fresh-stamps", action="store_true", help="stamp messages with the current time instead of the recorded stamp")
    p.add_argument("--map", action="append", default=[], metavar="OLD:=NEW", help="rename a topic (repeatable), e.g. /camera/color/image_raw:=image")
    p.add_argument("--frame-id", default=None, help="override header.frame_id")
    p.add_argument("--topics", nargs="+", default=None, help="only these recorded bag topics")
    p.add_argument("--qos", default="reliable", choices=["reliable", "sensor_data"], help="publisher QoS")
    p.add_argument("--clock", action="store_true", help="publish /clock with the message stamps")
    p.add_argument("--depth-scale", type=float, default=None, help="metres per unit of integer folder depth (default 0.001)")
    p.add_argument("--start-delay", type=float, default=0.5, help="seconds to wait for subscribers before publishing")
    return p


def main(args: Optional[list] = None) -> int:
    """Console entry point ``clip_perception_replay``.  Returns 0 at the end of
    the data (or on SIGINT / SIGTERM), 2 on bad arguments / missing input."""
    if not _HAVE_RCLPY:  # pragma: no cover
        print("clip_perception_replay needs rclpy (ROS 2)", file=sys.stderr)
        return 2
    argv = list(sys.argv[1:] if args is None else args)
    ros_args = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    ns = build_arg_parser().parse_args(argv)
    try:
        remap = parse_remaps(ns.map)
    except ValueError as exc:
        print(f"clip_perception_replay: {exc}", file=sys.stderr)
        return 2
    def make_node():
        return ReplayPublisher(
            ns.path, rate=ns.rate, loop=ns.loop, fresh_stamps=ns.fresh_stamps, remap=remap, frame_id=ns.frame_id,
            topics=ns.topics, qos=ns.qos, publish_clock=ns.clock, depth_scale=ns.depth_scale, autostart=False,
        )

    def run(executor, node, running):
        deadline = time.monotonic() + max(0.0, ns.start_delay)
        while running() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        from rclpy.clock import Clock, ClockType

        period = 1.0 / node.rate if node.rate else 0.005
        node._timer = node.create_timer(period, node._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME))
        while running() and not node.done:
            executor.spin_once(timeout_sec=0.1)
        end = time.monotonic() + 0.3  # let reliable subscribers fetch the last messages
        while running() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)

    return run_single_threaded("clip_perception_replay", ["clip_perception_replay"] + ros_args, make_node, run,
                               usage_errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
