"""Launch the clip_perception node.

Examples (ROS 2 machine, after `colcon build --packages-select clip_perception`):

  # RealSense-style driver (realsense2_camera with align_depth.enable:=true):
  ros2 launch clip_perception clip_perception.launch.py \
      image:=/camera/camera/color/image_raw \
      depth:=/camera/camera/aligned_depth_to_color/image_raw \
      camera_info:=/camera/camera/color/camera_info

  # Gazebo camera bridged by ros_gz_bridge (rgbd camera, sim clock):
  ros2 run ros_gz_bridge parameter_bridge \
      /rgbd/image@sensor_msgs/msg/Image[gz.msgs.Image \
      /rgbd/depth_image@sensor_msgs/msg/Image[gz.msgs.Image \
      /rgbd/camera_info@sensor_msgs/msg/CameraInfo[gz.msgs.CameraInfo \
      /clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock
  ros2 launch clip_perception clip_perception.launch.py use_sim_time:=true \
      image:=/rgbd/image depth:=/rgbd/depth_image camera_info:=/rgbd/camera_info

  # Commands from a speech-to-text node publishing std_msgs/String on /speech/text:
  ros2 launch clip_perception clip_perception.launch.py command:=/speech/text
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

#: Launch arguments that set the node parameter of the same name only when given; empty (the
#: default) keeps the value of ``params_file``, so a custom parameters file is never overridden
#: by launch defaults.
PARAMETER_ARGUMENTS = {
    "model_name": "open_clip model name, e.g. ViT-B-16",
    "pretrained": "open_clip tag, hf-hub:NAME, checkpoint path, or none",
    "device": "auto, cuda, cuda:N or cpu",
    "image_transport": "raw or compressed",
}

#: (topic name used by the node, launch argument giving the remapped name)
REMAPPED_TOPICS = (
    ("image", "image"),
    ("image/compressed", "compressed_image"),
    ("depth", "depth"),
    ("camera_info", "camera_info"),
    ("command", "command"),
)


def _node(context, *args, **kwargs):
    """The node, with ``params_file`` first and then only the parameter arguments that were given."""
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    for name in PARAMETER_ARGUMENTS:
        value = LaunchConfiguration(name).perform(context)
        if value != "":
            overrides[name] = value
    return [
        Node(
            package="clip_perception",
            executable="clip_perception_node",
            name="clip_perception",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[(topic, LaunchConfiguration(arg)) for topic, arg in REMAPPED_TOPICS],
        )
    ]


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare("clip_perception"), "config", "clip_perception.yaml"])
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("image", default_value="image", description="colour image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("compressed_image", default_value="image/compressed",
                              description="compressed colour topic (image_transport:=compressed)"),
        DeclareLaunchArgument("depth", default_value="depth",
                              description="depth topic aligned to colour (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="colour CameraInfo topic"),
        DeclareLaunchArgument("command", default_value="command", description="std_msgs/String command topic"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="parameters YAML file"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (Gazebo, bags)"),
    ]
    arguments += [
        DeclareLaunchArgument(name, default_value="", description=f"{text} (empty: the params_file value)")
        for name, text in PARAMETER_ARGUMENTS.items()
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_node)])
