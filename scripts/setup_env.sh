#!/usr/bin/env bash
# Creates the project's environment on a machine without a ROS 2 install:
#   .venv/            Python venv with ROS 2 Kilted wheels (PyPI), PyTorch, open_clip, OpenCV, MuJoCo,
#                     colcon and the test tools
#   build/, install/  `colcon build` of this package against those wheels (ignored by git)
# and installs clip_perception (editable) so that `import clip_perception`,
# `from clip_perception.msg import TargetDetectionArray` and the console scripts work in the venv.
# After `source .venv/bin/activate`, a plain `colcon build` works too (here or in any workspace):
# activate exports COLCON_DEFAULTS_FILE=.venv/colcon/defaults.yaml, which passes the wheels' CMake
# fix-ups (cmake/ros_wheels_compat.cmake); deactivate unsets it. A ROS 2 install needs none of this.
# Idempotent: each step is skipped when the stamp of its inputs is unchanged (a second run takes seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
log() { printf '[setup] %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# 1. Debian packages: cmake (interfaces), libosmesa6 (MuJoCo headless rendering), a C/C++ compiler.
need_apt=()
for pkg in cmake libosmesa6 g++ make; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# 2. The venv and its Python packages.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
req_stamp="$VENV/.stamp-requirements"
req_hash="$(hash_of requirements/*.txt)"
if [ "$(cat "$req_stamp" 2>/dev/null)" != "$req_hash" ]; then
  log "installing Python packages (first run: several minutes)"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
  # PyTorch first, on its own: pip takes these pinned releases from the machine's disk.
  "$VENV/bin/pip" install -q -r requirements/torch.txt
  "$VENV/bin/pip" install -q -r requirements/ros.txt -r requirements/base.txt -r requirements/test.txt
  echo "$req_hash" > "$req_stamp"
fi

# 3. What a plain `colcon build` needs in the activated venv: the colcon defaults file (colcon-defaults)
#    with the wheels' CMake fix-ups, named by COLCON_DEFAULTS_FILE in bin/activate.
mkdir -p "$VENV/colcon"
cat > "$VENV/colcon/defaults.yaml" <<EOF
# Written by scripts/setup_env.sh; colcon reads it while this venv is active (COLCON_DEFAULTS_FILE).
# Builds against the ROS 2 wheels of this venv need the CMake fix-ups of ros_wheels_compat.cmake.
build:
  cmake-args:
    - -DCMAKE_PROJECT_INCLUDE=$ROOT/cmake/ros_wheels_compat.cmake
EOF
activate="$VENV/bin/activate"
if ! grep -q COLCON_DEFAULTS_FILE "$activate"; then
  log "making $activate export COLCON_DEFAULTS_FILE"
  # deactivate (which activate also runs first) unsets it when it names this venv's file.
  sed -i 's|^    unset VIRTUAL_ENV$|    [ "${COLCON_DEFAULTS_FILE:-}" != "${VIRTUAL_ENV:-}/colcon/defaults.yaml" ] \|\| unset COLCON_DEFAULTS_FILE\n&|' \
    "$activate"
  printf '%s\n' '' \
    '# clip_perception (scripts/setup_env.sh): `colcon build` against the ROS 2 wheels of this venv.' \
    'COLCON_DEFAULTS_FILE="$VIRTUAL_ENV/colcon/defaults.yaml"' \
    'export COLCON_DEFAULTS_FILE' >> "$activate"
fi

# 4. The package (msg/, srv/, Python package, executables): `colcon build` here, as a user does.
bash "$ROOT/scripts/build_interfaces.sh"

# 5. The package itself (editable, so the source tree is what runs) and its console scripts.
pkg_stamp="$VENV/.stamp-package"
pkg_hash="$(hash_of setup.py)"
if [ "$(cat "$pkg_stamp" 2>/dev/null)" != "$pkg_hash" ] || [ ! -x "$VENV/bin/clip_perception_node" ]; then
  log "installing clip_perception (editable)"
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
  echo "$pkg_hash" > "$pkg_stamp"
fi

# 6. Check that the whole stack imports.
"$VENV/bin/python" - <<'PYCHECK'
import importlib
for name in ("torch", "open_clip", "cv2", "mujoco", "rosbags", "rclpy", "colcon_core", "clip_perception"):
    importlib.import_module(name)
from clip_perception.msg import TargetDetectionArray  # noqa: F401
from clip_perception.srv import Locate, SetCommand  # noqa: F401
PYCHECK
log "environment ready: $VENV"
