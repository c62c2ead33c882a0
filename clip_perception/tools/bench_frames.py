"""Frames of ``clip-perception bench``: seeded sim renders, their messages and their proposals.

See :mod:`clip_perception.tools.bench` for the whole benchmark.  Every frame is a seeded MuJoCo
table top (:func:`clip_perception.sim.scene.make_scene`, rendered in a child process so that
MuJoCo / OSMesa stay out of the measured process), "published" as ``sensor_msgs/Image``
fields (``rgb8`` colour, ``32FC1`` depth in metres) and given exactly ``--proposals``
boxes: :func:`proposals.propose` once, then padded with grid windows or capped
(:func:`pad_proposals`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Sequence

import numpy as np

__all__ = ["BenchFrame", "pad_proposals", "render_scenes", "render_frames"]

LOG = logging.getLogger("clip_perception.tools.bench")


def pad_proposals(boxes: np.ndarray, objectness: np.ndarray, width: int, height: int,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n`` proposals: the first ``n`` of ``boxes``, padded with grid windows.

    Padding windows come from :func:`proposals.grid_proposals` (all scales and aspects),
    picked at evenly spaced indices so that every scale is represented, cycled if the grid
    is shorter than needed; their objectness is the grid's.

    Args:
        boxes: (M, 4) float32 xyxy pixels, best first; objectness: (M,) float32.
        width, height: image size in pixels.
        n: number of proposals wanted (>= 1).

    Returns:
        ((n, 4) float32 boxes, (n,) float32 objectness).

    Raises:
        ValueError: ``n < 1``.
    """
    from ..boxes import clamp_boxes
    from ..proposals import grid_proposals

    if n < 1:
        raise ValueError(f"need at least one proposal, got {n}")
    b = np.asarray(boxes, np.float32).reshape(-1, 4)[:n]
    s = np.asarray(objectness, np.float32).reshape(-1)[:n]
    need = n - len(b)
    if need > 0:
        gb, gs = grid_proposals(int(width), int(height))
        if len(gb) >= need:
            idx = np.unique(np.linspace(0, len(gb) - 1, need).round().astype(np.int64))
        else:
            idx = np.arange(need) % max(1, len(gb))
        b = np.concatenate([b, gb[idx]], 0)
        s = np.concatenate([s, gs[idx]], 0)
    return clamp_boxes(b, width, height).astype(np.float32), s.astype(np.float32)


@dataclass
class BenchFrame:
    """One benchmark frame: what the camera published and the proposals every mode ranks.

    Attributes:
        seed: scene seed.
        image: ``sensor_msgs/Image``-like fields of the colour image (``rgb8``).
        depth: ``sensor_msgs/Image``-like fields of the depth (``32FC1``, metres).
        K: (3, 3) float64 intrinsics.
        boxes: (N, 4) float32 xyxy pixel proposals (exactly ``--proposals``).
        objectness: (N,) float32.
        raw_proposals: how many boxes ``propose`` itself returned (before padding).
        proposal_ms: wall-clock of ``propose`` for this frame [ms].
        proposal_cpu_ms: CPU time of this process during ``propose`` [ms].
        proposal_methods_ms: per-method milliseconds (``propose``'s ``timings``).
        targets: names of the visible objects (ground truth, e.g. "red ball").
    """

    seed: int
    image: SimpleNamespace
    depth: SimpleNamespace
    K: np.ndarray
    boxes: np.ndarray
    objectness: np.ndarray
    raw_proposals: int
    proposal_ms: float
    proposal_cpu_ms: float = 0.0
    proposal_methods_ms: dict = field(default_factory=dict)
    targets: list = field(default_factory=list)


def _render_scenes(seeds: Sequence[int], width: int, height: int) -> list:
    """[(rgb, depth, K, object names)] of seeded :func:`sim.scene.make_scene` renders."""
    from ..sim.scene import make_scene

    out = []
    for seed in seeds:
        scene = make_scene(seed=int(seed), width=int(width), height=int(height))
        try:
            fr = scene.render()
        finally:
            scene.close()
        out.append((fr.rgb, fr.depth, np.asarray(fr.K, np.float64), [o.name for o in fr.objects]))
    return out


def render_scenes(seeds: Sequence[int], width: int, height: int, subprocess: bool = True) -> list:
    """Render seeded scenes, by default in a child process (``multiprocessing`` spawn).

    The child keeps MuJoCo / OSMesa (about 100 MiB resident) out of the measured process --
    the node never renders (sim/scene.py fixes the torch/mujoco import order).
    Falls back to rendering here when the child cannot be started.

    Returns:
        list of (rgb (H, W, 3) uint8, depth (H, W) float32 metres, K (3, 3) float64, names).
    """
    if subprocess:
        import multiprocessing

        try:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                return pool.apply(_render_scenes, (list(seeds), width, height))
        except Exception as exc:  # pragma: no cover - e.g. no /dev/shm
            LOG.warning("rendering in a child process failed (%s); rendering here", exc)

    return _render_scenes(seeds, width, height)


def render_frames(count: int, width: int, height: int, n_proposals: int, methods: Sequence[str],
                  max_side: int = 320, first_seed: int = 0, subprocess: bool = True,
                  ss_mode: str = "single") -> list:
    """Render ``count`` seeded scenes (:func:`render_scenes`) and compute their (padded) proposals.

    Returns:
        list of :class:`BenchFrame`.
    """
    from ..decode import image_fields_from_depth, image_fields_from_rgb
    from ..proposals import propose
    from ..types import Timings

    frames = []
    seeds = list(range(first_seed, first_seed + count))
    for seed, (rgb, depth, K, names) in zip(seeds, render_scenes(seeds, width, height, subprocess)):
        fr = SimpleNamespace(rgb=rgb, depth=depth, K=K)
        timings = Timings()
        c0 = time.process_time()
        t0 = time.perf_counter()
        boxes, obj = propose(fr.rgb, depth=fr.depth, K=fr.K, methods=tuple(methods),
                             max_proposals=n_proposals, max_side=max_side, timings=timings, ss_mode=ss_mode)
        ms = (time.perf_counter() - t0) * 1e3
        cpu_ms = (time.process_time() - c0) * 1e3
        raw = len(boxes)
        boxes, obj = pad_proposals(boxes, obj, width, height, n_proposals)
        per_method = {k.split(".", 1)[1]: v for k, v in timings.stages_ms.items() if k.startswith("proposals.")}
        frames.append(BenchFrame(
            seed=seed,
            image=SimpleNamespace(**image_fields_from_rgb(fr.rgb, "rgb8")),
            depth=SimpleNamespace(**image_fields_from_depth(fr.depth, "32FC1")),
            K=np.asarray(fr.K, np.float64),
            boxes=boxes, objectness=obj, raw_proposals=raw, proposal_ms=ms, proposal_cpu_ms=cpu_ms,
            proposal_methods_ms=per_method, targets=list(names)))
    return frames
