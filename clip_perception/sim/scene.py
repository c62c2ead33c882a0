"""Headless MuJoCo table-top scenes with ground truth (ROS-free).

A scene is a table with a few everyday-shaped objects in saturated colours,
seen by a pinhole camera that looks down at the table like a robot head or
wrist camera.  This module holds the camera model, the placement of objects,
the MJCF and the rendering; the objects themselves (vocabulary, specs, ground
truth records) are :mod:`clip_perception.sim.objects`, re-exported here.  :meth:`SimScene.render` returns the colour image, the depth
image (metres, NaN where there is no surface) and, for every object, its name,
3-D centre in the camera optical frame and its 2-D box taken from a
segmentation render.

Conventions (see ``clip_perception/types.py`` and the project contract):

* world frame: z up, the table top is the plane ``z = TABLE_HEIGHT``, the
  camera stands at negative x and looks towards +x, so image right is world
  -y and image left is world +y;
* camera optical frame (REP 103): x right, y down, z forward.  MuJoCo cameras
  look along their -z axis with +y up, so ``p_optical = diag(1, -1, -1) @
  p_mujoco_cam`` (MuJoCo documentation, "Camera" element: "the camera looks
  towards the negative Z axis of its frame, with positive X to the right and
  positive Y up");
* intrinsics: ``fy = (H / 2) / tan(fovy / 2)`` (``fovy`` is MuJoCo's vertical
  field of view), ``fx = fy`` (square pixels: MuJoCo derives the horizontal
  field of view from the viewport aspect ratio), ``cx = (W - 1) / 2``,
  ``cy = (H - 1) / 2`` because pixel ``(u, v)`` has its centre at the integer
  coordinates ``(u, v)`` (as in ``sensor_msgs/CameraInfo``) while the OpenGL
  frustum is centred on the image *edge* midpoint ``W / 2``;
* depth is the distance along the optical axis (z in the optical frame), not
  the ray length.  ``mujoco.Renderer`` with depth rendering enabled converts
  the OpenGL depth buffer to linear metric depth (mujoco >= 3.0 ``Renderer.render``
  source).  Pixels whose segmentation id is background, or at or beyond the
  far clipping plane, are NaN;
* boxes: ``[x1, y1, x2, y2]`` float32 with exclusive ``x2 / y2`` edges: the
  tightest box around the visible pixels of the object in the segmentation
  render (``mujoco.Renderer.enable_segmentation_rendering``, which returns the
  geom id per pixel).

The module sets ``MUJOCO_GL=osmesa`` when ``MUJOCO_GL`` is unset, before
importing :mod:`mujoco`, so that it renders without a display.
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Optional, Sequence, Union

os.environ.setdefault("MUJOCO_GL", "osmesa")

# torchvision (torch, triton) must be loaded before MuJoCo's OSMesa backend: triton and
# OSMesa's llvmpipe both bring LLVM, and importing triton after mujoco crashes the process
# (segmentation fault; torch 2.14, mujoco 4.0).  The simulator runs next to the detector in
# evaluate, bench and the tests, so the order is fixed here; without torch it is skipped.
try:
    import torchvision.ops  # noqa: E402,F401
except ImportError:
    pass
import mujoco  # noqa: E402  (after MUJOCO_GL is set)
import numpy as np  # noqa: E402

from . import _SCENE_NAMES  # noqa: E402  (the public names, listed once in sim/__init__.py)
from .objects import (  # noqa: E402,F401  (re-exported: the scene's public names)
    COLORS,
    DEFAULT_FRAME_ID,
    SHAPES,
    Frame,
    GroundTruthObject,
    ObjectSpec,
    default_object_specs,
    default_size,
    look_alike_specs,
)
from .depth_noise import StructuredLightNoise  # noqa: E402
from .trajectory import camera_position, look_at_axes, look_at_pose  # noqa: E402

__all__ = list(_SCENE_NAMES)

#: Height of the table top above the floor (metres).
TABLE_HEIGHT = 0.75
#: Table top extent (metres): centre x, centre y, half size x, half size y.
TABLE_CENTER_XY = (0.15, 0.0)
TABLE_HALF = (0.65, 0.75)
TABLE_THICKNESS = 0.04
TABLE_RGBA = (0.62, 0.58, 0.52, 1.0)  # light grey-beige "wood": HSV saturation ~0.16
FLOOR_RGBA = (0.36, 0.36, 0.38, 1.0)

#: Where random objects may be placed (table frame, metres): x range, y range.
PLACEMENT_X = (-0.25, 0.35)
PLACEMENT_Y = (-0.40, 0.40)
#: Free space kept between object footprints (metres).
PLACEMENT_GAP = 0.02
#: Objects must project at least this many pixels inside the image border.
VIEW_MARGIN_PX = 8

# Depth clipping planes (metres).  Surfaces beyond ZFAR come back as NaN.
ZNEAR = 0.02
ZFAR = 3.0


def intrinsics_from_fovy(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K (3, 3) float64 for a MuJoCo camera.

    ``fy = (H / 2) / tan(fovy / 2)``, ``fx = fy``, ``cx = (W - 1) / 2``,
    ``cy = (H - 1) / 2`` (pixel centres at integer coordinates; see module
    docstring).  ``fovy_deg`` is the vertical field of view in degrees.

    Raises:
        ValueError: fovy outside (0, 180) or non-positive size.
    """
    if not 0.0 < fovy_deg < 180.0:
        raise ValueError(f"fovy must be in (0, 180) degrees, got {fovy_deg}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = (height / 2.0) / math.tan(math.radians(fovy_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def project_points(points_optical: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Project (N, 3) optical-frame points (metres) to (N, 2) pixel (u, v) float64."""
    p = np.atleast_2d(np.asarray(points_optical, dtype=np.float64))
    z = p[:, 2]
    u = K[0, 0] * p[:, 0] / z + K[0, 2]
    v = K[1, 1] * p[:, 1] / z + K[1, 2]
    return np.stack([u, v], axis=1)



def _fmt(v: Iterable[float]) -> str:
    return " ".join(f"{float(x):.6g}" for x in v)


class SimScene:
    """A rendered MuJoCo table-top scene with ground truth.

    Build with :func:`make_scene`.  Holds one ``mujoco.Renderer`` (its
    creation is the slow part) that :meth:`render` reuses; call
    :meth:`close` (or use ``with``) to free the GL context.

    Args:
        specs: objects (positions filled in, see :func:`make_scene`).
        width, height: image size in pixels.
        fovy: vertical field of view (degrees).
        camera_distance: camera to look-at point on the table centre (metres).
        camera_pitch_deg: angle below the horizontal (degrees).
        camera_yaw_deg: rotation of the viewpoint about the vertical axis
            through the look-at point (degrees; 0 = camera at -x).
        frame_id: optical frame name put into :class:`Frame`.
        seed: seed recorded for reference.
        depth_noise: a sensor noise model applied to every rendered depth image
            (:class:`depth_noise.StructuredLightNoise`), or ``None`` for perfect depth.
        noise_seed: seed of the noise generator (one stream over the scene's renders).
        image_noise_std: std of zero-mean Gaussian noise added to every colour value of the
            rendered image (uint8 levels, then rounded and clipped; 0 = none), like a real
            sensor's read / shot noise.

    The camera starts at the look-at pose given by distance, pitch and yaw; move it with
    :meth:`set_camera` or ``render(camera_pose=...)`` (poses from
    :mod:`clip_perception.sim.trajectory`).
    """

    def __init__(
        self,
        specs: Sequence[ObjectSpec],
        width: int = 640,
        height: int = 480,
        fovy: float = 45.0,
        camera_distance: float = 0.75,
        camera_pitch_deg: float = 50.0,
        camera_yaw_deg: float = 0.0,
        frame_id: str = DEFAULT_FRAME_ID,
        seed: Optional[int] = None,
        depth_noise: Optional[StructuredLightNoise] = None,
        noise_seed: int = 0,
        image_noise_std: float = 0.0,
    ) -> None:
        self.specs = list(specs)
        self.depth_noise = depth_noise
        self.image_noise_std = float(image_noise_std)
        self._noise_rng = np.random.default_rng(noise_seed)
        for s in self.specs:
            if s.xy is None or s.size is None:
                raise ValueError("SimScene needs placed specs (xy and size set); use make_scene()")
        self.width = int(width)
        self.height = int(height)
        self.fovy = float(fovy)
        self.K = intrinsics_from_fovy(self.fovy, self.width, self.height)
        self.frame_id = frame_id
        self.seed = seed
        self.camera_distance = float(camera_distance)
        self.camera_pitch_deg = float(camera_pitch_deg)
        self.camera_yaw_deg = float(camera_yaw_deg)
        self.target = np.array([0.0, 0.0, TABLE_HEIGHT])
        self.cam_pos = camera_position(self.target, camera_distance, camera_pitch_deg, camera_yaw_deg)
        self.model = mujoco.MjModel.from_xml_string(self._mjcf())
        self.data = mujoco.MjData(self.model)
        mujoco.mj_forward(self.model, self.data)
        self._cam_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, "head_camera")
        self._geom_to_obj = np.full(self.model.ngeom, -1, dtype=np.int32)
        for i in range(len(self.specs)):
            gid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, f"obj_{i}")
            self._geom_to_obj[gid] = i
        self._renderer: Optional[mujoco.Renderer] = mujoco.Renderer(
            self.model, height=self.height, width=self.width
        )
        self._frame: Optional[Frame] = None

    # ------------------------------------------------------------------ MJCF
    def _mjcf(self) -> str:
        r, u = look_at_axes(self.cam_pos, self.target)
        tx, ty = TABLE_CENTER_XY
        hx, hy = TABLE_HALF
        top = TABLE_HEIGHT
        mats = "\n".join(
            f'<material name="mat_{c}" rgba="{_fmt(rgba)}" specular="0.05" shininess="0.1" reflectance="0"/>'
            for c, rgba in COLORS.items()
        )
        legs = []
        for i, (sx, sy) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)]):
            lx, ly = tx + sx * (hx - 0.05), ty + sy * (hy - 0.05)
            legs.append(
                f'<geom name="table_leg_{i}" type="cylinder" size="0.025 {(top - TABLE_THICKNESS) / 2:.6g}" '
                f'pos="{lx:.6g} {ly:.6g} {(top - TABLE_THICKNESS) / 2:.6g}" material="table_mat"/>'
            )
        objs = []
        for i, s in enumerate(self.specs):
            z = top + s.half_height()
            half_yaw = 0.5 * s.yaw
            quat = (math.cos(half_yaw), 0.0, 0.0, math.sin(half_yaw))
            objs.append(
                f'<body name="body_{i}" pos="{s.xy[0]:.6g} {s.xy[1]:.6g} {z:.6g}" quat="{_fmt(quat)}">'
                f'<geom name="obj_{i}" type="{s.geom_type}" size="{_fmt(s.size)}" material="mat_{s.color}"/>'
                f"</body>"
            )
        return f"""<mujoco model="clip_perception_table">
  <statistic extent="1" center="0 0 {top}"/>
  <visual>
    <global offwidth="{self.width}" offheight="{self.height}" fovy="{self.fovy}"/>
    <map znear="{ZNEAR}" zfar="{ZFAR}"/>
    <quality shadowsize="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.78 0.78 0.80" rgb2="0.55 0.55 0.58" width="32" height="32"/>
    <material name="table_mat" rgba="{_fmt(TABLE_RGBA)}" specular="0" shininess="0" reflectance="0"/>
    <material name="floor_mat" rgba="{_fmt(FLOOR_RGBA)}" specular="0" shininess="0" reflectance="0"/>
    {mats}
  </asset>
  <worldbody>
    <light name="top" directional="true" pos="0 0 3" dir="0.2 0.1 -1" diffuse="0.45 0.45 0.45" specular="0 0 0" castshadow="false"/>
    <geom name="floor" type="plane" size="6 6 0.1" material="floor_mat"/>
    <geom name="table_top" type="box" size="{hx:.6g} {hy:.6g} {TABLE_THICKNESS / 2:.6g}" pos="{tx:.6g} {ty:.6g} {top - TABLE_THICKNESS / 2:.6g}" material="table_mat"/>
    {"".join(legs)}
    {"".join(objs)}
    <camera name="head_camera" pos="{_fmt(self.cam_pos)}" xyaxes="{_fmt(r)} {_fmt(u)}" fovy="{self.fovy:.6g}"/>
  </worldbody>
</mujoco>"""

    # --------------------------------------------------------------- geometry
    @property
    def T_world_optical(self) -> np.ndarray:
        """(4, 4) float64 pose of the optical frame in the world frame."""
        R_wc = self.data.cam_xmat[self._cam_id].reshape(3, 3)  # columns: MuJoCo camera axes in world
        T = np.eye(4)
        T[:3, :3] = R_wc @ np.diag([1.0, -1.0, -1.0])
        T[:3, 3] = self.data.cam_xpos[self._cam_id]
        return T

    def set_camera(self, T_world_optical: np.ndarray) -> None:
        """Move the camera to the pose ``T_world_optical`` ((4, 4) float64: optical frame in the
        world, REP 103 axes; e.g. :func:`trajectory.look_at_pose`) for the next renders.

        MuJoCo's camera frame is the optical frame with y and z flipped (module docstring):
        ``R_world_mujoco = R_world_optical @ diag(1, -1, -1)``.

        Raises:
            ValueError: not a (4, 4) rigid transform (rotation not orthonormal).
        """
        T = np.asarray(T_world_optical, dtype=np.float64)
        if T.shape != (4, 4) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6) \
                or np.linalg.det(T[:3, :3]) <= 0:
            raise ValueError("camera pose must be a (4, 4) rigid transform")
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, (T[:3, :3] @ np.diag([1.0, -1.0, -1.0])).ravel())
        self.model.cam_pos[self._cam_id] = T[:3, 3]
        self.model.cam_quat[self._cam_id] = quat
        self.cam_pos = T[:3, 3].copy()
        mujoco.mj_forward(self.model, self.data)

    def world_to_optical(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) world points (metres) -> (N, 3) optical-frame points (metres)."""
        T = self.T_world_optical
        p = np.atleast_2d(np.asarray(points_world, dtype=np.float64))
        return (p - T[:3, 3]) @ T[:3, :3]

    # ----------------------------------------------------------------- render
    def render(self, camera_pose: Optional[np.ndarray] = None) -> Frame:
        """Render colour, depth and segmentation and build the ground truth.

        Args:
            camera_pose: optional (4, 4) ``T_world_optical`` to move the camera to first
                (:meth:`set_camera`); it stays there for later renders.

        With :attr:`depth_noise` set, ``Frame.depth`` is the noisy depth and
        ``Frame.depth_true`` the rendered one.

        Returns:
            :class:`Frame` (arrays are fresh copies owned by the caller).

        Raises:
            RuntimeError: after :meth:`close`.
        """
        if self._renderer is None:
            raise RuntimeError("SimScene is closed")
        if camera_pose is not None:
            self.set_camera(camera_pose)
        r = self._renderer
        r.update_scene(self.data, camera=self._cam_id)
        rgb = np.array(r.render(), dtype=np.uint8, copy=True)
        r.enable_depth_rendering()
        try:
            depth = np.array(r.render(), dtype=np.float32, copy=True)
        finally:
            r.disable_depth_rendering()
        r.enable_segmentation_rendering()
        try:
            seg = np.array(r.render(), dtype=np.int32, copy=True)
        finally:
            r.disable_segmentation_rendering()

        geom_id = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
        background = (geom_id < 0) | ~np.isfinite(depth) | (depth >= ZFAR * (1.0 - 1e-4))
        depth[background] = np.nan
        obj_idx = np.where(geom_id >= 0, self._geom_to_obj[np.clip(geom_id, 0, None)], -1).astype(np.int32)

        centers_world = np.array([self.data.geom_xpos[self.model.geom(f"obj_{i}").id] for i in range(len(self.specs))])
        centers_opt = self.world_to_optical(centers_world) if len(self.specs) else np.zeros((0, 3))
        visible, hidden = [], []
        for i, s in enumerate(self.specs):
            mask = obj_idx == i
            n = int(mask.sum())
            if n:
                rows = np.flatnonzero(mask.any(axis=1))
                cols = np.flatnonzero(mask.any(axis=0))
                box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
                truncated = bool(cols[0] == 0 or rows[0] == 0 or cols[-1] == self.width - 1 or rows[-1] == self.height - 1)
            else:
                box = np.full(4, np.nan, dtype=np.float32)
                truncated = False
            gt = GroundTruthObject(
                name=s.name,
                color=s.color,
                shape=s.shape,
                center_optical=centers_opt[i].copy(),
                box=box,
                visible_pixels=n,
                truncated=truncated,
                size=s.extents(),
                center_world=centers_world[i].copy(),
                index=i,
            )
            (visible if n else hidden).append(gt)
        noisy = depth if self.depth_noise is None else self.depth_noise.apply(depth, self._noise_rng)
        if self.image_noise_std > 0:
            grain = self._noise_rng.standard_normal(rgb.shape) * self.image_noise_std
            rgb = np.clip(np.rint(rgb + grain), 0, 255).astype(np.uint8)
        self._frame = Frame(
            rgb=rgb,
            depth=noisy,
            depth_true=None if self.depth_noise is None else depth,
            K=self.K.copy(),
            objects=visible,
            frame_id=self.frame_id,
            hidden=hidden,
            T_world_optical=self.T_world_optical,
            segmentation=obj_idx,
        )
        return self._frame

    def close(self) -> None:
        """Free the renderer (GL context).  Safe to call twice."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> "SimScene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; explicit close() is preferred
        try:
            self.close()
        except Exception:
            pass


