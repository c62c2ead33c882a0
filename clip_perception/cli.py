"""``clip-perception``: command-line tools over the ROS-free library.

Sub-commands:
  detect    rank proposals of one image against a command (optionally with depth + intrinsics)
  demo      the main job end to end over ROS 2: simulated camera -> node -> detections (``make demo``)
  evaluate  accuracy of the grounding on seeded simulated scenes
  bench     our pipeline against the naive per-crop baseline, side by side
  soak      many frames through the node, memory / threads / file descriptors over time

Exit codes: 0 success (also when nothing was found: an empty result is an answer),
2 bad arguments or input files, 3 CLIP weights unavailable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .params import ParameterError, load_params_file, make_config, parse_overrides

LOG = logging.getLogger("clip_perception")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def load_rgb(path: str | Path) -> np.ndarray:
    """Read a colour image file as (H, W, 3) uint8 RGB.  Raises CliError when unreadable."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise CliError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_depth(path: str | Path, depth_scale: float = 0.0) -> np.ndarray:
    """Read a depth file as (H, W) float32 metres with NaN for invalid pixels
    (:func:`clip_perception.depth_files.load_depth_file`).

    ``.png``/``.tif``: 16-bit integers in millimetres (``depth_scale`` metres per unit
    overrides 0.001), 0 = invalid (REP 118).  ``.npy``: float arrays are metres
    (0, NaN, Inf invalid; multiplied by ``depth_scale`` when it is > 0); integer arrays are
    scaled like PNGs.  (H, W, 1) arrays are accepted.

    Raises:
        CliError: unreadable file, several differing channels, or 8-bit (lossy / no range) depth.
    """
    from .depth_files import DepthFileError, load_depth_file

    try:
        return load_depth_file(path, depth_scale if depth_scale > 0 else None, scale_float=True)
    except DepthFileError as exc:
        raise CliError(str(exc)) from exc


