"""HSV-based colour naming for the colour prior of the ranking stage.

Every pixel gets exactly one of the eleven basic colour terms of Berlin & Kay
(*Basic Color Terms: Their Universality and Evolution*, 1969): black, white,
grey, red, orange, yellow, green, blue, purple, pink, brown.  Because the
names are mutually exclusive, the fractions of one box over all names sum to 1
and the fraction for a *set* of names (e.g. "red and white") is the sum of the
single fractions.

Colour space: OpenCV 8-bit HSV (``cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)``,
OpenCV docs "Color conversions"): H in 0..179 (= hue degrees / 2), S and V in
0..255.  Hue sectors follow the standard HSV colour wheel (Smith, "Color gamut
transform pairs", SIGGRAPH 1978: red 0 deg, yellow 60, green 120, cyan 180,
blue 240, magenta 300); the boundaries between names and the achromatic /
brown / pink rules below are hand-tuned on web colour samples (CSS named
colours) and are documented here so they can be checked:

====================  ==============================================  =========================
name                  rule (first match wins, top to bottom)            examples (R,G,B)
====================  ==============================================  =========================
black                 V < 50                                            (0,0,0), (30,30,40)
white                 S < 50 and V >= 200                               (255,255,255), (220,220,220)
grey                  S < 50 and 50 <= V < 200                          (128,128,128)
pink (light red)      H in red/pink sector, S < 150, V >= 150           (255,192,203), (250,128,114)
brown                 8 <= H < 22 (orange sector) and V < 170           (139,69,19)
red                   H < 8 or H >= 170   (hue < 16 deg or >= 340 deg)  (255,0,0), (220,20,60)
orange                8 <= H < 22         (16..44 deg)                  (255,165,0), (255,140,0)
yellow                22 <= H < 35        (44..70 deg)                  (255,255,0), (255,215,0)
green                 35 <= H < 85        (70..170 deg)                 (0,255,0), (0,128,0)
blue                  85 <= H < 130       (170..260 deg, incl. cyan)    (0,0,255), (0,255,255)
purple                130 <= H < 155      (260..310 deg, incl. magenta) (128,0,128), (255,0,255)
pink                  155 <= H < 170      (310..340 deg)                (255,20,147), (255,105,180)
====================  ==============================================  =========================

``color_fractions`` uses one integral image per requested colour
(``cv2.integral``), so each box costs O(1) regardless of its size.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

#: The eleven basic colour terms (Berlin & Kay 1969), in label-image order.
COLOR_NAMES: tuple[str, ...] = (
    "black",
    "white",
    "grey",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
)

#: Words accepted in addition to COLOR_NAMES, mapped to their basic term.
COLOR_SYNONYMS: dict[str, str] = {
    "gray": "grey",
    "violet": "purple",
    "magenta": "purple",
    "lilac": "purple",
    "lavender": "purple",
    "crimson": "red",
    "maroon": "red",
    "scarlet": "red",
    "cyan": "blue",
    "navy": "blue",
    "turquoise": "blue",
    "teal": "blue",
    "lime": "green",
    "olive": "green",
    "gold": "yellow",
    "golden": "yellow",
    "silver": "grey",
    "beige": "white",
    "tan": "brown",
    "reddish": "red",
    "greenish": "green",
    "bluish": "blue",
    "blueish": "blue",
    "yellowish": "yellow",
    "orangish": "orange",
    "orangey": "orange",
    "purplish": "purple",
    "pinkish": "pink",
    "brownish": "brown",
    "blackish": "black",
    "whitish": "white",
    "greyish": "grey",
    "grayish": "grey",
}

# Thresholds of the table in the module docstring (OpenCV 8-bit HSV units).
BLACK_V_MAX = 50  #: V below this is black.
ACHROMATIC_S_MAX = 50  #: S below this (and V >= BLACK_V_MAX) is white/grey.
WHITE_V_MIN = 200  #: achromatic with V at least this is white, else grey.
LIGHT_RED_S_MAX = 150  #: red/pink hue with S below this and V >= LIGHT_RED_V_MIN is pink.
LIGHT_RED_V_MIN = 150
BROWN_V_MAX = 170  #: orange-sector hue with V below this is brown.
#: Upper hue bounds (exclusive) of the chromatic sectors, OpenCV H units.
HUE_RED_LOW_MAX = 8
HUE_ORANGE_MAX = 22
HUE_YELLOW_MAX = 35
HUE_GREEN_MAX = 85
HUE_BLUE_MAX = 130
HUE_PURPLE_MAX = 155
HUE_PINK_MAX = 170  # H >= 170 is red again

_INDEX = {name: i for i, name in enumerate(COLOR_NAMES)}


def canonical_color(word: str) -> str | None:
    """Basic colour term for ``word`` (case-insensitive, synonyms resolved).

    Returns ``None`` when the word is not a known colour.  Example:
    ``canonical_color("Gray") == "grey"``, ``canonical_color("violet") == "purple"``.
    """
    w = str(word).strip().lower()
    if w in _INDEX:
        return w
    return COLOR_SYNONYMS.get(w)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}"
        )
    return np.ascontiguousarray(rgb)


def color_label_image(rgb: np.ndarray) -> np.ndarray:
    """Name every pixel with one basic colour term.

    Args:
        rgb: (H, W, 3) uint8 RGB image.

    Returns:
        (H, W) uint8 array of indices into ``COLOR_NAMES`` (rules in the module
        docstring).

    Raises:
        ValueError: when ``rgb`` is not an (H, W, 3) uint8 array.
    """
    rgb = _check_rgb(rgb)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    h = hsv[..., 0]
    s = hsv[..., 1]
    v = hsv[..., 2]

    # Chromatic hue sectors first, then overridden by the special rules.
    bins = np.array(
        [HUE_RED_LOW_MAX, HUE_ORANGE_MAX, HUE_YELLOW_MAX, HUE_GREEN_MAX, HUE_BLUE_MAX,
         HUE_PURPLE_MAX, HUE_PINK_MAX],
        dtype=np.uint8,
    )
    sector_names = np.array(
        [_INDEX[n] for n in ("red", "orange", "yellow", "green", "blue", "purple", "pink", "red")],
        dtype=np.uint8,
    )
    label = sector_names[np.searchsorted(bins, h, side="right")]

    redish = (h < HUE_RED_LOW_MAX) | (h >= HUE_PURPLE_MAX)
    label[redish & (s < LIGHT_RED_S_MAX) & (v >= LIGHT_RED_V_MIN)] = _INDEX["pink"]
    orange_sector = (h >= HUE_RED_LOW_MAX) & (h < HUE_ORANGE_MAX)
    label[orange_sector & (v < BROWN_V_MAX)] = _INDEX["brown"]

    achromatic = s < ACHROMATIC_S_MAX
    label[achromatic & (v >= WHITE_V_MIN)] = _INDEX["white"]
    label[achromatic & (v < WHITE_V_MIN)] = _INDEX["grey"]
    label[v < BLACK_V_MAX] = _INDEX["black"]
    return label


def _resolve(colors: Iterable[str]) -> list[str]:
    out = []
    for c in colors:
        name = canonical_color(c)
        if name is None:
            raise ValueError(f"unknown colour word {c!r}; known: {', '.join(COLOR_NAMES)}")
        out.append(name)
    return out


def color_masks(rgb: np.ndarray, colors: Sequence[str] = COLOR_NAMES) -> dict[str, np.ndarray]:
    """Boolean pixel masks of the requested colour words.

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        colors: colour words (basic terms or synonyms from ``COLOR_SYNONYMS``).

    Returns:
        dict mapping each word as given to an (H, W) bool mask.

    Raises:
        ValueError: bad image, or a word that is not a known colour.
    """
    names = _resolve(colors)
    label = color_label_image(rgb)
    return {word: label == _INDEX[name] for word, name in zip(colors, names)}


def color_fractions(rgb: np.ndarray, boxes: np.ndarray, colors: Sequence[str]) -> np.ndarray:
    """Fraction of each box's pixels that name as each colour word.

    Boxes are rounded to whole pixels (``np.rint``) and clipped to the image;
    a box with no pixels left gets 0 for every colour.  Uses one
    ``cv2.integral`` table per colour, so the cost per box is O(1).

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        boxes: (N, 4) float ``[x1, y1, x2, y2]`` pixels, x2/y2 exclusive.
        colors: C colour words (basic terms or synonyms).

    Returns:
        (N, C) float32 in [0, 1].

    Raises:
        ValueError: bad image, bad box array shape, or an unknown colour word.
    """
    names = _resolve(colors)
    rgb = _check_rgb(rgb)
    boxes = _as_boxes(boxes)
    out = np.zeros((boxes.shape[0], len(names)), dtype=np.float32)
    if boxes.shape[0] == 0 or not names:
        return out
    label = color_label_image(rgb)
    area = _box_counts(np.ones(rgb.shape[:2], np.uint8), boxes)
    valid = area > 0
    for j, name in enumerate(names):
        count = _box_counts((label == _INDEX[name]).astype(np.uint8), boxes)
        out[valid, j] = (count[valid] / area[valid]).astype(np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def color_purity_completeness(rgb: np.ndarray, boxes: np.ndarray, colors: Sequence[str],
                              context: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """How purely and how completely each box holds the named colours.

    * purity: fraction of the box's pixels that name as any of ``colors``
      (the row sums of :func:`color_fractions`; names are exclusive);
    * completeness: of the matching pixels in the box grown by ``context`` x its
      width/height on every side (clipped to the image), the fraction that lie in
      the box itself.  A box cut inside a coloured object (its bright centre) has
      matching pixels just outside it and scores below 1; a box around the whole
      object scores about 1.

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        boxes: (N, 4) float ``[x1, y1, x2, y2]`` pixels, x2/y2 exclusive.
        colors: colour words (basic terms or synonyms).
        context: margin of the surrounding window, relative to the box size.

    Returns:
        ``(purity, completeness)``, each (N,) float32 in [0, 1]; 0 for empty boxes.

    Raises:
        ValueError: bad image, bad boxes or an unknown colour word.
    """
    names = _resolve(colors)
    rgb = _check_rgb(rgb)
    boxes = _as_boxes(boxes)
    n = boxes.shape[0]
    purity = np.zeros(n, np.float32)
    completeness = np.zeros(n, np.float32)
    if n == 0 or not names:
        return purity, completeness
    label = color_label_image(rgb)
    match = np.isin(label, [_INDEX[name] for name in names]).astype(np.uint8)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    grown = boxes + np.stack([-w, -h, w, h], axis=1) * float(context)
    area = _box_counts(np.ones(rgb.shape[:2], np.uint8), boxes)
    inside = _box_counts(match, boxes)
    around = _box_counts(match, grown)
    ok = area > 0
    purity[ok] = inside[ok] / area[ok]
    has = around > 0
    completeness[has] = inside[has] / around[has]
    return np.clip(purity, 0.0, 1.0), np.clip(completeness, 0.0, 1.0)


def _as_boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    return np.nan_to_num(boxes, nan=0.0, posinf=0.0, neginf=0.0)


def _box_counts(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Number of nonzero ``mask`` pixels in each box (rounded, clipped), via ``cv2.integral``."""
    hgt, wid = mask.shape[:2]
    x1 = np.clip(np.rint(boxes[:, 0]), 0, wid).astype(np.int64)
    y1 = np.clip(np.rint(boxes[:, 1]), 0, hgt).astype(np.int64)
    x2 = np.maximum(np.clip(np.rint(boxes[:, 2]), 0, wid).astype(np.int64), x1)
    y2 = np.maximum(np.clip(np.rint(boxes[:, 3]), 0, hgt).astype(np.int64), y1)
    ii = cv2.integral(mask, sdepth=cv2.CV_64F)
    return ii[y2, x2] - ii[y1, x2] - ii[y2, x1] + ii[y1, x1]


def dominant_colors(rgb: np.ndarray, boxes: np.ndarray, center_fraction: float = 0.5) -> list[str]:
    """Most frequent colour name in the central part of each box.

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        boxes: (N, 4) float boxes in pixels.
        center_fraction: side length of the central window relative to the box
            (0.5 = the middle half in x and y).

    Returns:
        list of N names from ``COLOR_NAMES`` (ties -> earlier name).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    if boxes.shape[0] == 0:
        return []
    f = float(np.clip(center_fraction, 1e-3, 1.0))
    cx = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cy = (boxes[:, 1] + boxes[:, 3]) / 2.0
    hw = np.maximum((boxes[:, 2] - boxes[:, 0]) * f / 2.0, 0.5)
    hh = np.maximum((boxes[:, 3] - boxes[:, 1]) * f / 2.0, 0.5)
    inner = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
    frac = color_fractions(rgb, inner, COLOR_NAMES)
    return [COLOR_NAMES[i] for i in np.argmax(frac, axis=1)]
