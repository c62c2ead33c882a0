"""Simulated camera for tests and demos.

``clip_perception.sim.objects`` (ROS-free, no MuJoCo) describes the objects and their
ground truth; ``clip_perception.sim.scene`` (ROS-free) renders MuJoCo table-top scenes
of them; ``clip_perception.sim.camera_node`` (rclpy) publishes them like a Gazebo
camera bridged with ``ros_gz_bridge``.

The names below are imported lazily so that ``import clip_perception.sim`` does not
load MuJoCo (or set ``MUJOCO_GL``) until a scene is needed; the object names come from
``objects`` and need no MuJoCo at all.
"""

from __future__ import annotations

#: Names defined in ``objects`` (no MuJoCo).
_OBJECT_NAMES = (
    "COLORS",
    "SHAPES",
    "DEFAULT_FRAME_ID",
    "ObjectSpec",
    "GroundTruthObject",
    "Frame",
    "default_object_specs",
    "look_alike_specs",
)
#: Every public name of ``scene`` (which re-exports the object names).
_SCENE_NAMES = _OBJECT_NAMES + (
    "TABLE_HEIGHT",
    "SimScene",
    "make_scene",
    "intrinsics_from_fovy",
    "project_points",
)

__all__ = list(_SCENE_NAMES)


def __getattr__(name: str):
    if name in _OBJECT_NAMES:
        from . import objects

        return getattr(objects, name)
    if name in _SCENE_NAMES:
        from . import scene

        return getattr(scene, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