def _in_view(spec: ObjectSpec, xy: tuple[float, float], K: np.ndarray, T_wo: np.ndarray, width: int, height: int) -> bool:
    """True when the object's bounding box corners project inside the image."""
    assert spec.size is not None
    ext = spec.extents() / 2.0
    r = spec.footprint_radius()
    zc = TABLE_HEIGHT + spec.half_height()
    corners = np.array(
        [[xy[0] + sx * r, xy[1] + sy * r, zc + sz * ext[2]] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    )
    p = (corners - T_wo[:3, 3]) @ T_wo[:3, :3]
    if np.any(p[:, 2] <= ZNEAR):
        return False
    uv = project_points(p, K)
    m = VIEW_MARGIN_PX
    return bool(
        np.all(uv[:, 0] >= m) and np.all(uv[:, 0] <= width - 1 - m) and np.all(uv[:, 1] >= m) and np.all(uv[:, 1] <= height - 1 - m)
    )


def _place(specs: list, rng: np.random.Generator, K: np.ndarray, T_wo: np.ndarray, width: int, height: int) -> list:
    """Fill in ``xy`` of unplaced specs: uniform in the placement area, no
    footprint overlap (gap :data:`PLACEMENT_GAP`), fully in view."""
    placed = [(s.xy, s.footprint_radius()) for s in specs if s.xy is not None]
    out = []
    for s in specs:
        if s.xy is not None:
            out.append(s)
            continue
        rad = s.footprint_radius()
        for _ in range(2000):
            xy = (float(rng.uniform(*PLACEMENT_X)), float(rng.uniform(*PLACEMENT_Y)))
            if any(math.hypot(xy[0] - p[0], xy[1] - p[1]) < rad + pr + PLACEMENT_GAP for p, pr in placed):
                continue
            if not _in_view(s, xy, K, T_wo, width, height):
                continue
            break
        else:
            raise RuntimeError(f"could not place {s.name} without overlap; use fewer objects")
        placed.append((xy, rad))
        out.append(ObjectSpec(shape=s.shape, color=s.color, xy=xy, size=s.size, yaw=s.yaw, name=s.name))
    return out


SpecLike = Union[ObjectSpec, dict]


def make_scene(
    seed: int = 0,
    num_objects: int = 6,
    width: int = 640,
    height: int = 480,
    objects: Optional[Sequence[SpecLike]] = None,
    fovy: float = 45.0,
    camera_distance: float = 0.75,
    camera_pitch_deg: float = 50.0,
    camera_yaw_deg: float = 0.0,
    frame_id: str = DEFAULT_FRAME_ID,
    depth_noise: Optional[StructuredLightNoise] = None,
    noise_seed: int = 0,
    image_noise_std: float = 0.0,
) -> SimScene:
    """Build a seeded table-top scene.

    Args:
        seed: seeds object choice (when ``objects`` is None), sizes, yaw and
            placement; the same seed gives the same layout and images.
        num_objects: number of random objects (ignored when ``objects`` given).
        width, height: image size (pixels).
        objects: explicit list of :class:`ObjectSpec` or dicts with the same
            keys (``shape``, ``color``, optional ``xy``, ``size``, ``yaw``,
            ``name``); objects without ``xy`` are placed at random.
        fovy: vertical field of view (degrees).
        camera_distance: metres from the camera to the table centre (0.6-0.9
            gives a head / wrist camera view).
        camera_pitch_deg: camera pitch below the horizontal (degrees).
        camera_yaw_deg: viewpoint azimuth about the table centre (degrees).
        frame_id: header frame id recorded in frames.
        depth_noise: optional sensor noise model for every depth render
            (:class:`depth_noise.StructuredLightNoise`); ``None`` = perfect depth.
        noise_seed: seed of the depth and image noise.
        image_noise_std: Gaussian colour noise std (uint8 levels; 0 = none).

    Returns:
        :class:`SimScene` (close it when done).

    Raises:
        ValueError: bad object spec or parameters; RuntimeError: placement failed.
    """
    rng = np.random.default_rng(seed)
    if objects is None:
        specs = default_object_specs(seed, num_objects)
    else:
        specs = [o if isinstance(o, ObjectSpec) else ObjectSpec(**o) for o in objects]
        specs = [
            s
            if s.size is not None
            else ObjectSpec(shape=s.shape, color=s.color, xy=s.xy, size=default_size(s.shape, None), yaw=s.yaw, name=s.name)
            for s in specs
        ]
    K = intrinsics_from_fovy(fovy, width, height)
    target = np.array([0.0, 0.0, TABLE_HEIGHT])
    T_wo = look_at_pose(camera_position(target, camera_distance, camera_pitch_deg, camera_yaw_deg), target)
    specs = _place(specs, rng, K, T_wo, width, height)
    return SimScene(
        specs,
        width=width,
        height=height,
        fovy=fovy,
        camera_distance=camera_distance,
        camera_pitch_deg=camera_pitch_deg,
        camera_yaw_deg=camera_yaw_deg,
        frame_id=frame_id,
        seed=seed,
        depth_noise=depth_noise,
        noise_seed=noise_seed,
        image_noise_std=image_noise_std,
    )
