#!/usr/bin/env python3
"""100 square crops of a 640x480 MuJoCo frame -> 224x224 on the CPU: Pillow (thread pool, the CPU
path) vs the torch two-pass torchvision path (the CUDA path), median of N runs in one process.

Run: MUJOCO_GL=osmesa .venv/bin/python scripts/measure_crop_speed.py [N]
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clip_perception.crops import pil_square_crops, square_regions, torch_square_crops  # noqa: E402
from clip_perception.sim.scene import make_scene  # noqa: E402

scene = make_scene(seed=0, width=640, height=480)
rgb = scene.render().rgb
scene.close()
rng = np.random.default_rng(0)
wh = rng.uniform(16, 320, (100, 2))
xy = rng.uniform(-20, 640, (100, 2)) * [1, 0.75]
regions = square_regions(np.concatenate([xy, xy + wh], 1).astype(np.float32), 0.1)
fill = (123, 117, 104)
frame = torch.from_numpy(np.ascontiguousarray(rgb))
paths = {"pillow (thread pool)": lambda: pil_square_crops(rgb, regions, (224, 224), fill),
         "torchvision two-pass": lambda: torch_square_crops(frame, regions, (224, 224), fill)}
ref = paths["pillow (thread pool)"]()
for name, fn in paths.items():
    out = fn()  # warm-up
    print(f"{name}: max difference vs Pillow {float((out - ref).abs().max()):.0f}/255")
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
for name, fn in paths.items():
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    print(f"{name}: median {1e3 * statistics.median(times):.1f} ms over {runs} runs (torch threads "
          f"{torch.get_num_threads()})")
