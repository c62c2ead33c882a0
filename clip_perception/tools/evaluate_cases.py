"""Cases of ``clip-perception evaluate``: seeded scenes and commands with known answers (ROS-free).

See :mod:`clip_perception.tools.evaluate` for the kinds of command and the metrics.  For
every scene index a random layout (:class:`SceneSetup` with ``objects=None``) gets cases
made from its rendered ground truth (:func:`random_cases`); the ``spatial`` and
``reference`` scenes are explicit layouts built around their command
(:func:`build_scene` re-draws them until every placed object is clearly visible).

World frame of the sim (:mod:`clip_perception.sim.scene`): +x away from the camera, +y to
the image left, metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

__all__ = ["KINDS_RANDOM", "KINDS_TRAINED", "ALL_KINDS", "CHROMATIC", "SPATIAL_KINDS", "MIN_VISIBLE_PX",
           "CaseSpec", "SceneSetup", "random_cases", "resolve_spatial_target", "build_scene"]

#: Kinds that do not need a trained CLIP (colour prior + geometry decide).
KINDS_RANDOM = ("unique_color", "absent", "spatial", "reference", "pick_place", "stop", "correction")
#: Kinds added when real CLIP weights are loaded.
KINDS_TRAINED = ("color_shape", "shape")
ALL_KINDS = KINDS_TRAINED + KINDS_RANDOM
#: Colours with a hue (the colour prior names them by hue; white/black/grey by value/saturation).
CHROMATIC = ("red", "green", "blue", "yellow", "orange", "purple")
#: Spatial qualifiers cycled over the scene indices.
SPATIAL_KINDS = ("left", "right", "nearest", "largest")
#: Objects of a generated group must show at least this many pixels.
MIN_VISIBLE_PX = 150


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


def random_cases(frame, rng: np.random.Generator, kinds: Sequence[str], scene_mod) -> list:
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


def resolve_spatial_target(case: CaseSpec, frame) -> Optional[int]:
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



def build_scene(setup, rng, scene_mod):
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
