"""Recorded camera data, ROS-free: rosbag2 files, image folders and RGB-D folders.

The loaders behind :mod:`clip_perception.tools.replay` (which publishes them over rclpy):
:func:`iter_bag` (rosbag2 ``.db3`` / ``.mcap`` via the pure-Python ``rosbags`` library:
``rosbags.rosbag2.Reader`` and ``rosbags.typesys`` CDR deserialisation), :func:`iter_bag_raw`
(the serialised CDR bytes), :func:`iter_bag_frames`, :func:`load_rgbd_folder`,
:func:`load_image_folder`, :func:`load_intrinsics`, and :func:`write_test_bag`
(``rosbags.rosbag2.Writer``) for tests.  Messages become arrays through the one decoder,
:mod:`clip_perception.decode` (``decode_image``, ``decode_depth``), CameraInfo becomes K through
:func:`clip_perception.camera.camera_info_to_K`, and depth files are read by
:func:`clip_perception.depth_files.load_depth_file`.

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

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import cv2
import numpy as np

from ..camera import camera_info_to_K
from ..decode import decode_depth, decode_image, image_fields_from_depth, image_fields_from_rgb, stamp_to_ns
from ..depth_files import DEFAULT_DEPTH_SCALE, DEPTH_FILE_EXTS, load_depth_file

__all__ = [
    "RgbdFrame",
    "BagMessage",
    "COLOR_TOPIC",
    "DEPTH_TOPIC",
    "INFO_TOPIC",
    "parse_remaps",
    "iter_bag",
    "iter_bag_raw",
    "iter_bag_frames",
    "load_image_folder",
    "load_rgbd_folder",
    "load_intrinsics",
    "is_bag",
    "write_test_bag",
]

COLOR_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")


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
            stamp = stamp_to_ns(header.stamp) if header is not None and hasattr(header, "stamp") else int(log_ns)
            yield BagMessage(
                topic=remap.get(conn.topic, conn.topic),
                source_topic=conn.topic,
                msgtype=conn.msgtype,
                stamp_ns=stamp,
                log_time_ns=int(log_ns),
                msg=msg,
            )


def iter_bag_raw(path: Union[str, Path], topics: Optional[Iterable[str]] = None) -> Iterator[tuple]:
    """Yield ``(connection, log_time_ns, raw_cdr_bytes)`` of a rosbag2 bag in log-time order,
    without deserialising (the publisher turns the bytes into rclpy messages with
    ``rclpy.serialization.deserialize_message``).  ``connection`` has ``topic``, ``msgtype``.

    Raises:
        FileNotFoundError: no such path.  ``rosbags`` errors for unreadable bags.
    """
    from rosbags.rosbag2 import Reader

    wanted = None if topics is None else set(topics)
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for conn, log_ns, raw in reader.messages(connections=conns):
            yield conn, int(log_ns), raw


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
            rgb=decode_image(m.msg), depth_m=e.get("depth"), K=None if K is None else K.copy(),
            name=f"{m.topic}@{stamp}", stamp_ns=stamp, frame_id=str(m.msg.header.frame_id),
        )

    for bm in iter_bag(path, remap=remap):
        if bm.topic not in wanted:
            continue
        e = pending.setdefault(bm.stamp_ns, {})
        if bm.topic == color_topic:
            e["color"] = bm
        elif bm.topic == depth_topic:
            e["depth"] = decode_depth(bm.msg, depth_scale)
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
        if kind == "depth" and f.suffix.lower() in DEPTH_FILE_EXTS:
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
            depth = load_depth_file(dfile, scale)
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
            fields = image_fields_from_rgb(rgb, "rgb8")
            fields["data"] = np.frombuffer(fields["data"], dtype=np.uint8).copy()
            writer.write(c_rgb, ns, store.serialize_cdr(Image(header=hdr, **fields), Image.__msgtype__))
            if depth is not None:
                if c_dep is None:
                    c_dep = writer.add_connection(depth_topic, Image.__msgtype__, typestore=store)
                if np.shape(depth) != (h, w):
                    raise ValueError(f"depth {np.shape(depth)} does not match rgb {(h, w)}")
                fields = image_fields_from_depth(depth, "16UC1")
                fields["data"] = np.frombuffer(fields["data"], dtype=np.uint8).copy()
                writer.write(c_dep, ns, store.serialize_cdr(Image(header=hdr, **fields), Image.__msgtype__))
            info = CameraInfo(header=hdr, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
                              k=K.ravel().copy(), r=np.eye(3).ravel(), p=P.ravel().copy(), binning_x=0, binning_y=0,
                              roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            writer.write(c_inf, ns, store.serialize_cdr(info, CameraInfo.__msgtype__))
    return path
