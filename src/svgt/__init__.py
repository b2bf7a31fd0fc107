"""svgt: inference-time value alignment with an independent value module and Bridge Tokens (SVGT, ICML 2026)."""

__version__ = "0.1.0"

from .artifact import load_pretrained, save_pretrained  # noqa: E402
from .backbone import DEFAULT_BACKBONE, Backbone, load_backbone, wrap_backbone  # noqa: E402
from .config import GenerationConfig, ValueModuleConfig  # noqa: E402
from .generation import GenerationResult, generate  # noqa: E402
from .model import SVGTModel  # noqa: E402
from .module import ValueModule  # noqa: E402
from .streaming import StreamChunk, TextStream  # noqa: E402

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "GenerationConfig",
    "GenerationResult",
    "SVGTModel",
    "StreamChunk",
    "TextStream",
    "ValueModule",
    "ValueModuleConfig",
    "generate",
    "load_backbone",
    "load_pretrained",
    "save_pretrained",
    "wrap_backbone",
]
