"""Dense CLIP patch features, MaskCLIP-style, their pooling inside boxes, and the ViT at any input size (ROS-free).

MaskCLIP (Zhou, Loy, Dai, "Extract Free Dense Labels from CLIP", ECCV 2022, section 3.2):
for open_clip's ``VisionTransformer`` the last transformer block's query-key attention is
skipped: each patch token ``x`` gives ``out_proj(W_v ln_1(x) + b_v)`` (the attention
output if every token attended only to itself), followed by ``ln_post`` and ``proj``; no
residual, no MLP.  The input is the frame letterboxed to a square
(:func:`clip_perception.crops.letterbox_region`) and resized to ``S x S``; an ``S`` other
than the model's input size interpolates the positional embeddings bicubically, as
open_clip's ``resize_pos_embed`` does (antialiased).

:func:`pooled_embedding` is open_clip's ``VisionTransformer.forward`` with the positional
embedding resized the same way, so that crops can be encoded at a smaller side than the
model's (the cascade's re-rank, ``cascade_crop_size``); at the model's own side it is the
model's forward.

Per box, the L2-normalised patch features are averaged with weights equal to the
box/patch overlap area, then re-normalised (:func:`pool_boxes`).  Other vision towers
(and ViTs with attentional pooling) raise :class:`NotImplementedError`
(:func:`require_vit`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def require_vit(visual: torch.nn.Module, model_name: str) -> None:
    """Raise ``NotImplementedError`` (naming crop mode) unless ``visual`` is an open_clip
    ``VisionTransformer`` without attentional pooling."""
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer) or getattr(visual, "attn_pool", None) is not None:
        raise NotImplementedError(
            f"dense mode needs an open_clip VisionTransformer without attentional pooling; "
            f"{model_name!r} has {type(visual).__name__}. Use mode='crop'.")


def dense_geometry(shape: tuple, grid: tuple[int, int]) -> dict:
    """Where the patches of a letterboxed frame lie in the frame.

    Args:
        shape: frame shape ``(H, W, ...)``.
        grid: patch grid ``(gh, gw)``.

    Returns:
        ``x0``, ``y0`` (letterbox square origin, frame pixels, <= 0), ``side`` (square
        side, pixels), ``cell`` (frame pixels per patch, float) and ``grid``: patch (i, j)
        covers frame pixels ``x0 + j*cell .. x0 + (j+1)*cell`` horizontally, rows likewise.
    """
    H, W = int(shape[0]), int(shape[1])
    L = max(H, W)
    gh, gw = int(grid[0]), int(grid[1])
    return {"x0": math.floor((W - L) / 2.0 + 0.5), "y0": math.floor((H - L) / 2.0 + 0.5),
            "side": L, "cell": L / float(gw), "grid": (gh, gw)}


def positional_embedding(visual: torch.nn.Module, gh: int, gw: int, cache: dict) -> torch.Tensor:
    """(1 + gh*gw, width) positional embedding of a ``gh x gw`` patch grid.

    The model's own for its grid; else its patch part resized bicubically
    (``align_corners=False, antialias=True``: exactly ``open_clip.model.resize_pos_embed`` of
    open_clip 3.3, what open_clip does to load a checkpoint at another image size).  Cached in
    ``cache`` per (gh, gw, device); clear the cache when the model moves.
    """
    pos = visual.positional_embedding
    key = (gh, gw, str(pos.device))
    pe = cache.get(key)
    if pe is None:
        g0h, g0w = visual.grid_size
        if (gh, gw) == (g0h, g0w):
            pe = pos
        else:
            grid = pos[1:].float().reshape(1, g0h, g0w, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False, antialias=True)
            grid = grid.permute(0, 2, 3, 1).reshape(gh * gw, -1).to(pos.dtype)
            pe = torch.cat([pos[:1], grid], 0)
        cache[key] = pe
    return pe


def value_path(block: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    """MaskCLIP value path of an open_clip residual block: ``ls_1(out_proj(v(y)))`` per token.

    Equals the block's attention branch when each token attends only to itself.

    Args:
        block: ``ResidualAttentionBlock`` (``nn.MultiheadAttention``) or
            ``CustomResidualAttentionBlock`` (``open_clip.transformer.Attention``).
        y: (B, L, width) tokens after the block's ``ln_1``.

    Returns:
        (B, L, width) tensor.
    """
    attn = block.attn
    if isinstance(attn, torch.nn.MultiheadAttention):
        D = attn.embed_dim
        wv = attn.in_proj_weight[2 * D:] if attn._qkv_same_embed_dim else attn.v_proj_weight
        bv = attn.in_proj_bias[2 * D:] if attn.in_proj_bias is not None else None
        out = attn.out_proj(F.linear(y, wv, bv))
    else:  # open_clip.transformer.Attention (CustomResidualAttentionBlock)
        D = attn.in_proj_weight.shape[1]
        bias = attn.in_proj_bias[2 * D:] if attn.in_proj_bias is not None else None
        v = F.linear(y, attn.in_proj_weight[2 * D:], bias)
        if getattr(attn, "head_scale", None) is not None:
            B, L, _ = v.shape
            v = (v.view(B, L, attn.num_heads, -1).transpose(1, 2) * attn.head_scale).transpose(1, 2).reshape(B, L, D)
        v = attn.ln_inner(v)
        out = attn.out_proj(v)
        if hasattr(block, "ln_attn"):
            out = block.ln_attn(out)
    return block.ls_1(out)


def embed_tokens(visual: torch.nn.Module, x: torch.Tensor, pos_cache: dict) -> torch.Tensor:
    """Tokens entering the transformer: open_clip ``VisionTransformer._embeds`` at ``x``'s grid.

    Patch embedding (``conv1``), class token, the positional embedding of the grid
    (:func:`positional_embedding`), patch dropout (identity in eval), ``ln_pre``.

    Args:
        visual: open_clip ``VisionTransformer``.
        x: (B, 3, S, S) normalised input on the model's device and dtype.
        pos_cache: cache for :func:`positional_embedding`.

    Returns:
        ``(tokens (B, 1 + gh*gw, width), (gh, gw))``.
    """
    x = visual.conv1(x)
    B, C, gh, gw = x.shape
    x = x.reshape(B, C, gh * gw).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(B, -1, -1)
    x = torch.cat([cls, x], 1) + positional_embedding(visual, gh, gw, pos_cache).to(x.dtype)
    return visual.ln_pre(visual.patch_dropout(x)), (gh, gw)


def pooled_embedding(visual: torch.nn.Module, x: torch.Tensor, pos_cache: dict) -> torch.Tensor:
    """Image embeddings of inputs of any side: ``visual(x)`` with the positional embedding resized.

    open_clip 3.3's ``VisionTransformer.forward`` (``_embeds``, ``transformer``, ``_pool``,
    ``proj``) with :func:`embed_tokens` in place of ``_embeds``; equal to ``visual(x)`` at the
    model's input side (``test/test_dense.py``).

    Args:
        visual: open_clip ``VisionTransformer`` (checked by :func:`require_vit`).
        x: (B, 3, S, S) normalised input, ``S`` a multiple of the patch size, on the model's
            device and dtype.
        pos_cache: cache for :func:`positional_embedding`.

    Returns:
        (B, D) embeddings in the model's dtype (not normalised).
    """
    tokens, _ = embed_tokens(visual, x, pos_cache)
    pooled, _ = visual._pool(visual.transformer(tokens))
    return pooled @ visual.proj if visual.proj is not None else pooled


def patch_features(visual: torch.nn.Module, x: torch.Tensor, pos_cache: dict) -> torch.Tensor:
    """MaskCLIP patch features of normalised letterboxed frames.

    Args:
        visual: open_clip ``VisionTransformer`` (checked by :func:`require_vit`).
        x: (B, 3, S, S) normalised input, on the model's device and dtype.
        pos_cache: cache for :func:`positional_embedding`.

    Returns:
        (B, gh, gw, D) float32 features (not normalised), ``gh = gw = S // patch``.
    """
    x, (gh, gw) = embed_tokens(visual, x, pos_cache)
    B = x.shape[0]
    tr = visual.transformer
    batch_first = getattr(tr, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for blk in tr.resblocks[:-1]:
        x = blk(x)
    if not batch_first:
        x = x.transpose(0, 1)
    last = tr.resblocks[-1]
    y = visual.ln_post(value_path(last, last.ln_1(x))[:, 1:])
    if visual.proj is not None:
        y = y @ visual.proj
    return y.float().reshape(B, gh, gw, -1)


def pool_boxes(patches: torch.Tensor, boxes: np.ndarray, shape: tuple) -> torch.Tensor:
    """Overlap-area-weighted mean of unit patch features inside each box.

    Args:
        patches: (gh, gw, D) patch features of one frame (:func:`patch_features`).
        boxes: (N, 4) float ``[x1, y1, x2, y2]`` frame pixels; boxes thinner than one
            pixel are widened to one; a box outside the letterbox square uses the patch
            nearest its centre.
        shape: frame shape ``(H, W, ...)``.

    Returns:
        (N, D) float32 unit rows on ``patches.device``.
    """
    gh, gw, D = patches.shape
    geo = dense_geometry(shape, (gh, gw))
    b = torch.as_tensor(boxes, dtype=torch.float64, device=patches.device)
    x1, x2 = torch.minimum(b[:, 0], b[:, 2]), torch.maximum(b[:, 0], b[:, 2])
    y1, y2 = torch.minimum(b[:, 1], b[:, 3]), torch.maximum(b[:, 1], b[:, 3])
    x2, y2 = torch.maximum(x2, x1 + 1.0), torch.maximum(y2, y1 + 1.0)  # at least one pixel
    cell = geo["cell"]
    gx1, gx2 = (x1 - geo["x0"]) / cell, (x2 - geo["x0"]) / cell
    gy1, gy2 = (y1 - geo["y0"]) / cell, (y2 - geo["y0"]) / cell
    jx = torch.arange(gw, device=patches.device, dtype=torch.float64)
    jy = torch.arange(gh, device=patches.device, dtype=torch.float64)
    ox = (torch.minimum(gx2[:, None], jx + 1) - torch.maximum(gx1[:, None], jx)).clamp(min=0)
    oy = (torch.minimum(gy2[:, None], jy + 1) - torch.maximum(gy1[:, None], jy)).clamp(min=0)
    w = (oy[:, :, None] * ox[:, None, :]).reshape(len(b), -1)
    empty = w.sum(1) <= 0
    if bool(empty.any()):  # box outside the letterbox square: use the nearest patch
        cx = ((gx1 + gx2) / 2).floor().clamp(0, gw - 1).long()
        cy = ((gy1 + gy2) / 2).floor().clamp(0, gh - 1).long()
        onehot = torch.zeros_like(w)
        onehot[torch.arange(len(b), device=w.device), cy * gw + cx] = 1.0
        w = torch.where(empty[:, None], onehot, w)
    w = w / w.sum(1, keepdim=True)
    pf = F.normalize(patches.reshape(-1, D).double(), dim=-1)
    return F.normalize((w @ pf).float(), dim=-1)
