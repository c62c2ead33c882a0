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
* 3D error of the best correct detection, in cm, against two references: the object's
  geometric centre (``GroundTruthObject.center_optical``) -- the detector reports the
  *visible surface* (median depth inside the box, :func:`geometry.box_position`), which
  lies in front of the centre by up to the object's half depth, so this error is
  dominated by that offset -- and the ground-truth visible-surface point: the GT box
  centre pixel back-projected at the median rendered depth of the object's own pixels;
* latency: median milliseconds per stage over all cases (``FrameResult.timings``).

Public API: :func:`run_evaluation` (tests pass their own encoder), :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..params import DetectorConfig, ParameterError, load_params_file, make_config, parse_overrides

LOG = logging.getLogger(__name__)

#: Kinds that do not need a trained CLIP (colour prior + geometry decide).
KINDS_RANDOM = ("unique_color", "absent", "spatial", "reference")
#: Kinds added when real CLIP weights are loaded.
KINDS_TRAINED = ("color_shape", "shape")
ALL_KINDS = KINDS_TRAINED + KINDS_RANDOM
#: Colours with a hue (the colour prior names them by hue; white/black/grey by value/saturation).
CHROMATIC = ("red", "green", "blue", "yellow", "orange", "purple")
#: Spatial qualifiers cycled over the scene indices.
SPATIAL_KINDS = ("left", "right", "nearest", "largest")
#: IoU with the ground-truth box for a detection to count as correct (PASCAL VOC criterion,
#: Everingham et al., IJCV 2010).
IOU_CORRECT = 0.5
#: Objects of a generated group must show at least this many pixels.
MIN_VISIBLE_PX = 150
#: Tiles of the failure contact sheet (pixels) and its columns.
TILE_W, TILE_H, SHEET_COLS, SHEET_MAX = 320, 240, 4, 24
_GT_COLOR = (255, 0, 255)


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


# ----------------------------------------------------------------------------- cases
@dataclass
class CaseSpec:
    """One command with its known answer.

    Attributes:
        kind: one of :data:`ALL_KINDS`.
        command: the command text.
        target: index of the target in the scene's object list, or ``None`` = absent
            (the correct answer is "not found").
        detail: e.g. the spatial qualifier ("left").
    """

    kind: str
    command: str
    target: Optional[int]
    detail: str = ""


@dataclass
class SceneSetup:
    """A scene to render and the cases asked about it."""

    name: str
    seed: int
    objects: Optional[list]  # explicit ObjectSpec list, or None for a random layout
    num_objects: int = 5
    cases: list = field(default_factory=list)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _spaced(rng: np.random.Generator, n: int, lo: float, hi: float, gap: float) -> np.ndarray:
    """``n`` sorted values in [lo, hi] at least ``gap`` apart (metres)."""
    slack = (hi - lo) - gap * (n - 1)
    if slack < 0:
        raise ValueError("range too small for the gap")
    cuts = np.sort(rng.uniform(0.0, slack, size=n))
    return lo + cuts + gap * np.arange(n)


def _spatial_setup(index: int, seed: int, rng: np.random.Generator, scene_mod) -> SceneSetup:
    """2-3 identical objects (colour and shape; sizes differ for "largest") + a distractor.

    World frame of the sim: +x away from the camera, +y to the image left.
    """
    ObjectSpec = scene_mod.ObjectSpec
    qual = SPATIAL_KINDS[index % len(SPATIAL_KINDS)]
    color = _pick(rng, CHROMATIC)
    other = _pick(rng, [c for c in CHROMATIC if c != color])
    n = int(rng.integers(2, 4))
    specs = []
    if qual in ("left", "right"):
        shape = "ball" if qual == "left" else "cube"
        x = float(rng.uniform(-0.05, 0.15))
        for y in _spaced(rng, n, -0.25, 0.25, 0.13):
            specs.append(ObjectSpec(shape, color, xy=(x + float(rng.uniform(-0.03, 0.03)), float(y))))
        command = (f"pick up the {color} ball on the left" if qual == "left"
                   else f"grab the rightmost {color} cube")
    elif qual == "nearest":
        shape = "cup"
        xs = _spaced(rng, n, -0.15, 0.25, 0.13)
        ys = rng.permutation(_spaced(rng, n, -0.22, 0.22, 0.11))
        specs = [ObjectSpec(shape, color, xy=(float(x), float(y))) for x, y in zip(xs, ys)]
        command = f"pick up the nearest {color} cup"
    else:  # largest
        shape = "box"
        base = np.array([0.028, 0.020, 0.018])
        scales = rng.permutation(np.array([1.0, 1.35, 1.7])[:n])
        x = float(rng.uniform(-0.02, 0.12))
        for y, s in zip(_spaced(rng, n, -0.26, 0.26, 0.17), scales):
            specs.append(ObjectSpec(shape, color, xy=(x, float(y)), size=tuple(base * s),
                                    name=f"{color} box x{s:.2f}"))
        command = f"pick up the largest {color} box"
    specs.append(ObjectSpec(_pick(rng, sorted(scene_mod.SHAPES)), other))  # distractor, placed at random
    setup = SceneSetup(name=f"spatial_{qual}_{index}", seed=seed, objects=specs)
    setup.cases.append(CaseSpec("spatial", command, target=None, detail=qual))  # target resolved on render
    return setup


