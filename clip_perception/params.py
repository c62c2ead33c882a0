"""Every parameter of the detector and the node, in one table.

The node declares its ROS 2 parameters from :data:`PARAMETERS` (name, type,
default, description, range), the CLI reads the same YAML file
(``config/clip_perception.yaml``) and takes ``--set NAME=VALUE`` overrides with
the same names.  Names are a contract used by launch files and tests.

Each parameter belongs to one stage (:attr:`ParamSpec.stage`): ``model`` (the CLIP
encoder), ``proposals``, ``ranking`` (the embedding step and the ranking) or ``node``
(only the ROS 2 node).  One frozen, validated config class per stage is generated from
the table (:class:`ModelConfig`, :class:`ProposalConfig`, :class:`RankingConfig`,
:class:`NodeConfig`: fields and defaults from :data:`PARAMETERS`, so defaults have one
source).  :class:`DetectorConfig` = model + proposals + ranking is all the ROS-free
:class:`pipeline.Detector` sees; :class:`Config` holds all four stages with flat
``replace(**names)`` / ``as_dict()`` / read-only flat attributes for the CLI, the tools
and the node, and :attr:`Config.detector` gives its detector part.
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
        stage: the part of the pipeline that reads it, one of :data:`STAGES`: ``model`` (encoder),
            ``proposals``, ``ranking`` (embedding step + ranking) or ``node`` (only the ROS 2 node;
            the default, so a new node parameter never reaches the detector).
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
    stage: str = "node"


_SPECS = (
    ParamSpec("model_name", str, "ViT-B-32", "open_clip architecture name, e.g. ViT-B-32, ViT-B-16, ViT-L-14",
              reload_model=True, stage="model"),
    ParamSpec("pretrained", str, "openai",
              "open_clip pretrained tag (openai, laion2b_s34b_b79k, ...), hf-hub:ORG/NAME, a local checkpoint "
              "file (.pt/.pth/.bin/.safetensors), or none (random weights: rankings meaningless)",
              reload_model=True, stage="model"),
    ParamSpec("device", str, "auto", "torch device: auto (cuda when available), cuda, cuda:N or cpu",
              reload_model=True, stage="model"),
    ParamSpec("precision", str, "auto", "auto (fp16 on CUDA; bf16 on a CPU with native bf16 instructions, e.g. AVX512-BF16, else fp32), "
              "fp32, fp16 (CUDA only) or bf16 (CUDA, or a CPU with native bf16)",
              choices=("auto", "fp32", "fp16", "bf16"), reload_model=True, stage="model"),
    ParamSpec("quantize_int8", bool, False,
              "CPU only: dynamic int8 quantisation of the image tower's linear layers (torch.ao quantize_dynamic); "
              "embeddings within cosine 0.999 of fp32; the rest of the model then runs in fp32 (it replaces bf16); "
              "ignored on CUDA", reload_model=True, stage="model"),
    ParamSpec("cpu_threads", int, 0,
              "torch intra-op threads of the node process; 0 = auto: usable CPUs - 1 (at least 1), leaving a core "
              "to the ROS 2 middleware and the camera", min=0, max=1024, runtime=False),
    ParamSpec("mode", str, "auto",
              "ranking mode: crop (batched crops), dense (MaskCLIP patch features), cascade (dense pre-rank, "
              "crop re-rank), auto (crop on CUDA, cascade on CPU)",
              choices=("auto", "crop", "dense", "cascade"), stage="ranking"),
    ParamSpec("cascade_top_k", int, 3, "cascade mode: most proposals (objects) re-ranked with crops", min=1, max=1000,
              stage="ranking"),
    ParamSpec("cascade_margin", float, 0.1,
              "cascade mode: only proposals whose dense pre-rank score is within this margin of the best are "
              "re-ranked with crops (at most cascade_top_k), none when the best leads every other object by it and "
              "lies this far from score_threshold; 1 = always the cascade_top_k best", min=0.0, max=1.0,
              stage="ranking"),
    ParamSpec("cascade_crop_size", int, 128,
              "cascade mode: side in pixels of the re-rank crops; 0 = the model's input side (224 for ViT-B-32); "
              "smaller is faster (a ViT's positional embedding is resized bicubically, as open_clip does to load a "
              "checkpoint at another size; rounded down to whole patches)", min=0, max=1024, stage="ranking"),
    ParamSpec("proposal_methods", list, ["selective_search", "contours", "depth"],
              "region proposal methods (selective_search, contours, grid, depth); depth runs only with depth + K",
              choices=PROPOSAL_METHODS, stage="proposals"),
    ParamSpec("max_proposals", int, 100, "maximum proposals ranked per frame after NMS", min=1, max=2000,
              stage="proposals"),
    ParamSpec("nms_iou", float, 0.7, "IoU above which overlapping proposals are suppressed", min=0.0, max=1.0,
              stage="proposals"),
    ParamSpec("min_box_size", int, 16, "proposals narrower or shorter than this are dropped [pixels]",
              min=1, max=100000, stage="proposals"),
    ParamSpec("proposal_max_side", int, 320,
              "longest side of the downscaled copy the proposal methods run on [pixels]", min=32, max=8192,
              stage="proposals"),
    ParamSpec("selective_search_mode", str, "single",
              "selective search strategy (OpenCV ximgproc): single (one graph segmentation; fits a 100 ms frame "
              "on one core), fast (switchToSelectiveSearchFast; several times slower, more boxes), quality",
              choices=("single", "fast", "quality"), stage="proposals"),
    ParamSpec("score_threshold", float, 0.5,
              "minimum confidence in [0, 1] for a detection to be reported; below it: not found",
              min=0.0, max=1.0, stage="ranking"),
    ParamSpec("color_prior_weight", float, 0.3,
              "weight of the colour prior in the convex blend with CLIP: 0 = pure CLIP, 1 = colour only",
              min=0.0, max=1.0, stage="ranking"),
    ParamSpec("relation_weight", float, 0.5,
              "reference relations: weight of geometry against the candidate's own score", min=0.0, max=1.0,
              stage="ranking"),
    ParamSpec("place_margin", float, 0.03,
              "pick-and-place beside a destination (next to, left of, ...): free space kept between the placed "
              "object and the destination, added to their half extents [m]", min=0.0, max=1.0, stage="ranking"),
    ParamSpec("prompt_templates", list, list(DEFAULT_PROMPT_TEMPLATES),
              "CLIP prompt templates, each with one {} for the object phrase (embeddings averaged)", stage="model"),
    ParamSpec("negative_prompts", list, list(DEFAULT_NEGATIVE_PROMPTS),
              "background prompts each crop is compared against for the not-found decision", stage="ranking"),
    ParamSpec("top_k", int, 5, "detections published per frame (best first)", min=1, max=100, stage="ranking"),
    ParamSpec("use_depth", bool, True, "subscribe to depth + camera_info and compute 3D positions",
              runtime=False),
    ParamSpec("depth_scale", float, 0.0,
              "metres per depth unit for integer depth images; 0 = by encoding (16UC1: 0.001)", min=0.0, max=10.0),
    ParamSpec("sync_slop", float, 0.05, "max stamp difference when pairing depth/camera_info with colour [s]",
              min=0.0, max=10.0),
    ParamSpec("depth_registered", bool, False,
              "the depth image is registered to the colour camera even when its header.frame_id differs; false: "
              "a depth frame_id other than the colour image's gives a warning and no 3D"),
    ParamSpec("target_frame", str, "",
              "frame the planner wants positions in (e.g. base_link): target_pose and the *target_position "
              "fields are given in it, transformed at the image stamp; empty = off (camera optical frame only)",
              runtime=False),
    ParamSpec("camera_extrinsics", str, "",
              "static transform target_frame <- colour optical frame as 'x y z qx qy qz qw' (metres, unit "
              "quaternion; the camera's pose in target_frame, static_transform_publisher order); empty = tf2",
              runtime=False),
    ParamSpec("transform_timeout", float, 0.1,
              "how long a tf2 lookup at the image stamp waits for the transform before the frame goes without "
              "target-frame positions [s]", min=0.0, max=10.0, runtime=False),
    ParamSpec("depth_transport", str, "raw",
              "depth input: raw (depth, sensor_msgs/Image) or compressedDepth (depth/compressedDepth, "
              "sensor_msgs/CompressedImage)", choices=("raw", "compressedDepth"), runtime=False),
    ParamSpec("qos", str, "sensor_data", "camera subscription QoS: sensor_data (best effort, keep last 5) or reliable",
              choices=("sensor_data", "reliable"), runtime=False),
    ParamSpec("max_rate_hz", float, 0.0, "maximum processed frames per second; 0 = as fast as inference allows",
              min=0.0, max=1000.0),
    ParamSpec("publish_debug_image", bool, False,
              "always build debug_image (otherwise only while someone subscribes)"),
    ParamSpec("publish_target_mask", bool, False,
              "always build target_mask (mono8 instance mask of the target; otherwise only while someone subscribes)"),
    ParamSpec("publish_target_cloud", bool, False,
              "always build target_cloud (PointCloud2 xyz + rgb of the target's mask, metres, optical frame; "
              "otherwise only while someone subscribes)"),
    ParamSpec("command", str, "", "initial command, e.g. 'pick up the red ball' (empty = wait for one)"),
    ParamSpec("image_transport", str, "raw", "colour input: raw (image) or compressed (image/compressed)",
              choices=("raw", "compressed"), runtime=False),
    ParamSpec("cameras", list, [], "camera namespaces served by one node, e.g. [left, right]; empty = one camera",
              runtime=False),
    ParamSpec("no_image_warn_s", float, 5.0, "warn when no image arrived for this long [s]", min=0.1, max=3600.0),
    ParamSpec("found_frames", int, 1,
              "tracking: the target is reported found after this many consecutive frames with it (1 = at once) "
              "[frames]", min=1, max=1000),
    ParamSpec("lost_frames", int, 1,
              "tracking: the target is reported lost after this many consecutive frames without it; until then its "
              "last pose is kept (1 = at the first miss) [frames]", min=1, max=1000),
    ParamSpec("switch_margin", float, 0.1,
              "tracking: score margin by which another candidate must beat the locked target to take over (only "
              "for commands without a spatial / relation qualifier); 1 = never switch while it is visible",
              min=0.0, max=1.0),
    ParamSpec("smoothing", float, 0.0,
              "tracking: exponential smoothing factor of the target's 3D position and size over its track "
              "(0 = off, raw per-frame values; 0.8 = 80 % previous estimate); restarts when the point jumps > 3 cm",
              min=0.0, max=0.99),
    ParamSpec("warmup", bool, True, "run the model once at start-up so the first frame is not slow",
              runtime=False, stage="model"),
    ParamSpec("autostart", bool, True,
              "lifecycle node: configure and activate at start-up; false: wait unconfigured for the lifecycle "
              "services (configure builds the model, activate subscribes)", runtime=False),
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
        if name == "camera_extrinsics" and value.strip():
            from .transforms import parse_extrinsics

            try:
                parse_extrinsics(value)
            except ValueError as exc:
                raise ParameterError(str(exc)) from exc
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


#: The stages a parameter belongs to; each has its own frozen config class below.
STAGES = ("model", "proposals", "ranking", "node")


def _stage_field(spec: ParamSpec):
    """A dataclass field for ``spec``: its default from the table (lists copied per instance)."""
    if isinstance(spec.default, list):
        default = list(spec.default)
        return dataclasses.field(default_factory=lambda: list(default))
    return dataclasses.field(default=spec.default)


def _validated_post_init(self) -> None:
    """Validate (and coerce) every field of a stage config through :func:`validate`."""
    for f in dataclasses.fields(self):
        object.__setattr__(self, f.name, validate(f.name, getattr(self, f.name)))


def _stage_class(stage: str, class_name: str, summary: str):
    """A frozen dataclass with one field per parameter of ``stage`` (names, types, defaults from ``_SPECS``)."""
    specs = [spec for spec in _SPECS if spec.stage == stage]
    lines = [summary, "", "Fields (generated from :data:`PARAMETERS`; defaults from the table):", ""]
    lines += [f"* ``{spec.name}`` ({spec.type.__name__}, default ``{spec.default!r}``): {spec.description}"
              for spec in specs]
    lines += ["", "Every value is validated on construction (:func:`validate`; raises :class:`ParameterError`)."]
    cls = dataclasses.make_dataclass(
        class_name, [(spec.name, spec.type, _stage_field(spec)) for spec in specs], frozen=True,
        namespace={"__post_init__": _validated_post_init, "__doc__": "\n".join(lines),
                   "__module__": __name__, "STAGE": stage})
    return cls


ModelConfig = _stage_class("model", "ModelConfig", "Parameters of the CLIP encoder (model, weights, device, prompts).")
ProposalConfig = _stage_class("proposals", "ProposalConfig", "Parameters of the region proposals (``proposals.py``).")
RankingConfig = _stage_class(
    "ranking", "RankingConfig", "Parameters of the embedding step and the ranking (``embed.py``, ``ranking.py``).")
NodeConfig = _stage_class("node", "NodeConfig", "Parameters only the ROS 2 node reads (topics, QoS, pairing, rate).")

#: stage name -> its config class.
STAGE_CLASSES = {"model": ModelConfig, "proposals": ProposalConfig, "ranking": RankingConfig, "node": NodeConfig}


def _replace_stages(obj, stages: Sequence[str], changes: Mapping[str, Any]):
    """``obj`` (a dataclass of stage configs) with flat ``changes`` applied to the owning stages."""
    per_stage: dict = {}
    for name, value in changes.items():
        spec = PARAMETERS.get(name)
        if spec is None or spec.stage not in stages:
            validate(name, value)  # raises "unknown parameter" for a wrong name
            raise ParameterError(f"parameter '{name}' (stage {spec.stage}) is not part of {type(obj).__name__}")
        per_stage.setdefault(spec.stage, {})[name] = value
    return dataclasses.replace(obj, **{stage: dataclasses.replace(getattr(obj, stage), **values)
                                       for stage, values in per_stage.items()})


def _flat_dict(obj, stages: Sequence[str]) -> dict:
    """name -> value of every parameter of ``stages`` in table order (lists copied)."""
    out = {}
    for spec in _SPECS:
        if spec.stage in stages:
            value = getattr(getattr(obj, spec.stage), spec.name)
            out[spec.name] = list(value) if isinstance(value, list) else value
    return out


@dataclass(frozen=True)
class DetectorConfig:
    """What the ROS-free :class:`pipeline.Detector` needs: the model, proposal and ranking stages.

    No node-only parameter (QoS, cameras, stamp pairing, rate ...) is in here.

    Attributes:
        model: :class:`ModelConfig` (encoder construction).
        proposals: :class:`ProposalConfig` (``proposals.propose`` arguments).
        ranking: :class:`RankingConfig` (mode, thresholds, weights, prompts, top_k).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)

    STAGES = ("model", "proposals", "ranking")

    def replace(self, **changes: Any) -> "DetectorConfig":
        """A copy with flat ``changes`` (parameter names) applied, each validated.

        Raises:
            ParameterError: unknown or invalid value, or a node-only parameter.
        """
        return _replace_stages(self, self.STAGES, changes)

    def as_dict(self) -> dict:
        """Flat name -> value of the three stages, in table order."""
        return _flat_dict(self, self.STAGES)


