"""Issue 2: the package's interfaces, manifest and launch file.

Cases:
- generated messages/services import in the venv and round-trip through a real rclpy
  publisher and subscription in one process (all fields, 3 detections, ROI and Point exact);
- package.xml validates with catkin_pkg and declares every runtime dependency imported by its rosdep
  key, leaving out the pip-only ones (so README's `rosdep install` line resolves every key);
- CMakeLists.txt installs the Python package next to the generated msg/srv modules with no option;
- the launch file compiles and refers only to installed executables and config files.
"""

import ast
import re
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _make_array():
    from clip_perception.msg import TargetDetection, TargetDetectionArray
    from geometry_msgs.msg import Point, Vector3
    from sensor_msgs.msg import RegionOfInterest

    msg = TargetDetectionArray()
    msg.header.stamp.sec = 1700000000
    msg.header.stamp.nanosec = 123
    msg.header.frame_id = "cam_color_optical_frame"
    msg.command = "um, pick up the red ball"
    msg.action = "pick up"
    msg.target = "red ball"
    for i in range(3):
        det = TargetDetection()
        det.label = f"red ball {i}"
        det.score = 0.5 + 0.125 * i
        det.confidence = 0.25 * (i + 1)
        det.roi = RegionOfInterest(x_offset=10 + i, y_offset=20 + i, width=30 + i, height=40 + i, do_rectify=False)
        det.has_position = i != 1
        det.position = Point(x=0.4 + i, y=-0.125, z=2.0)
        det.size = Vector3(x=0.05, y=0.0625, z=0.03125)
        det.clip_score = 0.75
        det.color_score = -1.0 if i == 2 else 0.5
        msg.detections.append(det)
    return msg


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_messages_round_trip_through_rclpy():
    import rclpy
    from clip_perception.msg import TargetDetectionArray
    from clip_perception.srv import Locate, SetCommand

    # Services: request/response types exist with the contract's fields.
    assert set(SetCommand.Request.get_fields_and_field_types()) == {"command"}
    assert set(SetCommand.Response.get_fields_and_field_types()) == {"accepted", "target", "message"}
    assert set(Locate.Request.get_fields_and_field_types()) == {"command", "timeout"}
    assert Locate.Response.get_fields_and_field_types()["result"] == "clip_perception/TargetDetectionArray"

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("roundtrip_test", context=context)
        received = []
        node.create_subscription(TargetDetectionArray, "roundtrip_detections", received.append, 10)
        pub = node.create_publisher(TargetDetectionArray, "roundtrip_detections", 10)
        sent = _make_array()
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            pub.publish(sent)
            executor.spin_once(timeout_sec=0.1)
        assert received, "no message came back"
        got = received[0]
        assert got == sent
        assert got.header.stamp.sec == 1700000000 and got.header.stamp.nanosec == 123
        assert got.header.frame_id == "cam_color_optical_frame"
        assert (got.command, got.action, got.target) == ("um, pick up the red ball", "pick up", "red ball")
        assert len(got.detections) == 3
        for i, det in enumerate(got.detections):
            assert (det.roi.x_offset, det.roi.y_offset, det.roi.width, det.roi.height) == (10 + i, 20 + i, 30 + i, 40 + i)
            assert (det.position.x, det.position.y, det.position.z) == (0.4 + i, -0.125, 2.0)
            assert det.has_position == (i != 1)
            assert det.score == pytest.approx(0.5 + 0.125 * i)
            assert (det.size.x, det.size.y, det.size.z) == (0.05, 0.0625, 0.03125)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def _imported_top_modules():
    names = set()
    for path in [*(REPO / "clip_perception").rglob("*.py"), REPO / "launch" / "clip_perception.launch.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"clip_perception"}


# ROS packages the code or the launch file imports: declared by package name.
ROS_PACKAGES = {"rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs", "vision_msgs",
                "rosgraph_msgs", "rcl_interfaces", "builtin_interfaces", "lifecycle_msgs", "launch", "launch_ros",
                "tf2_ros"}
# Python packages with a rosdep key in rosdistro's rosdep/python.yaml that resolves on Ubuntu 22.04
# and 24.04 (Humble, Jazzy, Kilted): declared by that key.
ROSDEP_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml",
               "psutil": "python3-psutil", "PIL": "python3-pil", "tqdm": "python3-tqdm",
               "matplotlib": "python3-matplotlib"}
