"""The report of ``clip-perception bench``: the human-readable table and the JSON clean-up.

See :mod:`clip_perception.tools.bench` for the fields of the report dict
(:func:`clip_perception.tools.bench.run_bench`).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .bench_modes import STAGES

__all__ = ["STAGE_LABELS", "format_table", "json_safe"]

#: Row label of each stage in the table.
STAGE_LABELS = {
    "decode": "decode",
    "proposals": "proposals",
    "crop_preprocess": "crop + preprocess",
    "image_encode": "image encode",
    "text_encode": "text encode",
    "ranking": "ranking",
    "3d": "3D",
    "publish": "publish",
}


def _fmt(v: Optional[float], digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def format_table(report: dict) -> str:
    """The human-readable report (modes as columns)."""
    cfg = report["config"]
    res = report["results"]
    modes = [r["mode"] for r in res]
    w0, w = 20, 19
    lines = []
    weights = ("RANDOM weights (--pretrained none): timings are valid, rankings are meaningless"
               if cfg["random_weights"] else f"weights {cfg['pretrained']}")
    lines.append(f"clip-perception bench: {cfg['model']} ({weights})")
    lines.append(f"  device {cfg['device']} / {cfg['precision']} (naive: fp32), image {cfg['width']}x{cfg['height']}, "
                 f"{cfg['proposals']} proposals/frame, {cfg['frames']} frames (naive: {cfg['naive_frames']}), "
                 f"warm-up {cfg['warmup']}, torch threads {cfg['torch_threads']}/{cfg['cpus']} CPUs, "
                 f"cascade_top_k {cfg['cascade_top_k']}, cascade_margin {cfg.get('cascade_margin')}, "
                 f"cascade_crop_size {cfg.get('cascade_crop_size')}, "
                 f"crop backend {cfg.get('crop_backend')}")
    lines.append(f"  default mode on this device (auto): {report.get('default_mode')}; levers: "
                 f"{', '.join(cfg.get('levers') or []) or 'none'}; peers (random weights, transformers): "
                 + (", ".join(f"{k} = {v}" for k, v in (cfg.get("peers") or {}).items()) or "none"))
    lines.append(f"  load average before/after: {cfg.get('load_avg_before')} / {cfg.get('load_avg_after')}")
    lines.append("")
    lines.append("ms per frame, p50 / p90".ljust(w0) + "".join(m.rjust(w) for m in modes))
    for s in STAGES:
        row = STAGE_LABELS[s].ljust(w0)
        for r in res:
            st = r["stages_ms"][s]
            row += f"{_fmt(st['p50'])} / {_fmt(st['p90'])}".rjust(w)
        lines.append(row)
    lines.append("end-to-end".ljust(w0) + "".join(f"{_fmt(r['p50_ms'])} / {_fmt(r['p90_ms'])}".rjust(w) for r in res))
    lines.append("fastest frame".ljust(w0) + "".join(_fmt(r["min_ms"]).rjust(w) for r in res))
    lines.append("CPU ms/frame".ljust(w0) + "".join(f"{_fmt(r['cpu_ms']['p50'], 0)}".rjust(w) for r in res))
    lines.append("frames/s".ljust(w0) + "".join(_fmt(r["fps"], 3).rjust(w) for r in res))
    lines.append("crops/s".ljust(w0) + "".join(_fmt(r["crops_per_s"], 1).rjust(w) for r in res))
    lines.append("crops encoded/frame".ljust(w0) + "".join(_fmt(r["crops_encoded_per_frame"], 0).rjust(w) for r in res))
    lines.append("peak RSS (MiB)".ljust(w0) + "".join(_fmt(r["peak_rss_mb"], 0).rjust(w) for r in res))
    if any("cuda_peak_mb" in r for r in res):
        lines.append("CUDA peak (MiB)".ljust(w0) + "".join(_fmt(r.get("cuda_peak_mb"), 0).rjust(w) for r in res))
    sp = report["speedup_vs_naive"]
    lines.append("speed-up vs naive".ljust(w0) + "".join(
        (_fmt(sp.get(m), 2) + "x" if sp.get(m) is not None else "-").rjust(w) for m in modes))
    for peer, spp in (report.get("speedup_vs_peer") or {}).items():
        lines.append(f"speed-up vs {peer}".ljust(w0) + "".join(
            (_fmt(spp.get(m), 2) + "x" if spp.get(m) is not None else "-").rjust(w) for m in modes))
    spb = report.get("best_frame_speedup_vs_naive", {})
    lines.append("  (fastest frames)".ljust(w0) + "".join(
        (_fmt(spb.get(m), 2) + "x" if spb.get(m) is not None else "-").rjust(w) for m in modes))
    spc = report.get("cpu_time_speedup_vs_naive", {})
    lines.append("CPU-time ratio".ljust(w0) + "".join(
        (_fmt(spc.get(m), 2) + "x" if spc.get(m) is not None else "-").rjust(w) for m in modes))
    lines.append("timed frames".ljust(w0) + "".join(str(r["frames"]).rjust(w) for r in res))
    lines.append("")
    pm = report["proposal_methods_ms"]
    lines.append("proposals per method, ms p50 / p90 (same boxes for every mode; propose() once per frame):")
    for name, st in pm.items():
        lines.append(f"  {name.ljust(18)}{_fmt(st['p50'])} / {_fmt(st['p90'])}")
    lines.append(f"  raw proposals per frame (before padding to {cfg['proposals']}): {report['raw_proposals']}")
    lines.append(f"peak RSS scope: {report['peak_rss_scope']}; set-up (model load, warm-up) peak "
                 f"{_fmt(report['setup_peak_rss_mb'], 0)} MiB; process peak {_fmt(report['process_peak_rss_mb'], 0)} MiB "
                 "(frames rendered in a child process, not counted)")
    if report.get("age_run") is not None:
        a = report["age_run"]
        if "skipped" in a:
            lines.append(f"output age under a 30 Hz camera: skipped: {a['skipped']}")
        else:
            lines.append(f"output age under a {a['rate_hz']:g} Hz camera ({a['seconds']:g} s, node mode {a['resolved_mode']}, "
                         f"{a['cpu_threads']} CPU threads): "
                         f"p50 {_fmt(a['age_ms']['p50'])} ms, p90 {_fmt(a['age_ms']['p90'])} ms, "
                         f"max {_fmt(a['age_ms']['max'])} ms at publish; {a['processed']} frames answered of "
                         f"{a['published']} published ({_fmt(a['camera_rate_hz'])} Hz achieved by the camera process)")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("note: speed-up = median frames/s ratio; on a shared CPU the naive mode's batch-1 forwards suffer "
                 "most from other processes (each of its ~150 small parallel regions per crop waits for a "
                 "descheduled thread), so compare the load averages and the fastest-frame ratio")
    return "\n".join(lines)


def json_safe(obj):
    """``obj`` with non-finite floats as ``None`` and numpy scalars as Python numbers (for ``json.dumps``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return json_safe(obj.item())
    return obj
