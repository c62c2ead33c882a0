"""Every parameter of the detector and the node, in one table.

The node declares its ROS 2 parameters from :data:`PARAMETERS` (name, type,
default, description, range), the CLI reads the same YAML file
(``config/clip_perception.yaml``) and takes ``--set NAME=VALUE`` overrides with
the same names, and :class:`DetectorConfig` carries the validated values into
the ROS-free pipeline.  Names are a contract used by launch files and tests.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

NODE_NAME = "clip_perception"

#: CLIP prompt ensemble (Radford et al. 2021, "Learning Transferable Visual Models From
#: Natural Language Supervision", section 3.1.4): a few of the paper's ImageNet templates.
DEFAULT_PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a cropped photo of the {}.",
)

#: Background / negative prompts each crop is compared against (per-crop softmax), so that
#: "not found" is decided against background, not by softmax over the candidates.
DEFAULT_NEGATIVE_PROMPTS = (
    "background",
    "a table surface",
    "an empty surface",
    "a wall",
    "the floor",
    "a blurry photo",
)

PROPOSAL_METHODS = ("selective_search", "contours", "grid", "depth")


class ParameterError(ValueError):
    """A parameter value is out of range, of the wrong type or unknown (message says why)."""


@dataclass(frozen=True)
class ParamSpec:
    """Description of one parameter.

    Attributes:
        name: parameter name (node and CLI).
        type: one of ``bool``, ``int``, ``float``, ``str``, ``list`` (list of str).
        default: default value.
        description: one line for ``ros2 param describe`` and the README (with units).
        min, max: inclusive numeric range (``None`` = unbounded).
        choices: allowed values for strings / list items.
        runtime: whether it may change while the node runs.
        reload_model: changing it rebuilds the CLIP encoder (safely, on the worker).
    """

    name: str
    type: type
    default: Any
    description: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: Optional[tuple] = None
    runtime: bool = True
    reload_model: bool = False


_SPECS = (
    ParamSpec("model_name", str, "ViT-B-32", "open_clip architecture name, e.g. ViT-B-32, ViT-B-16, ViT-L-14",
              reload_model=True),
    ParamSpec("pretrained", str, "openai",
              "open_clip pretrained tag (openai, laion2b_s34b_b79k, ...), hf-hub:ORG/NAME, a local checkpoint "
              "file (.pt/.pth/.bin/.safetensors), or none (random weights: rankings meaningless)",
              reload_model=True),
    ParamSpec("device", str, "auto", "torch device: auto (cuda when available), cuda, cuda:N or cpu",
              reload_model=True),
    ParamSpec("precision", str, "auto", "auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16 (CUDA only)",
              choices=("auto", "fp32", "fp16", "bf16"), reload_model=True),
    ParamSpec("cpu_threads", int, 0,
              "torch intra-op threads of the node process; 0 = auto: usable CPUs - 1 (at least 1), leaving a core "
              "to the ROS 2 middleware and the camera", min=0, max=1024, runtime=False),
    ParamSpec("mode", str, "auto",
              "ranking mode: crop (batched crops), dense (MaskCLIP patch features), cascade (dense pre-rank, "
              "crop re-rank), auto (crop on CUDA, cascade on CPU)",
              choices=("auto", "crop", "dense", "cascade")),
    ParamSpec("cascade_top_k", int, 10, "cascade mode: proposals re-ranked with crops", min=1, max=1000),
    ParamSpec("proposal_methods", list, ["selective_search", "contours", "depth"],
              "region proposal methods (selective_search, contours, grid, depth); depth runs only with depth + K",
              choices=PROPOSAL_METHODS),
    ParamSpec("max_proposals", int, 100, "maximum proposals ranked per frame after NMS", min=1, max=2000),
    ParamSpec("nms_iou", float, 0.7, "IoU above which overlapping proposals are suppressed", min=0.0, max=1.0),
    ParamSpec("min_box_size", int, 16, "proposals narrower or shorter than this are dropped [pixels]",
              min=1, max=100000),
    ParamSpec("proposal_max_side", int, 320,
              "longest side of the downscaled copy the proposal methods run on [pixels]", min=32, max=8192),
    ParamSpec("selective_search_mode", str, "single",
              "selective search strategy (OpenCV ximgproc): single (one graph segmentation; fits a 100 ms frame "
              "on one core), fast (switchToSelectiveSearchFast; several times slower, more boxes), quality",
              choices=("single", "fast", "quality")),
    ParamSpec("score_threshold", float, 0.5,
              "minimum confidence in [0, 1] for a detection to be reported; below it: not found",
              min=0.0, max=1.0),
    ParamSpec("color_prior_weight", float, 0.3,
              "weight of the colour prior in the convex blend with CLIP: 0 = pure CLIP, 1 = colour only",
              min=0.0, max=1.0),
    ParamSpec("relation_weight", float, 0.5,
              "reference relations: weight of geometry against the candidate's own score", min=0.0, max=1.0),
    ParamSpec("prompt_templates", list, list(DEFAULT_PROMPT_TEMPLATES),
              "CLIP prompt templates, each with one {} for the object phrase (embeddings averaged)"),
    ParamSpec("negative_prompts", list, list(DEFAULT_NEGATIVE_PROMPTS),
              "background prompts each crop is compared against for the not-found decision"),
    ParamSpec("top_k", int, 5, "detections published per frame (best first)", min=1, max=100),
    ParamSpec("use_depth", bool, True, "subscribe to depth + camera_info and compute 3D positions",
              runtime=False),
    ParamSpec("depth_scale", float, 0.0,
              "metres per depth unit for integer depth images; 0 = by encoding (16UC1: 0.001)", min=0.0, max=10.0),
    ParamSpec("sync_slop", float, 0.05, "max stamp difference when pairing depth/camera_info with colour [s]",
              min=0.0, max=10.0),
    ParamSpec("qos", str, "sensor_data", "camera subscription QoS: sensor_data (best effort, keep last 5) or reliable",
              choices=("sensor_data", "reliable"), runtime=False),
    ParamSpec("max_rate_hz", float, 0.0, "maximum processed frames per second; 0 = as fast as inference allows",
              min=0.0, max=1000.0),
    ParamSpec("publish_debug_image", bool, False,
              "always build debug_image (otherwise only while someone subscribes)"),
    ParamSpec("command", str, "", "initial command, e.g. 'pick up the red ball' (empty = wait for one)"),
    ParamSpec("image_transport", str, "raw", "colour input: raw (image) or compressed (image/compressed)",
              choices=("raw", "compressed"), runtime=False),
    ParamSpec("cameras", list, [], "camera namespaces served by one node, e.g. [left, right]; empty = one camera",
              runtime=False),
    ParamSpec("no_image_warn_s", float, 5.0, "warn when no image arrived for this long [s]", min=0.1, max=3600.0),
    ParamSpec("warmup", bool, True, "run the model once at start-up so the first frame is not slow",
              runtime=False),
)

#: name -> ParamSpec, in declaration order.
PARAMETERS: dict[str, ParamSpec] = {spec.name: spec for spec in _SPECS}


def validate(name: str, value: Any) -> Any:
    """Check and coerce one parameter value.

    Integers are accepted for float parameters (YAML ``1`` for ``1.0``); a bool is
    never accepted as a number.  Lists are lists of strings.

    Returns:
        The coerced value.

    Raises:
        ParameterError: unknown name, wrong type, out of range or not one of the choices.
    """
    spec = PARAMETERS.get(name)
    if spec is None:
        raise ParameterError(f"unknown parameter '{name}' (known: {', '.join(PARAMETERS)})")
    kind = spec.type
    if kind is bool:
        if not isinstance(value, bool):
            raise ParameterError(f"{name} must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"{name} must be a number, got {value!r}")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ParameterError(f"{name} must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ParameterError(f"{name} must be finite, got {value!r}")
        if spec.min is not None and value < spec.min:
            raise ParameterError(f"{name}={value} is below its minimum {spec.min}")
        if spec.max is not None and value > spec.max:
            raise ParameterError(f"{name}={value} is above its maximum {spec.max}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ParameterError(f"{name} must be a string, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise ParameterError(f"{name}='{value}' is not one of {', '.join(spec.choices)}")
        if name == "device" and not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
            raise ParameterError(f"device='{value}' must be auto, cpu, cuda or cuda:N")
        return value
    # list of strings
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ParameterError(f"{name} must be a list of strings, got {value!r}")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise ParameterError(f"{name} must be a list of strings, got {value!r}")
    if spec.choices is not None:
        bad = [item for item in items if item not in spec.choices]
        if bad:
            raise ParameterError(f"{name}: unknown value(s) {bad}; choose from {', '.join(spec.choices)}")
    if name == "cameras" and len({item.strip("/") for item in items}) != len(items):
        raise ParameterError(f"cameras must be distinct namespaces, got {items}")
    if name == "proposal_methods" and not items:
        raise ParameterError("proposal_methods must name at least one method")
    if name == "prompt_templates":
        if not items:
            raise ParameterError("prompt_templates must hold at least one template")
        bad = [item for item in items if item.count("{}") != 1]
        if bad:
            raise ParameterError(f"prompt_templates need exactly one '{{}}' each: {bad}")
    return items


@dataclass
class DetectorConfig:
    """Validated values of every parameter in :data:`PARAMETERS` (same names, same defaults).

    Build with :func:`make_config`; change with :meth:`replace` (validates).
    """

    model_name: str = "ViT-B-32"
    pretrained: str = "openai"
    device: str = "auto"
    precision: str = "auto"
    cpu_threads: int = 0
    mode: str = "auto"
    cascade_top_k: int = 10
    proposal_methods: list = field(default_factory=lambda: list(PARAMETERS["proposal_methods"].default))
    max_proposals: int = 100
    nms_iou: float = 0.7
    min_box_size: int = 16
    proposal_max_side: int = 320
    selective_search_mode: str = "single"
    score_threshold: float = 0.5
    color_prior_weight: float = 0.3
    relation_weight: float = 0.5
    prompt_templates: list = field(default_factory=lambda: list(DEFAULT_PROMPT_TEMPLATES))
    negative_prompts: list = field(default_factory=lambda: list(DEFAULT_NEGATIVE_PROMPTS))
    top_k: int = 5
    use_depth: bool = True
    depth_scale: float = 0.0
    sync_slop: float = 0.05
    qos: str = "sensor_data"
    max_rate_hz: float = 0.0
    publish_debug_image: bool = False
    command: str = ""
    image_transport: str = "raw"
    cameras: list = field(default_factory=list)
    no_image_warn_s: float = 5.0
    warmup: bool = True

    def replace(self, **changes: Any) -> "DetectorConfig":
        """A copy with ``changes`` applied (each validated; raises :class:`ParameterError`)."""
        checked = {name: validate(name, value) for name, value in changes.items()}
        return dataclasses.replace(self, **checked)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_table_matches_config() -> None:
    names = [f.name for f in dataclasses.fields(DetectorConfig)]
    if names != list(PARAMETERS):
        raise AssertionError("DetectorConfig fields and PARAMETERS differ")
    defaults = DetectorConfig()
    for spec in _SPECS:
        if getattr(defaults, spec.name) != spec.default:
            raise AssertionError(f"default of {spec.name} differs between PARAMETERS and DetectorConfig")


_check_table_matches_config()


def make_config(values: Optional[Mapping[str, Any]] = None) -> DetectorConfig:
    """A :class:`DetectorConfig` from defaults plus ``values`` (validated).

    Raises:
        ParameterError: on any unknown or invalid value.
    """
    return DetectorConfig().replace(**dict(values or {}))


def load_params_file(path: str | Path, node_name: str = NODE_NAME) -> dict:
    """Read a ROS 2 parameters YAML file (the format ``ros2 run --params-file`` takes).

    Accepts ``{node_name: {ros__parameters: {...}}}``, the wildcard ``/**`` key, a
    namespaced ``/ns/node_name`` key, or a flat mapping of parameter names.

    Returns:
        dict name -> value (not yet validated; see :func:`make_config`).

    Raises:
        ParameterError: unreadable file or no parameters for ``node_name``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterError(f"cannot read parameters file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ParameterError(f"parameters file {path} holds no mapping")
    merged: dict = {}
    found = False
    for key, section in data.items():
        if not isinstance(section, dict) or "ros__parameters" not in section:
            continue
        key_name = str(key).rstrip("/").split("/")[-1]
        if key in ("/**", "**") or key_name == node_name:
            params = section["ros__parameters"] or {}
            if not isinstance(params, dict):
                raise ParameterError(f"{path}: ros__parameters of {key} is not a mapping")
            merged.update(params)
            found = True
    if found:
        return merged
    if all(isinstance(key, str) and key in PARAMETERS for key in data):
        return dict(data)
    raise ParameterError(f"{path}: no 'ros__parameters' for node '{node_name}'")


def parse_overrides(pairs: Iterable[str]) -> dict:
    """``["color_prior_weight=1.0", "proposal_methods=[grid]"]`` -> dict (values parsed as YAML).

    Raises:
        ParameterError: an item without ``=``.
    """
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParameterError(f"--set takes NAME=VALUE, got '{pair}'")
        name, raw = pair.split("=", 1)
        name = name.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if PARAMETERS.get(name) is not None and PARAMETERS[name].type is str and not isinstance(value, str):
            value = raw.strip()
        out[name] = value
    return out


def describe_parameters() -> Sequence[ParamSpec]:
    """All parameter specs in declaration order (for README tables and the node)."""
    return _SPECS
