"""colors.py: HSV colour naming and exact per-box colour fractions."""

import numpy as np
import pytest

from clip_perception import colors
from clip_perception.colors import (COLOR_NAMES, canonical_color, color_fractions, color_label_image, color_masks,
                                    dominant_colors)

# (name, RGB) samples: pure / CSS colours that must name as `name`.
PURE = [
    ("red", (255, 0, 0)),
    ("red", (220, 20, 60)),  # crimson
    ("red", (128, 0, 0)),  # maroon
    ("green", (0, 255, 0)),
    ("green", (0, 128, 0)),
    ("blue", (0, 0, 255)),
    ("blue", (0, 0, 128)),  # navy
    ("blue", (0, 255, 255)),  # cyan
    ("yellow", (255, 255, 0)),
    ("yellow", (255, 215, 0)),  # gold
    ("orange", (255, 165, 0)),
    ("orange", (255, 140, 0)),
    ("purple", (128, 0, 128)),
    ("purple", (255, 0, 255)),  # magenta
    ("purple", (138, 43, 226)),  # blueviolet
    ("pink", (255, 192, 203)),
    ("pink", (255, 105, 180)),  # hotpink
    ("pink", (255, 20, 147)),  # deeppink
    ("brown", (139, 69, 19)),  # saddlebrown
    ("white", (255, 255, 255)),
    ("white", (230, 230, 230)),
    ("black", (0, 0, 0)),
    ("black", (30, 30, 40)),
    ("grey", (128, 128, 128)),
    ("grey", (90, 90, 90)),
]


def _uniform(rgb, h=8, w=8):
    return np.full((h, w, 3), rgb, np.uint8)


@pytest.mark.parametrize("name,rgb", PURE, ids=[f"{n}-{c}" for n, c in PURE])
def test_pure_colour_names(name, rgb):
    """Case: a uniform image of a pure/CSS colour names as the expected basic term in every pixel."""
    label = color_label_image(_uniform(rgb))
    assert label.shape == (8, 8) and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {COLOR_NAMES.index(name)}
    frac = color_fractions(_uniform(rgb), np.array([[0, 0, 8, 8]], np.float32), COLOR_NAMES)
    expected = np.zeros((1, len(COLOR_NAMES)), np.float32)
    expected[0, COLOR_NAMES.index(name)] = 1.0
    np.testing.assert_array_equal(frac, expected)


def test_color_names_are_berlin_kay_eleven():
    """Case: COLOR_NAMES holds the 11 basic colour terms, each once."""
    assert sorted(COLOR_NAMES) == sorted(
        ["black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"])


@pytest.mark.parametrize("word,name", [("gray", "grey"), ("Grey", "grey"), ("violet", "purple"),
                                       ("crimson", "red"), ("maroon", "red"), ("RED", "red"), ("reddish", "red"),
                                       ("banana", None), ("", None)])
def test_synonyms(word, name):
    """Case: synonyms and case resolve to the basic term; non-colours give None."""
    assert canonical_color(word) == name


