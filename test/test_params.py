"""The parameter table (params.py): validation, the shipped YAML, --set overrides, and the
pipeline's honest notes when depth / K cannot give 3D."""

import numpy as np
import pytest

from clip_perception.params import (PARAMETERS, DetectorConfig, ParameterError, load_params_file, make_config,
                                    parse_overrides, validate)


def test_shipped_yaml_loads_every_declared_parameter_but_cameras(repo_root):
    """Case: config/clip_perception.yaml (key /**/clip_perception) holds every default."""
    values = load_params_file(repo_root / "config" / "clip_perception.yaml")
    assert set(PARAMETERS) - set(values) == {"cameras"}  # rcl cannot read an empty list
    assert make_config(values) == DetectorConfig()


@pytest.mark.parametrize("name,value,expected", [
    ("score_threshold", 1, 1.0),            # YAML 1 for a float parameter
    ("max_proposals", 50.0, 50),            # a whole float for an int parameter
    ("proposal_methods", ("grid", "depth"), ["grid", "depth"]),
    ("device", "cuda:1", "cuda:1"),
])
def test_validate_coerces(name, value, expected):
    got = validate(name, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("name,value,reason", [
    ("score_threshold", 1.5, "above its maximum"),
    ("nms_iou", -0.1, "below its minimum"),
    ("max_proposals", 0, "below its minimum"),
    ("max_proposals", 2.5, "whole number"),
    ("color_prior_weight", True, "must be a number"),
    ("color_prior_weight", float("nan"), "finite"),
    ("mode", "fast", "not one of"),
    ("device", "tpu", "auto, cpu, cuda"),
    ("proposal_methods", ["bogus"], "unknown value"),
    ("proposal_methods", [], "at least one"),
    ("prompt_templates", ["a photo"], "exactly one"),
    ("cameras", ["left", "/left"], "distinct"),
    ("use_depth", "yes", "true or false"),
    ("no_such_parameter", 1, "unknown parameter"),
])
def test_validate_rejects_with_reason(name, value, reason):
    with pytest.raises(ParameterError, match=reason):
        validate(name, value)


def test_set_overrides_parse_yaml_values_and_keep_strings():
    """Case: --set values are YAML (numbers, lists); string parameters stay strings."""
    got = parse_overrides(["color_prior_weight=1", "proposal_methods=[grid, contours]", "command=1 red ball",
                           "pretrained=none", "model_name=123"])
    assert got == {"color_prior_weight": 1, "proposal_methods": ["grid", "contours"], "command": "1 red ball",
                   "pretrained": "none", "model_name": "123"}
    assert make_config(got).color_prior_weight == 1.0
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        parse_overrides(["color_prior_weight"])


def test_all_invalid_depth_gives_a_note_and_no_3d():
    """Case: a depth image without one valid pixel -> detections without position, with a note."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_encoders import ColorTestEncoder

    from clip_perception.pipeline import Detector

    rgb = np.full((120, 160, 3), 128, np.uint8)
    rgb[40:80, 60:100] = (220, 20, 20)
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    det = Detector(make_config({"color_prior_weight": 1.0, "proposal_methods": ["contours"]}),
                   encoder=ColorTestEncoder())
    res = det.detect(rgb, "the red block", depth=np.full((120, 160), np.nan, np.float32), K=K)
    assert res.detections and all(d.position is None for d in res.detections)
    assert any("no valid pixel" in note for note in res.notes)
    good = det.detect(rgb, "the red block", depth=np.full((120, 160), 1.0, np.float32), K=K)
    assert good.detections[0].position is not None and good.detections[0].position[2] == pytest.approx(1.0)
