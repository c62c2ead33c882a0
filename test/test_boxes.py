"""boxes.py: IoU, NMS, clamping, degenerate boxes and the one rounding rule (exact values)."""

import numpy as np
import pytest

from clip_perception import boxes as B
from clip_perception.types import Detection


def test_box_iou_exact_values():
    """Case: [0,0,10,10] vs [5,0,15,10] = 50 / 150; identical = 1; disjoint = 0; touching = 0;
    a 2x2 box inside a 4x4 box = 4 / 16; empty -> (N, 0); two zero-area boxes -> 0 (not NaN)."""
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [10, 0, 20, 10]], np.float32)
    np.testing.assert_allclose(B.box_iou(a, b), [[1 / 3, 1.0, 0.0, 0.0]], atol=1e-7)
    assert B.box_iou([0, 0, 4, 4], [1, 1, 3, 3])[0, 0] == pytest.approx(0.25, abs=1e-7)
    assert B.box_iou(a, np.zeros((0, 4), np.float32)).shape == (1, 0)
    assert B.box_iou([5, 5, 5, 5], [5, 5, 5, 5])[0, 0] == 0.0
    iou = B.box_iou(b, b)
    assert iou.shape == (4, 4) and iou.dtype == np.float32
    np.testing.assert_allclose(np.diag(iou), 1.0)
    np.testing.assert_allclose(iou, iou.T)


def test_box_iou_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        B.box_iou(np.zeros((2, 3)), np.zeros((1, 4)))


def test_nms_keeps_best_of_overlapping():
    """Case: NMS at 0.5 keeps the higher-scored of two IoU-0.9 boxes and the disjoint one, by score."""
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 90], [200, 200, 250, 250]], np.float32)
    keep = B.nms(boxes, np.array([0.5, 0.9, 0.7], np.float32), 0.5)
    assert keep.tolist() == [1, 2] and keep.dtype == np.int64
    assert B.nms(boxes, np.array([0.5, 0.9, 0.7], np.float32), 0.95).tolist() == [1, 2, 0]
    assert B.nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        B.nms(boxes, np.zeros(2), 0.5)


def test_clamp_boxes():
    """Case: clamp to [0, W] x [0, H] edges, a float32 copy; the input is unchanged."""
    src = np.array([[-5, -3, 700, 100], [10.4, 20.6, 30.5, 40.2], [650, 500, 700, 600]], np.float32)
    b = B.clamp_boxes(src, 640, 480)
    np.testing.assert_array_equal(b, np.array([[0, 0, 640, 100], [10.4, 20.6, 30.5, 40.2], [640, 480, 640, 480]],
                                              np.float32))
    assert b.dtype == np.float32 and src[0, 0] == -5


def test_usable_boxes():
    """Case: finite and >= min_size wide and high; zero-area, reversed, NaN and Inf boxes are degenerate."""
    b = np.array([[0, 0, 10, 10], [0, 0, 0.5, 10], [10, 10, 0, 0], [np.nan, 0, 5, 5], [0, 0, np.inf, 5],
                  [0, 0, 1, 1]], np.float32)
    assert B.usable_boxes(b).tolist() == [True, False, False, False, False, True]
    assert B.usable_boxes(b, min_size=10).tolist() == [True, False, False, False, False, False]


def test_rounding_rule_halves_to_even():
    """Case: the one rule: nearest whole pixel, halves to even (numpy rint = Python round)."""
    values = [10.4, 10.5, 10.6, 11.5, 12.5, -0.5, -1.5, 0.49999]
    assert B.round_edges(values).tolist() == [10, 10, 11, 12, 12, 0, -2, 0]
    assert B.round_edges(values).tolist() == [round(v) for v in values]


def test_rois_with_the_rule():
    """Case: ROI = rounded (x, y, w, h): [10.4, 20.6, 30.5, 40.2] -> (10, 21, 20, 19); reversed -> width 0;
    Detection.roi gives the same numbers as boxes_to_rois."""
    b = np.array([[0, 0, 640, 100], [10.4, 20.6, 30.5, 40.2], [10.2, 20.7, 50.0, 80.4], [30, 30, 20, 20]],
                 np.float32)
    rois = B.boxes_to_rois(b)
    assert rois.dtype == np.int32
    assert rois.tolist() == [[0, 0, 640, 100], [10, 21, 20, 19], [10, 21, 40, 59], [30, 30, 0, 0]]
    for box, roi in zip(b, rois):
        det = Detection(label="x", score=1.0, confidence=1.0, box=box)
        assert det.roi == tuple(roi.tolist()) and all(type(v) is int for v in det.roi)


def test_pixel_ranges_with_the_rule():
    """Case: [10.5, 2.5, 20.5, 7.5] covers columns 10..19 (rint 10.5 -> 10, 20.5 -> 20) and rows 2..7
    (2.5 -> 2, 7.5 -> 8); clamped to the image; NaN edges count as 0."""
    r = B.pixel_ranges(np.array([[10.5, 2.5, 20.5, 7.5], [-5, -5, 700, 500], [np.nan, 1, 3, 4]], np.float32),
                       640, 480)
    assert r.tolist() == [[10, 2, 20, 8], [0, 0, 640, 480], [0, 1, 3, 4]]
    assert B.pixel_range(10.5, 20.5, 640) == (10, 20)
    assert B.pixel_range(-3.0, 1000.0, 100) == (0, 100)
    assert B.pixel_range(11.5, 11.4, 100) == (12, 11)  # empty: b <= a
