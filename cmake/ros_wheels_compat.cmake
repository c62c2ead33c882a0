# Included through CMAKE_PROJECT_INCLUDE by scripts/build_interfaces.sh when the
# interfaces are built against the ROS 2 Kilted wheels from PyPI (no ROS install).
# Not used under colcon with a ROS 2 distribution.
#
# The wheels' exported CMake targets (<pkg>__rosidl_generator_py) name include folders
# of the machine they were built on (/opt/python/cp311-cp311/include/python3.11 and
# .../site-packages/numpy/_core/include); CMake's generate step rejects targets with
# non-existent include folders.  Our venv also lies inside the source tree, and CMake
# refuses to export include folders below the source directory.  At the end of the
# top-level directory (after every find_package) we rewrite those paths: the build
# machine's folders become this interpreter's, and folders inside the source tree are
# kept for the build only ($<BUILD_INTERFACE:...>).

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
