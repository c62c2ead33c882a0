# The ROS 2 wheels' CMake fix-ups, for a build of this package against the ROS 2 Kilted wheels
# from PyPI (no ROS install). Included through CMAKE_PROJECT_INCLUDE, which the venv's colcon
# defaults file passes (.venv/colcon/defaults.yaml, named by COLCON_DEFAULTS_FILE in
# .venv/bin/activate; both written by scripts/setup_env.sh). Never used on a real ROS 2 install,
# where `colcon build` needs no extra argument; every step below is a no-op there anyway.
#
# 1. AMENT_PREFIX_PATH: rosidl looks up its type support generators in the ament index of
#    $ENV{AMENT_PREFIX_PATH}, which a sourced ROS distribution sets and the wheels do not. The
#    prefix that holds ament_cmake_core (the venv) is added for this configure run only.
# 2. The wheels' exported CMake targets (<pkg>__rosidl_generator_py) name include folders
#    of the machine they were built on (/opt/python/cp311-cp311/include/python3.11 and
#    .../site-packages/numpy/_core/include); CMake's generate step rejects targets with
#    non-existent include folders.  The venv may also lie inside the source tree (a build in the
#    repository root), and CMake refuses to export include folders below the source directory.
#    At the end of the top-level directory (after every find_package) we rewrite those paths:
#    the build machine's folders become this interpreter's, and folders inside the source tree
#    are kept for the build only ($<BUILD_INTERFACE:...>).

find_package(ament_cmake_core QUIET)
if(ament_cmake_core_FOUND)
  get_filename_component(_clip_perception_wheels_prefix "${ament_cmake_core_DIR}/../../.." ABSOLUTE)
  string(REPLACE ":" ";" _clip_perception_ament_prefixes "$ENV{AMENT_PREFIX_PATH}")
  if(NOT _clip_perception_wheels_prefix IN_LIST _clip_perception_ament_prefixes)
    if("$ENV{AMENT_PREFIX_PATH}" STREQUAL "")
      set(ENV{AMENT_PREFIX_PATH} "${_clip_perception_wheels_prefix}")
    else()
      set(ENV{AMENT_PREFIX_PATH} "${_clip_perception_wheels_prefix}:$ENV{AMENT_PREFIX_PATH}")
    endif()
  endif()
endif()

function(_clip_perception_fix_wheel_targets)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
  get_directory_property(_imported DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
  get_directory_property(_own DIRECTORY "${CMAKE_SOURCE_DIR}" BUILDSYSTEM_TARGETS)
  foreach(_target IN LISTS _imported _own)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_fixed "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^/opt/python/cp[0-9]+-cp[0-9]+/include/python")
        set(_dir "${Python3_INCLUDE_DIRS}")
        set(_changed TRUE)
      elseif(_dir MATCHES "^/opt/python/cp[0-9]+-cp[0-9]+/.*numpy/_?core/include")
        set(_dir "${Python3_NumPy_INCLUDE_DIRS}")
        set(_changed TRUE)
      elseif(_dir MATCHES "^/opt/python/")
        continue()
      elseif(_dir MATCHES "^${CMAKE_SOURCE_DIR}/\\.venv/")
        set(_dir "$<BUILD_INTERFACE:${_dir}>")
        set(_changed TRUE)
      endif()
      list(APPEND _fixed "${_dir}")
    endforeach()
    if(_changed)
      set_property(TARGET ${_target} PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _clip_perception_fix_wheel_targets)
