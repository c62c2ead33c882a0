"""What an encoder is and how it is set up: the :class:`Encoder` protocol and :class:`EncoderOptions` (ROS-free).

:class:`clip_perception.encoder.ClipEncoder` implements the protocol with open_clip; the tests
plug in their own encoders (``test/fake_encoders.py``).  Both names are re-exported by
:mod:`clip_perception.encoder`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .crops import CROP_BACKENDS
from .params import PARAMETERS

__all__ = ["DEFAULT_PROMPT_TEMPLATES", "DEFAULT_BATCH_BUCKETS", "CPU_MAX_BATCH", "Encoder", "EncoderOptions"]

#: Prompt templates averaged for every phrase: the parameter table's default (params.py).
DEFAULT_PROMPT_TEMPLATES: tuple[str, ...] = tuple(PARAMETERS["prompt_templates"].default)

#: Batch sizes that image batches are padded up to (when bucketing is on).
DEFAULT_BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)

#: Default most images per model forward on CPU (see ``EncoderOptions.max_batch``).
CPU_MAX_BATCH = 32


@runtime_checkable
class Encoder(Protocol):
    """What ranking/pipeline code needs from an encoder (tests plug in their own).

    ``encode_texts(phrases)`` -> (M, D) float32 unit rows;
    ``encode_boxes(rgb (H, W, 3) uint8, boxes (N, 4) float32 xyxy px, mode, size=None)`` ->
    (N, D) float32 unit rows (``size``: crop side in pixels, passed only by the cascade when
    ``cascade_crop_size`` is set); ``logit_scale``: CLIP temperature (float, <= 100).
    """

    logit_scale: float

    def encode_texts(self, phrases: list[str]) -> np.ndarray: ...

    def encode_boxes(self, rgb: np.ndarray, boxes: np.ndarray, mode: str = "crop",
                     size: Optional[int] = None) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class EncoderOptions:
    """Everything about a :class:`ClipEncoder` but the model, weights, device and precision.

    Attributes:
        prompt_templates: templates containing "{}" (None: :data:`DEFAULT_PROMPT_TEMPLATES`;
            empty: ``("{}",)``); stored as a tuple.
        cache_dir: download cache for open_clip / huggingface_hub (None = their defaults:
            ~/.cache/huggingface/hub and ~/.cache/clip).
        batch_buckets: sizes image batches are padded to (when bucketing); stored sorted.
        context_margin: crop margin per side as a fraction of the longer box side, [0, 2].
        dense_size: input side for dense mode (None -> model input size); rounded down to
            a multiple of the patch size.
        bucket_batches: pad image batches to ``batch_buckets`` sizes (repeated shapes for
            cuDNN autotuning / torch.compile).  None -> on for CUDA or ``compile=True``,
            off on CPU (padding would only waste compute).
        compile: wrap the vision tower in ``torch.compile``.
        allow_download: if weights are not cached, try downloading (only when no offline
            env var is set and the host answers within 3 s).
        crop_backend: how crops and the dense letterbox are resampled
            (:class:`~clip_perception.crops.CropMaker`): "pillow" (fastest on a CPU,
            open_clip's values exactly), "torch" (torchvision on the model's device, within
            2/255 of Pillow) or "auto" (pillow on CPU, torch on CUDA).
        max_batch: most images per model forward (larger inputs are chunked).  None -> the
            largest ``batch_buckets`` size on CUDA, :data:`CPU_MAX_BATCH` on CPU (bigger CPU
            batches are no faster but cost about 4 MiB of activations per ViT-B/32 image).
        quantize_int8: CPU only: int8 linear layers in the image tower (:mod:`clip_perception.quantize`).

    Raises:
        ValueError: templates without "{}", no positive bucket, margin outside [0, 2],
            unknown crop backend, ``max_batch`` < 1.
    """

    prompt_templates: Optional[Sequence[str]] = None
    cache_dir: Optional[str] = None
    batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS
    context_margin: float = 0.1
    dense_size: Optional[int] = None
    bucket_batches: Optional[bool] = None
    compile: bool = False
    allow_download: bool = True
    crop_backend: str = "auto"
    max_batch: Optional[int] = None
    quantize_int8: bool = False

    def __post_init__(self) -> None:
        templates = DEFAULT_PROMPT_TEMPLATES if self.prompt_templates is None else tuple(self.prompt_templates)
        templates = templates or ("{}",)
        bad = [t for t in templates if not isinstance(t, str) or "{}" not in t]
        if bad:
            raise ValueError(f"prompt templates must contain '{{}}': {bad}")
        buckets = tuple(sorted({int(b) for b in self.batch_buckets if int(b) >= 1}))
        if not buckets:
            raise ValueError("batch_buckets must contain positive sizes")
        if not (0.0 <= float(self.context_margin) <= 2.0):
            raise ValueError("context_margin must be in [0, 2]")
        if self.crop_backend not in CROP_BACKENDS:
            raise ValueError(f"crop_backend must be one of {', '.join(CROP_BACKENDS)}, got {self.crop_backend!r}")
        if self.max_batch is not None and int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        set_ = object.__setattr__  # normalised values of a frozen dataclass
        set_(self, "prompt_templates", templates)
        set_(self, "batch_buckets", buckets)
        set_(self, "context_margin", float(self.context_margin))
        set_(self, "cache_dir", None if self.cache_dir is None else str(self.cache_dir))
        set_(self, "max_batch", None if self.max_batch is None else int(self.max_batch))
