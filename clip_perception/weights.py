"""CLIP weights: where they come from, resolved offline first, and loaded (ROS-free).

The ``pretrained`` parameter names an open_clip tag ("openai", "laion2b_s34b_b79k", ...),
a Hugging Face Hub repository ("hf-hub:org/name"), a local checkpoint file, or "none"
(random weights).  :func:`resolve_weights` decides, without network access, how the
weights will be loaded (a :class:`WeightsPlan`): tags are looked up in the local Hugging
Face cache (``huggingface_hub.try_to_load_from_cache``) and open_clip's URL cache first;
a download is planned only when it is allowed, no offline variable
(:data:`OFFLINE_ENV_VARS`) is set and the host answers a TCP connection within
:data:`NETWORK_PROBE_TIMEOUT_S` seconds.  Otherwise :class:`WeightsUnavailableError` is
raised within seconds, naming the model, the tag, the caches checked and how to fix it.

* :func:`weights_problem` -- what is missing and how to fix it (or ``None``), without
  building the model; :func:`weights_caches` -- the caches looked in (for messages).
* :func:`load_model` -- the open_clip model and tokenizer of a plan (network off when the
  plan says the files are local; checkpoints read with ``torch.load(weights_only=True)``).

This module imports neither torch nor open_clip until a function needs them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import os
import socket
import threading
import time
from typing import Any, Optional, Sequence
from urllib.parse import urlparse

log = logging.getLogger(__name__)

#: Suffixes that make a ``pretrained`` string a checkpoint path.
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

#: Environment variables that forbid downloads (any of them set to 1/true/yes/on).
OFFLINE_ENV_VARS: tuple[str, ...] = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CLIP_PERCEPTION_OFFLINE")

#: Seconds the network probe waits for a TCP connection before a download is ruled out.
NETWORK_PROBE_TIMEOUT_S = 3.0

#: open_clip's cache for weights given by URL (``open_clip.pretrained.download_pretrained_from_url``).
URL_CACHE_DIR = "~/.cache/clip"


class WeightsUnavailableError(RuntimeError):
    """The requested CLIP weights cannot be loaded (not cached, offline, bad file)."""


class CheckpointError(WeightsUnavailableError):
    """A checkpoint file exists but is malformed, truncated or of another architecture."""


@dataclasses.dataclass(frozen=True)
class WeightsPlan:
    """Where the weights come from, resolved without network access.

    Attributes:
        kind: "none" (random weights), "file" (a local file: checkpoint or cached tag
            weights), "tag_download" (open_clip downloads the tag), "hub" (cached Hub
            repository), "hub_download" (Hub repository to download) or "local_dir"
            (an open_clip ``local-dir:`` model).
        path: local weights file ("file", "hub").
        tag: open_clip pretrained tag, when the weights are a tag's.
        tag_cfg: the tag's open_clip pretrained config (``quick_gelu``, mean/std, ...).
        hub_id: Hugging Face Hub repository id ("hub", "hub_download").
        local_dir: directory of a "local_dir" model.
    """

    kind: str
    path: Optional[str] = None
    tag: Optional[str] = None
    tag_cfg: dict = dataclasses.field(default_factory=dict)
    hub_id: Optional[str] = None
    local_dir: Optional[str] = None

    @property
    def source(self) -> str:
        """What the weights are, for logs: the file, Hub id, tag, directory or "none"."""
        return self.path or self.hub_id or self.tag or self.local_dir or "none"


@dataclasses.dataclass
class LoadedModel:
    """Result of :func:`load_model`: the open_clip model (eval mode, no gradients), its
    tokenizer and the plan it was loaded from."""

    model: Any
    tokenizer: Any
    plan: WeightsPlan


# ----------------------------------------------------------------------------- environment

def env_offline() -> bool:
    """True when one of :data:`OFFLINE_ENV_VARS` is set to 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_ENV_VARS)


