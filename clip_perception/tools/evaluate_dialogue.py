"""``clip-perception evaluate``: conversation kinds with known answers (ROS-free).

Each case is a short conversation run through :class:`clip_perception.dialogue.Dialogue` and the
detector on one rendered frame, the way the node runs it (the dialogue's snapshot, its exclusion
mask, the target reported back after each frame):

=================  ===================================================  ==============================
kind               conversation (example)                               correct when
=================  ===================================================  ==============================
``pick_place``     "put the red ball on the blue cube" (random          the pick's and the destination's
                   layout; both colours unique in the scene)            boxes have IoU >= 0.5 with their
                                                                        objects; also reported: the place
                                                                        point's error to the
                                                                        destination's top centre (cm)
``stop``           "pick up the red ball", then "stop"                  the second frame has no command,
                                                                        no detection, intent ``stop``
``correction``     "pick up the green ball", then "no, the other one"   the second answer is another of the
                   (spatial scene: 2-3 identical objects)               identical objects (IoU >= 0.5), not
                                                                        the first answer
=================  ===================================================  ==============================

With random CLIP weights the colour words decide, as for the other random-weight kinds.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..boxes import box_iou
from ..dialogue import Dialogue, TargetRef
from .evaluate_cases import CHROMATIC, MIN_VISIBLE_PX, CaseSpec

__all__ = ["DIALOGUE_KINDS", "dialogue_cases", "correction_case", "run_dialogue_case", "top_centre_optical"]

#: The conversation kinds (all decided by the colour prior with random weights).
DIALOGUE_KINDS = ("pick_place", "stop", "correction")
IOU_CORRECT = 0.5


def _iou(a, b) -> float:
    return float(box_iou(np.asarray(a, np.float32).reshape(1, 4), np.asarray(b, np.float32).reshape(1, 4))[0, 0])


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def dialogue_cases(frame, rng: np.random.Generator, kinds: Sequence[str]) -> list:
    """``pick_place`` and ``stop`` cases about a random layout (objects of a unique colour).

    ``CaseSpec.command`` holds the utterances joined by `` | ``; ``target`` the pick's object
    index and ``detail`` the destination's index (``pick_place``) as text.
    """
    objs = [o for o in frame.objects if o.visible_pixels >= MIN_VISIBLE_PX and not o.truncated]
    colors = [o.color for o in frame.objects + frame.hidden]
    unique = [o for o in objs if colors.count(o.color) == 1 and o.color in CHROMATIC]
    cases = []
    if "pick_place" in kinds and len(unique) >= 2:
        a = _pick(rng, unique)
        b = _pick(rng, [o for o in unique if o is not a])
        verb, rel = _pick(rng, [("put", "on"), ("place", "on top of"), ("stack", "onto")])
        cases.append(CaseSpec("pick_place", f"{verb} the {a.color} {a.shape} {rel} the {b.color} {b.shape}",
                              a.index, str(b.index)))
    if "stop" in kinds and unique:
        a = _pick(rng, unique)
        word = _pick(rng, ["stop", "cancel", "never mind", "forget it", "stop looking", "that's all"])
        cases.append(CaseSpec("stop", f"pick up the {a.color} {a.shape} | {word}", None, word))
    return cases


def correction_case(frame) -> Optional[CaseSpec]:
    """A ``correction`` case on a spatial scene: its identical group (index 0 placed first)."""
    first = next((o for o in frame.objects if o.index == 0), None)
    if first is None:
        return None
    group = [o for o in frame.objects if o.color == first.color and o.shape == first.shape]
    if len(group) < 2:
        return None
    return CaseSpec("correction", f"pick up the {first.color} {first.shape} | no, the other one", None,
                    ",".join(str(o.index) for o in group))


def top_centre_optical(frame, obj) -> np.ndarray:
    """(3,) metres: the centre of ``obj``'s top face in the optical frame (world +z is up)."""
    T = np.asarray(frame.T_world_optical)
    top = np.asarray(obj.center_world, np.float64) + np.array([0.0, 0.0, 0.5 * float(obj.size[2])])
    return T[:3, :3].T @ (top - T[:3, 3])


