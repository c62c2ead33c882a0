"""``clip-perception bench --age-run``: the age of the node's detections under a 30 Hz camera.

The ROS node (:class:`clip_perception.node.ClipPerceptionNode`, in this process, with the
bench's encoder) runs against a camera driver in a child process (:func:`_camera_process`,
publishing through the one camera-feed publisher :class:`clip_perception.tools.feed.CameraFeed`:
fresh ``time.time_ns()`` stamps, ``sensor_data`` QoS); the age of a detection is its publish
time minus its ``header.stamp`` (same machine clock).  See :mod:`clip_perception.tools.bench`.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Optional

import numpy as np

from .bench_modes import percentiles

__all__ = ["AGE_RUN_RATE_HZ", "AGE_RUN_FRAMES", "age_run"]

#: Camera rate of ``--age-run`` [Hz].
AGE_RUN_RATE_HZ = 30.0
#: Frames rendered for ``--age-run`` (cycled, re-stamped).
AGE_RUN_FRAMES = 3
#: Optical frame id of the camera's messages.
FRAME_ID = "sim_camera_color_optical_frame"


def _camera_process(ns: str, frames: list, seconds: float, rate_hz: float, frame_id: str) -> dict:
    """Child process: a camera driver publishing ``frames`` cyclically at ``rate_hz`` for ``seconds``.

    Publishes ``depth`` and ``camera_info`` then ``image`` under ``ns`` through
    :class:`~clip_perception.tools.feed.CameraFeed` with ``sensor_data`` QoS and a fresh
    ``time.time_ns()`` stamp per frame; starts its clock once the node's subscriptions are
    matched (at most 15 s).

    Args:
        frames: list of (rgb (H, W, 3) uint8, depth (H, W) float32 metres, K (3, 3) float64 pixels).

    Returns:
        {"published": int, "seconds": float (actual publishing time), "matched": bool}.
    """
    import rclpy

    from .feed import CameraFeed

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f"bench_camera_{uuid.uuid4().hex[:6]}", context=ctx)
    try:
        feed = CameraFeed(node, qos="sensor_data", image_topic=f"{ns}/image", depth_topic=f"{ns}/depth",
                          info_topic=f"{ns}/camera_info")
        msgs = [feed.make_frame(rgb, depth, K, frame_id=frame_id) for rgb, depth, K in frames]
        feed.wait_for_subscribers(timeout_s=15.0)
        matched = feed.subscription_count() > 0
        time.sleep(0.5)  # let discovery settle on both sides
        n = 0
        t0 = time.monotonic()
        period = 1.0 / float(rate_hz)
        while True:
            due = t0 + n * period
            now = time.monotonic()
            if due - t0 >= seconds:
                break
            if due > now:
                time.sleep(due - now)
            feed.publish(msgs[n % len(msgs)], stamp_ns=time.time_ns(), frame_id=frame_id)
            n += 1
        return {"published": n, "seconds": time.monotonic() - t0, "matched": matched}
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def _camera_payload(frames: list) -> list:
    """:class:`BenchFrame` list -> [(rgb uint8, depth float32 metres, K (3, 3) float64)] for the child."""
    from ..decode import decode_depth, decode_image

    return [(decode_image(fr.image), decode_depth(fr.depth), np.asarray(fr.K, np.float64).reshape(3, 3))
            for fr in frames]


def _age_node(encoder, config, command: str, ctx, ns: str, ages: list, lock: threading.Lock):
    """The node under test, its ``detections`` publishers wrapped to append each message's age
    (ms, ``time.time_ns() - header.stamp``) to ``ages`` at publish time."""
    from rclpy.parameter import Parameter

    from .. import messages
    from ..node import ClipPerceptionNode

    overrides = [
        Parameter("command", value=command),
        Parameter("mode", value=str(config.mode)),
        Parameter("score_threshold", value=float(config.score_threshold)),
        Parameter("cascade_top_k", value=int(config.cascade_top_k)),
        Parameter("warmup", value=False),
    ]
    # as the clip_perception_node executable does: cpu_threads (auto: one core left to ROS 2)
    node = ClipPerceptionNode(encoder=encoder, context=ctx, namespace=ns, parameter_overrides=overrides,
                              owns_process=True)
    for camera in node.cameras:
        publish = camera.det_pub.publish

        def timed_publish(msg, _publish=publish) -> None:
            age = (time.time_ns() - messages.stamp_to_ns(msg.header.stamp)) / 1e6
            with lock:
                ages.append(age)
            _publish(msg)

        camera.det_pub.publish = timed_publish
    return node


def _run_camera(ns: str, payload: list, seconds: float, rate_hz: float) -> tuple[Optional[dict], Optional[str]]:
    """Run :func:`_camera_process` in a spawned child; (its result, None) or (None, why it failed)."""
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    with mp.Pool(1) as pool:
        job = pool.apply_async(_camera_process, (ns, payload, float(seconds), float(rate_hz), FRAME_ID))
        try:
            return job.get(timeout=float(seconds) + 120.0), None
        except Exception as exc:
            return None, f"camera process failed ({type(exc).__name__}: {exc})"


def age_run(encoder, frames: list, seconds: float, config, command: str,
            rate_hz: float = AGE_RUN_RATE_HZ) -> dict:
    """Output age of the ROS node (in this process, with ``encoder``) under a ``rate_hz`` camera.

    The camera is a separate process (:func:`_camera_process`, like a real driver) that
    publishes ``frames`` cyclically with fresh stamps on ``image`` / ``depth`` /
    ``camera_info``.  The node's ``detections`` publisher is wrapped so that every message
    records ``age = time.time_ns() - header.stamp`` at the moment it is published (the time
    from capture to answer: waiting in the depth-1 slot plus processing).

    Returns:
        dict with ``seconds``, ``rate_hz``, ``camera_rate_hz`` (achieved), ``mode``,
        ``cpu_threads`` (torch threads the node set, as the executable does; the caller's
        setting is restored afterwards), ``published`` (camera frames), ``processed`` (frames
        the node answered),
        ``age_ms`` ({p50, p90, max}); or ``{"skipped": reason}`` when ROS 2 or the node is
        not importable or the camera process fails.
    """
    try:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        from ..node import ClipPerceptionNode  # noqa: F401  (importable: else skipped)
        from .feed import CameraFeed  # noqa: F401
    except Exception as exc:
        return {"skipped": f"ROS 2 node not available ({type(exc).__name__}: {exc})"}
    import torch

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ns = f"/bench_{uuid.uuid4().hex[:8]}"
    payload = _camera_payload(frames)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = executor = thread = cam = error = None
    ages: list = []
    lock = threading.Lock()
    resolved_mode = str(config.mode)
    threads_before = node_threads = torch.get_num_threads()
    try:
        node = _age_node(encoder, config, command, ctx, ns, ages, lock)
        resolved_mode = node.detector.mode
        node_threads = torch.get_num_threads()
        executor = MultiThreadedExecutor(num_threads=4, context=ctx)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        cam, error = _run_camera(ns, payload, seconds, rate_hz)
        time.sleep(0.2)
        node.stop()  # the frame in progress finishes and is published
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if thread is not None:
            thread.join(5.0)
        processed = int(getattr(node, "frames_processed", 0)) if node is not None else 0
        if node is not None:
            node.destroy_node()
        try:
            rclpy.shutdown(context=ctx)
        except Exception:  # already shut down
            pass
        torch.set_num_threads(threads_before)
    if error is not None or cam is None:
        return {"skipped": error or "camera process returned nothing"}
    with lock:
        got = list(ages)
    p = percentiles(got)
    return {
        "seconds": float(seconds),
        "rate_hz": float(rate_hz),
        "camera_rate_hz": cam["published"] / cam["seconds"] if cam["seconds"] > 0 else 0.0,
        "mode": str(config.mode),
        "resolved_mode": resolved_mode,
        "cpu_threads": int(node_threads),
        "published": int(cam["published"]),
        "processed": processed,
        "age_ms": {"p50": p["p50"], "p90": p["p90"], "max": float(max(got)) if got else float("nan")},
    }
