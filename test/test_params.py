"""The parameter table (params.py): validation, the shipped YAML, --set overrides, and the typed
per-stage configs generated from the table (ModelConfig, ProposalConfig, RankingConfig,
NodeConfig; DetectorConfig = model + proposals + ranking; Config = all four)."""

import dataclasses

import pytest

from clip_perception.params import (PARAMETERS, STAGES, Config, DetectorConfig, ModelConfig, NodeConfig,
                                    ParameterError, ProposalConfig, RankingConfig, load_params_file, make_config,
                                    parse_overrides, validate)


def test_shipped_yaml_loads_every_declared_parameter_but_cameras(repo_root):
    """Case: config/clip_perception.yaml (key /**/clip_perception) holds every default."""
    values = load_params_file(repo_root / "config" / "clip_perception.yaml")
    assert set(PARAMETERS) - set(values) == {"cameras"}  # rcl cannot read an empty list
    assert make_config(values) == Config()


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


def test_stage_fields_come_from_the_table():
    """Case: each stage class has exactly the table's fields of its stage, in table order, with its defaults."""
    for cls in (ModelConfig, ProposalConfig, RankingConfig, NodeConfig):
        names = [f.name for f in dataclasses.fields(cls)]
        assert names == [n for n, spec in PARAMETERS.items() if spec.stage == cls.STAGE]
        defaults = cls()
        for name in names:
            assert getattr(defaults, name) == PARAMETERS[name].default, name
    assert {spec.stage for spec in PARAMETERS.values()} == set(STAGES)
    assert [f.name for f in dataclasses.fields(RankingConfig)] == [
        "mode", "cascade_top_k", "cascade_margin", "cascade_crop_size", "score_threshold", "color_prior_weight", "relation_weight",
        "place_margin", "negative_prompts", "top_k"]
    assert [f.name for f in dataclasses.fields(ProposalConfig)] == [
        "proposal_methods", "max_proposals", "nms_iou", "min_box_size", "proposal_max_side",
        "selective_search_mode"]
    assert [f.name for f in dataclasses.fields(ModelConfig)] == [
        "model_name", "pretrained", "device", "precision", "quantize_int8", "prompt_templates", "warmup"]


def test_detector_config_has_no_node_fields():
    """Case: the detector's config holds the model, proposal and ranking stages only: no qos, cameras, sync_slop ..."""
    assert [f.name for f in dataclasses.fields(DetectorConfig)] == ["model", "proposals", "ranking"]
    flat = DetectorConfig().as_dict()
    assert set(flat) == {n for n, spec in PARAMETERS.items() if spec.stage != "node"}
    for name in ("qos", "cameras", "sync_slop", "use_depth", "image_transport", "max_rate_hz", "command",
                 "no_image_warn_s", "cpu_threads"):
        assert PARAMETERS[name].stage == "node" and name not in flat
    with pytest.raises(ParameterError, match="not part of DetectorConfig"):
        DetectorConfig().replace(qos="reliable")


def test_config_replace_validates_and_as_dict_is_flat():
    """Case: Config.replace takes flat names, validates (coerces YAML ints), keeps the other stages;
    as_dict is flat in table order; .detector is the model + proposals + ranking part."""
    base = Config()
    c = base.replace(score_threshold=1, qos="reliable", proposal_methods=("grid",))
    assert c.ranking.score_threshold == 1.0 and type(c.ranking.score_threshold) is float
    assert c.node.qos == "reliable" and c.proposals.proposal_methods == ["grid"] and c.model is base.model
    assert c.score_threshold == 1.0 and c.qos == "reliable"  # flat read-only access
    assert list(c.as_dict()) == list(PARAMETERS)
    assert c.as_dict()["proposal_methods"] == ["grid"] and base.as_dict()["qos"] == "sensor_data"
    d = c.detector
    assert isinstance(d, DetectorConfig) and d.ranking is c.ranking and d.proposals is c.proposals
    for bad, reason in (({"score_threshold": 2.0}, "above its maximum"), ({"no_such": 1}, "unknown parameter"),
                        ({"mode": "fast"}, "not one of")):
        with pytest.raises(ParameterError, match=reason):
            base.replace(**bad)
    assert base.ranking.score_threshold == 0.5  # unchanged


def test_stage_configs_are_frozen_and_validated():
    """Case: a stage config cannot be assigned to, and constructing one with a bad value raises."""
    r = RankingConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.top_k = 3
    with pytest.raises(AttributeError):
        Config().score_threshold = 0.1
    with pytest.raises(ParameterError, match="above its maximum"):
        RankingConfig(color_prior_weight=1.5)
    with pytest.raises(ParameterError, match="at least one"):
        ProposalConfig(proposal_methods=[])
    assert RankingConfig(top_k=3.0).top_k == 3 and ModelConfig() == make_config().model