def _record(st, case, result, frame) -> dict:
    return {
        "scene": st.name, "seed": st.seed, "kind": case.kind, "detail": case.detail, "command": case.command,
        "parse_status": result.parse.status, "expected_found": case.kind != "stop",
        "target": None, "target_box": None, "target_center": None, "found": result.best is not None,
        "detections": [d.to_dict() for d in result.detections],
        "best_box": None if result.best is None else [float(v) for v in result.best.box],
        "best_confidence": None if result.best is None else float(result.best.confidence),
        "iou": None, "pointing": False, "correct": False, "error_3d_cm": None, "surface_error_3d_cm": None,
        "extent_error_cm": None, "position_is_centre": None, "best_object": None, "place_error_cm": None,
        "timings_ms": {k: round(float(v), 3) for k, v in result.timings.stages_ms.items()},
        "mode": result.mode, "notes": list(result.notes),
    }


def _pointing(box, truth) -> bool:
    """The centre of ``box`` lies inside the ground-truth box ``truth`` (both xyxy pixels)."""
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    return bool(truth[0] <= cx < truth[2] and truth[1] <= cy < truth[3])


def _hear_and_detect(dialogue: Dialogue, text: str, frame, detector):
    dialogue.hear(text)
    snap = dialogue.snapshot()
    command = snap.command if snap.command is not None else snap.text
    exclude = dialogue.exclusion_mask if snap.excluded else None
    result = detector.detect(frame.rgb, command, depth=frame.depth, K=frame.K, exclude=exclude)
    if snap.command is not None:
        best = result.best
        dialogue.observe(snap.generation, best is not None, result.summary(),
                         None if best is None else TargetRef.of(best.box, best.position, best.label))
    return result


def run_dialogue_case(st, case: CaseSpec, frame, detector) -> dict:
    """Run one conversation case (module docstring) and return its record (evaluate's keys, plus
    ``place_error_cm`` for ``pick_place``)."""
    dialogue = Dialogue()
    by_index = {o.index: o for o in frame.objects}
    result = None
    for text in case.command.split(" | "):
        result = _hear_and_detect(dialogue, text, frame, detector)
    rec = _record(st, case, result, frame)
    best = result.best
    if case.kind == "stop":
        rec["correct"] = result.command is None and not result.detections and result.intent == "stop"
    elif case.kind == "pick_place":
        pick, dest = by_index[case.target], by_index[int(case.detail)]
        rec["target"], rec["target_box"] = pick.name, [float(v) for v in pick.box]
        dests = result.destination_detections
        pick_ok = best is not None and _iou(best.box, pick.box) >= IOU_CORRECT
        dest_ok = bool(dests) and _iou(dests[0].box, dest.box) >= IOU_CORRECT
        rec["iou"] = None if best is None else _iou(best.box, pick.box)
        rec["pointing"] = best is not None and _pointing(best.box, pick.box)
        rec["correct"] = bool(pick_ok and dest_ok)
        if rec["correct"] and result.place is not None and result.place.position is not None:
            err = np.linalg.norm(np.asarray(result.place.position) - top_centre_optical(frame, dest))
            rec["place_error_cm"] = 100.0 * float(err)
    else:  # correction: the second answer is another object of the identical group
        group = [by_index[int(i)] for i in case.detail.split(",")]
        if best is not None:
            ious = [_iou(best.box, o.box) for o in group]
            j = int(np.argmax(ious))
            rec["iou"], rec["target"] = ious[j], group[j].name
            rec["pointing"] = _pointing(best.box, group[j].box)
            first = dialogue.excluded_targets[0].box if dialogue.excluded_targets else None
            rec["correct"] = bool(ious[j] >= IOU_CORRECT and first is not None
                                  and _iou(first, group[j].box) < IOU_CORRECT)
    return rec
