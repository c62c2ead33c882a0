"""Tests for clip_perception.proposals on synthetic OpenCV-rendered tabletops."""

import cv2
import numpy as np
import pytest

from clip_perception import proposals as P
from clip_perception.boxes import box_iou
from clip_perception.types import Timings

W, H = 640, 480


def render_tabletop(w=W, h=H, seed=0):
    """Grey textured table with a lighting gradient, 6 filled coloured shapes, Gaussian noise (sigma 4).

    Returns (rgb (h, w, 3) uint8, gt boxes (6, 4) float32 xyxy exclusive), the boxes measured with
    cv2.boundingRect on each shape's own drawn mask.
    """
    rng = np.random.default_rng(seed)
    tex = rng.normal(0, 6, (h // 16, w // 16)).astype(np.float32)
    tex = cv2.resize(tex, (w, h), interpolation=cv2.INTER_LINEAR)
    grad = np.linspace(-10, 10, h, dtype=np.float32)[:, None]
    base = np.array([150, 145, 138], np.float32)
    img = np.clip(base + (tex + grad)[..., None], 0, 255).astype(np.uint8)
    shapes = [
        ("circle", (110, 120), 45, (220, 30, 30)),  # red ball
        ("rect", (250, 80), (340, 170), (30, 160, 40)),  # green box
        ("ellipse", (480, 130), (70, 35), (40, 60, 200)),  # blue plate
        ("rect", (140, 300), (200, 420), (230, 200, 40)),  # yellow bottle
        ("circle", (400, 340), 60, (150, 40, 160)),  # purple ball
        ("ellipse", (560, 380), (30, 55), (240, 130, 20)),  # orange can
    ]
    boxes = []
    for kind, a, b, colour in shapes:
        m = np.zeros((h, w), np.uint8)
        if kind == "circle":
            cv2.circle(m, a, b, 255, -1)
        elif kind == "rect":
            cv2.rectangle(m, a, b, 255, -1)
        else:
            cv2.ellipse(m, a, b, 0, 0, 360, 255, -1)
        img[m > 0] = colour
        x, y, bw, bh = cv2.boundingRect(m)
        boxes.append([x, y, x + bw, y + bh])
    img = np.clip(img.astype(np.float32) + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return img, np.asarray(boxes, np.float32)


# Camera for the depth scenes (VGA, pixel centres at integers).
K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])


def render_tilted_table_depth(seed=0, noise=0.001, holes=0.03):
    """Depth of a tilted table plane n.p + d = 0 (n = (0.1, -0.8, -0.6)/|.|, d = 0.8 m, camera
    looking down at it: z from ~0.8 m at the bottom row to ~4.6 m at the top) computed per pixel
    ray from K, with 5 elliptical objects whose top faces are raised 5-12 cm above the plane,
    1 mm Gaussian noise and 3 % NaN holes.

    Returns (depth (H, W) float32, gt boxes (5, 4) float32).
    """
    n = np.array([0.1, -0.8, -0.6])
    n /= np.linalg.norm(n)
    d = 0.8
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    ndr = n[0] * (u - K[0, 2]) / K[0, 0] + n[1] * (v - K[1, 2]) / K[1, 1] + n[2]
    depth = -d / ndr  # ray/plane intersection: z = -d / (n . ray), ray = ((u-cx)/fx, (v-cy)/fy, 1)
    objects = [
        ((100, 200), (150, 260), 0.08),
        ((260, 250), (330, 330), 0.12),
        ((420, 180), (480, 230), 0.05),
        ((480, 330), (580, 420), 0.10),
        ((150, 360), (220, 440), 0.06),
    ]
    boxes = []
    for (x1, y1), (x2, y2), height in objects:
        m = np.zeros((H, W), np.uint8)
        cv2.ellipse(m, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, 255, -1)
        sel = m > 0
        depth[sel] = (-(d - height) / ndr)[sel]  # plane raised by `height` along n
        x, y, bw, bh = cv2.boundingRect(m)
        boxes.append([x, y, x + bw, y + bh])
    rng = np.random.default_rng(seed)
    depth = depth + rng.normal(0, noise, depth.shape)
    depth[rng.random(depth.shape) < holes] = np.nan
    return depth.astype(np.float32), np.asarray(boxes, np.float32)


@pytest.fixture(scope="module")
def scene():
    return render_tabletop()


@pytest.fixture(scope="module")
def depth_scene():
    return render_tilted_table_depth()


def best_iou(gt, boxes):
    return box_iou(gt, boxes).max(axis=1)


def check_invariants(boxes, scores, w=W, h=H, max_proposals=100, min_box_size=16):
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert boxes.shape == (len(scores), 4)
    assert len(boxes) <= max_proposals
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] - boxes[:, 0] >= min_box_size).all()
    assert (boxes[:, 3] - boxes[:, 1] >= min_box_size).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (np.diff(scores) <= 0).all(), "not sorted by objectness"


