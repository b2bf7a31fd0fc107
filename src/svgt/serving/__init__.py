"""An OpenAI-compatible HTTP server for guided generation: `create_app(guided, ...)` and `serve(backbone, ...)`.

Needs FastAPI and uvicorn (`pip install fastapi uvicorn`). See `svgt.serving.app` for the API and
`svgt.serving.scheduler` for how concurrent requests are batched.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("svgt.serving needs FastAPI and uvicorn: pip install fastapi uvicorn") from exc

from .app import create_app, serve  # noqa: E402
from .background import BackgroundServer  # noqa: E402
from .protocol import APIError, GuidanceOptions  # noqa: E402
from .scheduler import Scheduler  # noqa: E402

__all__ = ["APIError", "BackgroundServer", "GuidanceOptions", "Scheduler", "create_app", "serve"]
