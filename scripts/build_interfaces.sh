#!/usr/bin/env bash
# Builds msg/ and srv/ with plain CMake against the ROS 2 Kilted wheels in .venv and installs them
# into ./install (ignored by git).  Skipped when the inputs are unchanged.
# Makes the venv find the result:
#   - site-packages/clip_perception_interfaces.pth puts install/.../site-packages on sys.path
#     (clip_perception/__init__.py extends its package path over it);
#   - site-packages/ros_clip_perception.libs -> install/lib: the wheels' bootstrapper
#     (ros_wheels_bootstrapper) adds every site-packages/ros_*.libs folder to LD_LIBRARY_PATH,
#     where the rosidl type support libraries are looked up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
BUILD="$ROOT/build/interfaces"
PREFIX="$ROOT/install"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PYVER="$("$VENV/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"

stamp="$PREFIX/.stamp-interfaces"
inputs_hash="$(cat "$ROOT"/msg/*.msg "$ROOT"/srv/*.srv "$ROOT/CMakeLists.txt" "$ROOT/package.xml" \
  "$ROOT/cmake/ros_wheels_compat.cmake" "$VENV/.stamp-requirements" 2>/dev/null | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$inputs_hash" ]; then
  echo "[setup] building interfaces (msg/, srv/) into $PREFIX"
  rm -rf "$BUILD" "$PREFIX"
  mkdir -p "$BUILD"
  export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
  cmake -S "$ROOT" -B "$BUILD" \
    -DCMAKE_PROJECT_INCLUDE="$ROOT/cmake/ros_wheels_compat.cmake" \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DPython3_EXECUTABLE="$VENV/bin/python" \
    -DCLIP_PERCEPTION_INSTALL_PYTHON=OFF \
    -DBUILD_TESTING=OFF >"$BUILD/configure.log" 2>&1 \
    || { cat "$BUILD/configure.log"; echo "[setup] CMake configure failed" >&2; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" >"$BUILD/build.log" 2>&1 \
    || { tail -50 "$BUILD/build.log"; echo "[setup] interface build failed" >&2; exit 1; }
  cmake --install "$BUILD" >"$BUILD/install.log" 2>&1 \
    || { cat "$BUILD/install.log"; echo "[setup] interface install failed" >&2; exit 1; }
  echo "$inputs_hash" > "$stamp"
fi
echo "$PREFIX/lib/$PYVER/site-packages" > "$SITE/clip_perception_interfaces.pth"
ln -sfn "$PREFIX/lib" "$SITE/ros_clip_perception.libs"
