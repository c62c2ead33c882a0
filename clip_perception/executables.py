"""The ``main()`` skeleton shared by the package's single-threaded rclpy executables
(``clip_perception_sim_camera``, ``clip_perception_replay``).

``clip_perception_node`` has its own (multi-threaded executor, start-up signal handling,
exit codes per failure kind; see :func:`clip_perception.node.main`).
"""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

__all__ = ["run_single_threaded"]


def run_single_threaded(prog: str, make_node: Callable[[], Node],
                        run: Callable[[SingleThreadedExecutor, Node], None],
                        usage_errors: tuple = (ValueError,)) -> int:
    """Build a node on a fresh single-threaded executor, run it, always clean up.

    Call after ``rclpy.init()``.  The executor is made before the (possibly slow) node:
    ``rclpy.spin()``'s global executor would be None when a signal shut the context down
    while the node was being built.

    Args:
        prog: program name for error lines on stderr (``"<prog>: <reason>"``).
        make_node: builds the node (may raise one of ``usage_errors``).
        run: runs it, e.g. ``lambda ex, node: ex.spin()``; returns when done or shut down.
        usage_errors: exception types that mean bad arguments / parameters / input.

    Returns:
        0 when ``run`` returned or on SIGINT / SIGTERM (rclpy's handlers shut the context
        down; no traceback, also when that happens while the node is being built); 2 on one
        of ``usage_errors``.

    Raises:
        Exception: any other error while ROS is still up (a real bug: the traceback shows).
    """
    node = None
    executor = None
    code = 0
    try:
        executor = SingleThreadedExecutor()
        node = make_node()
        executor.add_node(node)
        run(executor, node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except usage_errors as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        code = 2
    except Exception:
        if rclpy.ok():
            raise
        # a signal shut ROS down mid-way: clean exit
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
