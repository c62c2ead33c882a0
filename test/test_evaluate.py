"""``clip_perception.tools.evaluate``: the seeded simulated suite, its metrics and its report.

The suite runs in-process with ``pipeline.Detector`` and ``fake_encoders.ColorTestEncoder``
(it sees only colour), so no CLIP weights are needed; one CLI test builds the random-weight
ViT-B-32 the offline default uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import clip_perception.pipeline  # noqa: F401  torch/triton before MuJoCo: see evaluate._scene_module

import cv2
import numpy as np
import pytest

from clip_perception.tools import evaluate
from clip_perception.tools.evaluate import KINDS_RANDOM, KINDS_TRAINED, run_evaluation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_encoders import ColorTestEncoder  # noqa: E402

SCENES, SEED = 3, 0
KEYS = ("top1_accuracy", "not_found_precision", "not_found_recall", "mean_3d_error_cm", "cases",
        "accuracy_per_kind", "random_weights", "latency_ms_median", "pointing_accuracy",
        "mean_3d_surface_error_cm", "iou_mean", "iou_share_050", "centre_error_cm", "extent_error_cm",
        "centre_share")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """3 seeded scene indices (12 cases) with ColorTestEncoder, report written."""
    report = tmp_path_factory.mktemp("report")
    summary = run_evaluation(SCENES, SEED, {"pretrained": "none"}, encoder=ColorTestEncoder(), report_dir=report,
                             progress=False)
    cases = json.loads((report / "cases.json").read_text())
    return summary, cases, report


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_summary_has_every_key_with_values_in_range(suite):
    """Summary keys present; rates in [0, 1]; counts consistent with cases.json; random
    weights -> only the kinds that need no trained CLIP ran, and it says so."""
    summary, cases, _ = suite
    for key in KEYS:
        assert key in summary
    assert summary["cases"] == len(cases) > 0
    for key in ("top1_accuracy", "not_found_precision", "not_found_recall", "pointing_accuracy"):
        assert summary[key] is not None and 0.0 <= summary[key] <= 1.0
    assert summary["random_weights"] is True
    assert summary["kinds"] == list(KINDS_RANDOM)
    assert set(KINDS_TRAINED) <= set(summary["skipped_kinds"])
    assert any("random CLIP weights" in n for n in summary["notes"])
    assert {c["kind"] for c in cases} <= set(KINDS_RANDOM)
    # one spatial, one reference and one absent case per scene index (always generated)
    for kind in ("spatial", "reference", "absent"):
        assert summary["accuracy_per_kind"][kind]["cases"] == SCENES
    n_correct = sum(c["correct"] for c in cases)
    assert summary["top1_accuracy"] == pytest.approx(n_correct / len(cases))
    for c in cases:
        if c["correct"] and c["expected_found"]:
            assert c["iou"] >= 0.5
    for stage in ("proposals", "rank", "geometry"):
        assert summary["latency_ms_median"][stage] >= 0.0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_absent_colour_commands_give_empty_results(suite):
    """"pick up the <colour> <shape>" with no object of that colour -> empty result (honest
    "not found") in every case, so not-found recall is 1 and those cases are correct."""
    summary, cases, _ = suite
    absent = [c for c in cases if c["kind"] == "absent"]
    assert len(absent) == SCENES
    for c in absent:
        assert c["expected_found"] is False and c["target"] is None
        assert c["found"] is False and c["detections"] == [] and c["correct"] is True
    assert summary["not_found_recall"] == 1.0
    assert summary["accuracy_per_kind"]["absent"]["accuracy"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_3d_error_of_correct_detections_small_against_the_object_centre(suite):
    """Exact sim depth: correct detections report the object's centre (instance mask + support
    plane, position_is_centre) within 2 cm of the GT centre, nearer to it than to the GT visible
    surface; the oriented extent is within 2 cm per axis on average; the summary's figures are
    those of the cases (IoU mean over present targets, centre error mean/median/p90)."""
    summary, cases, _ = suite
    centred = [c for c in cases if c["error_3d_cm"] is not None]
    assert centred, "at least one correct detection with 3D"
    assert all(c["position_is_centre"] for c in centred)
    assert max(c["error_3d_cm"] for c in centred) < 2.0
    assert summary["mean_3d_error_cm"] < summary["mean_3d_surface_error_cm"]
    assert summary["centre_share"] == 1.0
    assert 0.0 <= summary["extent_error_cm"]["mean"] < 2.0
    err = sorted(c["error_3d_cm"] for c in centred)
    assert summary["centre_error_cm"]["median"] == pytest.approx(float(np.median(err)))
    assert summary["centre_error_cm"]["p90"] == pytest.approx(float(np.percentile(err, 90)))
    present = [c for c in cases if c["expected_found"]]
    ious = [c["iou"] or 0.0 for c in present]
    assert summary["iou_mean"] == pytest.approx(float(np.mean(ious)))
    assert summary["iou_share_050"] == pytest.approx(float(np.mean([i >= 0.5 for i in ious])))
    for kind, v in summary["accuracy_per_kind"].items():
        assert {"iou_mean", "iou_share_050", "centre_error_cm", "extent_error_cm"} <= set(v), kind


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_report_folder_has_json_plots_and_failure_sheet(suite):
    """--report: summary.json (same numbers), cases.json, three PNG plots, failure contact sheet."""
    summary, cases, report = suite
    assert json.loads((report / "summary.json").read_text())["top1_accuracy"] == summary["top1_accuracy"]
    for name in ("accuracy_per_kind.png", "error_3d_hist.png", "latency_hist.png"):
        img = cv2.imread(str(report / name))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100, name
    failures = [c for c in cases if not c["correct"]]
    sheet = report / "failures.png"
    if failures:
        img = cv2.imread(str(sheet))
        rows = -(-min(len(failures), evaluate.SHEET_MAX) // evaluate.SHEET_COLS)
        assert img.shape == (rows * evaluate.TILE_H, evaluate.SHEET_COLS * evaluate.TILE_W, 3)
    else:
        assert not sheet.exists()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_same_seed_gives_same_cases_and_results(suite):
    """Seeded: scene index 0 of a 1-scene run equals scene index 0 of the 3-scene run."""
    _, cases, _ = suite
    summary = run_evaluation(1, SEED, {"pretrained": "none"}, encoder=ColorTestEncoder(), progress=False)
    first = [c for c in cases if c["seed"] == SEED]
    assert summary["cases"] == len(first)
    assert summary["top1_accuracy"] == pytest.approx(sum(c["correct"] for c in first) / len(first))


def test_unknown_kind_is_rejected():
    """kinds outside ALL_KINDS -> ValueError naming the bad kind."""
    with pytest.raises(ValueError, match="bogus"):
        run_evaluation(1, 0, {"pretrained": "none"}, encoder=ColorTestEncoder(), kinds=["bogus"], progress=False)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cli_with_random_weights_says_so_and_writes_summary(tmp_path, capsys):
    """``clip-perception evaluate --pretrained none``: random ViT-B-32, colour prior weight
    1.0, every summary line labelled; summary.json written; exit 0."""
    rc = evaluate.main(["--scenes", "1", "--seed", "3", "--pretrained", "none", "--kinds", "absent,spatial",
                        "--report", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "RANDOM CLIP weights" in out and "[random CLIP + colour prior]" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["random_weights"] is True and summary["color_prior_weight"] == 1.0
    assert summary["encoder"] == "ClipEncoder" and summary["cases"] == 2
    assert summary["accuracy_per_kind"]["absent"]["accuracy"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_conversation_kinds_have_known_answers_and_are_reported_per_kind():
    """pick_place, stop and correction cases (evaluate_dialogue) on seeded scenes with the colour
    test encoder: every case is answered correctly, the per-kind figures are reported, and the
    place point lies within 2 cm of the destination's top centre."""
    summary = run_evaluation(4, 5, {"pretrained": "none"}, encoder=ColorTestEncoder(),
                             kinds=["pick_place", "stop", "correction"], progress=False)
    per_kind = summary["accuracy_per_kind"]
    assert set(per_kind) == {"pick_place", "stop", "correction"}
    assert per_kind["correction"]["cases"] == 4 and per_kind["correction"]["accuracy"] == 1.0  # one per scene
    assert per_kind["stop"]["cases"] >= 3 and per_kind["stop"]["accuracy"] == 1.0  # layouts with a unique colour
    assert per_kind["pick_place"]["cases"] >= 2 and per_kind["pick_place"]["accuracy"] == 1.0
    place = per_kind["pick_place"]["place_error_cm"]
    assert place["n"] == per_kind["pick_place"]["cases"] and place["p90"] < 2.0
    assert "place point vs the destination's top centre" in evaluate.format_summary(summary)
