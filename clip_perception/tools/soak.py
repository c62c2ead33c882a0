"""``clip-perception soak``: many frames through the real node, watching for leaks.

One process runs :class:`clip_perception.node.ClipPerceptionNode` as the executable
does (its own ``ClipEncoder`` built from the parameters -- ViT-B-32, ``pretrained: none`` =
random weights unless ``--pretrained`` names real ones --, the real proposals, ranking, 3D
step and publishers, a ``MultiThreadedExecutor`` with the executable's thread count; torch
keeps its default of all cores, the ``cpu_threads`` parameter is not applied) and a
harness node on the same ROS 2 graph (own ``rclpy.Context``, a private namespace,
localhost-only discovery unless ``ROS_AUTOMATIC_DISCOVERY_RANGE`` says otherwise) that

* publishes frame *i* -- a seeded synthetic table-top (grey table, 3-6 coloured boxes and
  discs at random places), ``rgb8``, with an aligned ``32FC1`` depth and a ``CameraInfo``
  of the same stamp -- over reliable QoS (through the one camera-feed publisher,
  :class:`clip_perception.tools.feed.CameraFeed`) and waits for the node's ``detections`` for that
  stamp before publishing frame *i + 1* (as fast as the node takes them, none dropped);
* every ``--command-every`` frames sends the next command of a fixed cycle on ``command``
  (colours, spatial qualifiers, a reference relation, "and then", and voice noise that
  must be ignored);
* keeps only counters (no message is stored).

Measured with :mod:`psutil` for the whole process (node + harness): resident set size
(RSS), thread count and open file descriptors, after ``gc.collect()``, at the end of the
warm-up (``--warmup`` frames: model, allocator pools, executor and DDS threads settle) and
then every ``--sample-every`` frames and at the end.

Verdict (exit code 1 when a limit is broken, 0 otherwise):

* RSS growth from the warm-up sample to the end <= ``--rss-limit-mib`` (50 MiB);
* thread count equal to the warm-up value in every later sample;
* open file descriptors never above the warm-up value;
* every frame answered (no frame without a result within ``--frame-timeout``) and no
  ``frame processing failed`` error from the node.

Output: a table of the samples and the verdict; ``--json`` prints one JSON object instead
(fields: ``frames``, ``warmup``, ``seconds``, ``frames_per_s``, ``baseline``, ``final``,
``samples`` (each ``frame``, ``seconds``, ``rss_mib``, ``threads``, ``fds``),
``rss_growth_mib``, ``threads_constant``, ``fds_stable``, ``limits``, ``failures``,
``ok``, ``found_frames``, ``commands_sent``, ``node_warnings``, ``config``).

Exit codes: 0 all limits kept, 1 a limit broken, 2 bad arguments, 3 weights unavailable.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

__all__ = ["COMMANDS", "make_frame", "measure", "run_soak", "main"]

#: Commands sent in turn, one every ``--command-every`` frames (voice noise must be ignored).
COMMANDS = (
    "pick up the red box",
    "grab the blue disc on the left",
    "hand me the largest green box",
    "[BLANK_AUDIO]",
    "find the yellow disc next to the red box",
    "pick up the nearest object",
    "Thank you.",
    "take the purple box and then the orange disc",
)

#: Colours of the synthetic objects (RGB).
_COLOURS = {
    "red": (210, 35, 35), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 210, 40),
    "orange": (240, 140, 30), "purple": (130, 50, 170),
}


def make_frame(index: int, width: int, height: int, seed: int = 0) -> tuple:
    """Synthetic RGB-D frame ``index`` (deterministic for ``(index, seed)``).

    Returns:
        ``(rgb (H, W, 3) uint8, depth (H, W) float32 metres, K (3, 3) float64)``: a grey
        table at 1.0 m with 3-6 coloured boxes / discs at 0.9 m; K has
        ``fx = fy = 0.8 * width`` pixels and the principal point at the image centre.
    """
    import cv2

    rng = np.random.default_rng((seed, index))
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[...] = rng.integers(110, 150, size=3, dtype=np.uint8)
    depth = np.full((height, width), 1.0, np.float32)
    mask = np.zeros((height, width), np.uint8)
    names = list(_COLOURS)
    side = max(8, min(width, height) // 6)
    for _ in range(int(rng.integers(3, 7))):
        colour = _COLOURS[names[int(rng.integers(len(names)))]]
        s = int(rng.integers(side // 2, side + 1))
        x = int(rng.integers(0, max(1, width - s)))
        y = int(rng.integers(0, max(1, height - s)))
        mask[...] = 0
        if rng.random() < 0.5:
            cv2.rectangle(mask, (x, y), (x + s - 1, y + s - 1), 1, -1)
        else:
            cv2.circle(mask, (x + s // 2, y + s // 2), s // 2, 1, -1)
        rgb[mask > 0] = colour
        depth[mask > 0] = 0.9
    f = 0.8 * width
    K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    return rgb, depth, K


@dataclass
class Sample:
    """Process resources at one moment (after ``gc.collect()``)."""

    frame: int
    seconds: float
    rss_mib: float
    threads: int
    fds: int

    def as_dict(self) -> dict:
        return {"frame": self.frame, "seconds": round(self.seconds, 2), "rss_mib": round(self.rss_mib, 2),
                "threads": self.threads, "fds": self.fds}


def measure(frame: int, t0: float) -> Sample:
    """RSS [MiB], thread count and open file descriptors of this process (psutil)."""
    import psutil

    gc.collect()
    proc = psutil.Process()
    fds = proc.num_fds() if hasattr(proc, "num_fds") else len(proc.open_files())
    return Sample(frame, time.monotonic() - t0, proc.memory_info().rss / 2**20, proc.num_threads(), fds)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clip-perception soak",
                                description="N frames through the clip_perception node in-process (real ClipEncoder), "
                                            "checking resident memory, threads and file descriptors.")
    p.add_argument("--frames", type=int, default=5000, help="frames after which to stop (default 5000)")
    p.add_argument("--warmup", type=int, default=200, help="frames before the baseline sample (default 200)")
    p.add_argument("--sample-every", type=int, default=500, help="frames between samples (default 500)")
    p.add_argument("--command-every", type=int, default=50, help="frames between commands (default 50)")
    p.add_argument("--width", type=int, default=320, help="frame width, pixels (default 320)")
    p.add_argument("--height", type=int, default=240, help="frame height, pixels (default 240)")
    p.add_argument("--encoder", choices=["real"], default="real",
                   help="the node's own ClipEncoder (the only choice: the product has no stand-in encoder)")
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name (default ViT-B-32)")
    p.add_argument("--pretrained", default="none",
                   help="weights: none = random (default; the soak measures resources, not accuracy), a tag or a path")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--mode", default="dense", choices=["crop", "dense", "cascade", "auto"],
                   help="ranking mode (default dense)")
    p.add_argument("--max-proposals", type=int, default=20, help="proposals ranked per frame (default 20)")
    p.add_argument("--proposal-methods", default="contours,grid,depth",
                   help="comma-separated proposal methods (default contours,grid,depth)")
    p.add_argument("--rss-limit-mib", type=float, default=50.0,
                   help="largest accepted RSS growth after the warm-up, MiB (default 50)")
    p.add_argument("--frame-timeout", type=float, default=120.0,
                   help="seconds to wait for one frame's result before giving up (default 120)")
    p.add_argument("--seed", type=int, default=0, help="frame generator seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--verbose", action="store_true", help="keep the node's INFO log lines")
    return p


def _check_args(args: argparse.Namespace) -> Optional[str]:
    if args.frames < 1:
        return "--frames must be >= 1"
    if not 0 <= args.warmup < args.frames:
        return "--warmup must be >= 0 and smaller than --frames"
    if args.sample_every < 1 or args.command_every < 1:
        return "--sample-every and --command-every must be >= 1"
    if args.width < 32 or args.height < 32:
        return "--width and --height must be >= 32"
    if not (args.rss_limit_mib >= 0 and math.isfinite(args.rss_limit_mib)):
        return "--rss-limit-mib must be a finite number >= 0"
    if args.frame_timeout <= 0:
        return "--frame-timeout must be > 0"
    return None


#: Optical frame id of the harness camera's messages.
FRAME_ID = "soak_camera_color_optical_frame"
#: Stamp of frame 0 [ns] (1e6 s: non-zero) and the stamp step per frame (1/30 s).
STAMP0_NS = 1_000_000_000 * 1_000_000
STAMP_STEP_NS = 33_333_333


def _node_overrides(args: argparse.Namespace) -> dict:
    """Parameters of the node under test (the executable's defaults otherwise)."""
    methods = [m.strip() for m in str(args.proposal_methods).split(",") if m.strip()]
    return {
        "model_name": args.model, "pretrained": args.pretrained, "device": args.device, "mode": args.mode,
        "max_proposals": int(args.max_proposals), "proposal_methods": methods, "use_depth": True,
        "qos": "reliable", "sync_slop": 0.05, "no_image_warn_s": 60.0, "command": COMMANDS[0],
    }


class _Results:
    """Counters of the node's ``detections`` (no message kept) and a condition to wait on a stamp."""

    def __init__(self) -> None:
        from ..messages import stamp_to_ns

        self._stamp_to_ns = stamp_to_ns
        self.stamp = -1
        self.found = 0
        self.results = 0
        self.cond = threading.Condition()

    def on_result(self, msg) -> None:
        with self.cond:
            self.stamp = self._stamp_to_ns(msg.header.stamp)
            self.results += 1
            self.found += bool(msg.detections)
            self.cond.notify_all()

    def wait_for(self, stamp_ns: int, timeout: float) -> bool:
        """True once a result of stamp >= ``stamp_ns`` came, False after ``timeout`` seconds."""
        with self.cond:
            return self.cond.wait_for(lambda: self.stamp >= stamp_ns, timeout=timeout)


def _wait_for_graph(harness, feed, pub_command, namespace: str, timeout_s: float = 60.0) -> None:
    """Until the node subscribes to the camera and ``command`` and publishes ``detections``."""
    deadline = time.monotonic() + timeout_s
    while (feed.subscription_count() == 0 or pub_command.get_subscription_count() == 0
           or harness.count_publishers(f"{namespace}/detections") == 0):
        if time.monotonic() > deadline:
            raise RuntimeError("the node's subscriptions / publishers did not appear within 60 s")
        time.sleep(0.05)


def _drive(args: argparse.Namespace, feed, pub_command, node, results: _Results, say) -> dict:
    """Publish the frames one by one (each after the previous one's result) and the commands;
    sample the process.  Returns {"samples", "baseline", "commands_sent", "seconds"}.

    Raises:
        RuntimeError: no result for a frame within ``--frame-timeout`` seconds.
    """
    from std_msgs.msg import String

    samples: list = []
    baseline: Optional[Sample] = None
    commands_sent = 0
    t0 = time.monotonic()
    for i in range(args.frames):
        if i > 0 and i % args.command_every == 0:
            pub_command.publish(String(data=COMMANDS[(i // args.command_every) % len(COMMANDS)]))
            commands_sent += 1
        rgb, depth, K = make_frame(i, args.width, args.height, args.seed)
        stamp_ns = STAMP0_NS + i * STAMP_STEP_NS
        feed.publish_rgbd(rgb, depth, K, stamp_ns, FRAME_ID)
        if not results.wait_for(stamp_ns, args.frame_timeout):
            raise RuntimeError(f"no result for frame {i} within {args.frame_timeout:g} s "
                               f"(node processed {node.frames_processed} frames)")
        done = i + 1
        if done == args.warmup or (args.warmup == 0 and i == 0):
            baseline = measure(done, t0)
            samples.append(baseline)
            say(_row(baseline))
        elif done > args.warmup and (done % args.sample_every == 0 or done == args.frames):
            samples.append(measure(done, t0))
            say(_row(samples[-1]))
    return {"samples": samples, "baseline": baseline, "commands_sent": commands_sent,
            "seconds": time.monotonic() - t0}


def run_soak(args: argparse.Namespace, progress=None) -> dict:
    """Run the soak described in the module docstring; returns the JSON-ready report.

    The harness publishes the camera through :class:`clip_perception.tools.feed.CameraFeed`
    (reliable QoS, keep last 10): ``depth`` (``32FC1``), ``camera_info``, then ``image``
    (``rgb8``), one header per frame.

    Raises:
        params.ParameterError: an invalid node parameter (e.g. ``--mode``, ``--max-proposals``).
        weights.WeightsUnavailableError: ``--pretrained`` weights cannot be loaded.
        RuntimeError: the node gave no result for a frame within ``--frame-timeout`` seconds.
    """
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from clip_perception.msg import TargetDetectionArray

    from .. import node as node_module
    from .feed import CameraFeed

    say = progress or (lambda text: None)
    reliable = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    namespace = f"/soak_{uuid.uuid4().hex[:8]}"
    ctx = rclpy.Context()
    rclpy.init(args=None if args.verbose else ["--ros-args", "--log-level", "WARN"], context=ctx)
    node = harness = executor = spin = None
    results = _Results()
    try:
        say(f"starting the node ({args.model}, pretrained {args.pretrained}, {args.device}, mode {args.mode}) ...")
        node = node_module.ClipPerceptionNode(
            context=ctx, namespace=namespace,
            parameter_overrides=[Parameter(k, value=v) for k, v in _node_overrides(args).items()])
        harness = rclpy.create_node(f"soak_harness_{uuid.uuid4().hex[:6]}", namespace=namespace, context=ctx)
        feed = CameraFeed(harness, qos=reliable)
        pub_command = harness.create_publisher(String, "command", reliable)
        harness.create_subscription(TargetDetectionArray, "detections", results.on_result, reliable)
        executor = MultiThreadedExecutor(num_threads=node_module.EXECUTOR_THREADS, context=ctx)
        executor.add_node(node)
        executor.add_node(harness)
        spin = threading.Thread(target=executor.spin, name="soak_spin", daemon=True)
        spin.start()
        _wait_for_graph(harness, feed, pub_command, namespace)
        run = _drive(args, feed, pub_command, node, results, say)
        return _report(args, run, results, node)
    finally:
        if node is not None:
            node.stop()
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if spin is not None:
            spin.join(5.0)
        for n in (harness, node):
            if n is not None:
                n.destroy_node()
        rclpy.try_shutdown(context=ctx)


def _report(args: argparse.Namespace, run: dict, results: _Results, node) -> dict:
    """The verdict (:func:`_verdict`) plus the counters of the run and the node's own state."""
    samples = run["samples"]
    node_errors = [w for w in node.warnings if "failed" in w]
    report = _verdict(args, run["baseline"], samples[-1], samples, run["seconds"])
    report.update({
        "found_frames": results.found, "results": results.results, "commands_sent": run["commands_sent"],
        "node_frames_processed": node.frames_processed, "node_warnings": list(node.warnings[-20:]),
        "encoder": {"model": args.model, "pretrained": args.pretrained,
                    "device": str(node.detector.device), "mode": node.detector.mode},
    })
    if node_errors:
        report["failures"].append(f"node errors: {node_errors[:3]}")
        report["ok"] = False
    return report


def _verdict(args, baseline: Sample, final: Sample, samples: list, seconds: float) -> dict:
    after = [s for s in samples if s.frame >= baseline.frame]
    growth = final.rss_mib - baseline.rss_mib
    threads_constant = all(s.threads == baseline.threads for s in after)
    fds_stable = all(s.fds <= baseline.fds for s in after)
    failures = []
    if growth > args.rss_limit_mib:
        failures.append(f"RSS grew {growth:.1f} MiB after the warm-up (limit {args.rss_limit_mib:g} MiB)")
    if not threads_constant:
        failures.append(f"thread count changed: {[s.threads for s in after]}")
    if not fds_stable:
        failures.append(f"open file descriptors grew: {[s.fds for s in after]}")
    return {
        "frames": args.frames, "warmup": args.warmup, "seconds": round(seconds, 2),
        "frames_per_s": round(args.frames / seconds, 2) if seconds > 0 else None,
        "baseline": baseline.as_dict(), "final": final.as_dict(), "samples": [s.as_dict() for s in samples],
        "rss_growth_mib": round(growth, 2), "threads_constant": threads_constant, "fds_stable": fds_stable,
        "limits": {"rss_growth_mib": args.rss_limit_mib, "threads": "constant", "fds": "no growth"},
        "failures": failures, "ok": not failures,
        "config": {"width": args.width, "height": args.height, "mode": args.mode,
                   "max_proposals": args.max_proposals, "proposal_methods": args.proposal_methods,
                   "command_every": args.command_every, "seed": args.seed},
    }


def _row(s: Sample) -> str:
    return f"{s.frame:>7d} {s.seconds:>9.1f} {s.rss_mib:>9.1f} {s.threads:>8d} {s.fds:>5d}"


def _print_table(report: dict) -> None:
    print(f"soak: {report['frames']} frames in {report['seconds']:.1f} s ({report['frames_per_s']} frames/s), "
          f"{report['config']['width']}x{report['config']['height']}, mode {report['encoder']['mode']}, "
          f"{report['config']['max_proposals']} proposals, model {report['encoder']['model']} "
          f"({report['encoder']['pretrained']}) on {report['encoder']['device']}")
    print(f"{'frame':>7} {'seconds':>9} {'RSS MiB':>9} {'threads':>8} {'fds':>5}")
    for s in report["samples"]:
        print(f"{s['frame']:>7d} {s['seconds']:>9.1f} {s['rss_mib']:>9.1f} {s['threads']:>8d} {s['fds']:>5d}")
    print(f"RSS growth after warm-up ({report['warmup']} frames): {report['rss_growth_mib']:+.1f} MiB "
          f"(limit {report['limits']['rss_growth_mib']:g}); threads constant: {report['threads_constant']}; "
          f"fds stable: {report['fds_stable']}; results {report['results']} "
          f"({report['found_frames']} with a detection); commands sent {report['commands_sent']}")
    if report["ok"]:
        print("verdict: PASS")
    else:
        print("verdict: FAIL -- " + "; ".join(report["failures"]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``clip-perception soak [options]`` (see ``--help``).  Exit codes: 0 pass, 1 a limit
    broken (or a frame never answered), 2 bad arguments, 3 weights unavailable."""
    args = make_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    problem = _check_args(args)
    if problem:
        print(f"clip-perception soak: error: {problem}", file=sys.stderr)
        return 2
    from ..params import ParameterError

    def progress(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    if not args.json:
        print(f"{'frame':>7} {'seconds':>9} {'RSS MiB':>9} {'threads':>8} {'fds':>5}   (samples as they come)")
    try:
        report = run_soak(args, progress=progress)
    except ParameterError as exc:
        print(f"clip-perception soak: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if type(exc).__name__ in ("WeightsUnavailableError", "CheckpointError"):
            print(f"clip-perception soak: {exc}", file=sys.stderr)
            return 3
        print(f"clip-perception soak: FAIL -- {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