# ----------------------------------------------------------------------- recall on the tabletop


def test_default_methods_find_every_object(scene):
    """Case: default methods (no depth) on the 640x480 tabletop: every object has a proposal with IoU >= 0.5."""
    rgb, gt = scene
    boxes, scores = P.propose(rgb)
    check_invariants(boxes, scores)
    assert (best_iou(gt, boxes) >= 0.5).all(), best_iou(gt, boxes)


@pytest.mark.parametrize("method", ["selective_search", "contours"])
def test_single_method_finds_every_object(scene, method):
    """Case: selective_search alone and contours alone each give IoU >= 0.5 for every object."""
    rgb, gt = scene
    boxes, scores = P.propose(rgb, methods=(method,))
    check_invariants(boxes, scores)
    assert (best_iou(gt, boxes) >= 0.5).all(), best_iou(gt, boxes)


def test_contours_boxes_are_tight(scene):
    """Case: colour blobs give near-exact boxes on the clean synthetic scene (IoU >= 0.9)."""
    rgb, gt = scene
    boxes, _ = P.propose(rgb, methods=("contours",))
    assert (best_iou(gt, boxes) >= 0.9).all(), best_iou(gt, boxes)


@pytest.mark.parametrize("cap", [1, 5, 20, 100])
def test_count_capped_at_max_proposals(scene, cap):
    """Case: the result never exceeds max_proposals; the default run (with the grid) fills it."""
    rgb, _ = scene
    boxes, scores = P.propose(rgb, max_proposals=cap)
    assert len(boxes) == cap  # the grid alone gives > 100 candidates
    check_invariants(boxes, scores, max_proposals=cap)


