"""Explicit test encoders with known answers (tests only -- never used by the product).

They implement the ``encoder.Encoder`` protocol (``encode_texts``,
``encode_boxes``, ``logit_scale``) so the ranking and the node can be tested
without CLIP weights:

* :class:`ColorTestEncoder` -- "sees" only colour: the embedding of a box is a
  fixed unit vector for the dominant colour name of the box's central pixels
  (``colors.dominant_colors``), plus a background and an "object" component;
  a text embeds the colour words it names.  Table-coloured (grey) crops and
  background/negative prompts map to a "background" vector.
* :class:`ConstantEncoder` -- every crop gets the same embedding, so CLIP
  scores tie and the spatial rules / colour prior decide.
* :class:`SlowEncoder` -- wraps another encoder and sleeps in
  ``encode_boxes`` (for backlog / latency tests).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Sequence

import numpy as np

from clip_perception import colors

#: Words that make a prompt a background / negative prompt for these encoders.
BACKGROUND_WORDS = frozenset({"background", "table", "surface", "wall", "floor", "blurry", "empty", "other"})

_WORD = re.compile(r"[a-z]+")


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def is_background_prompt(text: str) -> bool:
    """True when ``text`` contains one of :data:`BACKGROUND_WORDS` (e.g. "a table surface")."""
    return any(w in BACKGROUND_WORDS for w in _WORD.findall(str(text).lower()))


class ColorTestEncoder:
    """Colour-only encoder with known answers.

    Embedding space (D = len(COLOR_NAMES) + 2): one axis per basic colour
    term, a ``background`` axis and an ``object`` axis.

    * Box whose central window (``center_fraction`` of its sides) is mostly
      colour ``c`` (not in ``background_colors``):
      ``unit(e_c + 0.3 e_bg + 0.5 e_obj)``; a table-coloured box: ``e_bg``.
    * Text naming colours ``c1..ck``: ``unit(sum_i e_ci / sqrt(k) + 0.5 e_obj)``;
      a background prompt (:func:`is_background_prompt`): ``e_bg``; any other
      text ("ball"): ``e_obj``.

    Cosines (target vs each negative): crop of the named colour 0.97 vs 0.26,
    another colour 0.19 vs 0.26, grey crop 0 vs 1; a colourless phrase
    ("ball") 0.43 vs 0.26 for every non-grey crop.  With ``logit_scale = 100``
    and six negative prompts: p(target) ~ 1, ~ 2e-4, ~ 0 and ~ 1.

    Attributes:
        calls: number of ``encode_texts`` / ``encode_boxes`` calls and boxes encoded.
        modes: the ``mode`` argument of every ``encode_boxes`` call, in order.
    """

    BG_WEIGHT = 0.3
    OBJ_WEIGHT = 0.5

    def __init__(self, logit_scale: float = 100.0, background_colors: Sequence[str] = ("grey",),
                 center_fraction: float = 0.5):
        self.logit_scale = float(logit_scale)
        self.background_colors = frozenset(background_colors)
        self.center_fraction = float(center_fraction)
        self.dim = len(colors.COLOR_NAMES) + 2
        self.bg_axis = len(colors.COLOR_NAMES)
        self.obj_axis = len(colors.COLOR_NAMES) + 1
        self.device = "cpu"
        self.calls = {"texts": 0, "boxes": 0, "boxes_encoded": 0}
        self.modes: list = []
        self._lock = threading.Lock()

    def _axis(self, name: str) -> int:
        return colors.COLOR_NAMES.index(name)

    def text_vector(self, text: str) -> np.ndarray:
        """(D,) float32 unit embedding of one phrase."""
        v = np.zeros(self.dim, np.float64)
        named = []
        for w in _WORD.findall(str(text).lower()):
            c = colors.canonical_color(w)
            if c is not None and c not in named:
                named.append(c)
        if named:
            for c in named:
                v[self._axis(c)] = 1.0 / np.sqrt(len(named))
            v[self.obj_axis] = self.OBJ_WEIGHT
        elif is_background_prompt(text):
            v[self.bg_axis] = 1.0
        else:
            v[self.obj_axis] = 1.0
        return _unit(v)

    def color_vector(self, name: str) -> np.ndarray:
        """(D,) float32 unit image embedding of a crop whose dominant colour is ``name``."""
        v = np.zeros(self.dim, np.float64)
        if name in self.background_colors:
            v[self.bg_axis] = 1.0
        else:
            v[self._axis(name)] = 1.0
            v[self.bg_axis] = self.BG_WEIGHT
            v[self.obj_axis] = self.OBJ_WEIGHT
        return _unit(v)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(M, D) float32 unit-norm text embeddings."""
        with self._lock:
            self.calls["texts"] += 1
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.text_vector(t) for t in texts])

    def encode_boxes(self, rgb: np.ndarray, boxes: np.ndarray, mode: str = "crop", size=None) -> np.ndarray:
        """(N, D) float32 unit-norm embeddings from the dominant central colour of each box."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        with self._lock:
            self.calls["boxes"] += 1
            self.calls["boxes_encoded"] += len(boxes)
            self.modes.append(mode)
        if len(boxes) == 0:
            return np.zeros((0, self.dim), np.float32)
        names = colors.dominant_colors(rgb, boxes, self.center_fraction)
        return np.stack([self.color_vector(c) for c in names])


class ConstantEncoder:
    """Every crop has the same embedding; CLIP scores tie, so geometry / colour prior decide.

    Image embedding ``e0`` for every box; a background prompt
    (:func:`is_background_prompt`) embeds as ``e1``; any other text as
    ``target_cos * e0 + sqrt(1 - target_cos^2) * e2``.  With the default
    ``target_cos = 1`` and ``logit_scale = 100`` every crop gets p(target) ~ 1;
    ``target_cos = 0`` gives p = 1 / (1 + number of negatives).
    """

    def __init__(self, logit_scale: float = 100.0, target_cos: float = 1.0, dim: int = 4):
        if dim < 3:
            raise ValueError("dim must be >= 3")
        self.logit_scale = float(logit_scale)
        self.target_cos = float(np.clip(target_cos, -1.0, 1.0))
        self.dim = int(dim)
        self.device = "cpu"
        self.modes: list = []

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            if is_background_prompt(t):
                out[i, 1] = 1.0
            else:
                out[i, 0] = self.target_cos
                out[i, 2] = np.sqrt(max(0.0, 1.0 - self.target_cos ** 2))
        return out

    def encode_boxes(self, rgb: np.ndarray, boxes: np.ndarray, mode: str = "crop", size=None) -> np.ndarray:
        self.modes.append(mode)
        n = int(np.asarray(boxes).reshape(-1, 4).shape[0])
        out = np.zeros((n, self.dim), np.float32)
        out[:, 0] = 1.0
        return out


class SlowEncoder:
    """Wraps ``inner`` and sleeps ``delay_s`` seconds in every ``encode_boxes`` call.

    Attributes:
        box_calls: number of ``encode_boxes`` calls so far (thread-safe).
    """

    def __init__(self, inner, delay_s: float):
        self.inner = inner
        self.delay_s = float(delay_s)
        self.box_calls = 0
        self._lock = threading.Lock()

    @property
    def logit_scale(self) -> float:
        return self.inner.logit_scale

    @property
    def device(self) -> str:
        return getattr(self.inner, "device", "cpu")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_texts(texts)

    def encode_boxes(self, rgb: np.ndarray, boxes: np.ndarray, mode: str = "crop", size=None) -> np.ndarray:
        with self._lock:
            self.box_calls += 1
        time.sleep(self.delay_s)
        return self.inner.encode_boxes(rgb, boxes, mode=mode, size=size)