def _reference_setup(index: int, seed: int, rng: np.random.Generator, scene_mod) -> SceneSetup:
    """A reference ball, a target next to it and an identical object far from it."""
    ObjectSpec = scene_mod.ObjectSpec
    c_ref = _pick(rng, CHROMATIC)
    c_tgt = _pick(rng, [c for c in CHROMATIC if c != c_ref])
    shape = _pick(rng, ["cube", "cup", "cylinder"])
    ref = np.array([rng.uniform(-0.05, 0.15), rng.uniform(-0.12, 0.12)])
    ang = float(rng.uniform(0, 2 * math.pi))
    near = ref + 0.11 * np.array([math.cos(ang), math.sin(ang)])
    side = 1.0 if ref[1] < 0 else -1.0  # far object on the other side of the table
    far = np.array([float(rng.uniform(-0.05, 0.15)), ref[1] + side * float(rng.uniform(0.28, 0.34))])
    specs = [
        ObjectSpec(shape, c_tgt, xy=tuple(near)),
        ObjectSpec(shape, c_tgt, xy=tuple(far)),
        ObjectSpec("ball", c_ref, xy=tuple(ref)),
    ]
    command = f"pick up the {c_tgt} {shape} next to the {c_ref} ball"
    setup = SceneSetup(name=f"reference_{index}", seed=seed, objects=specs)
    setup.cases.append(CaseSpec("reference", command, target=0, detail="next to"))
    return setup


def _random_cases(frame, rng: np.random.Generator, kinds: Sequence[str], scene_mod) -> list:
    """Cases about a random layout (needs the rendered ground truth)."""
    objs = [o for o in frame.objects if o.visible_pixels >= MIN_VISIBLE_PX and not o.truncated]
    all_colors = [o.color for o in frame.objects + frame.hidden]
    cases = []
    if "unique_color" in kinds:
        unique = [o for o in objs if all_colors.count(o.color) == 1]
        if unique:
            o = _pick(rng, unique)
            text = f"grab the {o.color} object" if rng.random() < 0.5 else f"pick up the {o.color} one"
            cases.append(CaseSpec("unique_color", text, o.index, o.color))
    if "absent" in kinds:
        absent = [c for c in CHROMATIC if c not in all_colors]
        if absent:
            c = _pick(rng, absent)
            cases.append(CaseSpec("absent", f"pick up the {c} {_pick(rng, sorted(scene_mod.SHAPES))}", None, c))
    if "color_shape" in kinds and objs:
        o = _pick(rng, objs)
        cases.append(CaseSpec("color_shape", f"pick up the {o.name}", o.index, o.name))
    if "shape" in kinds:
        shapes = [o.shape for o in frame.objects + frame.hidden]
        unique = [o for o in objs if shapes.count(o.shape) == 1]
        if unique:
            o = _pick(rng, unique)
            cases.append(CaseSpec("shape", f"grab the {o.shape}", o.index, o.shape))
    return cases


