"""Request validation and response shapes of the OpenAI-compatible API.

Validation is hand-written rather than left to pydantic so that every rejection is an OpenAI-style error body,
`{"error": {"message", "type", "param", "code"}}`, whose `param` names the offending field (`messages[1].content`,
`svgt.momentum`, `max_tokens`), and so that nothing a client sends can reach the decoder unchecked.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..config import GenerationConfig

ROLES = ("system", "developer", "user", "assistant")
MAX_STOP_SEQUENCES = 4
SVGT_OPTIONS = ("enabled", "refresh_every", "momentum", "gate_threshold", "refresh_mode")


class APIError(Exception):
    """An error answered to the client as an OpenAI-style body with this HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad(param: str | None, message: str, code: str = "invalid_value") -> APIError:
    return APIError(400, f"{param}: {message}" if param else message, param=param, code=code)


# -- typed field readers -----------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _int(body: dict, name: str, param: str | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise bad(param or name, f"expected an integer, got {type(value).__name__}", "invalid_type")
    return value


def _number(body: dict, name: str, param: str | None = None) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_number(value):
        raise bad(param or name, f"expected a number, got {type(value).__name__}", "invalid_type")
    return float(value)


def _bool(body: dict, name: str, param: str | None = None) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise bad(param or name, f"expected a boolean, got {type(value).__name__}", "invalid_type")
    return value


# -- the parsed request ------------------------------------------------------------------------------------------
@dataclass
class GuidanceOptions:
    enabled: bool = True
    refresh_every: int = 0
    momentum: float = 0.5
    gate_threshold: float | None = None
    refresh_mode: str = "fast"


@dataclass
class ParsedRequest:
    kind: str
    """`chat` (messages through the chat template) or `completion` (a raw prompt string)."""
    prompt: str | list[dict[str, str]]
    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    stream: bool
    include_usage: bool
    guidance: GuidanceOptions
    model: str
    max_tokens_param: str = "max_tokens"
    """The field the client used for the token limit (`max_tokens` or `max_completion_tokens`)."""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))

    def generation_config(self, max_new_tokens: int, guided: bool) -> GenerationConfig:
        g = self.guidance
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=self.temperature > 0,
            temperature=self.temperature if self.temperature > 0 else 1.0,
            top_p=self.top_p,
            seed=self.seed,
            guidance=guided and g.enabled,
            refresh_every=g.refresh_every,
            momentum=g.momentum,
            refresh_mode=g.refresh_mode,  # type: ignore[arg-type]
            gate_threshold=g.gate_threshold,
            telemetry=True,
            # Stop sequences (the request's, and for chat the backbone's prompt format's) are cut row by row by the
            # scheduler: one batch can mix chat and completion requests.
            stop_strings=[],
        )


def _parse_guidance(value: Any, defaults: GuidanceOptions) -> GuidanceOptions:
    opts = GuidanceOptions(**vars(defaults))
    if value is None:
        return opts
    if not isinstance(value, dict):
        raise bad("svgt", f"expected an object with fields {', '.join(SVGT_OPTIONS)}", "invalid_type")
    unknown = sorted(set(value) - set(SVGT_OPTIONS))
    if unknown:
        raise bad(f"svgt.{unknown[0]}", f"unknown option; known: {', '.join(SVGT_OPTIONS)}", "unknown_parameter")
    enabled = _bool(value, "enabled", "svgt.enabled")
    if enabled is not None:
        opts.enabled = enabled
    refresh_every = _int(value, "refresh_every", "svgt.refresh_every")
    if refresh_every is not None:
        if refresh_every < 0:
            raise bad("svgt.refresh_every", f"must be >= 0, got {refresh_every}")
        opts.refresh_every = refresh_every
    momentum = _number(value, "momentum", "svgt.momentum")
    if momentum is not None:
        if not 0.0 <= momentum <= 1.0:
            raise bad("svgt.momentum", f"must be in [0, 1], got {momentum}")
        opts.momentum = momentum
    if "gate_threshold" in value:
        opts.gate_threshold = _number(value, "gate_threshold", "svgt.gate_threshold")
    mode = value.get("refresh_mode")
    if mode is not None:
        if mode not in ("fast", "exact"):
            raise bad("svgt.refresh_mode", f"'fast' or 'exact', got {mode!r}")
        opts.refresh_mode = mode
    return opts


def _content(value: Any, param: str) -> str:
    """A message's text: a string, or a list of `{"type": "text", "text": ...}` parts joined."""
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"{param}[{i}]", "only text content parts ({'type': 'text', 'text': ...}) are supported",
                          "invalid_type")
            parts.append(part["text"])
        value = "".join(parts)
    if not isinstance(value, str):
        raise bad(param, f"expected a string, got {type(value).__name__}", "invalid_type")
    if not value.strip():
        raise bad(param, "must not be empty", "empty_content")
    return value