def test_fractions_exact_on_hand_built_image():
    """Case: 100x100 image, columns 0..29 red, 30..99 blue, rows 80..99 of the blue part white: exact fractions."""
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, :30] = (255, 0, 0)
    img[:, 30:] = (0, 0, 255)
    img[80:, 30:] = (255, 255, 255)
    boxes = np.array([
        [0, 0, 50, 100],  # 30 red cols, 20 blue/white cols: red 3000, blue 1600, white 400 of 5000
        [10, 10, 20, 20],  # all red
        [0, 0, 100, 100],  # whole image
        [-10, 0, 10, 10],  # clipped to [0,0,10,10]: all red
        [200, 200, 300, 300],  # outside: no pixels
        [0.4, 0.0, 49.6, 100.0],  # rounds to [0,0,50,100]
        [40, 40, 40, 60],  # zero width
    ], np.float32)
    frac = color_fractions(img, boxes, ["red", "blue", "white", "gray"])
    assert frac.shape == (7, 4) and frac.dtype == np.float32
    np.testing.assert_allclose(frac[0], [0.6, 0.32, 0.08, 0.0], atol=1e-7)
    np.testing.assert_allclose(frac[1], [1.0, 0.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(frac[2], [0.3, 0.56, 0.14, 0.0], atol=1e-7)
    np.testing.assert_allclose(frac[3], [1.0, 0.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_array_equal(frac[4], [0, 0, 0, 0])
    np.testing.assert_allclose(frac[5], frac[0], atol=1e-7)
    np.testing.assert_array_equal(frac[6], [0, 0, 0, 0])


def test_fractions_match_brute_force_counts():
    """Case: integral-image fractions equal direct pixel counts on a random image and random boxes."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    x1 = rng.integers(0, 79, 50)
    y1 = rng.integers(0, 59, 50)
    boxes = np.stack([x1, y1, x1 + rng.integers(1, 40, 50), y1 + rng.integers(1, 40, 50)], 1).astype(np.float32)
    frac = color_fractions(img, boxes, COLOR_NAMES)
    label = color_label_image(img)
    for i, (a, b, c, d) in enumerate(boxes.astype(int)):
        c, d = min(c, 80), min(d, 60)
        patch = label[b:d, a:c]
        counts = np.bincount(patch.ravel(), minlength=len(COLOR_NAMES)) / patch.size
        np.testing.assert_allclose(frac[i], counts, atol=1e-6)
    np.testing.assert_allclose(frac.sum(1), 1.0, atol=1e-5)


def test_color_masks():
    """Case: color_masks returns one bool mask per word as given (synonym keys kept)."""
    img = np.zeros((4, 6, 3), np.uint8)
    img[:, :2] = (0, 200, 0)
    img[:, 2:] = (128, 128, 128)
    masks = color_masks(img, ["green", "gray"])
    assert set(masks) == {"green", "gray"}
    assert masks["green"].dtype == bool and masks["green"].shape == (4, 6)
    assert int(masks["green"].sum()) == 8 and int(masks["gray"].sum()) == 16


def test_dominant_colors_uses_box_centre():
    """Case: a blue box with a red centre is 'red' by its central half, 'blue' by the whole box."""
    img = np.full((100, 100, 3), (0, 0, 255), np.uint8)
    img[30:70, 30:70] = (255, 0, 0)
    assert dominant_colors(img, np.array([[0, 0, 100, 100]], np.float32)) == ["red"]
    assert dominant_colors(img, np.array([[0, 0, 100, 100]], np.float32), center_fraction=1.0) == ["blue"]
    assert dominant_colors(img, np.zeros((0, 4), np.float32)) == []


def test_errors():
    """Case: unknown colour word and non-uint8 / wrong-shape images raise ValueError."""
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError):
        color_fractions(img, np.zeros((1, 4)), ["plaid"])
    with pytest.raises(ValueError):
        color_label_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        color_label_image(np.zeros((4, 4), np.uint8))
    assert color_fractions(img, np.zeros((0, 4)), ["red"]).shape == (0, 1)


def test_command_colour_words_are_known_to_colors():
    """Case: every colour the command parser can output is a COLOR_NAMES entry (the two modules agree)."""
    from clip_perception import command

    assert set(command.COLOR_WORDS.values()) <= set(COLOR_NAMES)
    for word, name in command.COLOR_WORDS.items():
        assert colors.canonical_color(word) == name, word


def test_purity_completeness_prefers_the_whole_object_over_its_centre():
    """Colour prior case: a box cut inside a red square scores below the box around all of it."""
    import numpy as np

    from clip_perception.colors import color_purity_completeness

    img = np.full((100, 100, 3), 128, np.uint8)
    img[20:60, 30:70] = (220, 20, 20)  # a 40 x 40 red square
    boxes = np.array([[30, 20, 70, 60],   # exactly the square
                      [40, 30, 60, 50],   # its centre
                      [0, 0, 100, 100]],  # the whole image
                     np.float32)
    purity, completeness = color_purity_completeness(img, boxes, ["red"])
    np.testing.assert_allclose(purity, [1.0, 1.0, 1600 / 10000], atol=1e-6)
    # centre box grown by 25 % per side = [35, 25, 65, 55] -> 900 red pixels, 400 inside
    np.testing.assert_allclose(completeness, [1.0, 400 / 900, 1.0], atol=1e-6)
    score = purity * completeness
    assert score[0] > score[1] > score[2]
