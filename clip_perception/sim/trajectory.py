"""Camera poses for the simulator: look-at, orbit and approach paths (ROS-free, no MuJoCo).

A pose is a (4, 4) float64 homogeneous transform ``T_world_optical``: the camera optical
frame (REP 103: x right, y down, z forward) expressed in the world frame of
:mod:`clip_perception.sim.scene` (z up, the camera at yaw 0 stands at -x looking towards +x).
:meth:`clip_perception.sim.scene.SimScene.set_camera` / ``render(camera_pose=...)`` take such
poses, so a sequence of them is a moving camera, e.g. a wrist camera that circles an object
(:func:`orbit_poses`) or moves in to grasp it (:func:`approach_poses`).

Every pose looks at a point with the world z axis up in the image ("up" = -y optical), so
there is no roll.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["camera_position", "look_at_axes", "look_at_pose", "orbit_poses", "approach_poses"]


def camera_position(target, distance: float, pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """(3,) float64 world position of a camera ``distance`` metres from ``target``, seen from
    ``pitch_deg`` above the horizontal and at azimuth ``yaw_deg`` about the vertical axis
    through ``target`` (yaw 0: the camera is on the -x side)."""
    pitch, yaw = math.radians(pitch_deg), math.radians(yaw_deg)
    back = np.array([-math.cos(pitch) * math.cos(yaw), -math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    return np.asarray(target, dtype=np.float64) + float(distance) * back


def look_at_axes(cam_pos, target) -> tuple:
    """``(right, up)`` (3,) float64 unit world vectors of a camera at ``cam_pos`` looking at
    ``target`` with the world z axis up (MuJoCo ``xyaxes``: camera x right, y up).

    Raises:
        ValueError: the camera is at the target or looks straight up / down (no unique right axis).
    """
    f = np.asarray(target, np.float64) - np.asarray(cam_pos, np.float64)
    n = float(np.linalg.norm(f))
    r = np.cross(f, np.array([0.0, 0.0, 1.0]))
    if n == 0.0 or float(np.linalg.norm(r)) < 1e-9 * max(n, 1.0):
        raise ValueError("look-at needs a camera away from the target and not looking straight up or down")
    f = f / n
    r = r / np.linalg.norm(r)
    return r, np.cross(r, f)


def look_at_pose(cam_pos, target) -> np.ndarray:
    """(4, 4) float64 ``T_world_optical`` of a camera at ``cam_pos`` (metres, world) looking at
    ``target``: columns x = right, y = down (-up), z = forward (REP 103 optical frame).

    Raises:
        ValueError: as :func:`look_at_axes`.
    """
    r, u = look_at_axes(cam_pos, target)
    T = np.eye(4)
    T[:3, :3] = np.stack([r, -u, np.cross(u, r)], axis=1)  # u x r = forward
    T[:3, 3] = np.asarray(cam_pos, np.float64)
    return T


def orbit_poses(n: int, target, distance: float = 0.75, pitch_deg: float = 50.0, yaw_start_deg: float = -30.0,
                yaw_end_deg: float = 30.0) -> np.ndarray:
    """(n, 4, 4) float64 poses circling ``target`` at a fixed distance and pitch, the azimuth
    going linearly from ``yaw_start_deg`` to ``yaw_end_deg`` (both included; degrees).

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    yaws = np.linspace(yaw_start_deg, yaw_end_deg, n)
    return np.stack([look_at_pose(camera_position(target, distance, pitch_deg, y), target) for y in yaws])


def approach_poses(n: int, target, start_distance: float = 0.9, end_distance: float = 0.4,
                   pitch_deg: float = 50.0, yaw_deg: float = 0.0) -> np.ndarray:
    """(n, 4, 4) float64 poses moving straight in towards ``target`` along one viewing ray,
    the distance going linearly from ``start_distance`` to ``end_distance`` metres.

    Raises:
        ValueError: ``n < 1`` or a distance <= 0.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if start_distance <= 0.0 or end_distance <= 0.0:
        raise ValueError(f"distances must be > 0, got {start_distance}, {end_distance}")
    dists = np.linspace(start_distance, end_distance, n)
    return np.stack([look_at_pose(camera_position(target, d, pitch_deg, yaw_deg), target) for d in dists])