def test_min_box_size_and_whole_image_filtered(scene):
    """Case: min_box_size=64 drops smaller boxes; no box covers > 90 % of the image."""
    rgb, _ = scene
    boxes, scores = P.propose(rgb, min_box_size=64)
    check_invariants(boxes, scores, min_box_size=64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert (area <= 0.9 * W * H).all()


def test_nms_applied_across_methods(scene):
    """Case: no two returned boxes overlap with IoU > nms_iou."""
    rgb, _ = scene
    boxes, _ = P.propose(rgb, nms_iou=0.5)
    iou = box_iou(boxes, boxes)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.5 + 1e-6


def test_timings_recorded(scene):
    """Case: per-method durations (ms) land in types.Timings under proposals.<method>."""
    rgb, _ = scene
    t = Timings()
    P.propose(rgb, methods=("selective_search", "contours", "grid"), timings=t)
    for key in ("proposals.selective_search", "proposals.contours", "proposals.grid", "proposals.merge"):
        assert key in t.stages_ms and t.stages_ms[key] >= 0.0
    assert "proposals.depth" not in t.stages_ms  # no depth given -> not run


def test_unknown_method_raises(scene):
    """Case: unknown method name -> ValueError listing the valid names."""
    rgb, _ = scene
    with pytest.raises(ValueError, match="selective_search.*contours.*grid.*depth"):
        P.propose(rgb, methods=("selective_search", "edgeboxes"))


def test_zero_size_image_gives_empty():
    """Case: 0-size image -> empty (0, 4) / (0,) float32 result."""
    for shape in [(0, 0, 3), (0, 640, 3), (480, 0, 3)]:
        boxes, scores = P.propose(np.zeros(shape, np.uint8))
        assert boxes.shape == (0, 4) and scores.shape == (0,)
        assert boxes.dtype == np.float32 and scores.dtype == np.float32


def test_bad_image_raises():
    """Case: grey (H, W) or float images are rejected with ValueError."""
    with pytest.raises(ValueError):
        P.propose(np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError):
        P.propose(np.zeros((48, 64, 3), np.float32))


def test_8k_frame_boxes_in_source_pixels():
    """Case: 7680x4320 frame with 3 objects drawn at known 8K positions: each found with IoU >= 0.5
    (boxes come back in source pixels, not working-copy pixels) and all boxes lie inside the frame."""
    w, h = 7680, 4320
    img = np.full((h, w, 3), (150, 145, 138), np.uint8)
    cv2.circle(img, (1500, 1200), 500, (220, 30, 30), -1)  # box [1000, 700, 2001, 1701]
    cv2.rectangle(img, (3500, 2200), (4699, 3399), (30, 160, 40), -1)  # box [3500, 2200, 4700, 3400]
    cv2.rectangle(img, (6000, 800), (6799, 2399), (40, 60, 200), -1)  # box [6000, 800, 6800, 2400]
    gt = np.array([[1000, 700, 2001, 1701], [3500, 2200, 4700, 3400], [6000, 800, 6800, 2400]], np.float32)
    boxes, scores = P.propose(img)
    check_invariants(boxes, scores, w=w, h=h)
    assert (best_iou(gt, boxes) >= 0.5).all(), best_iou(gt, boxes)
    boxes, _ = P.propose(img, methods=("contours",))
    assert (best_iou(gt, boxes) >= 0.9).all(), best_iou(gt, boxes)


# ----------------------------------------------------------------------- depth method


def test_depth_one_component_per_object(scene, depth_scene):
    """Case: tilted table plane + 5 raised objects -> exactly 5 depth boxes, each object IoU >= 0.5
    (one component per object), objectness in the depth band [0.8, 1]."""
    rgb, _ = scene
    depth, gt = depth_scene
    boxes, scores = P.propose(rgb, depth, K, methods=("depth",))
    check_invariants(boxes, scores)
    assert len(boxes) == len(gt)
    iou = box_iou(gt, boxes)
    assert (iou.max(axis=1) >= 0.5).all(), iou
    assert sorted(iou.argmax(axis=1).tolist()) == list(range(len(gt)))  # one-to-one
    assert (scores >= 0.8).all()


def test_depth_deterministic(scene, depth_scene):
    """Case: seeded RANSAC -> identical depth proposals on repeated runs."""
    rgb, _ = scene
    depth, _ = depth_scene
    a = P.propose(rgb, depth, K, methods=("depth",))
    b = P.propose(rgb, depth, K, methods=("depth",))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_depth_boxes_rank_first_with_all_methods(scene, depth_scene):
    """Case: with depth + K the default methods include depth, whose boxes lead the ranking."""
    rgb, _ = scene
    depth, gt = depth_scene
    t = Timings()
    boxes, scores = P.propose(rgb, depth, K, timings=t)
    assert "proposals.depth" in t.stages_ms
    check_invariants(boxes, scores)
    assert (best_iou(gt, boxes[:5]) >= 0.5).all()


def test_depth_all_nan_gives_no_boxes(scene):
    """Case: all-NaN depth -> depth method gives no boxes and raises nothing."""
    rgb, _ = scene
    boxes, scores = P.propose(rgb, np.full((H, W), np.nan, np.float32), K, methods=("depth",))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


@pytest.mark.parametrize(
    "case",
    ["no_depth", "no_K", "zero_K", "shape_mismatch", "mostly_invalid"],
)
def test_depth_skipped_gracefully(scene, depth_scene, case):
    """Case: depth method skipped (no boxes, no exception) without depth, without/zero K,
    depth shape != image shape, or < 10 % valid depth."""
    rgb, _ = scene
    depth, _ = depth_scene
    k = K
    if case == "no_depth":
        depth = None
    elif case == "no_K":
        k = None
    elif case == "zero_K":
        k = np.zeros((3, 3))
    elif case == "shape_mismatch":
        depth = depth[::2, ::2]
    else:
        depth = depth.copy()
        depth[:, 40:] = np.nan  # only 1/16 of the pixels valid
    boxes, scores = P.propose(rgb, depth, k, methods=("depth",))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_fit_plane_ransac_recovers_plane():
    """Case: RANSAC on the bare table points recovers n = (0.1, -0.8, -0.6)/|.|, d = 0.8 m
    (normal within 0.01, offset within 5 mm), oriented with the camera on the positive side."""
    table_only = render_tilted_table_depth(holes=0.0)[0]  # includes 5 small objects (outliers)
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    z = table_only.astype(np.float64)
    pts = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1).reshape(-1, 3)
    n, d, inliers = P.fit_plane_ransac(pts, threshold=0.01, seed=0)
    n_true = np.array([0.1, -0.8, -0.6]) / np.linalg.norm([0.1, -0.8, -0.6])
    np.testing.assert_allclose(n, n_true, atol=0.01)
    assert d == pytest.approx(0.8, abs=0.005)
    assert inliers > 0.8 * len(pts)


