#!/usr/bin/env python3
"""Write ``docs/annotated_example.png``: the README's screenshot-style example.

A seeded MuJoCo table-top scene (:mod:`clip_perception.sim.scene`) is run through
:class:`clip_perception.pipeline.Detector` with "pick up the blue box" (random CLIP weights +
colour prior, as ``clip-perception evaluate`` does offline) and drawn with
:func:`clip_perception.visualize.draw_result`: the ranked boxes (the masks' tight boxes), the
instance-mask outlines and the projected oriented 3D boxes.  It prints the best detection's
centre, extent and yaw next to the simulator's ground truth.

Usage: ``MUJOCO_GL=osmesa .venv/bin/python scripts/annotated_example.py [OUT.png]``
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

import clip_perception.pipeline  # noqa: F401  torch/triton before MuJoCo (see sim/scene.py)
from clip_perception.params import make_config
from clip_perception.pipeline import Detector
from clip_perception.sim.scene import make_scene
from clip_perception.visualize import draw_result, save_rgb

OBJECTS = [
    dict(shape="box", color="blue", xy=(0.04, 0.06), size=(0.07, 0.035, 0.025), yaw=0.6, name="blue box"),
    dict(shape="cup", color="green", xy=(0.12, -0.14), size=(0.04, 0.045), name="green cup"),
    dict(shape="ball", color="red", xy=(-0.10, -0.06), size=(0.035,), name="red ball"),
    dict(shape="cube", color="yellow", xy=(-0.06, 0.19), size=(0.03, 0.03, 0.03), yaw=-0.3, name="yellow cube"),
]
COMMAND = "pick up the blue box"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "docs" / "annotated_example.png"
    scene = make_scene(objects=OBJECTS)
    try:
        frame = scene.render()
    finally:
        scene.close()
    config = make_config({"pretrained": "none", "device": "cpu", "color_prior_weight": 1.0, "warmup": False,
                          "top_k": 3, "score_threshold": 0.0})
    result = Detector(config.detector).detect(frame.rgb, COMMAND, depth=frame.depth, K=frame.K)
    best = result.best
    title = f"{COMMAND}: {result.summary()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_rgb(out, draw_result(frame.rgb, result.detections[:3], title=title, K=frame.K))
    (truth,) = frame.find("blue box")
    if best is not None and best.position is not None:
        err = 100.0 * float(np.linalg.norm(best.position - truth.center_optical))
        world_long = np.asarray(frame.T_world_optical)[:3, :3] @ _long_axis(best.orientation)
        yaw = math.degrees(math.atan2(world_long[1], world_long[0]))
        print(f"best: {best.label} centre error {err:.2f} cm, extent {np.round(best.size, 3).tolist()} m "
              f"(true {np.round(np.sort(truth.size[:2])[::-1], 3).tolist()} + {truth.size[2]:.3f}), "
              f"world yaw {yaw:.1f} deg (true {math.degrees(OBJECTS[0]['yaw']):.1f} mod 180)")
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return 0


def _long_axis(q) -> np.ndarray:
    from clip_perception.segment import quaternion_to_rotation

    return quaternion_to_rotation(q)[:, 0]


if __name__ == "__main__":
    sys.exit(main())
