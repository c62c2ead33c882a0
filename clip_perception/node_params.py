"""ROS 2 side of the parameter table: descriptors, declaration, integer-for-double coercion,
and the node's QoS profiles.

The table itself (names, types, defaults, ranges, validation) is
:data:`clip_perception.params.PARAMETERS`; this module only turns it into rclpy calls.
"""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from . import params

__all__ = ["descriptor", "declare_parameters", "coerce_parameters", "reliable_qos", "camera_qos"]


def reliable_qos(depth: int = 10, latched: bool = False) -> QoSProfile:
    """Reliable, keep last ``depth``; ``latched``: transient local (late joiners get the last one)."""
    return QoSProfile(
        depth=depth,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def camera_qos(name: str) -> QoSProfile:
    """``sensor_data`` -> ``rclpy.qos.qos_profile_sensor_data`` (best effort, keep last 5);
    ``reliable`` -> reliable, keep last 5 (the callback keeps only the newest anyway)."""
    return qos_profile_sensor_data if name == "sensor_data" else reliable_qos(depth=5)


def descriptor(spec: params.ParamSpec) -> ParameterDescriptor:
    """ParameterDescriptor for one :class:`params.ParamSpec` (ranges, read-only, typing)."""
    desc = spec.description
    if spec.choices and spec.type is not list:
        desc += f" (one of: {', '.join(spec.choices)})"
    d = ParameterDescriptor(name=spec.name, description=desc, read_only=not spec.runtime)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.type is int and spec.min is not None and spec.max is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=0)]
    if spec.type is float:
        # Dynamic typing: a YAML / command-line integer (``score_threshold: 1``) is accepted and
        # coerced to a double (pre-set callback); the value check is params.validate.
        d.dynamic_typing = True
        if spec.min is not None and spec.max is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    if spec.type is list:
        # Dynamic typing so that an empty list (typed BYTE_ARRAY by rcl) is accepted.
        d.dynamic_typing = True
    return d


def declare_parameters(node) -> dict:
    """Declare every parameter of the table on ``node`` (overrides from YAML / command line
    applied by rclpy); an integer given for a float parameter is stored as a double.

    Returns:
        dict name -> value (not yet validated: :func:`params.make_config`).
    """
    values = {}
    for name, spec in params.PARAMETERS.items():
        default = list(spec.default) if spec.type is list else spec.default
        values[name] = node.declare_parameter(name, default, descriptor(spec)).value
    # A YAML integer for a float parameter: store it as a double (ros2 param get shows 1.0).
    for name, spec in params.PARAMETERS.items():
        v = values[name]
        if spec.type is float and isinstance(v, int) and not isinstance(v, bool):
            node.set_parameters([Parameter(name, Parameter.Type.DOUBLE, float(v))])
            values[name] = float(v)
    return values


def coerce_parameters(parameters: list) -> list:
    """Pre-set callback: an INTEGER value for a float parameter becomes a DOUBLE."""
    out = []
    for p in parameters:
        spec = params.PARAMETERS.get(p.name)
        if spec is not None and spec.type is float and p.type_ == Parameter.Type.INTEGER:
            p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
        out.append(p)
    return out
