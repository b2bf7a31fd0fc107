"""The OpenAI-compatible HTTP API over a guided model (FastAPI + uvicorn).

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, `GET /v1/models/{id}`,
`GET /health`. Requests follow OpenAI's shapes; what differs:

- Guidance options per request in an extra body field `svgt`: `{"enabled": bool, "refresh_every": int,
  "momentum": float, "gate_threshold": float | null, "refresh_mode": "fast" | "exact"}` (with the OpenAI client:
  `extra_body={"svgt": {...}}`; `gate_threshold` null uses the module's own gate). Every response (and the final
  chunk of a stream) carries `svgt`: `guided`,
  `trained` (False for an untrained value module), `max_score` / `mean_score` (the discriminator score of the
  states the returned tokens were predicted from; higher is less safe), `bridge_score`, `refreshes`,
  `scored_tokens` and the guidance settings used.
- `temperature` 0 is greedy; omitted it is 1.0 (sampling), as in OpenAI's API. `seed` makes sampling reproducible
  (a seeded sampling request runs in a batch of its own). `top_p` in (0, 1].
- `stop`: a string or up to 4 strings. The text is cut before the first occurrence of any of them (the stop
  sequence itself is not returned) and `finish_reason` is `stop`; while streaming, text that could still turn
  into a stop sequence is held back until it cannot. A chat request also stops at the backbone's own stop strings
  (a base model's prompt format: `Backbone.stop_strings`, "\\nQuestion:" for Gemma 3 270M), as `svgt.generate` does.
- `max_tokens` (or `max_completion_tokens`) must be >= 1 and fit the context window together with the prompt (and
  the Bridge Tokens when guided); omitted, it is the smaller of the server default (256) and what fits.
- `usage.completion_tokens` counts the returned tokens (an EOS token is not counted; a token that completed a stop
  sequence is).
- Streaming is incremental: a chunk per token as it is decoded (text held back only for stop sequences and
  incomplete UTF-8 characters), then a chunk with `finish_reason` and `svgt`, then (with `stream_options:
  {"include_usage": true}`) a usage chunk with empty `choices`, then `data: [DONE]`.
- Unsupported: `n` > 1, `logprobs`, tools/functions, `echo`, batched or token-array prompts (400 naming the field).
  Other unknown fields are ignored, as OpenAI clients send some.

Errors are OpenAI-style bodies `{"error": {"message", "type", "param", "code"}}`: 400 for bad input (`param` names
the field), 401 for a missing or wrong API key (`Authorization: Bearer KEY`, when the server has one), 404 for an
unknown model or path, 429 when the request queue is full, 503 while shutting down, 500 if generation fails.
Batching: see `svgt.serving.scheduler`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..backbone import DEFAULT_BACKBONE, load_backbone
from ..pipeline import GuidedModel, load_guided_model
from ..prompts import format_prompt, has_chat_template, part_ids
from .protocol import (
    APIError,
    GuidanceOptions,
    ParsedRequest,
    bad,
    chunk,
    error_body,
    full_response,
    parse_request,
    usage_chunk,
)
from .scheduler import Job, Scheduler, batch_key, context_window

MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_TOKENS = 256


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}\n\n"


def create_app(
    guided: GuidedModel,
    *,
    api_key: str | None = None,
    max_queue: int = 64,
    max_batch: int = 8,
    model_name: str | None = None,
    batch_window_s: float = 0.015,
    continuous: bool = True,
    max_join: int = 4,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    guidance_defaults: GuidanceOptions | None = None,
) -> FastAPI:
    """An app serving `guided` under `model_name` (default: the backbone's name).

    `api_key`: when set, `/v1/*` needs `Authorization: Bearer <api_key>` (`/health` stays open). `max_queue`:
    requests that may wait for the worker (the running batch not counted); one more gets 429. `max_batch`: rows per
    batch. `batch_window_s`: how long the oldest waiting request waits for company when the worker is idle.
    `continuous`: requests join the running batch at a step boundary (else a batch is fixed when it starts), at most
    `max_join` per step.
    `app.state.scheduler` is the `Scheduler`; its `stats()` (batch sizes, queue depth, counts) are in `GET /health`.
    """
    model_name = model_name or guided.backbone.name
    defaults = guidance_defaults or GuidanceOptions()
    scheduler = Scheduler(guided, max_queue=max_queue, max_batch=max_batch, batch_window_s=batch_window_s,
                          continuous=continuous, max_join=max_join)
    tokenizer = guided.backbone.tokenizer
    ctx = context_window(guided)
    num_bridge = guided.module.config.num_bridge_tokens if guided.module is not None else 0
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            await asyncio.to_thread(scheduler.close)

    app = FastAPI(title="svgt", version="0.1.0", lifespan=lifespan)
    app.state.scheduler = scheduler
    app.state.guided = guided
    app.state.model_name = model_name

    # -- errors --------------------------------------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(str(exc.detail), code=code), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return JSONResponse(error_body(str(first.get("msg", "invalid request")), param=param, code="invalid_value"),
                            status_code=400)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", type="server_error",
                                       code="internal_error"), status_code=500)

    # -- auth ----------------------------------------------------------------------------------------------------
    async def require_key(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or incorrect API key: send 'Authorization: Bearer <key>'",
                           type="invalid_request_error", code="invalid_api_key")

    # -- helpers -------------------------------------------------------------------------------------------------
    async def read_json(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise APIError(413, f"request body over {MAX_BODY_BYTES} bytes", code="request_too_large")
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad(None, f"the request body is not valid JSON: {exc}", "invalid_json") from exc

    def paragraphs(req: ParsedRequest) -> list[list[int]]:
        """Each part (paragraph, last sentence) as a prompt of its own, for the first bridge's score
        (GenerationConfig.score_paragraphs, and the module's score_last_sentence: requests cannot change either)."""
        if guided.module is None or not req.guidance.enabled:
            return []
        with scheduler.tokenizer_lock:
            return part_ids(tokenizer, req.prompt, req.kind == "chat",
                            last_sentence=guided.module.config.score_last_sentence)

    def encode(req: ParsedRequest) -> list[int]:
        chat = req.kind == "chat"
        templated = chat and has_chat_template(tokenizer)
        with scheduler.tokenizer_lock:
            text = format_prompt(tokenizer, req.prompt, chat)
            ids = tokenizer(text, add_special_tokens=not templated)["input_ids"]
        if not ids:
            raise bad("messages" if chat else "prompt", "is empty after tokenisation", "empty_content")
        return list(ids)

    def token_budget(req: ParsedRequest, prompt_len: int) -> int:
        prompt_param = "messages" if req.kind == "chat" else "prompt"
        bridge = num_bridge if req.guidance.enabled else 0
        if ctx is None:
            return req.max_tokens or default_max_tokens
        if req.max_tokens is not None and req.max_tokens > ctx:
            raise bad(req.max_tokens_param, f"must be at most the model's context window of {ctx} tokens, "
                      f"got {req.max_tokens}", "context_length_exceeded")
        room = ctx - prompt_len - bridge
        if room < 1:
            raise bad(prompt_param, f"the prompt is {prompt_len} tokens (+{bridge} Bridge Tokens), which leaves no "
                      f"room in the context window of {ctx} tokens", "context_length_exceeded")
        if req.max_tokens is not None and req.max_tokens > room:
            raise bad(req.max_tokens_param, f"{prompt_len} prompt tokens + {bridge} Bridge Tokens + {req.max_tokens} "
                      f"completion tokens exceed the context window of {ctx}; at most {room} fit",
                      "context_length_exceeded")
        return req.max_tokens or min(default_max_tokens, room)

    async def stream_events(req: ParsedRequest, job: Job) -> AsyncIterator[str]:
        try:
            if req.kind == "chat":
                yield _sse(chunk(req, "", first=True))
            while True:
                kind, payload = await job.events.get()
                if kind == "text":
                    yield _sse(chunk(req, payload))
                elif kind == "done":
                    delta, done = payload
                    if delta:
                        yield _sse(chunk(req, delta))
                    yield _sse(chunk(req, None, done.finish_reason, extra={"svgt": done.svgt}))
                    if req.include_usage:
                        yield _sse(usage_chunk(req, done))
                    break
                else:
                    yield _sse(payload.body())
                    break
            yield _sse("[DONE]")
        finally:
            job.cancelled = True  # a client that went away frees its row; a no-op once the row is finished

    async def complete(request: Request, kind: str) -> Any:
        req = parse_request(await read_json(request), kind, model_name=model_name, guidance_defaults=defaults)
        prompt_ids = encode(req)
        budget = token_budget(req, len(prompt_ids))
        job = Job(req, prompt_ids, budget, batch_key(req, guided.module is not None), asyncio.get_running_loop(),
                  asyncio.Queue(), paragraphs=paragraphs(req))
        scheduler.submit(job)
        if req.stream:
            return StreamingResponse(stream_events(req, job), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            while True:
                kind_, payload = await job.events.get()
                if kind_ == "done":
                    return JSONResponse(full_response(req, payload[1]))
                if kind_ == "error":
                    raise payload
        finally:
            job.cancelled = True

    # -- routes --------------------------------------------------------------------------------------------------
    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)])
    async def chat_completions(request: Request) -> Any:
        return await complete(request, "chat")

    @app.post("/v1/completions", dependencies=[Depends(require_key)])
    async def completions(request: Request) -> Any:
        return await complete(request, "completion")

    def model_card() -> dict[str, Any]:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "svgt",
                "svgt": {"backbone": guided.backbone.name, "artifact": guided.artifact, "trained": guided.trained,
                         "context_window": ctx, "num_bridge_tokens": num_bridge}}

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models() -> Any:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}", dependencies=[Depends(require_key)])
    async def model(model_id: str) -> Any:
        if model_id != model_name:
            raise APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return model_card()

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok", "model": model_name, "scheduler": scheduler.stats()}

    return app


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def serve(
    backbone: str = DEFAULT_BACKBONE,
    artifact: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_queue: int = 64,
    max_batch: int = 8,
    *,
    model_name: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    batch_window_s: float = 0.015,
    log_level: str = "info",
    margin: float | None = None,
    gate_threshold: float | None = None,
    co_judge: bool = True,
    continuous: bool = True,
    max_join: int = 4,
) -> None:
    """Load `backbone` (+ `artifact`, else the packaged or an untrained module) on `device` in `dtype`
    (`svgt.load_backbone`) and serve it on
    `host:port` until interrupted. `api_key` defaults to $SVGT_API_KEY; without either the API is open (a warning
    says so when `host` is not a loopback address). `model_name` defaults to the backbone name; `margin` overrides
    the module's Newton-step margin and `gate_threshold` its safe-prompt gate; `co_judge=False` leaves out the
    co-judge the module names."""
    import uvicorn

    if api_key is None:
        api_key = os.environ.get("SVGT_API_KEY") or None
    guided = load_guided_model(load_backbone(backbone, device=device, dtype=dtype), artifact, margin=margin,
                               gate_threshold=gate_threshold, co_judge=co_judge)
    app = create_app(guided, api_key=api_key, max_queue=max_queue, max_batch=max_batch, model_name=model_name,
                     batch_window_s=batch_window_s, continuous=continuous, max_join=max_join)
    if api_key is None and not _is_loopback(host):
        print(f"svgt: warning: serving on {host} without an API key; set SVGT_API_KEY or pass one", file=sys.stderr)
    # Open streams get 10 s to end on shutdown; then they are cancelled, which ends their rows in the batch.
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