# Python packages without such a key: left out of package.xml (so `rosdep install` resolves every
# key) and installed with pip from requirements/ (README): module -> pip distribution.
PIP_ONLY = {"torch": "torch", "torchvision": "torchvision", "open_clip": "open-clip-torch",
            "huggingface_hub": "huggingface-hub", "mujoco": "mujoco", "rosbags": "rosbags",
            "transformers": "transformers"}  # transformers: bench peers only (requirements/test.txt)


def test_package_xml_validates_and_declares_runtime_dependencies():
    from catkin_pkg.package import parse_package

    package = parse_package(str(REPO / "package.xml"))
    package.validate()  # raises InvalidPackage (e.g. an invalid maintainer e-mail)
    assert package.name == "clip_perception"
    assert package.get_build_type() == "ament_cmake"
    assert all(re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", m.email) for m in package.maintainers)
    declared = {d.name for d in package.exec_depends + package.build_export_depends + package.build_depends}
    # Every third-party import is classified: a ROS package, a rosdep key or a pip-only package.
    imported = _imported_top_modules()
    unknown = sorted(imported - ROS_PACKAGES - set(ROSDEP_KEYS) - set(PIP_ONLY))
    assert not unknown, f"imports with no declared dependency (add them to package.xml or PIP_ONLY): {unknown}"
    missing = sorted(name for name in imported & ROS_PACKAGES if name not in declared)
    missing += sorted(key for name, key in ROSDEP_KEYS.items() if name in imported and key not in declared)
    missing += sorted({"vision_msgs", "lifecycle_msgs"} - declared)  # optional import / the managed node
    assert not missing, f"package.xml lacks: {missing}"
    every_key = {d.name for d in package.exec_depends + package.build_depends + package.buildtool_depends
                 + package.build_export_depends + package.test_depends}
    assert not {k for k in every_key if k.endswith("-pip") or k in {"python3-torch", "python3-torchvision"}}, \
        "keys that do not resolve on every distribution break `rosdep install`"
    requirements = "\n".join((REPO / "requirements" / f).read_text(encoding="utf-8")
                             for f in ("torch.txt", "base.txt", "test.txt"))
    pip_names = {re.split(r"[=<>\[ ]", line.strip())[0].lower() for line in requirements.splitlines()
                 if line.strip() and not line.startswith("#")}
    assert {PIP_ONLY[name] for name in imported & set(PIP_ONLY)} <= pip_names
    assert {"rosidl_default_generators", "ament_cmake_python"} <= {d.name for d in package.buildtool_depends}
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ros_section = readme.split("## On a ROS 2 machine", 1)[1].split("\n## ", 1)[0]
    assert "rosdep install --from-paths src --ignore-src -y" in ros_section
    assert "--skip-keys" not in ros_section and "requirements/base.txt" in ros_section


def test_cmake_installs_python_package_and_executables_without_options():
    """CMakeLists.txt builds the same way everywhere (no option that switches the Python package
    off), never calls ament_python_install_package itself (rosidl_generate_interfaces does, for
    the generated modules: rosidl_python issue 141), and installs the sources next to them."""
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in cmake.splitlines())
    assert "option(" not in code and "CLIP_PERCEPTION_INSTALL_PYTHON" not in code
    assert "ament_python_install_package(" not in code
    assert re.search(r'install\(DIRECTORY \$\{PROJECT_NAME\}/\s+DESTINATION "\$\{PYTHON_INSTALL_DIR\}/\$\{PROJECT_NAME\}"', code)
    assert code.index("rosidl_generate_interfaces(") < code.index("install(DIRECTORY ${PROJECT_NAME}/")
    for script in ("setup_env.sh", "build_interfaces.sh"):
        assert "CLIP_PERCEPTION_INSTALL_PYTHON" not in (REPO / "scripts" / script).read_text(encoding="utf-8")


