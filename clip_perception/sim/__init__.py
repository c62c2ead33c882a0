"""Simulated camera for tests and demos.

``clip_perception.sim.scene`` (ROS-free) renders MuJoCo table-top scenes with
ground truth; ``clip_perception.sim.camera_node`` (rclpy) publishes them like a
Gazebo camera bridged with ``ros_gz_bridge``.

The names below are imported lazily so that ``import clip_perception.sim``
does not load MuJoCo (or set ``MUJOCO_GL``) until a scene is needed.
"""

from __future__ import annotations

_SCENE_NAMES = (
    "COLORS",
    "SHAPES",
    "TABLE_HEIGHT",
    "DEFAULT_FRAME_ID",
    "ObjectSpec",
    "GroundTruthObject",
    "Frame",
    "SimScene",
    "make_scene",
    "default_object_specs",
    "intrinsics_from_fovy",
    "project_points",
)

__all__ = list(_SCENE_NAMES)


def __getattr__(name: str):
    if name in _SCENE_NAMES:
        from . import scene

        return getattr(scene, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
