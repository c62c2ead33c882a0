"""Open-vocabulary detector peers of ``clip-perception bench``: OWL-ViT and OWLv2, timed like our modes.

A robotics engineer choosing this package would compare it with an open-vocabulary
detector; the bench runs two of them (one of them twice) on the same frames and text
queries, in the same process, interleaved with our modes:

* ``owlvit_b32`` -- OWL-ViT B/32 at 768 x 768 px (Minderer et al., "Simple Open-Vocabulary
  Object Detection with Vision Transformers", ECCV 2022; the model NanoOWL runs), fp32 as
  ``transformers`` runs it by default;
* ``owlvit_b32_bf16`` -- the same with weights and input in bf16 (where the device has bf16:
  CUDA or a CPU with native bf16 instructions; the bench drops the row elsewhere);
* ``owlv2_b16`` -- OWLv2 B/16 at 960 x 960 px (Minderer et al., "Scaling Open-Vocabulary
  Object Detection", NeurIPS 2023).

Both come from Hugging Face ``transformers`` (``OwlViTForObjectDetection`` /
``Owlv2ForObjectDetection``) built from their configuration classes with **random weights**
(no hub download: ``OwlViTConfig()`` defaults are the B/32 768 px model, ``Owlv2Config()`` the
B/16 model, whose input is set to 960 px as in ``google/owlv2-base-patch16``); the timings are
those of the real architectures, the detections are meaningless.  The processor is done here
with torch, as ``OwlViTImageProcessor`` / ``Owlv2ImageProcessor`` do it: OWL-ViT resizes the
frame to the square input (bicubic), OWLv2 first pads it to a square at the bottom / right
with grey 0.5; both normalise with OpenAI CLIP's mean / std.  Text queries are tokenised with
open_clip's tokenizer (the same CLIP BPE vocabulary as ``CLIPTokenizer``) to OWL's 16 tokens.

Per frame (stages as in :mod:`~clip_perception.tools.bench`): ``decode``; ``crop_preprocess``
(resize / pad / normalise); ``image_encode`` (the model forward: image tower, text tower on the
query -- the model has no text cache --, box and class heads); ``ranking`` (sigmoid of the
target query's logits, threshold, top-k, boxes to frame pixels); ``3d`` and ``publish`` like our
modes.  Peers need no region proposals: their ``proposals`` stage is 0.

``tiny=True`` builds a 2-layer, 64-wide model at 64 px (CI tests of the code path only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["PEERS", "PeerSpec", "PEER_SPECS", "PeerDetector", "parse_peers"]

#: Peer names, in run order (keys of ``speedup_vs_peer`` in the JSON report).  ``owlvit_b32_bf16``
#: is OWL-ViT B/32 with bf16 weights and input (on a CPU with native bf16, as our CPU default
#: there; fp32 otherwise), so that our bf16 lever is compared with the peer given the same lever.
PEERS: tuple[str, ...] = ("owlvit_b32", "owlvit_b32_bf16", "owlv2_b16")

#: OpenAI CLIP normalisation (``transformers.image_utils.OPENAI_CLIP_MEAN`` / ``_STD``).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: OWL's text context (``OwlViTTextConfig.max_position_embeddings``).
OWL_TEXT_TOKENS = 16


@dataclass(frozen=True)
class PeerSpec:
    """One peer: its ``transformers`` classes and input size.

    Attributes:
        name: report name (``owlvit_b32``).
        label: human name (``OWL-ViT B/32 @ 768 px``).
        config_cls, model_cls: class names in ``transformers``.
        image_size: square model input side [pixels].
        pad_square: pad the frame to a square (bottom / right, grey 0.5) before resizing (OWLv2).
        precision: "fp32" (what ``transformers`` runs by default) or "bf16" (model and input in
            bfloat16; falls back to fp32 where :func:`clip_perception.device.resolve_device_precision`
            does).
    """

    name: str
    label: str
    config_cls: str
    model_cls: str
    image_size: int
    pad_square: bool
    precision: str = "fp32"


PEER_SPECS = {
    "owlvit_b32": PeerSpec("owlvit_b32", "OWL-ViT B/32 @ 768 px", "OwlViTConfig", "OwlViTForObjectDetection",
                           768, False),
    "owlvit_b32_bf16": PeerSpec("owlvit_b32_bf16", "OWL-ViT B/32 @ 768 px, bf16", "OwlViTConfig",
                                "OwlViTForObjectDetection", 768, False, "bf16"),
    "owlv2_b16": PeerSpec("owlv2_b16", "OWLv2 B/16 @ 960 px", "Owlv2Config", "Owlv2ForObjectDetection",
                          960, True),
}

_TINY_TOWER = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}


def parse_peers(text: str) -> list:
    """``all`` / ``none`` / a comma list of :data:`PEERS` -> peer names in run order.  Raises ValueError."""
    text = (text or "none").strip().lower()
    if text == "all":
        return list(PEERS)
    if text in ("none", "", "off"):
        return []
    asked = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in asked if p not in PEERS]
    if bad:
        raise ValueError(f"--peers: unknown peer(s) {bad}; use all, none or a comma list of {', '.join(PEERS)}")
    return [p for p in PEERS if p in asked]


class PeerDetector:
    """An OWL-ViT / OWLv2 detector with random weights, timed per stage like our modes.

    Args:
        name: one of :data:`PEERS`.
        device: torch device (``cpu``, ``cuda``...).
        tiny: a 2-layer, 64-wide model at 64 px instead of the real size (tests).
        seed: ``torch.manual_seed`` before the random initialisation.

    Attributes:
        spec: the :class:`PeerSpec`; image_size (int, pixels); model (``transformers`` module, eval).

    Raises:
        ImportError: ``transformers`` is not installed.
        KeyError: unknown peer name.
    """

    def __init__(self, name: str, device="cpu", tiny: bool = False, seed: int = 0):
        import torch
        import transformers

        from ..device import PRECISION_DTYPES, resolve_device_precision

        self.spec = PEER_SPECS[name]
        self.name = name
        self.device = torch.device(device)
        size = 64 if tiny else self.spec.image_size
        vision = {"image_size": size, **(_TINY_TOWER if tiny else {})}
        text = dict(_TINY_TOWER) if tiny else {}
        extra = {"projection_dim": 64} if tiny else {}
        config = getattr(transformers, self.spec.config_cls)(text_config=text, vision_config=vision, **extra)
        torch.manual_seed(int(seed))
        model = getattr(transformers, self.spec.model_cls)(config)
        model.eval()  # inference mode (dropout off)
        self.precision = resolve_device_precision(self.device, self.spec.precision)[1]
        self.dtype = PRECISION_DTYPES[self.precision]
        self.model = model.to(self.device, self.dtype)
        self.image_size = int(config.vision_config.image_size)
        self.tiny = bool(tiny)
        self._mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        self._tokens: dict = {}

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def preprocess(self, rgb: np.ndarray):
        """``(pixel_values (1, 3, S, S) in the peer's dtype, (sx, sy))``: the processor's input and the frame
        pixels per unit of the normalised box coordinates (x, y)."""
        import torch
        import torch.nn.functional as F

        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        if self.spec.pad_square:
            side = max(h, w)
            x = F.pad(x, (0, side - w, 0, side - h), value=0.5)
            scale = (float(side), float(side))
        else:
            scale = (float(w), float(h))
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False,
                          antialias=True).clamp_(0.0, 1.0)
        return ((x - self._mean) / self._std).to(self.dtype), scale

    def tokens(self, phrases: Sequence[str]):
        """``(input_ids (Q, 16) int64, attention_mask (Q, 16) int64)`` of ``"a photo of a {phrase}"``."""
        key = tuple(phrases)
        if key not in self._tokens:
            import open_clip

            tok = open_clip.get_tokenizer("ViT-B-32")
            ids = tok([f"a photo of a {p}" for p in phrases], context_length=OWL_TEXT_TOKENS).to(self.device)
            self._tokens[key] = (ids, (ids != 0).long())
        return self._tokens[key]

    def detect(self, rgb: np.ndarray, phrases: Sequence[str], threshold: float, top_k: int, stages: dict) -> list:
        """Top-``top_k`` :class:`types.Detection` of ``phrases[0]`` (score >= ``threshold``), best first.

        Args:
            rgb: (H, W, 3) uint8 RGB.
            phrases: text queries (the target first; the others are queried too, as OWL does).
            threshold: minimum sigmoid score in [0, 1].
            top_k: most detections.
            stages: receives ``crop_preprocess``, ``image_encode`` and ``ranking`` milliseconds.

        Returns:
            list of :class:`types.Detection` (boxes xyxy float32 frame pixels, clipped to the frame).
        """
        import torch

        from ..types import Detection

        t0 = time.perf_counter()
        x, (sx, sy) = self.preprocess(rgb)
        ids, mask = self.tokens(phrases)
        self._sync()
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = self.model(input_ids=ids, pixel_values=x, attention_mask=mask)
            logits = out.logits[0, :, 0].float()
            boxes = out.pred_boxes[0].float()
            self._sync()
            t2 = time.perf_counter()
            scores = torch.sigmoid(logits).cpu().numpy()
            cx, cy, bw, bh = boxes.cpu().numpy().T
        h, w = rgb.shape[:2]
        xyxy = np.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], 1)
        xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
        order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= threshold][:top_k]
        dets = [Detection(label=phrases[0], score=float(scores[i]), confidence=float(scores[i]), box=xyxy[i].copy(),
                          clip_score=float(scores[i])) for i in order]
        t3 = time.perf_counter()
        for key, ms in (("crop_preprocess", t1 - t0), ("image_encode", t2 - t1), ("ranking", t3 - t2)):
            stages[key] = stages.get(key, 0.0) + ms * 1e3
        return dets
