"""CLIP image/text encoder for box proposals (ROS-free).

:class:`ClipEncoder` wraps an open_clip model (Cherti et al., "Reproducible scaling laws
for contrastive language-image learning", CVPR 2023; https://github.com/mlfoundations/open_clip)
and turns phrases into unit-norm text embeddings, prompt-ensembled over templates (Radford
et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
section 3.1.4) and cached per phrase, and box proposals of one or several RGB frames into
unit-norm image embeddings: ``mode="crop"`` (square crops, :mod:`clip_perception.crops`,
batched forwards; at the model's side or, ``size=``, a smaller one with the ViT's positional
embedding resized) or ``mode="dense"`` (one forward per frame, MaskCLIP patch features
pooled per box, :mod:`clip_perception.dense`).  Device and precision:
:mod:`clip_perception.device`; weights: :mod:`clip_perception.weights`.

Image batches are chunked to ``max_batch`` images per forward (optionally padded to bucket
sizes); a CUDA out-of-memory error halves the chunk down to 1, then moves the model to the
CPU for the rest of the encoder's life.  Crop tensors match open_clip's ``preprocess`` on
the square-padded crop (:meth:`ClipEncoder.reference_crop_tensor`): exactly with the Pillow
backend (CPU default), within 2/255 per value with the torch backend (CUDA default).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .boxes import as_boxes
from .crops import CropMaker, CropSpec
from .dense import dense_geometry, patch_features, pool_boxes, pooled_embedding, require_vit
from .device import PRECISION_DTYPES, HostUploader, resolve_device_precision
from .encoder_options import (CPU_MAX_BATCH, DEFAULT_BATCH_BUCKETS, DEFAULT_PROMPT_TEMPLATES,  # noqa: F401 (re-exported)
                              Encoder, EncoderOptions)
from .quantize import quantize_linear_int8
from .types import check_rgb
from .weights import load_model

log = logging.getLogger(__name__)

_TEXT_CACHE_SIZE = 256


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    b = as_boxes(boxes)
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes contain NaN/Inf")
    return b


class ClipEncoder:
    """open_clip model + tokenizer + batched crop/dense image encoding.

    Construct once; a different model is a new instance (the model is never swapped
    inside an instance).  Public methods are serialised with a lock, so an instance may be
    shared between threads.

    Args:
        model_name: open_clip architecture ("ViT-B-32", "ViT-B-16-SigLIP", ...),
            or "hf-hub:org/name" / "local-dir:/path".
        pretrained: open_clip tag ("openai", "laion2b_s34b_b79k", ...), "hf-hub:org/name",
            a local checkpoint file (.pt/.pth/.bin read with ``torch.load(weights_only=True)``;
            .safetensors via safetensors), or "none" (random weights; a loud WARNING is
            logged).  Resolved offline first (:func:`clip_perception.weights.load_model`);
            a local file for a QuickGELU model needs the "-quickgelu" model name.
        device: "auto" | "cpu" | "cuda[:N]" (:func:`~clip_perception.device.resolve_device_precision`).
        precision: "auto" | "fp32" | "fp16" | "bf16" (open_clip mixed precision: half
            weights, fp32 LayerNorm); "auto" is fp16 on CUDA and bf16 on a CPU with native
            bf16 instructions, else fp32 (:func:`~clip_perception.device.resolve_device_precision`);
            ``quantize_int8`` on the CPU makes it fp32 (int8 linear layers).
        options: an :class:`EncoderOptions`; or pass its fields as keywords
            (``prompt_templates=..., crop_backend=...``), not both.

    Attributes:
        model, tokenizer, preprocess (open_clip's inference transform), preprocess_cfg (dict),
        device (torch.device), dtype (torch.dtype), embed_dim (int D), context_length (tokens),
        logit_scale (float), input_size ((Sh, Sw) pixels), weights_source (str),
        fell_back_to_cpu (bool); the options' fields (``bucket_batches`` resolved, settable);
        fault_hook (testing: callable(batch) run before every model forward, may raise e.g.
        ``torch.OutOfMemoryError``); stage_timings (``types.Timings`` or None: when set,
        calls add stage wall-clock ms -- ``encoder.crop`` (crop + resize + normalise),
        ``encoder.image`` (crop forward to NumPy), ``encoder.dense_input``,
        ``encoder.dense_forward``, ``encoder.pool``, ``encoder.text`` -- synchronising CUDA
        at each stage boundary; None (default) adds no synchronisation).

    Raises:
        ValueError: unknown model name, unknown tag, bad options/precision.
        TypeError: ``options`` and option keywords together, or an unknown keyword.
        WeightsUnavailableError: weights not cached and not downloadable now
            (raised within seconds); CheckpointError for a bad checkpoint file.
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: Optional[str] = "openai",
                 device: str | torch.device = "auto", precision: str = "auto",
                 options: Optional[EncoderOptions] = None, **option_kw):
        if options is not None and option_kw:
            raise TypeError("pass either options=EncoderOptions(...) or option keywords, not both")
        opts = options if options is not None else EncoderOptions(**option_kw)
        self._lock = threading.RLock()
        self.model_name, self.pretrained, self.options = str(model_name), pretrained, opts
        self.prompt_templates, self.batch_buckets = opts.prompt_templates, opts.batch_buckets
        self.context_margin, self.cache_dir = opts.context_margin, opts.cache_dir
        self.max_batch_request = opts.max_batch
        self.device, self.precision = resolve_device_precision(device, precision)
        if opts.quantize_int8 and self.device.type == "cpu" and self.precision != "fp32":
            # torch.ao dynamic quantisation takes fp32 linear layers: int8 replaces bf16 here
            (log.info if str(precision).strip().lower() == "auto" else log.warning)(
                "quantize_int8: the image tower runs int8 linear layers with fp32 elsewhere (not %s)", self.precision)
            self.precision = "fp32"
        self.dtype = PRECISION_DTYPES[self.precision]
        auto_bucket = self.device.type == "cuda" or opts.compile
        self.bucket_batches = bool(auto_bucket if opts.bucket_batches is None else opts.bucket_batches)
        loaded = load_model(self.model_name, pretrained, device=self.device, precision=self.precision,
                            cache_dir=self.cache_dir, allow_download=opts.allow_download)
        self.model, self.tokenizer, self.weights_source = loaded.model, loaded.tokenizer, loaded.plan.source
        self._init_preprocess()
        self._init_model_facts(opts.dense_size)
        self._init_runtime_state(opts.compile)

    # ---------------------------------------------------------------- construction
    def _init_preprocess(self) -> None:
        """open_clip's inference transform and the constants the batched crops need."""
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(self.model))
        pcfg = PreprocessCfg(**{k: v for k, v in self.preprocess_cfg.items()
                                if k in PreprocessCfg.__dataclass_fields__})
        self.preprocess = image_transform_v2(pcfg, is_train=False)
        spec = CropSpec.from_preprocess_cfg(self.preprocess_cfg)
        self.crops = CropMaker(spec, self.context_margin, self.options.crop_backend)
        self.input_size, self.interpolation, self.fill_u8 = spec.input_size, spec.interpolation, spec.fill_u8
        self.mean, self.std = np.asarray(spec.mean, np.float64), np.asarray(spec.std, np.float64)

    def _init_model_facts(self, dense_size: Optional[int]) -> None:
        """context_length, logit_scale, embed_dim, patch_size and dense_size of the model."""
        self.context_length = int(getattr(self.tokenizer, "context_length", None)
                                  or getattr(self.model, "context_length", 77))
        self.logit_scale = float(torch.clamp(self.model.logit_scale.detach().float().exp(), max=100.0).reshape(-1)[0])
        self.embed_dim = int(self._infer_embed_dim())
        ps = getattr(getattr(self.model, "visual", None), "patch_size", None)
        if ps is not None:
            ps = (int(ps), int(ps)) if isinstance(ps, int) else (int(ps[0]), int(ps[1]))
        self.patch_size = ps
        ds = int(dense_size) if dense_size else max(self.input_size)
        if self.patch_size is not None:
            ds = max(self.patch_size[0], ds - ds % self.patch_size[0])
        self.dense_size = ds

    def _init_runtime_state(self, compile: bool) -> None:
        self._pos_cache: dict = {}
        self._text_cache: "collections.OrderedDict[str, np.ndarray]" = collections.OrderedDict()
        self.text_cache_size = _TEXT_CACHE_SIZE
        self._uploader = HostUploader()
        self.fell_back_to_cpu = False
        self.fault_hook: Optional[Callable[[torch.Tensor], None]] = None
        self.stage_timings = None
        if self.options.quantize_int8 and self.device.type == "cpu":
            self.model.visual = quantize_linear_int8(self.model.visual)
        self._visual = self.model.visual
        self.compiled = False
        if compile:
            try:
                self._visual = torch.compile(self.model.visual, dynamic=False)
                self.compiled = True
            except Exception as e:  # pragma: no cover - depends on toolchain
                log.warning("torch.compile failed (%s); running eagerly", e)

    def _infer_embed_dim(self) -> int:
        v = getattr(getattr(self.model, "visual", None), "output_dim", None)
        if isinstance(v, int):
            return v
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor) and proj.ndim == 2:
            return int(proj.shape[1])
        with torch.inference_mode():
            return int(self._encode_text_tokens(self.tokenizer(["x"])).shape[1])

    # ---------------------------------------------------------------- text
    def encode_texts(self, phrases: list[str]) -> np.ndarray:
        """Prompt-ensembled text embeddings.

        Each phrase is inserted into every template, the template embeddings
        are L2-normalised, averaged and re-normalised (Radford et al. 2021,
        section 3.1.4).  Results are cached per phrase (LRU, 256 phrases).
        Text longer than ``context_length`` tokens is truncated with a warning.

        Args:
            phrases: M strings.

        Returns:
            (M, D) float32, unit L2 norm rows (a fresh array each call).
        """
        if isinstance(phrases, str):
            phrases = [phrases]
        phrases = [str(p) for p in phrases]
        with self._lock:
            t0 = time.perf_counter()
            missing = list(dict.fromkeys(p for p in phrases if p not in self._text_cache))
            if missing:
                for p, e in zip(missing, self._encode_phrases(missing)):
                    e.setflags(write=False)
                    self._text_cache[p] = e
            for p in phrases:
                self._text_cache.move_to_end(p)
            out = (np.stack([self._text_cache[p] for p in phrases]) if phrases
                   else np.zeros((0, self.embed_dim), np.float32))
            while len(self._text_cache) > self.text_cache_size:
                self._text_cache.popitem(last=False)
            self._mark("encoder.text", t0)
        return out

    def _token_count(self, text: str) -> Optional[int]:
        tok = self.tokenizer
        try:
            if hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):  # open_clip SimpleTokenizer
                return len(tok.encode(text)) + 2
            inner = getattr(tok, "tokenizer", None)
            if inner is not None:
                return len(inner(text)["input_ids"])
        except Exception:
            return None
        return None

    @torch.inference_mode()
    def _encode_phrases(self, phrases: list[str]) -> list[np.ndarray]:
        texts = [t.replace("{}", p) for p in phrases for t in self.prompt_templates]
        for p in phrases:
            n = max((self._token_count(t.replace("{}", p)) or 0) for t in self.prompt_templates)
            if n > self.context_length:
                log.warning("text %r is %d tokens long with its prompt template; truncated to the "
                            "tokenizer context length %d", p[:80], n, self.context_length)
        feats = self._run_batched(self.tokenizer(texts), self._encode_text_tokens, bucketed=False)
        feats = F.normalize(feats.float(), dim=-1).view(len(phrases), len(self.prompt_templates), -1)
        emb = F.normalize(feats.mean(dim=1), dim=-1).cpu().numpy().astype(np.float32)
        return [emb[i].copy() for i in range(len(phrases))]

    def _encode_text_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.device)
        if self.fault_hook is not None:
            self.fault_hook(tokens)
        return self.model.encode_text(tokens).float()

    # ---------------------------------------------------------------- crops
    @property
    def max_batch(self) -> int:
        """Most images per model forward (see ``EncoderOptions.max_batch``)."""
        if self.max_batch_request is not None:
            return self.max_batch_request
        return max(self.batch_buckets) if self.device.type == "cuda" else min(CPU_MAX_BATCH, max(self.batch_buckets))

    @property
    def crop_backend(self) -> str:
        """Resampling backend in use: "pillow" or "torch" (see ``EncoderOptions.crop_backend``)."""
        return self.crops.backend(self.device)

    def _mark(self, stage: str, t0: float) -> float:
        """Add ``now - t0`` to ``stage_timings[stage]`` (ms; CUDA synchronised); return now."""
        if self.stage_timings is None:
            return t0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t = time.perf_counter()
        self.stage_timings.add(stage, (t - t0) * 1e3)
        return t

    def _upload(self, rgb: np.ndarray, slot: int = 0) -> torch.Tensor:
        """(H, W, 3) uint8 -> uint8 tensor on ``self.device`` (pinned, non_blocking on CUDA)."""
        return self._uploader.upload(rgb, self.device, slot)

    @torch.inference_mode()
    def crop_batch(self, rgb: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        """The normalised model input for every box (batched path).

        Args:
            rgb: (H, W, 3) uint8 RGB.
            boxes: (N, 4) float32 xyxy pixels.

        Returns:
            (N, 3, Sh, Sw) float32 on ``self.device``: ``(pixel/255 - mean)/std``
            of the square-padded, resized crop (:mod:`clip_perception.crops`; the
            resampling backend is :attr:`crop_backend`).
        """
        rgb = check_rgb(rgb, allow_empty=False)
        boxes = _check_boxes(boxes)
        with self._lock:
            return self.crops.boxes(self._upload(rgb), boxes)

    def reference_crop_tensor(self, rgb: np.ndarray, box: Sequence[float]) -> torch.Tensor:
        """Per-crop reference: open_clip's own ``preprocess`` of the square-padded crop of ``box``.

        Args:
            rgb: (H, W, 3) uint8 RGB.
            box: 4 floats xyxy pixels.

        Returns:
            (3, Sh, Sw) float32 CPU tensor, normalised like :meth:`crop_batch`.
        """
        return self.crops.reference(check_rgb(rgb, allow_empty=False), box, self.preprocess)

    # ---------------------------------------------------------------- image embeddings
    def encode_boxes(self, rgb: np.ndarray, boxes: np.ndarray, mode: str = "crop",
                     size: Optional[int] = None) -> np.ndarray:
        """Image embeddings of box proposals.

        Args:
            rgb: (H, W, 3) uint8 RGB.
            boxes: (N, 4) float32 ``[x1, y1, x2, y2]`` pixels.
            mode: "crop" (square crop per box, one batched forward) or
                "dense" (one forward over the frame, MaskCLIP patch features
                pooled per box).
            size: crop mode: side of the crops in pixels (None: the model's input side);
                another side is rounded down to whole patches (:meth:`crop_side`) and
                encoded with the positional embedding resized
                (:func:`clip_perception.dense.pooled_embedding`).  Unused by dense mode.

        Returns:
            (N, D) float32 unit-norm rows ((0, D) for no boxes).

        Raises:
            ValueError: bad image/boxes/mode/size.
            NotImplementedError: dense mode, or crops of another size, on a non-ViT vision tower.
        """
        return self.encode_boxes_multi([rgb], [boxes], mode=mode, size=size)[0]

    def crop_side(self, size: Optional[int]) -> tuple[int, int]:
        """(Sh, Sw) pixels of crops asked at side ``size``: the model's input size for None or
        that size, else ``size`` rounded down to whole patches (at least one patch).

        Raises:
            ValueError: ``size`` < 1.
            NotImplementedError: another size on a vision tower that is not a plain ViT.
        """
        if size is None or (int(size), int(size)) == tuple(self.input_size):
            return tuple(self.input_size)
        if int(size) < 1:
            raise ValueError(f"crop size must be >= 1 pixel, got {size}")
        self._require_dense()  # a plain ViT: its positional embedding can be resized
        p = self.patch_size[0]
        side = max(p, int(size) - int(size) % p)
        return (side, side)

    def encode_boxes_multi(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                           mode: str = "crop", size: Optional[int] = None) -> list[np.ndarray]:
        """Embeddings of boxes of several frames (e.g. cameras) in one batch.

        Args:
            frames: F images (Hi, Wi, 3) uint8 RGB (sizes may differ).
            boxes: F arrays (Ni, 4) float32 xyxy pixels of the matching frame.
            mode: "crop" or "dense".
            size: crop side (:meth:`encode_boxes`).

        Returns:
            F arrays (Ni, D) float32 unit rows.

        Raises:
            ValueError: bad images/boxes/mode/size, ``frames`` and ``boxes`` of different lengths.
            NotImplementedError: dense mode, or crops of another size, on a non-ViT vision tower.
        """
        if len(frames) != len(boxes):
            raise ValueError("frames and boxes must have the same length")
        if mode not in ("crop", "dense"):
            raise ValueError(f"mode must be 'crop' or 'dense', got {mode!r}")
        frames = [check_rgb(f, allow_empty=False) for f in frames]
        boxes = [_check_boxes(b) for b in boxes]
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            return [np.zeros((0, self.embed_dim), np.float32) for _ in frames]
        with self._lock, torch.inference_mode():
            if mode == "crop":
                feats = self._encode_crops(frames, boxes, self.crop_side(size))
            else:
                feats = self._encode_dense(frames, boxes)
        out, k = [], 0
        for n in counts:
            out.append(np.ascontiguousarray(feats[k:k + n], dtype=np.float32))
            k += n
        return out

    def _encode_crops(self, frames: list[np.ndarray], boxes: list[np.ndarray], side: tuple[int, int]) -> np.ndarray:
        """(sum Ni, D) unit crop embeddings of all boxes at ``side`` pixels, frame by frame."""
        t0 = time.perf_counter()
        crops = [self.crops.boxes(self._upload(f, i), b, side) for i, (f, b) in enumerate(zip(frames, boxes)) if len(b)]
        x = crops[0] if len(crops) == 1 else torch.cat(crops, 0)
        t0 = self._mark("encoder.crop", t0)
        own = side == tuple(self.input_size)  # only the model's own shape is bucketed (and compiled)
        feats = self._run_batched(x, self._encode_image_batch, bucketed=self.bucket_batches and own)
        feats = F.normalize(feats.float(), dim=-1).cpu().numpy()
        self._mark("encoder.image", t0)
        return feats

    def _encode_dense(self, frames: list[np.ndarray], boxes: list[np.ndarray]) -> np.ndarray:
        """(sum Ni, D) unit MaskCLIP embeddings of all boxes, one forward per frame with boxes."""
        t0 = time.perf_counter()
        self._require_dense()
        idx = [i for i, b in enumerate(boxes) if len(b)]
        x = torch.cat([self._dense_input(self._upload(frames[i], i)) for i in idx], 0)
        t0 = self._mark("encoder.dense_input", t0)
        patches = self._run_batched(x, self._dense_forward, bucketed=False)  # (F', gh, gw, D)
        t0 = self._mark("encoder.dense_forward", t0)
        pooled = [pool_boxes(patches[k], boxes[i], frames[i].shape) for k, i in enumerate(idx)]
        feats = torch.cat(pooled, 0).cpu().numpy()
        self._mark("encoder.pool", t0)
        return feats

    def _encode_image_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.fault_hook is not None:
            self.fault_hook(x)
        if tuple(x.shape[-2:]) == tuple(self.input_size):
            return self._visual(x).float()
        return pooled_embedding(self.model.visual, x, self._pos_cache).float()  # resized positional embedding

    # ---------------------------------------------------------------- dense (MaskCLIP)
    def _require_dense(self) -> None:
        require_vit(getattr(self.model, "visual", None), self.model_name)

    def _dense_input(self, frame: torch.Tensor) -> torch.Tensor:
        """(1, 3, S, S) normalised letterbox of a (H, W, 3) uint8 frame tensor (``S = dense_size``)."""
        return self.crops.letterbox(frame, self.dense_size)

    def _dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised -> (B, gh, gw, D) float32 MaskCLIP patch features."""
        x = x.to(self.device, self.dtype)
        if self.fault_hook is not None:
            self.fault_hook(x)
        return patch_features(self.model.visual, x, self._pos_cache)

    @torch.inference_mode()
    def dense_patch_features(self, rgb: np.ndarray) -> tuple[np.ndarray, dict]:
        """MaskCLIP patch features of a whole frame.

        Args:
            rgb: (H, W, 3) uint8 RGB.

        Returns:
            (features (gh, gw, D) float32, not normalised; geometry dict of
            :func:`clip_perception.dense.dense_geometry`: ``x0``, ``y0`` (letterbox square
            origin in frame pixels, may be negative), ``side``, ``cell`` (frame pixels per
            patch), ``grid``).

        Raises:
            NotImplementedError: non-ViT vision tower.
        """
        rgb = check_rgb(rgb, allow_empty=False)
        with self._lock:
            self._require_dense()
            x = self._dense_input(self._upload(rgb))
            f = self._run_batched(x, self._dense_forward, bucketed=False)[0]
            return f.cpu().numpy(), dense_geometry(rgb.shape, (f.shape[0], f.shape[1]))

    # ---------------------------------------------------------------- batching / OOM
    def _plan(self, n: int, limit: int, bucketed: bool) -> list[tuple[int, int, int]]:
        """(start, end, padded_size) chunks covering n items, chunk <= limit."""
        fitting = [b for b in self.batch_buckets if b <= limit] if bucketed else []
        cap = fitting[-1] if fitting else max(1, limit)
        plan = []
        for s in range(0, n, cap):
            e = min(n, s + cap)
            plan.append((s, e, next((b for b in self.batch_buckets if b >= e - s), e - s) if bucketed else e - s))
        return plan

    def _run_batched(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                     bucketed: bool) -> torch.Tensor:
        """Apply ``fn`` over x in chunks; on CUDA OOM halve the chunk, then fall back to CPU."""
        n = int(x.shape[0])
        limit = self.max_batch
        while True:
            try:
                outs = []
                for s, e, pad in self._plan(n, limit, bucketed):
                    xb = x[s:e]
                    if pad > e - s:
                        xb = torch.cat([xb, xb.new_zeros((pad - (e - s),) + tuple(xb.shape[1:]))], 0)
                    outs.append(fn(xb)[: e - s])
                return outs[0] if len(outs) == 1 else torch.cat(outs, 0)
            except torch.OutOfMemoryError as err:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                cur = min(limit, n)
                if cur > 1:
                    limit = cur // 2
                    log.warning("out of memory encoding %d items (%s); retrying with batches of %d",
                                n, str(err).splitlines()[0][:120] if str(err) else "OOM", limit)
                    continue
                if not self.fell_back_to_cpu:
                    log.warning("out of memory even at batch size 1 on %s; falling back to CPU (fp32) "
                                "for the rest of this encoder's life", self.device)
                    self._fallback_to_cpu()
                    x = x.cpu().float() if x.is_floating_point() else x.cpu()
                    limit = self.max_batch
                    continue
                raise

    def _fallback_to_cpu(self) -> None:
        self.model.float().to("cpu")
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.dtype = torch.float32
        self._visual = self.model.visual
        self.compiled = False
        self._pos_cache.clear()
        self._uploader.clear()
        self.fell_back_to_cpu = True

    def inject_oom(self, times: int) -> None:
        """Testing hook: the next ``times`` model forwards raise ``torch.OutOfMemoryError``."""
        left = {"n": int(times)}

        def hook(_x: torch.Tensor) -> None:
            if left["n"] > 0:
                left["n"] -= 1
                raise torch.OutOfMemoryError("injected CUDA out of memory (test hook)")

        self.fault_hook = hook

    # ---------------------------------------------------------------- warm-up
    def warmup(self, max_batch: Optional[int] = None, dense: bool = False,
               crop_size: Optional[int] = None) -> None:
        """Run text and dummy image batches once (kernel selection, allocator, compile).

        Args:
            max_batch: largest bucket to run; None -> all buckets when
                bucketing is on (CUDA), else just the smallest (CPU).
            dense: also run one dense forward.
            crop_size: also run one crop batch at this side (the cascade's ``cascade_crop_size``);
                None or the model's side: nothing more.  ``torch.compile`` (``compile=True``)
                wraps the model-size forward only; other sides run eagerly.
        """
        with self._lock, torch.inference_mode():
            self._encode_phrases(["object"])
            if max_batch is None:
                max_batch = max(self.batch_buckets) if self.bucket_batches else min(self.batch_buckets)
            frame = np.full((64, 64, 3), 127, np.uint8)
            sizes = [b for b in self.batch_buckets if b <= max_batch] or [min(self.batch_buckets)]
            for b in sizes:
                boxes = np.tile(np.array([[8, 8, 40, 56]], np.float32), (b, 1))
                x = self.crops.boxes(self._upload(frame), boxes)
                self._run_batched(x, self._encode_image_batch, bucketed=self.bucket_batches)
            if dense:
                self._require_dense()
                self._run_batched(self._dense_input(self._upload(frame)), self._dense_forward, False)
            side = self.crop_side(crop_size)
            if side != tuple(self.input_size):
                x = self.crops.boxes(self._upload(frame), np.array([[8, 8, 40, 56]], np.float32), side)
                self._run_batched(x, self._encode_image_batch, bucketed=False)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