@dataclass(frozen=True)
class Config:
    """Every parameter, grouped by stage; what the node, the CLI and the tools hold.

    Build with :func:`make_config`; change with :meth:`replace` (flat names, validated).
    Each parameter can also be read flat (``config.score_threshold``): read-only properties
    generated from the table forward to the owning stage.  :attr:`detector` is the part the
    detector gets.

    Attributes:
        model, proposals, ranking, node: the four stage configs.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    node: NodeConfig = field(default_factory=NodeConfig)

    STAGES = STAGES

    @property
    def detector(self) -> DetectorConfig:
        """The :class:`DetectorConfig` (model + proposals + ranking) of this config."""
        return DetectorConfig(model=self.model, proposals=self.proposals, ranking=self.ranking)

    def replace(self, **changes: Any) -> "Config":
        """A copy with flat ``changes`` (parameter names) applied, each validated.

        Raises:
            ParameterError: unknown name or invalid value (the message says which and why).
        """
        return _replace_stages(self, self.STAGES, changes)

    def as_dict(self) -> dict:
        """Flat name -> value of every parameter, in table order (CLI ``--json``, bench, JSON files)."""
        return _flat_dict(self, self.STAGES)


def _check_table() -> None:
    bad = [spec.name for spec in _SPECS if spec.stage not in STAGES]
    if bad:
        raise AssertionError(f"parameters without a known stage ({', '.join(STAGES)}): {bad}")
    taken = {f.name for f in dataclasses.fields(Config)} | {"detector", "replace", "as_dict", "STAGES"}
    clash = [spec.name for spec in _SPECS if spec.name in taken]
    if clash:
        raise AssertionError(f"parameter names clash with Config attributes: {clash}")


_check_table()


def _flat_property(spec: ParamSpec) -> property:
    def get(self):
        return getattr(getattr(self, spec.stage), spec.name)

    return property(get, doc=f"``{spec.stage}.{spec.name}``: {spec.description}")


for _spec in _SPECS:
    setattr(Config, _spec.name, _flat_property(_spec))
del _spec


def make_config(values: Optional[Mapping[str, Any]] = None) -> Config:
    """A :class:`Config` from the table's defaults plus ``values`` (flat names, validated).

    Raises:
        ParameterError: on any unknown or invalid value.
    """
    return Config().replace(**dict(values or {}))


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
