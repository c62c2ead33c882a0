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
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


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
        DeclareLaunchArgument("model_name", default_value="ViT-B-32", description="open_clip model name"),
        DeclareLaunchArgument("pretrained", default_value="openai",
                              description="open_clip tag, hf-hub:NAME, checkpoint path, or none"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cuda or cpu"),
        DeclareLaunchArgument("image_transport", default_value="raw", description="raw or compressed"),
    ]
    node = Node(
        package="clip_perception",
        executable="clip_perception_node",
        name="clip_perception",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "use_sim_time": LaunchConfiguration("use_sim_time"),
                "model_name": LaunchConfiguration("model_name"),
                "pretrained": LaunchConfiguration("pretrained"),
                "device": LaunchConfiguration("device"),
                "image_transport": LaunchConfiguration("image_transport"),
            },
        ],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("image/compressed", LaunchConfiguration("compressed_image")),
            ("depth", LaunchConfiguration("depth")),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("command", LaunchConfiguration("command")),
        ],
    )
    return LaunchDescription(arguments + [node])
