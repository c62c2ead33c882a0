"""``clip-perception bench``: our pipeline against the naive per-crop pipeline, side by side.

One run, the same frames, the same proposals, the same model (same weights):

* **frames** -- seeded MuJoCo table-top scenes (:func:`clip_perception.sim.scene.make_scene`,
  seeds ``0 .. frames-1``) rendered at ``--width`` x ``--height``, "published" as
  ``sensor_msgs/Image`` fields (:func:`decode.image_fields_from_rgb`, ``rgb8``;
  :func:`decode.image_fields_from_depth`, ``32FC1`` metres) and decoded again in every
  timed frame (stage ``decode``);
* **proposals** -- :func:`proposals.propose` (the node's default methods) once per frame,
  then padded with grid windows (:func:`proposals.grid_proposals`, picked evenly over all
  scales and aspects) or capped so that every frame has exactly ``--proposals`` boxes; every
  mode ranks these same boxes.  Their measured time is the ``proposals`` stage of every mode
  (computed once, charged to all), and the per-method times are reported separately;
* **modes** -- ``naive``: what the usual open_clip tutorial code does (every box cropped
  with ``PIL.Image.crop`` and preprocessed on its own with open_clip's ``preprocess``, the
  model called once per crop, the text -- target + negative prompts with every template --
  tokenised and encoded again every frame, fp32, under ``torch.inference_mode`` with the
  model in ``eval``), then a per-crop softmax over the texts; ``crop`` / ``dense`` /
  ``cascade``: :class:`pipeline.Detector` (``ranking.rank``) with the ``ClipEncoder``
  (batched crops / MaskCLIP dense features / dense pre-rank + crop re-rank of the
  contenders, adaptive: at most ``cascade_top_k``, at ``cascade_crop_size`` pixels), fed the
  same proposals; ``levers`` (:data:`~clip_perception.tools.bench_modes.LEVER_SPECS`): the
  default ``cascade`` with one thing changed; ``peers``: open-vocabulary detectors
  (:mod:`~clip_perception.tools.bench_peers`);
* **stages** (milliseconds per frame, median and 90th percentile over the timed frames):
  ``decode``, ``proposals``, ``crop + preprocess``, ``image encode``, ``text encode``,
  ``ranking`` (everything else inside ranking: colour prior, softmax, NMS, ordering),
  ``3D`` (:func:`geometry.box_position` of the reported detections) and ``publish``
  (:func:`messages.to_detection_array` + ``rclpy.serialization.serialize_message``; skipped
  with a note when ROS 2 is not importable).  ``end-to-end`` is the wall-clock time of the
  whole frame (decode .. publish) plus the frame's proposal time; ``frames/s`` =
  1000 / median end-to-end; ``crops/s`` = proposals ranked per second (``--proposals`` x
  frames/s); speed-up = frames/s of a mode / frames/s of ``naive``;
* **memory** -- peak resident set size per mode (``VmHWM`` of ``/proc/self/status``, reset
  between modes through ``/proc/self/clear_refs``; otherwise the process peak so far,
  ``resource.getrusage().ru_maxrss``), and ``torch.cuda.max_memory_allocated`` on CUDA.

The detector runs with ``score_threshold = 0`` so that ``3D`` and ``publish`` handle
``top_k`` detections in every mode (random weights put nothing above the node's 0.5).
On CUDA, the bench synchronises only at stage boundaries (encoder ``stage_timings``).
Percentiles over few frames are linear interpolations (``numpy.percentile``); they are
indications, not statistics.

``--age-run SECONDS`` additionally runs the ROS node in-process
(:class:`clip_perception.node.ClipPerceptionNode` with the same encoder) against a 30 Hz
camera process publishing the rendered frames (fresh stamps, ``sensor_data`` QoS) and
reports the age of the detections when the node publishes them: publish time minus
``header.stamp`` (same machine clock).

Modules: :mod:`~clip_perception.tools.bench_frames` (frames and proposals),
:mod:`~clip_perception.tools.bench_modes` (naive baseline, our modes, stage timing),
:mod:`~clip_perception.tools.bench_age` (``--age-run``), :mod:`~clip_perception.tools.bench_report`
(table, JSON); this module is the CLI and assembles the report (its names are re-exported here).

Exit codes: 0 success, 2 bad arguments, 3 weights unavailable (see ``cli.py``).
"""


