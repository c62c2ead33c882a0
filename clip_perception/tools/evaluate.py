"""``clip-perception evaluate``: grounding accuracy on seeded simulated scenes (ROS-free).

For every scene index ``i`` in ``range(scenes)`` (seed ``seed + i``) three MuJoCo
table-top scenes are rendered (:mod:`clip_perception.sim.scene`) and commands with
known answers are generated from their ground truth:

=================  =====================================================  ==========================
kind               command (example)                                      scene
=================  =====================================================  ==========================
``unique_color``   "grab the red object" / "pick up the red one"          random layout, 5 objects;
                   (the only object of that colour)                       target colour unique
``absent``         "pick up the purple ball" (no purple object at all)    same random layout;
                                                                          answer: "not found"
``spatial``        "pick up the green ball on the left", "grab the        2-3 identical objects
                   rightmost blue cube", "pick up the nearest yellow      (same colour and shape;
                   cup", "pick up the largest red box"                    sizes differ for largest)
                                                                          + a distractor
``reference``      "pick up the green cube next to the red ball"          two identical cubes, one
                                                                          next to the reference
``color_shape``    "pick up the red ball" (colour + shape)                random layout
``shape``          "grab the cube" (the only cube)                        random layout
=================  =====================================================  ==========================

The spatial / reference commands name the target's colour, so with *random* CLIP
weights (``pretrained none``: the only option offline) they are decided by the colour
prior plus geometry, which is what they measure.  ``color_shape`` and ``shape`` need a
trained CLIP (with random weights the shape word carries no information) and run only
with real weights; the output says which kinds ran and why.

Metrics (all from :class:`clip_perception.pipeline.FrameResult`):

* top-1 accuracy: a present target is correct when the best detection's box has
  IoU >= 0.5 with the ground-truth box (the tightest box of the object's visible pixels,
  from the segmentation render); an absent target is correct when the result is empty;
* pointing accuracy: the best box centre lies inside the ground-truth box (right object,
  box possibly too tight or loose);
* "not found" precision = empty results on absent targets / all empty results, recall =
  empty results on absent targets / absent targets;
* box IoU of the best detection with the GT box, over the cases with a present target (0
  when nothing is reported): mean and share >= 0.5;
* centre error of the best correct detection, in cm (mean, median, 90th percentile),
  against the object's geometric centre (``GroundTruthObject.center_optical``) -- the
  detector reports the centre from the instance mask and the support plane
  (``position_is_centre``; :mod:`clip_perception.segment`), else the visible surface --
  and against the ground-truth visible-surface point (the GT box centre pixel
  back-projected at the median rendered depth of the object's own pixels);
* extent error of the best correct detection, in cm: :func:`extent_error_cm` (mean,
  median), for detections with an object centre;
* latency: median milliseconds per stage over all cases (``FrameResult.timings``).

Public API: :func:`run_evaluation` (tests pass their own encoder), :func:`main`.  The cases
are generated in :mod:`~clip_perception.tools.evaluate_cases`, the summary and the report
written by :mod:`~clip_perception.tools.evaluate_report` (their names are re-exported here).
"""


from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..boxes import box_iou
from ..params import Config, ParameterError, load_params_file, make_config, parse_overrides
from ..weights import weights_caches, weights_problem
from .evaluate_dialogue import DIALOGUE_KINDS, correction_case, dialogue_cases, run_dialogue_case
from .evaluate_cases import (ALL_KINDS, CHROMATIC, KINDS_RANDOM, KINDS_TRAINED, MIN_VISIBLE_PX, SPATIAL_KINDS,
                             CaseSpec, SceneSetup, build_scene, random_cases, resolve_spatial_target)
from .evaluate_report import (IOU_CORRECT, SHEET_COLS, SHEET_MAX, TILE_H, TILE_W, failure_tile, format_summary,
                              summarise, write_report)

__all__ = ["ALL_KINDS", "CHROMATIC", "IOU_CORRECT", "KINDS_RANDOM", "KINDS_TRAINED", "MIN_VISIBLE_PX", "SHEET_COLS",
           "SHEET_MAX", "SPATIAL_KINDS", "TILE_H", "TILE_W", "CaseSpec", "SceneSetup", "format_summary",
           "is_random_weights", "main", "make_parser", "run_evaluation", "surface_reference", "weights_caches",
           "weights_problem"]

LOG = logging.getLogger(__name__)


