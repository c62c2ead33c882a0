"""Metrics and report of ``clip-perception evaluate``: the summary, its text, plots and failures.

See :mod:`clip_perception.tools.evaluate` for the definitions of the metrics.  :func:`summarise`
turns the per-case records of :func:`clip_perception.tools.evaluate.run_evaluation` into the
summary dict, :func:`format_summary` prints it and :func:`write_report` writes
``summary.json``, ``cases.json``, three PNG plots and a contact sheet of annotated failures
(:func:`failure_tile`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["IOU_CORRECT", "TILE_W", "TILE_H", "SHEET_COLS", "SHEET_MAX", "failure_tile", "geometry_stats", "summarise",
           "format_summary", "write_report"]

#: IoU with the ground-truth box for a detection to count as correct (PASCAL VOC criterion,
#: Everingham et al., IJCV 2010).
IOU_CORRECT = 0.5
#: Tiles of the failure contact sheet (pixels) and its columns.
TILE_W, TILE_H, SHEET_COLS, SHEET_MAX = 320, 240, 4, 24
_GT_COLOR = (255, 0, 255)


def _median(values: list) -> Optional[float]:
    return float(np.median(values)) if values else None


def _mean(values: list) -> Optional[float]:
    return float(np.mean(values)) if values else None


def _ratio(num: int, den: int) -> Optional[float]:
    return float(num) / den if den else None


def _p90(values: list) -> Optional[float]:
    return float(np.percentile(values, 90)) if values else None


def geometry_stats(records: list) -> dict:
    """Box and 3D figures of ``records`` (per-case dicts of ``run_evaluation``).

    Returns:
        ``iou_mean`` and ``iou_share_050`` over the cases with a present target (IoU 0 when
        nothing was reported), ``centre_error_cm`` ``{mean, median, p90, n}`` and
        ``extent_error_cm`` ``{mean, median, n}`` over the correct detections with a 3D
        position / an oriented extent, ``centre_share`` = share of those positions that are
        object centres (``position_is_centre``); ``None`` where there is no case.
    """
    present = [r for r in records if r["expected_found"]]
    ious = [r["iou"] if r["iou"] is not None else 0.0 for r in present]
    err = [r["error_3d_cm"] for r in records if r["error_3d_cm"] is not None]
    ext = [r["extent_error_cm"] for r in records if r.get("extent_error_cm") is not None]
    centres = [bool(r.get("position_is_centre")) for r in records if r["error_3d_cm"] is not None]
    return {
        "iou_mean": _mean(ious),
        "iou_share_050": _ratio(sum(i >= IOU_CORRECT for i in ious), len(ious)),
        "centre_error_cm": {"mean": _mean(err), "median": _median(err), "p90": _p90(err), "n": len(err)},
        "extent_error_cm": {"mean": _mean(ext), "median": _median(ext), "n": len(ext)},
        "centre_share": _ratio(sum(centres), len(centres)),
    }


def failure_tile(rgb, result, target, case) -> np.ndarray:
    """A (TILE_H, TILE_W, 3) uint8 RGB tile of a failed case: the top-3 detections drawn, the
    ground-truth box of ``target`` (a ``GroundTruthObject`` or ``None`` = absent) in magenta and the verdict."""
    import cv2

    from ..visualize import draw_result

    img = draw_result(rgb, result.detections[:3], title=f"{case.kind}: {case.command}")
    if target is not None:
        x1, y1, x2, y2 = (int(round(float(v))) for v in target.box)
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), _GT_COLOR, 2)
    verdict = "expected: not found" if target is None else f"GT (magenta): {target.name}"
    got = "got: nothing" if not result.detections else f"got: {result.detections[0].confidence:.2f}"
    cv2.putText(img, f"{verdict}; {got}", (4, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (255, 255, 255), 1, cv2.LINE_AA)
    return cv2.resize(img, (TILE_W, TILE_H), interpolation=cv2.INTER_AREA)


def summarise(records, config, random_weights, kinds, skipped, notes, encoder_name, scenes, seed) -> dict:
    """The summary dict of :func:`clip_perception.tools.evaluate.run_evaluation` (keys listed there)
    from the per-case ``records``; rates are ``None`` when their denominator is 0, errors in cm,
    latencies in ms (median per stage over all cases)."""
    n = len(records)
    absent = [r for r in records if not r["expected_found"]]
    empty = [r for r in records if not r["found"]]
    tp = sum(1 for r in records if not r["expected_found"] and not r["found"])
    present = [r for r in records if r["expected_found"]]
    stages: dict = {}
    totals = []
    for r in records:
        for k, v in r["timings_ms"].items():
            stages.setdefault(k, []).append(v)
        totals.append(sum(r["timings_ms"].get(k, 0.0) for k in ("proposals", "rank", "geometry")))
    per_kind = {}
    for k in kinds:
        rs = [r for r in records if r["kind"] == k]
        per_kind[k] = {"cases": len(rs), "accuracy": _ratio(sum(r["correct"] for r in rs), len(rs)),
                       **geometry_stats(rs)}
        place = [r["place_error_cm"] for r in rs if r.get("place_error_cm") is not None]
        if place:  # pick_place: the place point against the destination's top centre
            per_kind[k]["place_error_cm"] = {"mean": _mean(place), "median": _median(place), "p90": _p90(place),
                                             "n": len(place)}
    errors = [r["error_3d_cm"] for r in records if r["error_3d_cm"] is not None]
    surf = [r["surface_error_3d_cm"] for r in records if r["surface_error_3d_cm"] is not None]
    return {
        "scenes": scenes,
        "seed": seed,
        "cases": n,
        "kinds": list(kinds),
        "skipped_kinds": list(skipped),
        "random_weights": bool(random_weights),
        "encoder": encoder_name,
        "model_name": config.model_name,
        "pretrained": config.pretrained,
        "color_prior_weight": config.color_prior_weight,
        "score_threshold": config.score_threshold,
        "proposal_methods": list(config.proposal_methods),
        "mode": records[0]["mode"] if records else None,
        "iou_threshold": IOU_CORRECT,
        "top1_accuracy": _ratio(sum(r["correct"] for r in records), n),
        "pointing_accuracy": _ratio(sum(r["pointing"] for r in present), len(present)),
        "not_found_precision": _ratio(tp, len(empty)),
        "not_found_recall": _ratio(tp, len(absent)),
        "mean_3d_error_cm": _mean(errors),
        "median_3d_error_cm": _median(errors),
        "mean_3d_surface_error_cm": _mean(surf),
        "n_3d": len(errors),
        **geometry_stats(records),
        "accuracy_per_kind": per_kind,
        "latency_ms_median": {k: _median(v) for k, v in sorted(stages.items())},
        "latency_ms_median_total": _median(totals),
        "notes": notes + [
            "3D error vs the GT centre: the detector reports the object's centre from its instance mask and "
            "the support plane (position_is_centre), else the visible surface (median depth in the box); the "
            "surface error compares with the GT visible-surface point",
        ],
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines of a :func:`run_evaluation` summary."""

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def cm(v):
        return "n/a" if v is None else f"{v:.2f} cm"

    lines = []
    if summary["random_weights"]:
        lines.append(f"[random CLIP + colour prior] {summary['model_name']} with RANDOM weights "
                     f"(pretrained {summary['pretrained']}), colour prior weight {summary['color_prior_weight']}: "
                     "results measure the colour prior and the geometry, not CLIP")
    else:
        lines.append(f"encoder {summary['encoder']} {summary['model_name']} ({summary['pretrained']}), "
                     f"colour prior weight {summary['color_prior_weight']}")
    lines.append(f"{summary['cases']} cases from {summary['scenes']} scene indices (seed {summary['seed']}), "
                 f"kinds: {', '.join(summary['kinds'])}"
                 + (f"; skipped: {', '.join(summary['skipped_kinds'])}" if summary["skipped_kinds"] else ""))
    for note in summary["notes"][:-1]:
        lines.append(f"note: {note}")
    lines.append(f"top-1 accuracy (IoU >= {summary['iou_threshold']}): {pct(summary['top1_accuracy'])}   "
                 f"pointing accuracy (box centre inside GT box): {pct(summary['pointing_accuracy'])}")
    lines.append(f"  {'kind':13s} {'top-1':>7s}  {'cases':>5s}  {'IoU':>5s}  {'>=0.5':>6s}  "
                 f"{'centre err mean/median/p90':>28s}  {'extent err':>10s}")
    for k, v in summary["accuracy_per_kind"].items():
        lines.append(f"  {k:13s} {pct(v['accuracy']):>7s}  {v['cases']:5d}  {_geo_columns(v)}")
    lines.append(f"'not found' precision {pct(summary['not_found_precision'])}, "
                 f"recall {pct(summary['not_found_recall'])}")
    place = summary["accuracy_per_kind"].get("pick_place", {}).get("place_error_cm")
    if place:
        lines.append(f"place point vs the destination's top centre ({place['n']} pick_place cases): mean "
                     f"{cm(place['mean'])}, median {cm(place['median'])}, p90 {cm(place['p90'])}")
    lines.append(f"  {'all':13s} {pct(summary['top1_accuracy']):>7s}  {summary['cases']:5d}  {_geo_columns(summary)}")
    c = summary["centre_error_cm"]
    lines.append(f"3D error of correct detections ({summary['n_3d']}): vs the GT centre mean {cm(c['mean'])}, "
                 f"median {cm(c['median'])}, p90 {cm(c['p90'])}; vs the GT visible surface "
                 f"{cm(summary['mean_3d_surface_error_cm'])}; object centres (mask + support plane): "
                 f"{pct(summary['centre_share'])}")
    lat = summary["latency_ms_median"]
    main_stages = [k for k in ("proposals", "encode_text", "encode_boxes", "color_prior", "rank", "geometry") if k in lat]
    lines.append("median latency: " + ", ".join(f"{k} {lat[k]:.1f} ms" for k in main_stages)
                 + (f"; total {summary['latency_ms_median_total']:.1f} ms"
                    if summary["latency_ms_median_total"] is not None else ""))
    return "\n".join(lines)