from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from typing import Callable, Optional, Sequence

from .bench_age import AGE_RUN_FRAMES, AGE_RUN_RATE_HZ, age_run
from .bench_frames import BenchFrame, pad_proposals, render_frames, render_scenes
from .bench_modes import (LEVER_SPECS, LEVERS, MODES, NAIVE_WARMUP_BOXES, STAGES, Bench, ModeRun, NaiveBaseline, Publisher,
                          peak_rss_mb, percentiles, reset_peak_rss)
from .bench_peers import PEER_SPECS, PEERS, PeerDetector, parse_peers
from .bench_report import STAGE_LABELS, format_table, json_safe

__all__ = ["AGE_RUN_FRAMES", "AGE_RUN_RATE_HZ", "DEFAULT_COMMAND", "LEVER_SPECS", "LEVERS", "MODES", "NAIVE_WARMUP_BOXES", "PEERS",
           "PEER_SPECS", "PeerDetector", "STAGES", "parse_levers", "parse_peers",
           "STAGE_LABELS", "Bench", "BenchFrame", "ModeRun", "NaiveBaseline", "Publisher", "age_run", "format_table",
           "json_safe", "load_average", "main", "make_parser", "pad_proposals", "parse_modes", "peak_rss_mb",
           "percentiles", "render_frames", "render_scenes", "reset_peak_rss", "run_bench"]

DEFAULT_COMMAND = "pick up the red ball"


