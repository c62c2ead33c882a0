#!/usr/bin/env bash
# GPU benchmark of clip_perception, prepared to run in under 5 minutes on one CUDA GPU
# (issue 15, item 3).  NOT RUN YET: no GPU machine was available when it was written; the
# README's performance section says so.  Run from the repository root after `make setup`:
#
#     bash scripts/gpu_bench.sh            # writes out/gpu_bench/{bench.json,bench.txt,summary.json}
#
# What it measures (random ViT-B-32 weights: timings valid, rankings not):
#  1. `clip-perception bench --device cuda` at 640x480 with exactly 100 proposals per frame,
#     30 timed frames of crop / dense / cascade (fp16, pinned host upload, crops resampled on
#     the GPU: the CUDA defaults of ClipEncoder), 2 frames of the naive baseline, the OWL-ViT
#     B/32 and OWLv2 B/16 peers on the same frames; TORCH_COMPILE=1 adds torch.compile.
#  2. from the report: end-to-end frames/s (median), p50 / p99 latency per row;
#  3. the encoder's own peak: crop-embedding throughput of ClipEncoder on synthetic batches
#     of 1..128 boxes (images/s, best batch size), against the crops/s the crop mode reaches
#     inside the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT_DIR:-out/gpu_bench}
mkdir -p "$OUT"
export MUJOCO_GL=${MUJOCO_GL:-osmesa}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing measured')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true
EXTRA=()
[[ "${TORCH_COMPILE:-0}" == 1 ]] && EXTRA+=(--compile)
timeout 240 "$PY" -m clip_perception.tools.bench --device cuda --width 640 --height 480 --proposals 100 \
  --frames 30 --naive-frames 2 --mode all --levers cascade_fixed --peers owlvit_b32,owlv2_b16 --json "${EXTRA[@]}" \
  > "$OUT/bench.json" 2> "$OUT/bench.txt"
timeout 60 "$PY" - "$OUT" <<'PYEOF'
import json, sys, time
import numpy as np, torch
from clip_perception.encoder import ClipEncoder

out = sys.argv[1]
rep = json.load(open(f"{out}/bench.json"))
rows = {r["mode"]: {"fps": r["fps"], "p50_ms": r["p50_ms"],
                    "p99_ms": float(np.percentile(r["e2e_ms_per_frame"], 99)), "frames": r["frames"]}
        for r in rep["results"]}
torch.manual_seed(0)
enc = ClipEncoder("ViT-B-32", pretrained="none", device="cuda")
enc.warmup()
rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
peak = {}
for n in (1, 8, 32, 64, 128):
    boxes = np.tile(np.array([[100, 80, 300, 260]], np.float32), (n, 1))
    enc.encode_boxes(rgb, boxes)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        enc.encode_boxes(rgb, boxes)
    torch.cuda.synchronize()
    peak[n] = 10 * n / (time.perf_counter() - t0)
best = max(peak, key=peak.get)
crop_rate = next(r["crops_per_s"] for r in rep["results"] if r["mode"] == "crop")
summary = {"gpu": torch.cuda.get_device_name(0), "rows": rows, "speedup_vs_peer": rep.get("speedup_vs_peer"),
           "encoder_images_per_s_by_batch": peak, "encoder_peak_images_per_s": peak[best], "peak_batch": best,
           "crop_mode_crops_per_s_in_pipeline": crop_rate,
           "crop_mode_share_of_encoder_peak": crop_rate / peak[best]}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
for m, r in rows.items():
    print(f"{m:>14}: {r['fps']:7.2f} frames/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms ({r['frames']} frames)")
print(f"encoder peak {peak[best]:.0f} crops/s at batch {best}; crop mode in the pipeline {crop_rate:.0f} crops/s "
      f"({100 * crop_rate / peak[best]:.0f} % of peak)")
PYEOF
