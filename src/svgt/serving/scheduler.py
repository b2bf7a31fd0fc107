"""The batch scheduler: one worker thread owns the model and runs queued requests in batches that requests join.

Design (continuous batching at step boundaries):

- Requests enter a bounded FIFO queue (`max_queue` waiting requests; one more is refused with 429).
- When the worker is free it takes the oldest request and, after a short window (`batch_window_s`, counted from that
  request's arrival, so requests that queued up during a previous batch never wait), every queued request with a
  *compatible* decoding configuration, up to `max_batch` (`max_join` when the batch is continuous). Compatible means
  the same guidance on/off and refresh settings and the same sampling settings; requests that sample with an explicit
  `seed` always run alone, so the same seeded request gives the same answer whatever else is in flight. Greedy
  requests ignore temperature/top_p/seed for grouping. Prompt lengths and `max_tokens` may differ.
- The batch is one `svgt.continuous.ContinuousBatch`. Before every step, compatible requests waiting at the head of
  the queue join it while it has room (`max_batch` rows), at most `max_join` of them per step: their prompts and
  first bridges are prefilled and their rows merged into the running cache, so a request that arrives while the
  server is busy starts within a step or two. A batch also starts with at most `max_join` requests; the rest of a
  wave join at the next steps, so the first of a wave stream while the others are prefilled. Joining stops at the
  first waiting request that is not compatible, so a stream of one kind cannot starve another: the batch then drains
  and the next one starts with that request. A row leaves as soon as it ends (EOS, a stop sequence, its own
  `max_tokens`, or a client that went away) and its cache columns go with it.
- Tokens reach each request as they are picked, so streams are incremental.

Requests that refresh the bridge in `exact` mode cannot share a batch with rows at other steps (that refresh rebuilds
every row's response from one step count); they, and every request when the scheduler is made with
`continuous=False`, run as whole batches: the batch is fixed when it starts and decodes until its last row ends.
Batches of different configurations run one after another, never concurrently.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..config import GenerationConfig
from ..continuous import ContinuousBatch
from ..generation import GuidedDecoder, RowTelemetry, co_judge_opinions, consults_co_judge, stop_token_ids
from ..pipeline import GuidedModel
from ..prompts import left_pad
from ..streaming import IncrementalText
from .protocol import APIError, Completion, ParsedRequest


def context_window(guided: GuidedModel) -> int | None:
    """The backbone's maximum number of positions (`max_position_embeddings` or its GPT-2 spelling)."""
    config = guided.backbone.model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def batch_key(req: ParsedRequest, guided_available: bool) -> tuple:
    """Requests with equal keys may share a batch (see the module docstring)."""
    g = req.guidance
    guidance = (True, g.refresh_every, g.momentum, g.gate_threshold, g.refresh_mode) if (
        guided_available and g.enabled) else (False,)
    if req.temperature <= 0:
        sampling: tuple = ("greedy",)
    elif req.seed is not None:
        sampling = ("seeded", req.request_id)  # alone: batch neighbours would change its random stream
    else:
        sampling = ("sample", req.temperature, req.top_p)
    return guidance + sampling


@dataclass
class Job:
    req: ParsedRequest
    prompt_ids: list[int]
    max_tokens: int
    key: tuple
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    answered: bool = False
    """Set by the worker once the final event (done or error) is queued."""
    paragraphs: list[list[int]] = field(default_factory=list)
    """Token ids of each paragraph of the prompt as a prompt of its own (scored for the first bridge)."""

    def send(self, kind: str, payload: Any) -> None:
        """From the worker thread: queue an event for the request's coroutine."""
        if kind != "text":
            self.answered = True
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancelled = True


class _Row(IncrementalText):
    """One request inside a running batch: its job, and its text as `IncrementalText` streams it. A chat request
    also stops at `format_stops` (the backbone's stop strings: its prompt format is what the chat template wrote)."""

    def __init__(self, job: Job, tokenizer: Any, eos: set[int], lock: threading.Lock,
                 format_stops: Sequence[str] = ()) -> None:
        stops = [*job.req.stop, *(format_stops if format_stops and job.req.kind == "chat" else ())]
        super().__init__(tokenizer, eos, job.max_tokens, list(dict.fromkeys(stops)), lock)
        self.job = job
        self.telemetry: RowTelemetry | None = None