def _resolve_spatial_target(case: CaseSpec, frame) -> Optional[int]:
    """Index of the object the spatial qualifier picks, from the ground truth."""
    first = next((o for o in frame.objects if o.index == 0), None)  # the group is placed first
    if first is None:
        return None
    group = [o for o in frame.objects if o.color == first.color and o.shape == first.shape]
    if not group:
        return None
    if case.detail == "left":
        return min(group, key=lambda o: 0.5 * (o.box[0] + o.box[2])).index
    if case.detail == "right":
        return max(group, key=lambda o: 0.5 * (o.box[0] + o.box[2])).index
    if case.detail == "nearest":
        return min(group, key=lambda o: float(o.center_optical[2])).index
    if case.detail == "largest":
        return max(group, key=lambda o: float(np.prod(o.size))).index
    raise ValueError(f"unknown spatial qualifier {case.detail}")


def _group_ok(frame, n_group: int) -> bool:
    """All explicitly placed objects are visible, not cut by the border, not hidden."""
    if frame.hidden:
        return False
    placed = [o for o in frame.objects if o.index < n_group]
    return len(placed) == n_group and all(o.visible_pixels >= MIN_VISIBLE_PX and not o.truncated for o in placed)


# ----------------------------------------------------------------------------- metrics
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes (exclusive x2/y2 edges, pixels)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def surface_reference(frame, obj) -> Optional[np.ndarray]:
    """Ground-truth visible-surface point of ``obj`` (metres, optical frame).

    The GT box centre pixel ``((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2)`` back-projected
    (pinhole, ``X = (u - cx) Z / fx``) at the median rendered depth of the object's own
    pixels (segmentation render).  ``None`` when the object has no valid depth.
    """
    from ..geometry import pixel_to_point

    if frame.segmentation is None:
        return None
    z = frame.depth[frame.segmentation == obj.index]
    z = z[np.isfinite(z)]
    if z.size == 0:
        return None
    b = obj.box
    return np.asarray(pixel_to_point((b[0] + b[2] - 1) / 2.0, (b[1] + b[3] - 1) / 2.0, float(np.median(z)),
                                     frame.K), dtype=np.float64)


def _median(values: list) -> Optional[float]:
    return float(np.median(values)) if values else None


def _mean(values: list) -> Optional[float]:
    return float(np.mean(values)) if values else None


def _ratio(num: int, den: int) -> Optional[float]:
    return float(num) / den if den else None


