#!/usr/bin/env python3
# Crop-resize parity of the torch path against Pillow (= open_clip preprocess), the figures in
# crops.py's docstring. Run: MUJOCO_GL=osmesa .venv/bin/python scripts/measure_crop_parity.py
"""Max abs difference (uint8 levels) of crops.torch_square_crops vs crops.pil_square_crops (= Pillow = open_clip preprocess)."""
import glob, sys
import numpy as np, torch
from PIL import Image
from pathlib import Path
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data" / "real"
from clip_perception.crops import pil_square_crops, torch_square_crops
torch.set_num_threads(1)
frames = []
paths = sorted(set(glob.glob(f"{SHARED}/*/*color*.png") + glob.glob(f"{SHARED}/*/image_color/*.png")
                   + glob.glob(f"{SHARED}/uoais_tabletop_rgb/*.png")))
for p in paths:
    frames.append(("real:" + p.split("real/")[1], np.asarray(Image.open(p).convert("RGB"))))
from clip_perception.sim.scene import make_scene
for seed in range(3):
    s = make_scene(seed=seed, width=640, height=480)
    try:
        frames.append((f"sim:seed{seed}", s.render().rgb))
    finally:
        s.close()
print(len(frames), "frames:", sorted({f[1].shape for f in frames}))
SIDES = [1, 3, 7, 16, 32, 56, 100, 150, 223, 224, 225, 300, 480, 640, 900]
FILL = (123, 117, 104)
rng = np.random.default_rng(0)
res = {}
for name, rgb in frames:
    H, W = rgb.shape[:2]
    regs = []
    for side in SIDES:
        for k in range(4):
            x0 = int(rng.integers(-side // 3 - 1, max(1, W - 2 * side // 3)))
            y0 = int(rng.integers(-side // 3 - 1, max(1, H - 2 * side // 3)))
            regs.append((x0, y0, side))
    regs = np.array(regs, np.int64)
    for interp in ("bicubic", "bilinear"):
        a = pil_square_crops(rgb, regs, (224, 224), FILL, interp)
        b = torch_square_crops(torch.from_numpy(rgb), regs, (224, 224), FILL, interp)
        d = (a - b).abs()
        for i, (x0, y0, side) in enumerate(regs):
            key = (interp, "up" if side < 224 else ("same" if side == 224 else "down"))
            r = res.setdefault(key, {"max": 0, "n": 0, "gt1": 0, "gt0": 0, "sum": 0.0, "worst": None})
            di = d[i]
            m = int(di.max())
            if m > r["max"]:
                r["max"], r["worst"] = m, (name, int(side))
            r["n"] += di.numel(); r["gt0"] += int((di > 0).sum()); r["gt1"] += int((di > 1).sum()); r["sum"] += float(di.sum())
for k, r in sorted(res.items()):
    print(k, f"max {r['max']}/255 mean {r['sum']/r['n']:.2e} frac>0 {r['gt0']/r['n']:.2e} frac>1 {r['gt1']/r['n']:.2e} n {r['n']} worst {r['worst']}")