def _scene_module():
    """Import :mod:`clip_perception.sim.scene` after torch's own extensions.

    With ``MUJOCO_GL=osmesa``, importing MuJoCo (which loads OSMesa and its LLVM) before
    triton (loaded by ``torchvision.ops`` through ``torch._dynamo``) crashes the process
    with a segmentation fault in ``triton._C.libtriton``; the other order works.
    """
    try:
        import torchvision.ops  # noqa: F401
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    from ..sim import scene

    return scene



# ----------------------------------------------------------------------------- metrics
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes (exclusive x2/y2 edges, pixels; ``boxes.box_iou``)."""
    return float(box_iou(a, b)[0, 0])


def surface_reference(frame, obj) -> Optional[np.ndarray]:
    """Ground-truth visible-surface point of ``obj`` (metres, optical frame).

    The GT box centre pixel ``((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2)`` back-projected
    (pinhole, ``X = (u - cx) Z / fx``) at the median rendered depth of the object's own
    pixels (segmentation render).  ``None`` when the object has no valid depth.
    """
    from ..camera import pixel_to_point

    if frame.segmentation is None:
        return None
    z = frame.depth[frame.segmentation == obj.index]
    z = z[np.isfinite(z)]
    if z.size == 0:
        return None
    b = obj.box
    return np.asarray(pixel_to_point((b[0] + b[2] - 1) / 2.0, (b[1] + b[3] - 1) / 2.0, float(np.median(z)),
                                     frame.K), dtype=np.float64)


def extent_error_cm(det, obj) -> Optional[float]:
    """Mean absolute error [cm] of a detection's oriented extent ``[length, width, height]``
    against the object's true one (its horizontal full extents sorted, long first, and its
    height; ``GroundTruthObject.size``); ``None`` unless the detection reports an object
    centre (``position_is_centre``: its size is then the oriented extent) and the truth is known."""
    if not det.position_is_centre or det.size is None or obj.size is None:
        return None
    sx, sy, sz = (float(v) for v in np.asarray(obj.size, np.float64).reshape(3))
    truth = np.array([max(sx, sy), min(sx, sy), sz])
    return 100.0 * float(np.mean(np.abs(np.asarray(det.size, np.float64).reshape(3) - truth)))


def is_random_weights(config: Config) -> bool:
    """True when ``config.pretrained`` asks for random CLIP weights (``none`` / empty)."""
    return str(config.pretrained).strip().lower() in ("", "none")


# ----------------------------------------------------------------------------- run
def run_evaluation(
    scenes: int,
    seed: int,
    config: Any = None,
    encoder=None,
    report_dir: Optional[str | Path] = None,
    kinds: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> dict:
    """Run the seeded suite in-process with :class:`pipeline.Detector` (no ROS).

    Args:
        scenes: number of scene indices (each renders a random layout, a spatial scene
            and a reference scene; seed ``seed + i``).
        seed: base seed; the same seed gives the same scenes, commands and (with the
            same encoder) the same results.
        config: :class:`params.Config` or a dict of parameter values (``None`` =
            defaults).
        encoder: an ``encoder.Encoder`` (tests pass ``fake_encoders.ColorTestEncoder``);
            ``None`` builds ``ClipEncoder(config.model_name, config.pretrained)``.
        report_dir: also write ``summary.json``, ``cases.json``, PNG plots and a contact
            sheet of failures here.
        kinds: command kinds to run (subset of :data:`ALL_KINDS`); ``None`` =
            :data:`KINDS_RANDOM` with random weights (``config.pretrained`` none), all kinds
            otherwise.
        progress: show a tqdm progress bar on stderr.

    Returns:
        summary dict: ``top1_accuracy``, ``pointing_accuracy``, ``not_found_precision``,
        ``not_found_recall`` (``None`` when undefined), ``mean_3d_error_cm`` (vs the GT
        centre), ``mean_3d_surface_error_cm`` (vs the GT visible surface),
        ``accuracy_per_kind``, ``latency_ms_median`` (per stage), ``cases`` (count),
        ``random_weights``, ``kinds``, ``skipped_kinds``, ``notes``.

    Raises:
        ValueError: ``scenes`` < 1 or an unknown kind; ``weights.WeightsUnavailableError``
        when ``encoder`` is None and the weights cannot be loaded.
    """
    from ..pipeline import Detector  # torch first (see _scene_module)

    scene_mod = _scene_module()
    if scenes < 1:
        raise ValueError(f"scenes must be >= 1, got {scenes}")
    if config is None:
        config = make_config()
    elif not isinstance(config, Config):
        config = make_config(dict(config))
    random_weights = is_random_weights(config)
    if kinds is None:
        kinds = KINDS_RANDOM if random_weights else ALL_KINDS
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        raise ValueError(f"unknown kinds {bad}; choose from {', '.join(ALL_KINDS)}")
    notes = []
    skipped = [k for k in ALL_KINDS if k not in kinds]
    if random_weights and any(k in skipped for k in KINDS_TRAINED):
        notes.append("random CLIP weights: shape and colour+shape commands skipped (they need a trained CLIP); "
                     "the kinds run are decided by the colour prior and geometry")
    detector = Detector(config.detector, encoder=encoder)
    encoder_name = type(detector.encoder).__name__

    draw = report_dir is not None  # failure tiles only for a report
    if report_dir is not None:
        report_dir = Path(report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
    records: list = []
    failure_tiles: list = []

    from tqdm import tqdm

    bar = tqdm(total=scenes, desc="evaluate", unit="scene", disable=not progress, file=sys.stderr)
    try:
        for i in range(scenes):
            s = seed + i
            rng = np.random.default_rng([s, 7919])
            setups: list = []  # a random layout (SceneSetup) or (kind, index, seed) of a generated one
            if any(k in kinds for k in ("unique_color", "absent", "color_shape", "shape", "pick_place", "stop")):
                setups.append(SceneSetup(name=f"random_{i}", seed=s, objects=None, num_objects=5))
            setups += [(kind, i, s) for kind in ("spatial", "reference") if kind in kinds
                       or kind == "spatial" and "correction" in kinds]
            for setup in setups:
                for rec, tile in _run_setup(setup, rng, kinds, scene_mod, detector, draw):
                    records.append(rec)
                    if tile is not None and len(failure_tiles) < SHEET_MAX:
                        failure_tiles.append(tile)
            bar.update(1)
            if records:
                bar.set_postfix(acc=f"{np.mean([r['correct'] for r in records]):.2f}", cases=len(records))
    finally:
        bar.close()

    summary = summarise(records, config, random_weights, kinds, skipped, notes, encoder_name, scenes, seed)
    if report_dir is not None:
        write_report(report_dir, summary, records, failure_tiles)
    return summary


def _run_setup(setup, rng, kinds, scene_mod, detector, draw):
    st, scene, frame = build_scene(setup, rng, scene_mod)
    try:
        cases = [c for c in st.cases if c.kind in kinds]
        if st.objects is None:
            cases = random_cases(frame, rng, kinds, scene_mod) + dialogue_cases(frame, rng, kinds)
        elif st.name.startswith("spatial") and "correction" in kinds:
            cases += [c for c in (correction_case(frame),) if c is not None]
        for case in cases:
            if case.kind in DIALOGUE_KINDS:
                yield run_dialogue_case(st, case, frame, detector), None
                continue
            if case.kind == "spatial":
                case.target = resolve_spatial_target(case, frame)
            yield _run_case(st, case, frame, detector, draw)
    finally:
        scene.close()


def _run_case(st: SceneSetup, case: CaseSpec, frame, detector, draw):
    result = detector.detect(frame.rgb, case.command, depth=frame.depth, K=frame.K)
    best = result.best
    target = None
    if case.target is not None:
        target = next((o for o in frame.objects if o.index == case.target), None)
    rec = {
        "scene": st.name,
        "seed": st.seed,
        "kind": case.kind,
        "detail": case.detail,
        "command": case.command,
        "parse_status": result.parse.status,
        "expected_found": target is not None,
        "target": None if target is None else target.name,
        "target_box": None if target is None else [float(v) for v in target.box],
        "target_center": None if target is None else [float(v) for v in target.center_optical],
        "found": best is not None,
        "detections": [d.to_dict() for d in result.detections],
        "best_box": None if best is None else [float(v) for v in best.box],
        "best_confidence": None if best is None else float(best.confidence),
        "iou": None,
        "pointing": False,
        "correct": False,
        "error_3d_cm": None,
        "surface_error_3d_cm": None,
        "extent_error_cm": None,
        "position_is_centre": None if best is None else bool(best.position_is_centre),
        "best_object": None,
        "timings_ms": {k: round(float(v), 3) for k, v in result.timings.stages_ms.items()},
        "mode": result.mode,
        "notes": list(result.notes),
    }
    if best is not None:
        overlaps = [(_iou(best.box, o.box), o) for o in frame.objects]
        if overlaps:
            iou_best, obj = max(overlaps, key=lambda t: t[0])
            if iou_best > 0:
                rec["best_object"] = obj.name
    if target is None:
        rec["correct"] = best is None
    elif best is not None:
        iou = _iou(best.box, target.box)
        cx, cy = 0.5 * (best.box[0] + best.box[2]), 0.5 * (best.box[1] + best.box[3])
        tb = target.box
        rec["iou"] = iou
        rec["pointing"] = bool(tb[0] <= cx < tb[2] and tb[1] <= cy < tb[3])
        rec["correct"] = iou >= IOU_CORRECT
        if rec["correct"] and best.position is not None:
            rec["error_3d_cm"] = 100.0 * float(np.linalg.norm(np.asarray(best.position) - target.center_optical))
            rec["extent_error_cm"] = extent_error_cm(best, target)
            ref = surface_reference(frame, target)
            if ref is not None:
                rec["surface_error_3d_cm"] = 100.0 * float(np.linalg.norm(np.asarray(best.position) - ref))
    tile = None
    if draw and not rec["correct"]:
        tile = failure_tile(frame.rgb, result, target, case)
    return rec, tile



# ----------------------------------------------------------------------------- CLI
def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clip-perception evaluate",
                                description="Grounding accuracy on seeded simulated scenes (in-process, no ROS).")
    p.add_argument("--scenes", type=int, default=10, help="scene indices (each: random, spatial, reference scene)")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--config", help="parameters YAML (config/clip_perception.yaml format)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="override one parameter (repeatable)")
    p.add_argument("--model", help="open_clip model name (default from the config: ViT-B-32)")
    p.add_argument("--pretrained", help="open_clip tag, hf-hub:NAME, checkpoint path, or none (random weights)")
    p.add_argument("--checkpoint", help="local checkpoint file; same as --pretrained PATH")
    p.add_argument("--kinds", help=f"comma-separated subset of: {', '.join(ALL_KINDS)}")
    p.add_argument("--report", help="write summary.json, cases.json, plots and a failure contact sheet here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``clip-perception evaluate``.  Exit codes: 0 done, 2 bad arguments,
    3 requested CLIP weights unavailable."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # ``clip-perception evaluate -- --scenes 5``
        argv = argv[1:]
    args = make_parser().parse_args(argv)
    try:
        values = load_params_file(args.config) if args.config else {}
        overrides = parse_overrides(args.set or [])
        values.update(overrides)
        if args.model:
            values["model_name"] = args.model
        explicit = args.checkpoint or args.pretrained
        if explicit:
            values["pretrained"] = explicit
        config = make_config(values)
    except ParameterError as exc:
        print(f"clip-perception evaluate: error: {exc}", file=sys.stderr)
        return 2
    if args.scenes < 1:
        print("clip-perception evaluate: error: --scenes must be >= 1", file=sys.stderr)
        return 2
    kinds = None
    if args.kinds:
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        bad = [k for k in kinds if k not in ALL_KINDS]
        if bad:
            print(f"clip-perception evaluate: error: unknown kinds {bad}", file=sys.stderr)
            return 2
    try:
        problem = weights_problem(config.model_name, config.pretrained)
    except ValueError as exc:
        print(f"clip-perception evaluate: error: {exc}", file=sys.stderr)
        return 2
    if problem is not None:
        if explicit:
            print(f"clip-perception evaluate: {problem}", file=sys.stderr)
            return 3
        print(f"CLIP weights for {config.model_name}/{config.pretrained} are not available offline "
              f"(cache: {weights_caches()}); evaluating with RANDOM CLIP weights + colour prior "
              "(pretrained none, color_prior_weight 1.0): the figures measure the colour prior and the geometry, "
              "not CLIP")
        config = config.replace(pretrained="none")
        if "color_prior_weight" not in overrides:
            config = config.replace(color_prior_weight=1.0)
    elif is_random_weights(config) and "color_prior_weight" not in overrides:
        print("pretrained none: RANDOM CLIP weights; colour prior weight set to 1.0 "
              "(the figures measure the colour prior and the geometry, not CLIP)")
        config = config.replace(color_prior_weight=1.0)
    config = config.replace(warmup=False)
    summary = run_evaluation(args.scenes, args.seed, config, report_dir=args.report, kinds=kinds,
                             progress=not args.no_progress)
    print(format_summary(summary))
    if args.report:
        print(f"report: {Path(args.report) / 'summary.json'}, cases.json, accuracy_per_kind.png, "
              "error_3d_hist.png, latency_hist.png" + (", failures.png (annotated failures)"
                                                         if (Path(args.report) / 'failures.png').exists() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
