"""Objects of the simulated table top and their ground truth (ROS-free, no MuJoCo).

The vocabulary the simulator builds (colour words :data:`COLORS`, shape words :data:`SHAPES`),
the description of one object to place (:class:`ObjectSpec`), seeded random object lists
(:func:`default_object_specs`) and what a render reports about each object
(:class:`GroundTruthObject`) and about the frame (:class:`Frame`).  Rendering and placement
live in :mod:`clip_perception.sim.scene`, which re-exports every name here.

Conventions (see :mod:`clip_perception.sim.scene` for the frames and the camera model):

* sizes are MJCF geom ``size`` attributes in metres (half extents);
* positions in the camera optical frame follow REP 103 (x right, y down, z forward);
* boxes are ``[x1, y1, x2, y2]`` float32 pixels with exclusive ``x2 / y2`` edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["COLORS", "SHAPES", "DEFAULT_FRAME_ID", "ObjectSpec", "GroundTruthObject", "Frame",
           "default_object_specs", "default_size", "look_alike_specs"]

DEFAULT_FRAME_ID = "sim_camera_color_optical_frame"

#: Saturated RGBA of each colour word (linear 0..1 values given to MuJoCo).
#: The hues are far apart in HSV so colour naming by hue works on renders.
COLORS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.06, 0.06, 1.0),
    "green": (0.08, 0.65, 0.12, 1.0),
    "blue": (0.08, 0.20, 0.90, 1.0),
    "yellow": (0.92, 0.85, 0.05, 1.0),
    "orange": (1.00, 0.45, 0.02, 1.0),
    "purple": (0.50, 0.10, 0.70, 1.0),
    "white": (0.93, 0.93, 0.93, 1.0),
    "black": (0.04, 0.04, 0.04, 1.0),
}

#: Shape words and the MuJoCo geom that models them.  ``size`` is the
#: MJCF ``size`` attribute of the geom (metres): sphere (radius,),
#: box (half x, half y, half z), cylinder (radius, half height).
SHAPES: dict[str, str] = {
    "ball": "sphere",
    "cube": "box",
    "cylinder": "cylinder",
    "cup": "cylinder",
    "box": "box",
}


def default_size(shape: str, rng: Optional[np.random.Generator]) -> tuple[float, ...]:
    """Geom size (MJCF ``size``, metres) for a shape; mid-range when rng is None."""

    def pick(lo: float, hi: float) -> float:
        return 0.5 * (lo + hi) if rng is None else float(rng.uniform(lo, hi))

    if shape == "ball":
        return (pick(0.030, 0.045),)
    if shape == "cube":
        a = pick(0.025, 0.035)
        return (a, a, a)
    if shape == "cylinder":
        return (pick(0.022, 0.030), pick(0.050, 0.070))
    if shape == "cup":
        return (pick(0.035, 0.045), pick(0.040, 0.050))
    if shape == "box":
        flat = True if rng is None else bool(rng.random() < 0.5)
        if flat:
            return (pick(0.060, 0.080), pick(0.040, 0.055), pick(0.018, 0.025))
        return (pick(0.030, 0.040), pick(0.022, 0.030), pick(0.065, 0.085))
    raise ValueError(f"unknown shape {shape!r}; expected one of {sorted(SHAPES)}")


@dataclass
class ObjectSpec:
    """Description of one object to put on the table.

    Attributes:
        shape: one of :data:`SHAPES` (``ball``, ``cube``, ``cylinder``, ``cup``, ``box``).
        color: one of :data:`COLORS`.
        xy: (x, y) position of the object centre on the table in the world
            frame (metres; +x away from the camera, +y to the image *left*),
            or ``None`` to place it at random (seeded) without overlap.
        size: MJCF geom ``size`` in metres (sphere ``(r,)``, box
            ``(hx, hy, hz)`` half sizes, cylinder ``(r, half_height)``), or
            ``None`` for a shape default (mid-range for explicit specs,
            seeded random for generated ones).
        yaw: rotation about the vertical axis (radians).
        name: display name; defaults to ``"<color> <shape>"``.

    Raises:
        ValueError: unknown shape / colour or a size of the wrong length.
    """

    shape: str
    color: str
    xy: Optional[tuple[float, float]] = None
    size: Optional[tuple[float, ...]] = None
    yaw: float = 0.0
    name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {sorted(SHAPES)}")
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; expected one of {sorted(COLORS)}")
        if self.size is not None:
            self.size = tuple(float(s) for s in self.size)
            want = {"sphere": 1, "box": 3, "cylinder": 2}[SHAPES[self.shape]]
            if len(self.size) != want:
                raise ValueError(f"{self.shape} size needs {want} values, got {self.size}")
        if self.xy is not None:
            self.xy = (float(self.xy[0]), float(self.xy[1]))
        if self.name is None:
            self.name = f"{self.color} {self.shape}"

    @property
    def geom_type(self) -> str:
        return SHAPES[self.shape]

    def half_height(self) -> float:
        """Half of the vertical extent (metres)."""
        assert self.size is not None
        gt = self.geom_type
        return self.size[0] if gt == "sphere" else (self.size[2] if gt == "box" else self.size[1])

    def footprint_radius(self) -> float:
        """Radius (metres) of a circle on the table that contains the object."""
        assert self.size is not None
        if self.geom_type == "box":
            return math.hypot(self.size[0], self.size[1])
        return self.size[0]

    def extents(self) -> np.ndarray:
        """(3,) float64 full extents in the object frame (metres)."""
        assert self.size is not None
        s = self.size
        gt = self.geom_type
        if gt == "sphere":
            return np.full(3, 2 * s[0])
        if gt == "box":
            return 2 * np.asarray(s, dtype=np.float64)
        return np.array([2 * s[0], 2 * s[0], 2 * s[1]])


@dataclass
class GroundTruthObject:
    """Ground truth for one object in a rendered frame.

    Attributes:
        name: e.g. ``"red ball"``.
        color: colour word (key of :data:`COLORS`).
        shape: shape word (key of :data:`SHAPES`).
        center_optical: (3,) float64 metres, geometric centre of the object in
            the camera optical frame (REP 103: x right, y down, z forward).
        box: (4,) float32 ``[x1, y1, x2, y2]`` pixels, exclusive x2/y2, tightest
            box of the object's visible pixels (all NaN when not visible).
        visible_pixels: number of pixels showing this object (0 = fully
            occluded or out of view).
        truncated: True when the box touches the image border.
        size: (3,) float64 full extents in the object frame (metres).
        center_world: (3,) float64 metres in the world frame.
        index: position of the object in the scene's object list.
    """

    name: str
    color: str
    shape: str
    center_optical: np.ndarray
    box: np.ndarray
    visible_pixels: int
    truncated: bool = False
    size: Optional[np.ndarray] = None
    center_world: Optional[np.ndarray] = None
    index: int = -1

    @property
    def visible(self) -> bool:
        return self.visible_pixels > 0

    def to_dict(self) -> dict:
        """JSON-friendly dict (lists of floats)."""
        return {
            "name": self.name,
            "color": self.color,
            "shape": self.shape,
            "center_optical": [float(v) for v in self.center_optical],
            "box": [float(v) for v in self.box] if self.visible else None,
            "visible_pixels": int(self.visible_pixels),
            "truncated": bool(self.truncated),
            "size": None if self.size is None else [float(v) for v in self.size],
            "center_world": None if self.center_world is None else [float(v) for v in self.center_world],
            "index": int(self.index),
        }


@dataclass
class Frame:
    """One rendered frame.

    Attributes:
        rgb: (H, W, 3) uint8 RGB.
        depth: (H, W) float32 metres along the optical axis, NaN = no surface.
        K: (3, 3) float64 pinhole intrinsics (pixel centres at integers).
        objects: visible objects (``visible_pixels > 0``), in scene order.
        frame_id: optical frame name for message headers.
        hidden: objects that are fully occluded or out of view.
        T_world_optical: (4, 4) float64 pose of the optical frame in the world.
        segmentation: (H, W) int32 object index per pixel (-1 = table, floor or
            background).
        depth_true: (H, W) float32 metres, the noise-free depth when a depth noise
            model made ``depth`` (``None`` otherwise: ``depth`` is noise-free).
    """

    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    objects: list
    frame_id: str = DEFAULT_FRAME_ID
    hidden: list = field(default_factory=list)
    T_world_optical: Optional[np.ndarray] = None
    segmentation: Optional[np.ndarray] = None
    depth_true: Optional[np.ndarray] = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def find(self, name: str) -> list:
        """Visible objects called ``name`` (e.g. ``"red ball"``)."""
        return [o for o in self.objects if o.name == name]

    def to_json_dict(self) -> dict:
        """Ground truth as a JSON-friendly dict (no pixel arrays)."""
        return {
            "frame_id": self.frame_id,
            "width": self.width,
            "height": self.height,
            "K": [float(v) for v in np.asarray(self.K).ravel()],
            "T_world_optical": None
            if self.T_world_optical is None
            else [float(v) for v in np.asarray(self.T_world_optical).ravel()],
            "objects": [o.to_dict() for o in self.objects],
            "hidden": [o.to_dict() for o in self.hidden],
        }


def default_object_specs(seed: int, num_objects: int = 6) -> list:
    """Seeded random object list (shapes, colours, sizes; positions left to placement).

    Distinct (colour, shape) pairs; when ``num_objects >= 3`` at least two
    objects share a shape and at least two share a colour, so that commands
    need both words (e.g. "red ball" among a red cube and a blue ball).

    Raises:
        ValueError: ``num_objects`` outside [1, number of colour x shape pairs].
    """
    shapes = sorted(SHAPES)
    colors = list(COLORS)
    pairs = [(s, c) for s in shapes for c in colors]
    if not 1 <= num_objects <= len(pairs):
        raise ValueError(f"num_objects must be in [1, {len(pairs)}], got {num_objects}")
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        idx = rng.choice(len(pairs), size=num_objects, replace=False)
        chosen = [pairs[i] for i in idx]
        shapes_used = [s for s, _ in chosen]
        colors_used = [c for _, c in chosen]
        if num_objects < 3 or (
            len(set(shapes_used)) < num_objects and len(set(colors_used)) < num_objects
        ):
            break
    specs = []
    for shape, color in chosen:
        size = default_size(shape, rng)
        yaw = float(rng.uniform(-math.pi, math.pi)) if SHAPES[shape] == "box" else 0.0
        specs.append(ObjectSpec(shape=shape, color=color, size=size, yaw=yaw))
    return specs


def look_alike_specs(seed: int, shape: str = "ball", color: str = "red", count: int = 2,
                     num_distractors: int = 2) -> list:
    """``count`` identical objects that all match one command ("two red balls") plus distractors.

    The look-alikes share shape, colour and size (seeded); the distractors are distinct
    (colour, shape) pairs that differ from ``(color, shape)``, seeded.  No positions: the
    scene places them (:func:`clip_perception.sim.scene.make_scene` with ``objects=``).

    Raises:
        ValueError: unknown shape / colour, ``count < 1`` or too many distractors.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    size = default_size(shape, rng)
    twins = [ObjectSpec(shape=shape, color=color, size=size) for _ in range(count)]
    pairs = [(s, c) for s in sorted(SHAPES) for c in COLORS if (s, c) != (shape, color)]
    if not 0 <= num_distractors <= len(pairs):
        raise ValueError(f"num_distractors must be in [0, {len(pairs)}], got {num_distractors}")
    others = [pairs[i] for i in rng.choice(len(pairs), size=num_distractors, replace=False)]
    return twins + [ObjectSpec(shape=s, color=c, size=default_size(s, rng)) for s, c in others]
