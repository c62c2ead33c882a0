"""clip_perception: find the object a person names in a camera image with CLIP.

The ROS-free library lives in plain modules (``decode``, ``proposals``,
``encoder``, ``command``, ``colors``, ``ranking``, ``geometry``, ``pipeline``);
``node`` and ``messages`` wrap it for ROS 2.
"""

__version__ = "0.1.0"

# The generated ROS 2 interfaces (clip_perception.msg / .srv) may be installed in another
# folder than this source package (the CMake install prefix, or a colcon install space);
# extend the package path so that both halves import as one package.
from pkgutil import extend_path as _extend_path

__path__ = _extend_path(__path__, __name__)