# ----------------------------------------------------------------------- grid


def test_grid_covers_image():
    """Case: grid boxes lie inside the image, the last windows are flush with the right/bottom edges,
    objectness in [0.05, 0.1]."""
    boxes, scores = P.grid_proposals(W, H)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= W + 1e-3).all() and (boxes[:, 3] <= H + 1e-3).all()
    assert np.isclose(boxes[:, 2].max(), W) and np.isclose(boxes[:, 3].max(), H)
    assert ((scores >= 0.05) & (scores <= 0.1)).all()


def test_selective_search_is_reproducible_for_the_same_frame():
    """Case: the same frame gives the same proposals every time (OpenCV's SS ranks with C rand())."""
    rng = np.random.default_rng(3)
    img = np.full((240, 320, 3), 170, np.uint8)
    for _ in range(6):
        x, y = rng.integers(10, 260), rng.integers(10, 180)
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (int(x), int(y)), (int(x) + 40, int(y) + 40), color, -1)
    runs = [P.propose(img, methods=("selective_search",), max_proposals=50) for _ in range(4)]
    for boxes, scores in runs[1:]:
        np.testing.assert_array_equal(boxes, runs[0][0])
        np.testing.assert_array_equal(scores, runs[0][1])


def test_selective_search_modes_differ_and_detector_uses_the_parameter(scene):
    """Case: ``selective_search_mode`` reaches OpenCV: the ``fast`` preset (two colour spaces,
    several k) gives other boxes than ``single`` on the tabletop, still covering every object,
    and ``Detector`` with ``selective_search_mode=fast`` proposes exactly what
    ``propose(..., ss_mode="fast")`` does."""
    from fake_encoders import ColorTestEncoder

    from clip_perception.params import make_config
    from clip_perception.pipeline import Detector

    rgb, gt = scene
    single, _ = P.propose(rgb, methods=("selective_search",), ss_mode="single")
    fast, fast_scores = P.propose(rgb, methods=("selective_search",), ss_mode="fast")
    check_invariants(fast, fast_scores)
    assert (best_iou(gt, fast) >= 0.5).all(), best_iou(gt, fast)
    assert single.shape != fast.shape or not np.array_equal(single, fast)
    cfg = make_config({"proposal_methods": ["selective_search"], "selective_search_mode": "fast", "mode": "crop"})
    result = Detector(cfg, encoder=ColorTestEncoder()).detect(rgb, "pick up the red ball")
    np.testing.assert_array_equal(result.proposals, fast)
    with pytest.raises(ValueError, match="single, fast, quality"):
        P.selective_search(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mode="slow")