def _parse_messages(value: Any) -> list[dict[str, str]]:
    if value is None:
        raise bad("messages", "is required", "missing_required_parameter")
    if not isinstance(value, list):
        raise bad("messages", f"expected a list of messages, got {type(value).__name__}", "invalid_type")
    if not value:
        raise bad("messages", "must contain at least one message", "empty_array")
    messages = []
    for i, msg in enumerate(value):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad(param, f"expected an object, got {type(msg).__name__}", "invalid_type")
        role = msg.get("role")
        if role not in ROLES:
            raise bad(f"{param}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        if "content" not in msg or msg["content"] is None:
            raise bad(f"{param}.content", "is required", "missing_required_parameter")
        # `developer` is OpenAI's newer name for `system`; chat templates know `system`.
        messages.append({"role": "system" if role == "developer" else role,
                         "content": _content(msg["content"], f"{param}.content")})
    return messages


def _parse_prompt(value: Any) -> str:
    if value is None:
        raise bad("prompt", "is required", "missing_required_parameter")
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], str):
            raise bad("prompt", "only a single prompt string is supported (no batches, no token arrays)",
                      "invalid_type")
        value = value[0]
    return _content(value, "prompt")


def _parse_stop(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad("stop", "expected a string or a list of strings", "invalid_type")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise bad("stop", f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}")
    if any(not s for s in stops):
        raise bad("stop", "stop sequences must not be empty strings")
    return list(dict.fromkeys(stops))


def parse_request(body: Any, kind: str, *, model_name: str, guidance_defaults: GuidanceOptions) -> ParsedRequest:
    """Validate a decoded JSON body of `/v1/chat/completions` (`kind="chat"`) or `/v1/completions`."""
    if not isinstance(body, dict):
        raise bad(None, f"the request body must be a JSON object, got {type(body).__name__}", "invalid_type")
    model = body.get("model", model_name)
    if not isinstance(model, str):
        raise bad("model", f"expected a string, got {type(model).__name__}", "invalid_type")
    if model != model_name:
        raise APIError(404, f"The model '{model}' does not exist; this server serves '{model_name}'",
                       param="model", code="model_not_found")
    prompt: str | list[dict[str, str]]
    prompt = _parse_messages(body.get("messages")) if kind == "chat" else _parse_prompt(body.get("prompt"))

    max_tokens = _int(body, "max_tokens")
    if max_tokens is None and kind == "chat":
        max_tokens = _int(body, "max_completion_tokens")
        limit_param = "max_completion_tokens"
    else:
        limit_param = "max_tokens"
    if max_tokens is not None and max_tokens < 1:
        raise bad(limit_param, f"must be >= 1, got {max_tokens}")

    temperature = _number(body, "temperature")
    temperature = 1.0 if temperature is None else temperature
    if not 0.0 <= temperature <= 2.0:
        raise bad("temperature", f"must be in [0, 2], got {temperature}")
    top_p = _number(body, "top_p")
    top_p = 1.0 if top_p is None else top_p
    if not 0.0 < top_p <= 1.0:
        raise bad("top_p", f"must be in (0, 1], got {top_p}")
    seed = _int(body, "seed")

    n = _int(body, "n")
    if n is not None and n != 1:
        raise bad("n", f"only n=1 is supported, got {n}", "unsupported_value")
    if body.get("logprobs") not in (None, False, 0):
        raise bad("logprobs", "log probabilities are not supported", "unsupported_value")
    if body.get("tools") or body.get("functions"):
        raise bad("tools" if body.get("tools") else "functions", "tool calling is not supported",
                  "unsupported_value")
    if kind == "completion" and body.get("echo"):
        raise bad("echo", "echo is not supported", "unsupported_value")

    stream = _bool(body, "stream") or False
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad("stream_options", "expected an object", "invalid_type")
        include_usage = _bool(options, "include_usage", "stream_options.include_usage") or False

    return ParsedRequest(
        kind=kind,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop=_parse_stop(body.get("stop")),
        stream=stream,
        include_usage=include_usage,
        guidance=_parse_guidance(body.get("svgt"), guidance_defaults),
        model=model,
        max_tokens_param=limit_param,
    )


# -- response bodies ---------------------------------------------------------------------------------------------
@dataclass
class Completion:
    """What the scheduler hands back for one request."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    svgt: dict[str, Any]

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def response_id(req: ParsedRequest) -> str:
    return ("chatcmpl-" if req.kind == "chat" else "cmpl-") + req.request_id


def full_response(req: ParsedRequest, done: Completion) -> dict[str, Any]:
    if req.kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": done.text},
                  "finish_reason": done.finish_reason, "logprobs": None}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": done.text, "finish_reason": done.finish_reason, "logprobs": None}
        obj = "text_completion"
    return {"id": response_id(req), "object": obj, "created": req.created, "model": req.model,
            "choices": [choice], "usage": done.usage, "svgt": done.svgt}


def chunk(req: ParsedRequest, text: str | None, finish_reason: str | None = None, *, first: bool = False,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One streamed chunk. Chat chunks carry a `delta` (the first one the role); completion chunks `text`."""
    if req.kind == "chat":
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
        obj = "text_completion"
    out = {"id": response_id(req), "object": obj, "created": req.created, "model": req.model, "choices": [choice]}
    if extra:
        out.update(extra)
    return out


def usage_chunk(req: ParsedRequest, done: Completion) -> dict[str, Any]:
    obj = "chat.completion.chunk" if req.kind == "chat" else "text_completion"
    return {"id": response_id(req), "object": obj, "created": req.created, "model": req.model, "choices": [],
            "usage": done.usage, "svgt": done.svgt}