def _host_reachable(host: str, port: int = 443, timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    Runs in a daemon thread so a hanging DNS lookup cannot block longer than ``timeout``.
    """
    result = {"ok": False}

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result["ok"] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result["ok"]


def _hf_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def _why_no_download(allow_download: bool) -> str:
    if not allow_download:
        return "allow_download=False"
    if env_offline():
        return "offline mode set by " + "/".join(OFFLINE_ENV_VARS)
    return f"network unreachable within {NETWORK_PROBE_TIMEOUT_S:.0f} s"


@contextlib.contextmanager
def _hf_offline():
    """Temporarily force huggingface_hub offline (cache only, no HTTP)."""
    try:
        import huggingface_hub.constants as hfc
    except ImportError:  # pragma: no cover - huggingface_hub is an open_clip dependency
        yield
        return
    old_const, old_env = hfc.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    hfc.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        hfc.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


# ----------------------------------------------------------------------------- caches

def hf_cache_dir(cache_dir: Optional[str] = None) -> str:
    """The Hugging Face Hub cache looked in: ``cache_dir``, else huggingface_hub's ``HF_HUB_CACHE``."""
    if cache_dir:
        return str(cache_dir)
    try:
        import huggingface_hub.constants as hfc
        return str(hfc.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return os.path.expanduser("~/.cache/huggingface/hub")


def url_cache_dir(cache_dir: Optional[str] = None) -> str:
    """open_clip's cache for URL weights: ``cache_dir``, else :data:`URL_CACHE_DIR` (expanded)."""
    return str(cache_dir) if cache_dir else os.path.expanduser(URL_CACHE_DIR)


def weights_caches(cache_dir: Optional[str] = None) -> str:
    """The local caches CLIP weights are looked up in, as "HF cache, URL cache" (for messages)."""
    return f"{hf_cache_dir(cache_dir)}, {url_cache_dir(cache_dir)}"


def _hf_cached_file(repo_id: str, filenames: Sequence[str], cache_dir: Optional[str]) -> Optional[str]:
    """First of ``filenames`` present in the local HF cache of ``repo_id`` (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    for fn in filenames:
        try:
            p = try_to_load_from_cache(repo_id, fn, cache_dir=cache_dir)
        except Exception:  # malformed repo id etc.
            p = None
        if isinstance(p, str) and os.path.isfile(p):
            return p
    return None


# ----------------------------------------------------------------------------- resolution

def _looks_like_path(s: str) -> bool:
    return (
        os.sep in s
        or (os.altsep is not None and os.altsep in s)
        or s.startswith((".", "~"))
        or s.lower().endswith(CHECKPOINT_SUFFIXES)
        or os.path.exists(s)
    )


def weights_help(model_name: str, tag: Optional[str] = None) -> str:
    """How to make weights for ``model_name`` (and ``tag``) available offline (one sentence)."""
    pre = f", pretrained='{tag}'" if tag else ""
    return (
        "Provide a local checkpoint for this architecture (a .pt/.pth/.bin state_dict or a .safetensors "
        "file) as the pretrained value (node: -p pretrained:=/path/to/file; CLI: --checkpoint PATH), "
        "or pre-download them into the cache on a connected machine, e.g. "
        f"python -c \"import open_clip; open_clip.create_model('{model_name}'{pre})\" "
        "and copy the cache directory to this machine (or pass cache_dir=...)."
    )


def check_model_name(model_name: str) -> None:
    """Raise ``ValueError`` (listing close valid names) unless open_clip knows ``model_name``.

    "hf-hub:..." and "local-dir:..." names are accepted as they are.
    """
    import open_clip

    if model_name.startswith(("hf-hub:", "local-dir:")):
        return
    names = open_clip.list_models()
    if model_name.replace("/", "-") in names:
        return
    close = difflib.get_close_matches(model_name, names, n=5, cutoff=0.5)
    examples = close or [n for n in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-B-16-SigLIP", "RN50") if n in names]
    raise ValueError(
        f"unknown open_clip model {model_name!r}; valid names include {examples} "
        f"({len(names)} in total, see open_clip.list_models())"
    )


def _resolve_hub(hub_id: str, cache_dir: Optional[str], allow_download: bool) -> WeightsPlan:
    if not hub_id:
        raise ValueError("empty Hugging Face Hub id after 'hf-hub:'")
    cfg = _hf_cached_file(hub_id, ["open_clip_config.json"], cache_dir)
    wts = _hf_cached_file(hub_id, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"], cache_dir)
    if cfg and wts:
        return WeightsPlan("hub", hub_id=hub_id, path=wts)
    if allow_download and not env_offline() and _host_reachable(_hf_host()):
        return WeightsPlan("hub_download", hub_id=hub_id)
    raise WeightsUnavailableError(
        f"weights for model 'hf-hub:{hub_id}' are not in the Hugging Face cache "
        f"{hf_cache_dir(cache_dir)!r} (need open_clip_config.json and open_clip_model.safetensors or "
        f"open_clip_pytorch_model.bin) and cannot be downloaded now ({_why_no_download(allow_download)}). "
        + weights_help(f"hf-hub:{hub_id}"))


def _resolve_tag(model_name: str, tag: str, cache_dir: Optional[str], allow_download: bool) -> WeightsPlan:
    import open_clip

    name = model_name.replace("/", "-")
    tag_cfg = open_clip.get_pretrained_cfg(name, tag)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ValueError(
            f"pretrained={tag!r} is neither a known open_clip tag for {model_name!r} nor an existing "
            f"checkpoint path; known tags: {tags or 'none'} (or use 'none' for random weights)")
    checked = []
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        repo_id, fn = os.path.split(hub)
        fn = fn or "open_clip_pytorch_model.bin"
        names = []
        if fn.endswith((".bin", ".pth")):
            names.append("open_clip_model.safetensors" if fn == "open_clip_pytorch_model.bin" else fn[:-4] + ".safetensors")
        names.append(fn)
        found = _hf_cached_file(repo_id, names, cache_dir)
        checked.append(f"Hugging Face cache {hf_cache_dir(cache_dir)!r} (repo {repo_id}, files {names})")
        if found:
            return WeightsPlan("file", path=found, tag=tag, tag_cfg=tag_cfg)
    url = tag_cfg.get("url", "")
    if url:
        target = os.path.join(url_cache_dir(cache_dir), os.path.basename(url))
        checked.append(f"URL cache {target!r}")
        if os.path.isfile(target):
            return WeightsPlan("file", path=target, tag=tag, tag_cfg=tag_cfg)
    if allow_download and not env_offline():
        host = _hf_host() if hub else (urlparse(url).hostname or "")
        if host and _host_reachable(host):
            return WeightsPlan("tag_download", tag=tag, tag_cfg=tag_cfg)
    raise WeightsUnavailableError(
        f"weights for model {model_name!r} pretrained={tag!r} are not cached (checked: {'; '.join(checked)}) "
        f"and cannot be downloaded now ({_why_no_download(allow_download)}). " + weights_help(model_name, tag))


def resolve_weights(model_name: str, pretrained: Optional[str], cache_dir: Optional[str] = None,
                    allow_download: bool = True) -> WeightsPlan:
    """Decide how to load the weights of ``model_name`` / ``pretrained``; fail fast when offline.

    Args:
        model_name: open_clip architecture, "hf-hub:org/name" or "local-dir:/path".
        pretrained: open_clip tag, "hf-hub:org/name", checkpoint path, or None/""/"none".
        cache_dir: cache to look in (None: huggingface_hub's and open_clip's defaults).
        allow_download: plan a download when the weights are not cached (only if no
            offline variable is set and the host answers within
            :data:`NETWORK_PROBE_TIMEOUT_S` s).

    Returns:
        The :class:`WeightsPlan`.  No file is read and no model is built.

    Raises:
        ValueError: unknown tag for the model, empty "hf-hub:" id.
        WeightsUnavailableError: not cached and not downloadable now (message: what was
            checked and how to fix it), missing checkpoint file or ``local-dir``.
    """
    pre = "" if pretrained is None else str(pretrained).strip()
    if model_name.startswith("local-dir:"):
        d = model_name[len("local-dir:"):]
        if not os.path.isdir(d):
            raise WeightsUnavailableError(f"model {model_name!r}: directory {d!r} not found. " + weights_help(model_name))
        return WeightsPlan("local_dir", local_dir=d)
    if model_name.startswith("hf-hub:"):
        return _resolve_hub(model_name[len("hf-hub:"):], cache_dir, allow_download)
    if pre.startswith("hf-hub:"):
        return _resolve_hub(pre[len("hf-hub:"):], cache_dir, allow_download)
    if pre == "" or pre.lower() == "none":
        return WeightsPlan("none")
    if _looks_like_path(pre):
        p = os.path.expanduser(pre)
        if not os.path.isfile(p):
            raise WeightsUnavailableError(
                f"checkpoint file {p!r} for model {model_name!r} not found (or not a regular file). "
                + weights_help(model_name))
        return WeightsPlan("file", path=p)
    return _resolve_tag(model_name, pre, cache_dir, allow_download)


def weights_problem(model_name: str, pretrained: Optional[str], cache_dir: Optional[str] = None,
                    allow_download: bool = True) -> Optional[str]:
    """What is missing for the weights ``model_name`` / ``pretrained`` and how to fix it, or ``None``.

    The same offline-first resolution as the encoder (:func:`resolve_weights`: local
    caches, then a network probe of at most :data:`NETWORK_PROBE_TIMEOUT_S` s), without
    building the model.  ``pretrained`` None/""/"none" (random weights) is always loadable.

    Returns:
        ``None`` when the weights can be loaded now, else the
        :class:`WeightsUnavailableError` message (model, tag, caches checked, remedy).

    Raises:
        ValueError: unknown model name or tag.
    """
    if str(pretrained).strip().lower() in ("", "none"):
        return None
    check_model_name(model_name)
    try:
        resolve_weights(model_name, pretrained, cache_dir, allow_download)
    except WeightsUnavailableError as exc:
        return str(exc)
    return None


# ----------------------------------------------------------------------------- loading

@contextlib.contextmanager
def _quiet_root_logger():
    """open_clip logs 'initialized randomly' through the root logger; we log our own warning."""
    class _F(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "initialized randomly" not in record.getMessage()

    root, f = logging.getLogger(), _F()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def _create_args(plan: WeightsPlan, model_name: str, pretrained: Optional[str]):
    """(open_clip model name, its ``pretrained`` argument, network context) for a plan."""
    if plan.kind == "none":
        log.warning("=" * 72)
        log.warning("CLIP model %s created with RANDOM weights (pretrained=%r): random weights — "
                    "rankings are meaningless. Use for tests only.", model_name, pretrained)
        log.warning("=" * 72)
        return model_name, None, contextlib.nullcontext()
    if plan.kind == "file":
        return model_name, plan.path, contextlib.nullcontext()
    if plan.kind == "tag_download":
        return model_name, plan.tag, contextlib.nullcontext()
    if plan.kind in ("hub", "hub_download"):
        return "hf-hub:" + str(plan.hub_id), None, (_hf_offline() if plan.kind == "hub" else contextlib.nullcontext())
    return model_name, None, _hf_offline()  # local_dir


def _create_model(plan: WeightsPlan, model_name: str, pretrained: Optional[str], kw: dict):
    import open_clip

    name, pre, offline = _create_args(plan, model_name, pretrained)
    if plan.tag_cfg:
        kw = dict(kw, force_quick_gelu=bool(plan.tag_cfg.get("quick_gelu", False)),
                  force_preprocess_cfg={k: plan.tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode")
                                        if k in plan.tag_cfg})
    try:
        with offline, _quiet_root_logger():
            return name, open_clip.create_model(name, pretrained=pre, weights_only=True, **kw)
    except WeightsUnavailableError:
        raise
    except Exception as e:
        if plan.kind == "file":
            raise CheckpointError(
                f"cannot load checkpoint {plan.path!r} for model {model_name!r}: the file is malformed, "
                f"truncated or for another architecture ({type(e).__name__}: {e}). "
                + weights_help(model_name)) from e
        raise WeightsUnavailableError(
            f"loading model {name!r} pretrained={pretrained!r} failed "
            f"({type(e).__name__}: {e}). " + weights_help(model_name)) from e


def load_model(model_name: str, pretrained: Optional[str], *, device: Any, precision: str,
               cache_dir: Optional[str] = None, allow_download: bool = True) -> LoadedModel:
    """Build the open_clip model and tokenizer, offline first (see :func:`resolve_weights`).

    Args:
        model_name, pretrained, cache_dir, allow_download: as :func:`resolve_weights`.
        device: ``torch.device`` the model is moved to.
        precision: "fp32" | "fp16" | "bf16" (open_clip mixed precision: half weights,
            fp32 LayerNorm).

    Returns:
        :class:`LoadedModel` (model in eval mode, gradients off).  Random weights
        (``pretrained`` "none") log a loud WARNING.  With tag weights, ``quick_gelu`` and
        the preprocessing config (mean, std, interpolation, resize_mode) come from the tag.

    Raises:
        ValueError: unknown model name or tag.
        WeightsUnavailableError: weights not cached and not downloadable now (within
            seconds), a tokenizer that cannot be had offline; :class:`CheckpointError` for
            a malformed, truncated or foreign checkpoint file.
    """
    import open_clip

    t0 = time.monotonic()
    check_model_name(model_name)
    plan = resolve_weights(model_name, pretrained, cache_dir, allow_download)
    kw = dict(precision=precision, device=device, cache_dir=cache_dir)
    name, model = _create_model(plan, model_name, pretrained, kw)
    try:
        with (_hf_offline() if plan.kind in ("hub", "local_dir") or env_offline() else contextlib.nullcontext()):
            tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    except Exception as e:
        raise WeightsUnavailableError(
            f"tokenizer for model {name!r} is unavailable ({type(e).__name__}: {e}); models with Hugging Face "
            f"tokenizers need the 'transformers' package and the tokenizer files in the cache "
            f"{hf_cache_dir(cache_dir)!r}.") from e
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    log.info("loaded %s (%s) on %s/%s in %.1f s", model_name, plan.source, device, precision, time.monotonic() - t0)
    return LoadedModel(model, tokenizer, plan)