def parse_intrinsics(text: str) -> np.ndarray:
    """``"fx,fy,cx,cy"`` (pixels) -> (3, 3) float64 K.  Raises CliError on bad input."""
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise CliError(f"--intrinsics takes fx,fy,cx,cy in pixels, got '{text}'") from exc
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def build_config(args: argparse.Namespace):
    """Parameters from --params, then --set, then the dedicated options (highest priority)."""
    values = {}
    if getattr(args, "params", None):
        values.update(load_params_file(args.params))
    values.update(parse_overrides(getattr(args, "set", None) or []))
    for option, name in (("model", "model_name"), ("pretrained", "pretrained"), ("device", "device"),
                         ("top_k", "top_k"), ("mode", "mode"), ("precision", "precision")):
        value = getattr(args, option, None)
        if value is not None:
            values[name] = value
    if getattr(args, "checkpoint", None):
        values["pretrained"] = args.checkpoint
    if getattr(args, "proposals", None):
        values["proposal_methods"] = [m.strip() for m in args.proposals.split(",") if m.strip()]
    return make_config(values)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="open_clip model name (default ViT-B-32)")
    p.add_argument("--pretrained", help="open_clip tag, hf-hub:NAME, checkpoint path, or none (random weights)")
    p.add_argument("--checkpoint", help="local checkpoint file (.pt/.pth/.bin/.safetensors); same as --pretrained PATH")
    p.add_argument("--device", help="auto, cuda or cpu")
    p.add_argument("--precision", help="auto, fp32, fp16 or bf16")
    p.add_argument("--params", help="parameters YAML (the node's config/clip_perception.yaml format)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="override one parameter (repeatable)")


def _detect(args: argparse.Namespace) -> int:
    from .pipeline import Detector
    from .visualize import draw_result, save_rgb

    config = build_config(args)
    rgb = load_rgb(args.image)
    depth = load_depth(args.depth, config.depth_scale) if args.depth else None
    K = parse_intrinsics(args.intrinsics) if args.intrinsics else None
    if depth is not None and K is None:
        LOG.warning("--depth without --intrinsics: no 3D positions")
    if K is not None and depth is None:
        LOG.warning("--intrinsics without --depth: no 3D positions")
    detector = Detector(config.detector)
    result = detector.detect(rgb, args.command, depth=depth, K=K)
    for note in result.notes:
        LOG.warning(note)
    parsed = result.command
    payload = {
        "command": args.command,
        "status": result.parse.status,
        "reason": result.parse.reason,
        "action": parsed.action if parsed else "",
        "target": parsed.target if parsed else "",
        "parsed": parsed.to_dict() if parsed else None,
        "mode": result.mode,
        "random_weights": config.pretrained.lower() == "none",
        "detections": [d.to_dict() for d in result.detections],
        "intent": result.intent,
        "destination": parsed.destination.target if parsed and parsed.destination else "",
        "destination_relation": (parsed.destination_relation or "") if parsed else "",
        "destination_detections": [d.to_dict() for d in result.destination_detections],
        "place_position": None if result.place is None or result.place.position is None
        else [float(v) for v in result.place.position],
        "summary": result.summary(),
        "timings_ms": {k: round(v, 2) for k, v in result.timings.stages_ms.items()},
    }
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        if parsed is None:
            print("stop: nothing to look for" if result.intent == "stop" else f"no command: {result.parse.reason}")
        else:
            print(f"command: {parsed.summary()}")
            if config.pretrained.lower() == "none":
                print("NOTE: random CLIP weights (--pretrained none): CLIP scores are meaningless; "
                      f"colour prior weight {config.color_prior_weight}")
            if not result.detections:
                print(f"not found: {result.summary()}")
            for i, det in enumerate(result.detections, 1):
                x, y, w, h = det.roi
                pos = "no 3D" if det.position is None else "xyz=({:.3f}, {:.3f}, {:.3f}) m".format(*det.position)
                print(f"{i}. {det.label}  confidence={det.confidence:.3f} score={det.score:.3f}  "
                      f"roi=(x={x}, y={y}, w={w}, h={h})  {pos}")
            if parsed.destination is not None:
                print(result.summary())
    if args.annotate:
        title = args.command if parsed is None else parsed.target
        save_rgb(args.annotate, draw_result(rgb, result.detections, result.proposals, title=title))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clip-perception", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("detect", help="find the commanded object in one image")
    p.add_argument("image", help="colour image file (PNG/JPEG)")
    p.add_argument("--command", required=True, help='e.g. "pick up the red ball"')
    p.add_argument("--depth", help="depth aligned to the image: 16-bit PNG (mm) or .npy (float metres)")
    p.add_argument("--intrinsics", help="fx,fy,cx,cy of the colour camera in pixels")
    p.add_argument("--proposals", help="comma-separated methods: selective_search,contours,grid,depth")
    p.add_argument("--top-k", dest="top_k", type=int, help="detections to print")
    p.add_argument("--mode", help="crop, dense, cascade or auto")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--annotate", help="write an annotated PNG here")
    _add_model_options(p)
    p.set_defaults(func=_detect)

    for name, helptext in (
        ("demo", "the main job end to end over ROS 2 (simulated camera -> node)"),
        ("evaluate", "grounding accuracy on seeded simulated scenes"),
        ("bench", "benchmark against the naive per-crop pipeline"),
        ("soak", "long run through the node: memory, threads, file descriptors"),
    ):
        sub.add_parser(name, help=helptext + f" (see: clip-perception {name} --help)", add_help=False)
    return parser


_DELEGATED = ("demo", "evaluate", "bench", "soak")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        # These sub-commands own their options (their --help lists them).
        import importlib

        return int(importlib.import_module(f"clip_perception.tools.{argv[0]}").main(argv[1:]) or 0)
    parser = make_parser()
    args = parser.parse_args(argv)
    # open_clip logs its progress on the root logger: keep that quiet unless --verbose.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="[%(levelname)s] %(name)s: %(message)s")
    LOG.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except (CliError, ParameterError) as exc:
        print(f"clip-perception: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the encoder's typed error, without importing torch here
        if type(exc).__name__ == "WeightsUnavailableError":
            print(f"clip-perception: {exc}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