def load_average() -> Optional[list]:
    """1, 5 and 15 minute load averages (``os.getloadavg``), or None where unavailable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None



# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clip-perception bench",
                                description="Benchmark our pipeline against the naive per-crop pipeline.")
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name (default ViT-B-32)")
    p.add_argument("--pretrained", default="none",
                   help="open_clip tag, hf-hub:NAME or checkpoint path; default none = RANDOM weights "
                        "(timings are valid, rankings are not)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", default="auto", help="auto (fp16 on CUDA; bf16 on a CPU with native bf16, else fp32), fp32, fp16, bf16; "
                                                       "the naive baseline is always fp32")
    p.add_argument("--width", type=int, default=640, help="image width in pixels (default 640)")
    p.add_argument("--height", type=int, default=480, help="image height in pixels (default 480)")
    p.add_argument("--proposals", type=int, default=100, help="proposals per frame, exactly (default 100)")
    p.add_argument("--mode", default="all", help="all, or a comma list of naive,crop,dense,cascade (default all)")
    p.add_argument("--frames", type=int, default=5, help="timed frames per mode (default 5)")
    p.add_argument("--naive-frames", dest="naive_frames", type=int, default=None,
                   help="timed frames of the naive mode (default min(frames, 2): it costs seconds per frame)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed passes per mode on frame 0 before timing (naive: on its first 4 boxes); default 1")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: every usable CPU, torch.set_num_threads once)")
    p.add_argument("--cascade-top-k", dest="cascade_top_k", type=int, default=None,
                   help="cascade mode: proposals re-encoded as crops (default: the parameter's default)")
    p.add_argument("--command", default=DEFAULT_COMMAND, help=f"command text (default {DEFAULT_COMMAND!r})")
    p.add_argument("--peers", default="all",
                   help=f"open-vocabulary detector peers timed in the same run: all, none or a comma list of "
                        f"{','.join(PEERS)} (default all; needs transformers)")
    p.add_argument("--tiny-peers", dest="tiny_peers", action="store_true",
                   help="peers as 2-layer, 64-wide models at 64 px (tests of the code path; not their speed)")
    p.add_argument("--levers", default="all",
                   help=f"speed levers measured on their own: all, none or a comma list of {','.join(LEVERS)} "
                        "(default all)")
    p.add_argument("--age-run", dest="age_run", type=float, default=0.0, metavar="SECONDS",
                   help="also run the ROS node in-process against a 30 Hz camera for SECONDS and report the "
                        "age of its detections (0 = off)")
    p.add_argument("--age-mode", dest="age_mode", default="auto",
                   help="ranking mode of the node in --age-run (default auto: cascade on CPU, crop on CUDA)")
    p.add_argument("--compile", action="store_true",
                   help="wrap the vision tower in torch.compile (EncoderOptions.compile; worth it on CUDA)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout (table on stderr)")
    return p


def parse_modes(text: str) -> list:
    """``"all"`` or a comma list -> modes in :data:`MODES` order.  Raises ValueError."""
    text = (text or "all").strip().lower()
    if text == "all":
        return list(MODES)
    asked = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in asked if m not in MODES]
    if bad or not asked:
        raise ValueError(f"--mode: unknown mode(s) {bad or [text]}; use all or a comma list of {', '.join(MODES)}")
    return [m for m in MODES if m in asked]


def parse_levers(text: str) -> list:
    """``all`` / ``none`` / a comma list of :data:`LEVERS` -> levers in that order.  Raises ValueError."""
    text = (text or "none").strip().lower()
    if text in ("none", "", "off"):
        return []
    asked = list(LEVERS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in asked if m not in LEVERS]
    if bad:
        raise ValueError(f"--levers: unknown lever(s) {bad}; use all, none or a comma list of {', '.join(LEVERS)}")
    return [m for m in LEVERS if m in asked]


def _check_args(args: argparse.Namespace) -> tuple[list, int]:
    """(rows to run: modes, levers, peers; timed frames of the naive mode) from ``args``.  Raises ValueError."""
    modes = parse_modes(args.mode) + parse_levers(args.levers) + parse_peers(args.peers)
    if args.frames < 1:
        raise ValueError("--frames must be >= 1")
    if args.proposals < 1:
        raise ValueError("--proposals must be >= 1")
    if args.width < 32 or args.height < 32:
        raise ValueError("--width/--height must be >= 32 pixels")
    naive_frames = min(args.frames, 2) if args.naive_frames is None else max(0, min(args.naive_frames, args.frames))
    if "naive" in modes and naive_frames == 0:
        modes.remove("naive")
    return modes, naive_frames


def _detector_config(args: argparse.Namespace):
    """The ``params.DetectorConfig`` of our modes: threshold 0 (every mode reports ``top_k``), no warm-up."""
    from ..params import make_config

    values = {"model_name": args.model, "pretrained": args.pretrained, "device": args.device,
              "precision": args.precision, "max_proposals": args.proposals, "score_threshold": 0.0,
              "warmup": False}
    if args.cascade_top_k is not None:
        values["cascade_top_k"] = args.cascade_top_k
    return make_config(values)


def _speedups_vs_peers(results: list, default_mode: str) -> dict:
    """Per peer row: median frames/s of every row that is not a peer (and ``default``) / the peer's."""
    by_mode = {r["mode"]: r for r in results}
    ours = [r["mode"] for r in results if r["mode"] not in PEERS]
    out = {}
    for peer in (m for m in by_mode if m in PEERS):
        fps = by_mode[peer]["fps"]
        sp = {m: (by_mode[m]["fps"] / fps if fps else None) for m in ours}
        sp["default"] = sp.get(default_mode)
        out[peer] = sp
    return out


def _comparisons(results: list, default_mode: str) -> dict:
    """Speed-ups of every row against ``naive`` (median frames/s, fastest frame, CPU time per frame) and
    against each peer (:func:`_speedups_vs_peers`); ``default`` = the row of ``auto``'s mode."""
    naive = next((r for r in results if r["mode"] == "naive"), None)
    naive_fps = None if naive is None else naive["fps"]
    naive_min = None if naive is None else naive["min_ms"]
    naive_cpu = None if naive is None else naive["cpu_ms"]["p50"]
    vs_naive = {r["mode"]: (r["fps"] / naive_fps if naive_fps else None) for r in results}
    vs_naive["default"] = vs_naive.get(default_mode)
    return {
        "default_mode": default_mode,
        "speedup_vs_naive": vs_naive,
        "speedup_vs_peer": _speedups_vs_peers(results, default_mode),
        "cpu_time_speedup_vs_naive": {
            r["mode"]: (naive_cpu / r["cpu_ms"]["p50"] if naive_cpu and r["cpu_ms"]["p50"] > 0 else None)
            for r in results},
        "best_frame_speedup_vs_naive": {
            r["mode"]: (naive_min / r["min_ms"] if naive_min and r["min_ms"] > 0 else None) for r in results},
    }


