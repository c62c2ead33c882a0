"""The ``main()`` skeleton shared by the package's single-threaded rclpy executables
(``clip_perception_sim_camera``, ``clip_perception_replay``).

``clip_perception_node`` has its own (multi-threaded executor, start-up signal handling,
exit codes per failure kind; see :func:`clip_perception.node.main`).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

__all__ = ["run_single_threaded", "spin_while"]


def run_single_threaded(prog: str, init_args: Optional[list], make_node: Callable[[], Node],
                        run: Callable[[SingleThreadedExecutor, Node, Callable[[], bool]], None],
                        usage_errors: tuple = (ValueError,)) -> int:
    """Initialise rclpy, build a node on a fresh single-threaded executor, run it until it is
    done or a signal asks it to stop, then destroy everything in this (the main) thread.

    SIGINT / SIGTERM only set a flag (``rclpy.init`` with ``SignalHandlerOptions.NO`` and
    Python handlers): ``run`` sees ``running()`` turn False within one ``spin_once`` timeout
    and returns, and only then are the executor, the node and the context shut down.  With
    rclpy's default handlers a ``KeyboardInterrupt`` is raised at an arbitrary point of the
    main thread while rclpy's signal thread shuts the context down; the sim camera (30 Hz,
    640x480, a reliable subscriber) then crashed with SIGSEGV (exit -11) inside MuJoCo's
    OSMesa context release in ``destroy_node`` in 2 of 20 SIGINT / SIGTERM runs (faulthandler
    trace), and once in CI; with this scheme 0 of 30.

    Args:
        prog: program name for error lines on stderr (``"<prog>: <reason>"``).
        init_args: argv for ``rclpy.init`` (``--ros-args`` ...); None = ``sys.argv``.
        make_node: builds the node (may raise one of ``usage_errors``).
        run: ``run(executor, node, running)``; spins with ``executor.spin_once(timeout_sec=...)``
            while ``running()`` (False after a signal or when ROS shut down) and returns.
        usage_errors: exception types that mean bad arguments / parameters / input.

    Returns:
        0 when ``run`` returned (end of work or a signal, no traceback); 2 on one of
        ``usage_errors``.

    Raises:
        Exception: any other error while ROS is still up (a real bug: the traceback shows).
    """
    stop = threading.Event()

    def on_signal(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        stop.set()

    rclpy.init(args=init_args, signal_handler_options=SignalHandlerOptions.NO)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def running() -> bool:
        return not stop.is_set() and rclpy.ok()

    node = None
    executor = None
    code = 0
    try:
        executor = SingleThreadedExecutor()
        node = make_node()
        executor.add_node(node)
        if running():
            run(executor, node, running)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except usage_errors as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        code = 2
    except Exception:
        if rclpy.ok() and not stop.is_set():
            raise
        # stopped mid-way by a signal or an external shutdown: clean exit
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def spin_while(executor: SingleThreadedExecutor, node: Node, running: Callable[[], bool],
               timeout_s: float = 0.1) -> None:
    """``run`` for :func:`run_single_threaded` that spins until ``running()`` is False
    (checked every ``timeout_s`` seconds at the latest)."""
    while running():
        executor.spin_once(timeout_sec=timeout_s)
