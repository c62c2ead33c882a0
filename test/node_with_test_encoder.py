#!/usr/bin/env python3
"""Run ``ClipPerceptionNode`` in its own process with a test encoder (tests only).

Usage (what ``test_e2e.py`` starts)::

    python test/node_with_test_encoder.py [--encoder color|constant] --ros-args -r __ns:=/ns -p NAME:=VALUE ...

The node is the product's :class:`clip_perception.node.ClipPerceptionNode`, unchanged,
except that its encoder is ``fake_encoders.ColorTestEncoder`` (it "sees" only colour, so
for "pick up the red ball" the red ball's box is the known answer) instead of a CLIP
model, so the end-to-end tests need no weights and no model start-up time.  All ROS
arguments (namespace, parameters such as ``use_sim_time``) go to rclpy unchanged.
Exits 0 on SIGINT / SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rclpy  # noqa: E402
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor  # noqa: E402

from clip_perception.node import ClipPerceptionNode  # noqa: E402
from fake_encoders import ColorTestEncoder, ConstantEncoder  # noqa: E402

ENCODERS = {"color": ColorTestEncoder, "constant": ConstantEncoder}


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    name = "color"
    if "--encoder" in argv:
        i = argv.index("--encoder")
        name = argv[i + 1]
        del argv[i:i + 2]
    rclpy.init(args=argv)
    node = executor = None
    try:
        node = ClipPerceptionNode(encoder=ENCODERS[name]())
        executor = MultiThreadedExecutor(num_threads=4, context=node.context)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