def _proposal_methods_ms(frames: list) -> dict:
    """Per proposal method (and ``total``): percentiles of its milliseconds over the frames."""
    method_ms: dict = {}
    for fr in frames:
        for k, v in fr.proposal_methods_ms.items():
            method_ms.setdefault(k, []).append(v)
    out = {k: percentiles(v) for k, v in method_ms.items()}
    out["total"] = percentiles([fr.proposal_ms for fr in frames])
    return out


def _config_section(args, config, encoder, modes: list, naive_frames: int, random_weights: bool,
                    load_s: float, load_before) -> dict:
    """The report's ``config``: what ran, on what, with which libraries and machine load."""
    import open_clip
    import torch

    from ..device import usable_cpus

    dev = encoder.device
    return {
        "model": args.model,
        "pretrained": args.pretrained,
        "random_weights": random_weights,
        "device": str(dev),
        "precision": encoder.precision,
        "naive_precision": "fp32",
        "width": int(args.width),
        "height": int(args.height),
        "image_size": [int(args.width), int(args.height)],
        "proposals": int(args.proposals),
        "proposal_methods": list(config.proposal_methods),
        "frames": int(args.frames),
        "naive_frames": int(naive_frames),
        "warmup": int(args.warmup),
        "modes": modes,
        "command": args.command,
        "cascade_top_k": int(config.cascade_top_k),
        "cascade_margin": float(config.cascade_margin),
        "cascade_crop_size": int(config.cascade_crop_size),
        "peers": {m: PEER_SPECS[m].label + (" (tiny test model)" if args.tiny_peers else "")
                  for m in modes if m in PEERS},
        "levers": [m for m in modes if m in LEVERS],
        "score_threshold": float(config.score_threshold),
        "crop_backend": getattr(encoder, "crop_backend", None),
        "torch_threads": int(torch.get_num_threads()),
        "cpus": usable_cpus(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "open_clip": getattr(open_clip, "__version__", "?"),
        "model_load_s": load_s,
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
        "gpu_run": dev.type == "cuda",
    }


def _peers_and_twins(args, modes: list, encoder, notes: list, say) -> tuple:
    """(peer name -> PeerDetector, twin kind -> encoder) for the rows in ``modes`` (twins:
    :data:`~clip_perception.tools.bench_modes.LEVER_SPECS`, the same random weights as ``encoder``);
    rows that cannot be built, or would repeat the default, are removed from ``modes`` with a note."""
    import torch

    from ..device import resolve_device_precision
    from ..encoder import ClipEncoder

    peers = {}
    spec_bf16 = PEER_SPECS["owlvit_b32_bf16"].precision
    if "owlvit_b32_bf16" in modes and resolve_device_precision(encoder.device, spec_bf16)[1] != "bf16":
        modes.remove("owlvit_b32_bf16")  # it would be the fp32 peer again
        notes.append("peer owlvit_b32_bf16 skipped: no bf16 on this device (it would repeat owlvit_b32)")
    for name in [m for m in modes if m in PEERS]:
        try:
            say(f"building peer {name} ({PEER_SPECS[name].label}, random weights)")
            peers[name] = PeerDetector(name, device=encoder.device, tiny=args.tiny_peers)
        except ImportError as exc:
            modes.remove(name)
            notes.append(f"peer {name} skipped: transformers not importable ({exc})")
    twins = {}
    if encoder.precision == "fp32":  # the fp32 levers run on the encoder itself; cascade_fp32 would repeat cascade
        twins["fp32"] = encoder
        if "cascade_fp32" in modes:
            modes.remove("cascade_fp32")
            notes.append("lever cascade_fp32 skipped: the encoder runs in fp32 already")
    for lever in [m for m in modes if m in LEVER_SPECS and LEVER_SPECS[m][1]]:
        kind = LEVER_SPECS[lever][1]
        if kind == "int8" and encoder.device.type != "cpu":
            modes.remove(lever)
            notes.append(f"lever {lever} skipped: int8 linear layers are CPU-only")
        elif kind not in twins:
            torch.manual_seed(0)  # the same random weights as the encoder
            extra = {"quantize_int8": True} if kind == "int8" else {}
            twins[kind] = ClipEncoder(model_name=args.model, pretrained=args.pretrained, device=args.device,
                                      precision="fp32" if kind == "fp32" else args.precision,
                                      prompt_templates=tuple(encoder.prompt_templates),
                                      compile=bool(args.compile), **extra)
    return peers, twins


def run_bench(args: argparse.Namespace, progress: Optional[Callable[[str], None]] = None) -> dict:
    """Run the benchmark described by parsed ``args``; returns the report dict (see ``--json``).

    Raises:
        ValueError: bad arguments or a ``--command`` that holds no command.
    """
    import torch

    from .. import proposals as _proposals  # noqa: F401
    from ..device import usable_cpus
    from ..embed import resolve_mode
    from ..encoder import ClipEncoder

    say = progress or (lambda line: None)
    modes, naive_frames = _check_args(args)
    load_before = load_average()
    torch.set_num_threads(int(args.threads) if args.threads else usable_cpus())
    config = _detector_config(args)
    notes = []
    random_weights = str(args.pretrained).strip().lower() in ("", "none")
    if random_weights:
        torch.manual_seed(0)
        notes.append("random weights (--pretrained none): speed figures are valid, rankings/top-1 boxes are not")

    t0 = time.perf_counter()
    encoder = ClipEncoder(model_name=args.model, pretrained=args.pretrained, device=args.device,
                          precision=args.precision, prompt_templates=tuple(config.prompt_templates),
                          compile=bool(args.compile))
    load_s = time.perf_counter() - t0
    if encoder.device.type == "cuda":
        notes.append(f"CUDA run on {torch.cuda.get_device_name(encoder.device)}")
    else:
        notes.append("no GPU used: CPU figures only (run with --device cuda on a GPU machine for GPU figures)")

    say(f"rendering {args.frames} frames {args.width}x{args.height} and computing proposals")
    frames = render_frames(args.frames, args.width, args.height, args.proposals, config.proposal_methods,
                           max_side=config.proposal_max_side, ss_mode=config.selective_search_mode)
    peers, twins = _peers_and_twins(args, modes, encoder, notes, say)
    bench = Bench(encoder, config, frames, args.command, naive_frames, peers=peers, twins=twins)
    if not bench.publisher.available:
        notes.append(bench.publisher.reason)
    for enc in dict.fromkeys((encoder, *twins.values())):  # each encoder once
        enc.warmup(dense=any(m.startswith(("dense", "cascade")) for m in modes))
    say(f"warm-up ({args.warmup} pass(es) per mode)")
    bench.warmup(modes, args.warmup)
    setup_peak = peak_rss_mb()
    runs = bench.run(modes, progress=progress)
    results = [runs[m].summary(args.proposals) for m in modes]

    age = None
    if args.age_run and args.age_run > 0:
        age_cfg = config.replace(mode=args.age_mode)
        say(f"age run: node in-process, {AGE_RUN_RATE_HZ:g} Hz camera, {args.age_run:g} s")
        age = age_run(encoder, frames[:AGE_RUN_FRAMES], args.age_run, age_cfg, args.command)

    return {
        "config": _config_section(args, config, encoder, modes, naive_frames, random_weights, load_s, load_before),
        "results": results,
        **_comparisons(results, resolve_mode("auto", encoder.device)),
        "proposal_methods_ms": _proposal_methods_ms(frames),
        "raw_proposals": [fr.raw_proposals for fr in frames],
        "peak_rss_scope": getattr(bench, "rss_scope", "process"),
        "setup_peak_rss_mb": setup_peak,
        "process_peak_rss_mb": max([setup_peak] + [r["peak_rss_mb"] for r in results]),
        "age_run": age,
        "notes": notes,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``clip-perception bench`` (``cli.py`` delegates here).

    Returns:
        0 on success, 2 on bad arguments; ``WeightsUnavailableError`` propagates (cli -> 3).
    """
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # ``clip-perception bench -- --frames 3`` (argparse REMAINDER passes the "--")
        argv = argv[1:]
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
    out = sys.stderr if args.json else sys.stdout

    def progress(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    try:
        report = run_bench(args, progress=progress)
    except ValueError as exc:
        print(f"clip-perception bench: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report), file=out, flush=True)
    if args.json:
        print(json.dumps(json_safe(report), indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