def test_launch_file_compiles_and_refers_to_installed_files():
    launch_file = REPO / "launch" / "clip_perception.launch.py"
    source = launch_file.read_text(encoding="utf-8")
    tree = compile(source, str(launch_file), "exec", ast.PyCF_ONLY_AST)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    programs_block = re.search(r"install\(PROGRAMS(.*?)DESTINATION lib/\$\{PROJECT_NAME\}\)", cmake, re.S)
    assert programs_block, "CMakeLists.txt installs no programs to lib/clip_perception"
    installed_programs = set(re.findall(r"scripts/(\w+)", programs_block.group(1)))
    executables = {s for s in strings if s.startswith("clip_perception_")}
    assert "clip_perception_node" in executables
    assert executables <= installed_programs, f"launch names executables CMake does not install: {executables - installed_programs}"
    for name in installed_programs:
        assert (REPO / "scripts" / name).is_file()
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in cmake
    config_refs = {s for s in strings if s.endswith(".yaml")}
    assert config_refs, "launch file names no params file"
    for ref in config_refs:
        assert (REPO / "config" / Path(ref).name).is_file(), ref


def _load_launch_file_with_stand_ins(monkeypatch):
    """Import launch/clip_perception.launch.py with minimal stand-ins for ``launch`` and
    ``launch_ros`` (not on PyPI, so not installable here): each stand-in records its
    arguments; ``LaunchConfiguration.perform`` reads ``context.launch_configurations``."""
    import importlib.util
    import types

    class Record:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class LaunchConfiguration(Record):
        def perform(self, context):
            return context.launch_configurations[self.args[0]]

    modules = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "launch_ros.substitutions": types.ModuleType("launch_ros.substitutions"),
    }
    modules["launch"].LaunchDescription = type("LaunchDescription", (Record,), {})
    modules["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument", (Record,), {})
    modules["launch.actions"].OpaqueFunction = type("OpaqueFunction", (Record,), {})
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch.substitutions"].PathJoinSubstitution = type("PathJoinSubstitution", (Record,), {})
    modules["launch_ros.actions"].Node = type("Node", (Record,), {})
    modules["launch_ros.substitutions"].FindPackageShare = type("FindPackageShare", (Record,), {})
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("clip_perception_launch", REPO / "launch" / "clip_perception.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("given,expected", [
    ({}, {}),
    ({"pretrained": "none", "device": "cpu"}, {"pretrained": "none", "device": "cpu"}),
    ({"model_name": "ViT-B-16", "image_transport": "compressed"},
     {"model_name": "ViT-B-16", "image_transport": "compressed"}),
])
def test_launch_arguments_override_the_params_file_only_when_given(monkeypatch, given, expected):
    """Launch file behaviour: params_file first; model_name / pretrained / device /
    image_transport are passed to the node only when given on the command line (empty
    defaults), so a custom params_file keeps its values; topics are remapped from the
    arguments; the node is clip_perception_node named clip_perception."""
    import types

    launch = _load_launch_file_with_stand_ins(monkeypatch)
    description = launch.generate_launch_description()
    declared = [e for e in description.args[0] if type(e).__name__ == "DeclareLaunchArgument"]
    defaults = {d.args[0]: d.kwargs["default_value"] for d in declared}
    assert {name: defaults[name] for name in ("model_name", "pretrained", "device", "image_transport")} == {
        "model_name": "", "pretrained": "", "device": "", "image_transport": ""}
    opaque = [e for e in description.args[0] if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    context = types.SimpleNamespace(launch_configurations={**defaults, **given, "image": "/cam/color/image_raw"})
    (node,) = opaque[0].kwargs["function"](context)
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == ("clip_perception", "clip_perception_node",
                                                             "clip_perception")
    params_file, overrides = kw["parameters"]
    assert params_file.args == ("params_file",)
    assert set(overrides) == {"use_sim_time"} | set(expected)
    assert {k: v for k, v in overrides.items() if k != "use_sim_time"} == expected
    remaps = {topic: arg.perform(context) for topic, arg in kw["remappings"]}
    assert remaps == {"image": "/cam/color/image_raw", "image/compressed": "image/compressed", "depth": "depth",
                      "camera_info": "camera_info", "command": "command"}


def test_readme_lists_every_parameter_and_the_two_commands():
    """README case: the parameter reference names every declared parameter with its default."""
    import yaml

    from clip_perception.params import describe_parameters

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    for spec in describe_parameters():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{spec.name}` |")), None)
        assert row is not None, f"README lacks parameter {spec.name}"
        if spec.type is not list:
            default = yaml.safe_dump(spec.default, default_flow_style=True).replace("\n...", "").strip()
            assert f"`{default}`" in row, f"README default of {spec.name} differs from {default}"
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick and "make test" in quick
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
