"""Every compared method behind one interface (`Method`): prompts in, responses out."""

from __future__ import annotations

from importlib import import_module

from .base import Method, MethodContext, MethodOutput, PlainMethod, SystemPromptMethod

# name -> (module, class); imported on demand so that e.g. PEFT/TRL load only when DPO is asked for.
_REGISTRY: dict[str, tuple[str, str]] = {
    "none": (".base", "PlainMethod"),
    "system_prompt": (".base", "SystemPromptMethod"),
    "svgt": (".svgt_methods", "SVGTMethod"),
    "svgt_inject": (".svgt_methods", "SVGTInjectMethod"),
    "caa": (".caa", "CAAMethod"),
    "cast": (".cast", "CASTMethod"),
    "iti": (".iti", "ITIMethod"),
    "re_control": (".re_control", "REControlMethod"),
    "dpo_lora": (".dpo", "DPOLoRAMethod"),
}
METHOD_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def make_method(name: str, **kwargs: object) -> Method:
    """A fresh, unprepared method by name."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHOD_NAMES)}")
    module, cls = _REGISTRY[name]
    return getattr(import_module(module, __name__), cls)(**kwargs)


__all__ = ["METHOD_NAMES", "Method", "MethodContext", "MethodOutput", "PlainMethod", "SystemPromptMethod",
           "make_method"]
