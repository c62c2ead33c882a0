#!/usr/bin/env bash
# Builds this package with colcon against the ROS 2 Kilted wheels in .venv, as a user does
# (README, Development): `source .venv/bin/activate && colcon build` in the repository root, into
# ./build and ./install (ignored by git): interfaces, the Python package merged with the generated
# msg/srv modules, executables in install/clip_perception/lib/clip_perception, launch/ and config/.
# The activated venv supplies the wheels' CMake fix-ups (COLCON_DEFAULTS_FILE, scripts/setup_env.sh).
# A clean build when the interfaces, build files or requirements change; otherwise an incremental
# one when any installed file changed; skipped when nothing did.
# Makes the venv find the result without sourcing install/setup.bash:
#   - site-packages/clip_perception_interfaces.pth puts the install space's site-packages on sys.path
#     after the editable source tree (clip_perception/__init__.py extends its package path over it,
#     so the source modules win and msg/, srv/ come from the install space);
#   - site-packages/ros_clip_perception.libs -> install/clip_perception/lib: the wheels' bootstrapper
#     (ros_wheels_bootstrapper) adds every site-packages/ros_*.libs folder to LD_LIBRARY_PATH,
#     where the rosidl type support libraries are looked up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PYVER="$("$VENV/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
PREFIX="$ROOT/install/clip_perception"
PKG_SITE="$PREFIX/lib/$PYVER/site-packages"
cd "$ROOT"

hash_files() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
build_hash="$(hash_files msg/*.msg srv/*.srv CMakeLists.txt package.xml cmake/ros_wheels_compat.cmake \
  "$VENV/.stamp-requirements" "$VENV/colcon/defaults.yaml")"
mapfile -t sources < <(find clip_perception scripts launch config -type f \
  \( -name '*.py' -o -name '*.yaml' -o -path 'scripts/clip_perception_*' \) | LC_ALL=C sort)
source_hash="$( { printf '%s\n' "${sources[@]}"; hash_files "${sources[@]}"; } | sha256sum | cut -c1-16)"
stamp="$ROOT/install/.stamp-clip-perception"
if [ "$(cat "$stamp" 2>/dev/null)" != "$build_hash $source_hash" ]; then
  if [ "$(cut -d' ' -f1 "$stamp" 2>/dev/null)" != "$build_hash" ]; then
    echo "[setup] colcon build of clip_perception (clean) into $ROOT/install"
    rm -rf "$ROOT/build/clip_perception"
  else
    echo "[setup] colcon build of clip_perception (sources changed)"
  fi
  mkdir -p "$ROOT/log"
  (
    set +u  # the venv's activate script reads unset variables
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    colcon build --event-handlers console_cohesion+ >"$ROOT/log/setup_colcon_build.log" 2>&1
  ) || { tail -60 "$ROOT/log/setup_colcon_build.log"; echo "[setup] colcon build failed" >&2; exit 1; }
  # cmake --install never deletes: drop installed modules whose source is gone (moved or removed).
  (cd "$PKG_SITE/clip_perception" && find . -name '*.py' -not -path './msg/*' -not -path './srv/*') |
    while read -r f; do [ -e "$ROOT/clip_perception/$f" ] || rm -f "$PKG_SITE/clip_perception/$f"; done
  echo "$build_hash $source_hash" > "$stamp"
fi
echo "$PKG_SITE" > "$SITE/clip_perception_interfaces.pth"
ln -sfn "$PREFIX/lib" "$SITE/ros_clip_perception.libs"
# The plain-CMake layout of earlier set-ups (install/lib, install/share, build/interfaces).
rm -rf "$ROOT/build/interfaces" "$ROOT/install/lib" "$ROOT/install/include" "$ROOT/install/share" \
  "$ROOT/install/.stamp-interfaces"