def telemetry_summary(tel: RowTelemetry | None, n: int, guided: bool, trained: bool, req: ParsedRequest) -> dict:
    """The `svgt` field of a response: discriminator scores over the returned tokens and the refresh count."""
    if not guided or tel is None:
        return {"guided": False, "trained": trained, "max_score": None, "mean_score": None, "bridge_score": None,
                "refreshes": 0, "scored_tokens": 0}
    scores = tel.score[:n]
    g = req.guidance
    return {
        "guided": True,
        "trained": trained,
        "max_score": max(scores) if scores else None,
        "mean_score": sum(scores) / len(scores) if scores else None,
        "bridge_score": tel.bridge_score,
        "refreshes": int(sum(tel.refreshed[:n])),
        "scored_tokens": len(scores),
        "refresh_every": g.refresh_every,
        "momentum": g.momentum,
        "gate_threshold": g.gate_threshold,
        "refresh_mode": g.refresh_mode,
    }


class Scheduler:
    """Bounded request queue plus the worker thread that batches and decodes. Thread-safe `submit`."""

    def __init__(self, guided: GuidedModel, *, max_queue: int = 64, max_batch: int = 8,
                 batch_window_s: float = 0.015, continuous: bool = True, max_join: int = 4) -> None:
        for name, value in (("max_queue", max_queue), ("max_batch", max_batch), ("max_join", max_join)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.guided = guided
        self.max_queue, self.max_batch, self.batch_window_s = max_queue, max_batch, batch_window_s
        self.continuous = continuous
        self.max_join = max_join
        """Prompts prefilled at one step boundary (continuous batching). A wave of requests joins a few at a time
        with a decoding step between, so the first of them stream while the rest are prefilled, and rows that
        joined apart end apart, which spreads later arrivals too."""
        self._cond = threading.Condition()
        self.tokenizer_lock = threading.Lock()
        """Held around every tokenizer call: fast tokenizers are not safe to use from two threads at once."""
        self._queue: deque[Job] = deque()
        self._paused = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._running = 0
        self.batch_sizes: Counter[int] = Counter()
        self.completed = 0
        self.rejected = 0
        self.failed = 0
        self.cancelled = 0
        self.tokens = 0
        self.joined = 0
        """Requests that joined a running batch."""
        self.steps = 0
        self.row_steps = 0
        """Decoding steps run, and rows in them summed: their ratio is the mean batch a forward pass served."""

    # -- control -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._work, name="svgt-scheduler", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new requests, fail the queued ones (503), end the running batch at its next step."""
        with self._cond:
            self._closed = True
            pending, self._queue = list(self._queue), deque()
            self._cond.notify_all()
        for job in pending:
            job.send("error", APIError(503, "the server is shutting down", type="server_error",
                                       code="server_shutting_down"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def pause(self) -> None:
        """Stop starting new batches (the running one finishes); queued requests wait. For drains and tests."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise APIError(503, "the server is shutting down", type="server_error", code="server_shutting_down")
            if len(self._queue) >= self.max_queue:
                self.rejected += 1
                raise APIError(429, f"the request queue is full ({self.max_queue} waiting); retry later",
                               type="requests", code="rate_limit_exceeded", headers={"Retry-After": "1"})
            self._queue.append(job)
            self._cond.notify_all()
        self.start()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            sizes = dict(sorted(self.batch_sizes.items()))
            return {
                "queued": len(self._queue),
                "running": self._running,
                "paused": self._paused,
                "max_queue": self.max_queue,
                "max_batch": self.max_batch,
                "max_join": self.max_join,
                "batches": sum(sizes.values()),
                "batch_sizes": {str(k): v for k, v in sizes.items()},
                "largest_batch": max(sizes, default=0),
                "completed": self.completed,
                "failed": self.failed,
                "cancelled": self.cancelled,
                "rejected": self.rejected,
                "completion_tokens": self.tokens,
                "continuous": self.continuous,
                "joined": self.joined,
                "steps": self.steps,
                "mean_rows_per_step": self.row_steps / self.steps if self.steps else 0.0,
            }

    # -- worker --------------------------------------------------------------------------------------------------
    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if any(j.cancelled for j in self._queue):  # their clients went away while they waited
                    self.cancelled += sum(j.cancelled for j in self._queue)
                    self._queue = deque(j for j in self._queue if not j.cancelled)
                if self._queue and not self._paused:
                    first = self._queue[0]
                    size = self.max_batch if self._whole(first) else min(self.max_batch, self.max_join)
                    batch = [j for j in self._queue if j.key == first.key][:size]
                    wait = first.enqueued + self.batch_window_s - time.monotonic()
                    if len(batch) >= size or wait <= 0:
                        taken = {id(j) for j in batch}
                        self._queue = deque(j for j in self._queue if id(j) not in taken)
                        self._running = len(batch)
                        self.batch_sizes[len(batch)] += 1
                        return batch
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _whole(self, job: Job) -> bool:
        """Whether `job`'s batch runs whole (fixed when it starts) rather than as a batch that requests join."""
        g = job.req.guidance
        return not self.continuous or bool(g.refresh_every and g.refresh_mode == "exact")

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                if self._whole(batch[0]):
                    self._run(batch)
                else:
                    self._run_continuous(batch)  # appends the requests that join to `batch`
            except Exception as exc:  # a failing batch answers its requests with 500 and the server goes on
                unanswered = [job for job in batch if not job.answered]
                with self._cond:
                    self.failed += len(unanswered)
                error = APIError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error",
                                 code="generation_failed")
                for job in unanswered:
                    job.send("error", error)
            finally:
                with self._cond:
                    self._running = 0

    def _finish(self, row: _Row, delta: str, guided: bool) -> None:
        n = len(row.ids)
        svgt = telemetry_summary(row.telemetry, n, guided, self.guided.trained, row.job.req)
        with self._cond:  # counted before the client can see its answer, so /health agrees with what it saw
            self.completed += 1
            self.tokens += n
        row.job.send("done", (delta, Completion(row.text, row.finish or "length", len(row.job.prompt_ids), n, svgt)))

    def _take(self, row: _Row, token: int, guided: bool) -> bool:
        """Hand a row its token; False once the row has ended (or its client went away, or the server closes)."""
        if row.finish is not None:
            return False
        if row.job.cancelled or self._closed:
            if not row.job.cancelled:
                row.job.send("error", APIError(503, "the server is shutting down", type="server_error",
                                               code="server_shutting_down"))
            row.finish = "cancelled"
            with self._cond:
                self.cancelled += 1
            return False
        delta = row.push(token)
        if row.finish is not None:
            self._finish(row, delta, guided)
            return False
        if delta:
            row.job.send("text", delta)
        return True

    def _joiners(self, key: tuple, batch: ContinuousBatch, room: int) -> list[Job]:
        """Waiting requests that may join the running batch now: compatible ones from the head of the queue, up to
        the first that is not (or does not fit the backbone's sliding window), at most `room`."""
        with self._cond:
            taken: list[Job] = []
            if self._paused or self._closed:
                return taken
            while self._queue and len(taken) < room:
                job = self._queue[0]
                if job.cancelled:
                    self._queue.popleft()
                    self.cancelled += 1
                    continue
                width = max([len(j.prompt_ids) for j in taken] + [len(job.prompt_ids)])
                if job.key != key or not batch.fits(width, max(j.max_tokens for j in [*taken, job])):
                    break
                taken.append(self._queue.popleft())
            self.joined += len(taken)
            return taken

    def _batch_config(self, jobs: list[Job]) -> tuple[GenerationConfig, set[int]]:
        """The decoding config of a batch of compatible `jobs` and the stop tokens its rows end at."""
        cfg = jobs[0].req.generation_config(max(j.max_tokens for j in jobs), guided=self.guided.module is not None)
        return cfg, stop_token_ids(self.guided.backbone, cfg.extra_stop_token_ids)

    def _opinions(self, jobs: list[Job], cfg: GenerationConfig) -> torch.Tensor | None:
        """The module's co-judge's view of each job's prompt (None without one), read in the worker thread: the
        jobs that start together are judged in batches (as `generate` judges its prompts), chat and completion
        prompts each in their own format."""
        module = self.guided.module
        if not consults_co_judge(module, cfg):
            return None
        out = torch.empty(len(jobs), device=self.guided.backbone.device)
        for chat in (True, False):
            rows = [i for i, j in enumerate(jobs) if (j.req.kind == "chat") == chat]
            if rows:
                out[rows] = co_judge_opinions(module, [jobs[i].req.prompt for i in rows], cfg, chat).to(out)
        return out

    def _rows(self, jobs: list[Job], eos: set[int]) -> list[_Row]:
        bb = self.guided.backbone
        return [_Row(job, bb.tokenizer, eos, self.tokenizer_lock, bb.stop_strings) for job in jobs]

    def _join(self, batch: ContinuousBatch, rows: list[_Row], jobs: list[Job], eos: set[int]) -> None:
        bb = self.guided.backbone
        ids, mask = left_pad([j.prompt_ids for j in jobs], bb.tokenizer.pad_token_id or 0, bb.device)
        batch.join(ids, mask, paragraphs=[j.paragraphs for j in jobs], max_new_tokens=[j.max_tokens for j in jobs],
                   opinions=self._opinions(jobs, batch.cfg))
        for row, tel in zip(self._rows(jobs, eos), batch.telemetry[-len(jobs):]):
            row.telemetry = tel
            rows.append(row)

    def _run_continuous(self, jobs: list[Job]) -> None:
        """Decode `jobs` in one `ContinuousBatch` that compatible requests join until it drains."""
        key = jobs[0].key
        cfg, eos = self._batch_config(jobs)
        rows: list[_Row] = []
        with ContinuousBatch(self.guided.backbone, self.guided.module, cfg) as batch:
            self._join(batch, rows, jobs, eos)
            while rows:
                if more := self._joiners(key, batch, min(self.max_join, self.max_batch - len(rows))):
                    jobs.extend(more)
                    self._join(batch, rows, more, eos)
                tokens = batch.pick().tolist()
                with self._cond:
                    self._running = len(rows)
                    self.steps += 1
                    self.row_steps += len(rows)
                done = {i for i, (row, token) in enumerate(zip(rows, tokens))
                        if not self._take(row, token, batch.guided)}
                batch.leave(sorted(done))
                rows = [row for i, row in enumerate(rows) if i not in done]
                batch.advance()

    def _run(self, jobs: list[Job]) -> None:
        """Decode `jobs` as one whole batch (no joining): exact refresh, or `continuous=False`."""
        bb = self.guided.backbone
        cfg, eos = self._batch_config(jobs)
        rows = self._rows(jobs, eos)

        def on_token(tokens: torch.Tensor, telemetry: list[RowTelemetry]) -> bool:
            """Hand each row its token as soon as it is picked; False (stop decoding) once no row needs more."""
            alive = False
            for row, tel, token in zip(rows, telemetry, tokens.tolist()):
                row.telemetry = tel
                alive |= self._take(row, token, decoder.guided)
            with self._cond:
                self.steps += 1
                self.row_steps += len(rows)
            return alive

        ids, mask = left_pad([j.prompt_ids for j in jobs], bb.tokenizer.pad_token_id or 0, bb.device)
        decoder = GuidedDecoder(bb, self.guided.module, cfg, on_token=on_token)
        decoder.run(ids, mask, paragraphs=[j.paragraphs for j in jobs], opinions=self._opinions(jobs, cfg))
        for row in rows:  # the decoder ended (all rows at EOS) before a row saw its own end
            if row.finish is None and not row.job.cancelled:
                row.finish = "stop"
                self._finish(row, row.release(row.text), decoder.guided)
