"""pip install . — the ROS-free library (decode, proposals, CLIP ranking, grounding, 3D) and the CLI.

The ROS 2 package (interfaces from msg/ and srv/, this Python package merged with the generated
msg/srv modules, executables, launch/, config/) is built by CMakeLists.txt under `colcon build`:
in a ROS 2 workspace with a distribution sourced, or in the venv (`make setup` runs it there).
This file serves pip only: the editable install of the venv and its console scripts.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name):
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="clip_perception",
    version="0.1.0",
    description="Find the object a person names in a camera image with CLIP (ROS 2 node + library)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["clip_perception", "clip_perception.*"]),
    install_requires=_requirements("torch.txt") + _requirements("base.txt"),
    extras_require={"test": _requirements("test.txt")},
    entry_points={
        "console_scripts": [
            "clip-perception = clip_perception.cli:main",
            "clip_perception_node = clip_perception.node:main",
            "clip_perception_sim_camera = clip_perception.sim.camera_node:main",
            "clip_perception_replay = clip_perception.tools.replay:main",
        ],
    },
)