def _geo_columns(v: dict) -> str:
    """IoU mean, share >= 0.5, centre error mean/median/p90 and extent error mean of one
    :func:`geometry_stats` dict, as fixed-width columns (cm; "-" when undefined)."""

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    c, e = v["centre_error_cm"], v["extent_error_cm"]
    err = f"{f(c['mean'], '.2f')}/{f(c['median'], '.2f')}/{f(c['p90'], '.2f')} cm"
    share = "-" if v["iou_share_050"] is None else f"{100 * v['iou_share_050']:.1f}%"
    return f"{f(v['iou_mean'], '.3f'):>5s}  {share:>6s}  {err:>28s}  {f(e['mean'], '.2f') + ' cm':>10s}"


def write_report(report_dir: Path, summary: dict, records: list, failure_tiles: list) -> None:
    """Write ``summary.json``, ``cases.json``, ``accuracy_per_kind.png``, ``error_3d_hist.png``,
    ``latency_hist.png`` and (when there are failures) ``failures.png`` (a contact sheet of
    :data:`SHEET_COLS` columns) into the existing folder ``report_dir``."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (report_dir / "cases.json").write_text(json.dumps(records, indent=2))
    tag = "random CLIP + colour prior" if summary["random_weights"] else f"{summary['model_name']} {summary['pretrained']}"

    kinds = list(summary["accuracy_per_kind"])
    acc = [summary["accuracy_per_kind"][k]["accuracy"] or 0.0 for k in kinds]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(kinds, acc, color="tab:blue")
    for b, k in zip(bars, kinds):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.02,
                f"{summary['accuracy_per_kind'][k]['cases']} cases", ha="center", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(f"top-1 accuracy (IoU >= {summary['iou_threshold']})")
    ax.set_title(f"accuracy per command kind [{tag}]", fontsize=9)
    fig.tight_layout()
    fig.savefig(report_dir / "accuracy_per_kind.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    err = [r["error_3d_cm"] for r in records if r["error_3d_cm"] is not None]
    surf = [r["surface_error_3d_cm"] for r in records if r["surface_error_3d_cm"] is not None]
    if err:
        ax.hist([err, surf], bins=15, label=["vs GT centre", "vs GT visible surface"])
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no correct detection with a 3D position", ha="center", transform=ax.transAxes)
    ax.set_xlabel("3D error [cm]")
    ax.set_ylabel("cases")
    ax.set_title(f"3D error of correct detections [{tag}]", fontsize=9)
    fig.tight_layout()
    fig.savefig(report_dir / "error_3d_hist.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    data, labels = [], []
    for stage in ("proposals", "rank", "geometry"):
        vals = [r["timings_ms"][stage] for r in records if stage in r["timings_ms"]]
        if vals:
            data.append(vals)
            labels.append(stage)
    if data:
        ax.hist(data, bins=20, label=labels)
        ax.legend()
    ax.set_xlabel("stage latency per frame [ms]")
    ax.set_ylabel("frames")
    ax.set_title(f"latency per stage [{tag}]", fontsize=9)
    fig.tight_layout()
    fig.savefig(report_dir / "latency_hist.png", dpi=100)
    plt.close(fig)

    if failure_tiles:
        tiles = list(failure_tiles)
        while len(tiles) % SHEET_COLS:
            tiles.append(np.zeros((TILE_H, TILE_W, 3), np.uint8))
        rows = [cv2.hconcat(tiles[i:i + SHEET_COLS]) for i in range(0, len(tiles), SHEET_COLS)]
        sheet = cv2.vconcat(rows)
        cv2.imwrite(str(report_dir / "failures.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