def is_random_weights(config: DetectorConfig) -> bool:
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
        config: :class:`params.DetectorConfig` or a dict of parameter values (``None`` =
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
        ValueError: ``scenes`` < 1 or an unknown kind; ``encoder.WeightsUnavailableError``
        when ``encoder`` is None and the weights cannot be loaded.
    """
    from ..pipeline import Detector  # torch first (see _scene_module)

    scene_mod = _scene_module()
    if scenes < 1:
        raise ValueError(f"scenes must be >= 1, got {scenes}")
    if config is None:
        config = make_config()
    elif not isinstance(config, DetectorConfig):
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
    detector = Detector(config, encoder=encoder)
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
            if any(k in kinds for k in ("unique_color", "absent", "color_shape", "shape")):
                setups.append(SceneSetup(name=f"random_{i}", seed=s, objects=None, num_objects=5))
            setups += [(kind, i, s) for kind in ("spatial", "reference") if kind in kinds]
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

    summary = _summarise(records, config, random_weights, kinds, skipped, notes, encoder_name, scenes, seed)
    if report_dir is not None:
        _write_report(report_dir, summary, records, failure_tiles)
    return summary


def _build_scene(setup, rng, scene_mod):
    """Render a setup; explicit layouts are re-drawn until every placed object is clearly visible."""
    if isinstance(setup, SceneSetup):
        scene = scene_mod.make_scene(seed=setup.seed, num_objects=setup.num_objects)
        return setup, scene, scene.render()
    kind, i, s = setup
    last = None
    for attempt in range(20):
        st = (_spatial_setup if kind == "spatial" else _reference_setup)(i, s, rng, scene_mod)
        n_group = len(st.objects) - (1 if kind == "spatial" else 0)
        try:
            scene = scene_mod.make_scene(seed=s * 100 + attempt, objects=st.objects)
        except RuntimeError:  # the distractor could not be placed
            continue
        frame = scene.render()
        if _group_ok(frame, n_group):
            return st, scene, frame
        scene.close()
        last = st
    raise RuntimeError(f"could not build a clearly visible {kind} scene for seed {s} ({last.name if last else ''})")


def _run_setup(setup, rng, kinds, scene_mod, detector, draw):
    st, scene, frame = _build_scene(setup, rng, scene_mod)
    try:
        cases = list(st.cases)
        if st.objects is None:
            cases = _random_cases(frame, rng, kinds, scene_mod)
        for case in cases:
            if case.kind == "spatial":
                case.target = _resolve_spatial_target(case, frame)
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
            ref = surface_reference(frame, target)
            if ref is not None:
                rec["surface_error_3d_cm"] = 100.0 * float(np.linalg.norm(np.asarray(best.position) - ref))
    tile = None
    if draw and not rec["correct"]:
        tile = _failure_tile(frame.rgb, result, target, case)
    return rec, tile


def _failure_tile(rgb, result, target, case) -> np.ndarray:
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


def _summarise(records, config, random_weights, kinds, skipped, notes, encoder_name, scenes, seed) -> dict:
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
        per_kind[k] = {"cases": len(rs), "accuracy": _ratio(sum(r["correct"] for r in rs), len(rs))}
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
        "accuracy_per_kind": per_kind,
        "latency_ms_median": {k: _median(v) for k, v in sorted(stages.items())},
        "latency_ms_median_total": _median(totals),
        "notes": notes + [
            "3D error vs the GT centre includes the offset between the visible surface the detector "
            "reports (median depth in the box) and the object's centre (up to its half depth); the "
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
    for k, v in summary["accuracy_per_kind"].items():
        lines.append(f"  {k:13s} {pct(v['accuracy']):>7s}  ({v['cases']} cases)")
    lines.append(f"'not found' precision {pct(summary['not_found_precision'])}, "
                 f"recall {pct(summary['not_found_recall'])}")
    lines.append(f"3D error of correct detections ({summary['n_3d']}): mean {cm(summary['mean_3d_error_cm'])} "
                 f"vs the GT centre, {cm(summary['mean_3d_surface_error_cm'])} vs the GT visible surface "
                 "(the detector reports the visible surface, not the centre)")
    lat = summary["latency_ms_median"]
    main_stages = [k for k in ("proposals", "encode_text", "encode_boxes", "color_prior", "rank", "geometry") if k in lat]
    lines.append("median latency: " + ", ".join(f"{k} {lat[k]:.1f} ms" for k in main_stages)
                 + (f"; total {summary['latency_ms_median_total']:.1f} ms"
                    if summary["latency_ms_median_total"] is not None else ""))
    return "\n".join(lines)


def _write_report(report_dir: Path, summary: dict, records: list, failure_tiles: list) -> None:
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


# ----------------------------------------------------------------------------- CLI
def weights_problem(model_name: str, pretrained: str) -> Optional[str]:
    """Why the CLIP weights ``model_name``/``pretrained`` cannot be loaded here, or ``None``.

    Uses the encoder's own offline-first resolution (local caches, then a network probe of
    at most a few seconds), without building the model.  ``none`` is always loadable.

    Raises:
        ValueError: unknown model name or tag (message from the encoder).
    """
    if str(pretrained).strip().lower() in ("", "none"):
        return None
    from .. import encoder as enc

    resolve = getattr(enc, "_resolve_weights", None)
    try:
        if resolve is not None:
            enc._check_model_name(model_name)
            resolve(model_name, pretrained, None, True)
        else:  # pragma: no cover - fall back to building the model
            enc.ClipEncoder(model_name, pretrained, device="cpu")
    except enc.WeightsUnavailableError as exc:
        return str(exc)
    return None


def weights_caches() -> str:
    """The local caches CLIP weights are looked up in (for messages)."""
    try:
        from ..encoder import _hf_cache_dir

        hf = _hf_cache_dir(None)
    except Exception:  # noqa: BLE001 - message only
        hf = "~/.cache/huggingface/hub"
    return f"{hf}, {Path('~/.cache/clip').expanduser()}"


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
