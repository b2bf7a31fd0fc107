"""Streaming: text as it is decoded, with the value module's reading of every token.

`TextStream` is an iterator in the shape of transformers' `TextIteratorStreamer`: decoding runs in a background
thread and the iterator yields `StreamChunk`s as tokens are picked. `IncrementalText` turns one row's tokens into
text that can be sent without ever being taken back; the server streams through the same two pieces.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from .config import GenerationConfig
from .generation import GuidedDecoder, RowTelemetry, first_stop, stop_strings, stop_token_ids


class IncrementalText:
    """One row's tokens in, text out as soon as it is safe to send: a tail that may still become a stop sequence
    and an incomplete UTF-8 character are held back, and what was sent is never taken back.

    `finish` becomes "stop" (a stop token or stop sequence) or "length" (`max_tokens` tokens) when the row ends."""

    def __init__(self, tokenizer: Any, eos: set[int], max_tokens: int, stops: list[str] | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.tokenizer, self.eos, self.max_tokens = tokenizer, eos, max_tokens
        self.stops = list(stops or [])
        self.lock = lock or threading.Lock()  # fast tokenizers are not safe to share across threads unguarded
        self.ids: list[int] = []
        self.text = ""
        self.sent = ""
        self.finish: str | None = None

    def push(self, token: int) -> str:
        """Take one token; return the text that may be sent now (possibly empty)."""
        if token in self.eos:
            self.finish = "stop"
            return self.release(self.text)
        self.ids.append(token)
        with self.lock:
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = first_stop(text, self.stops)
        if cut >= 0:
            self.text, self.finish = text[:cut], "stop"
            return self.release(self.text)
        self.text = text
        if len(self.ids) >= self.max_tokens:
            self.finish = "length"
            return self.release(text)
        safe = len(text) - max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        while safe > 0 and text[safe - 1] == "\ufffd":
            safe -= 1
        return self.release(text[:safe])

    def release(self, upto: str) -> str:
        """The part of `upto` beyond what was sent, if `upto` extends it (it always does for byte-level and
        SentencePiece tokenizers once incomplete characters are held back); marks it sent."""
        if len(upto) > len(self.sent) and upto.startswith(self.sent):
            delta, self.sent = upto[len(self.sent):], upto
            return delta
        return ""


@dataclass(frozen=True)
class StreamChunk:
    """What one picked token adds: `text` (may be empty while a character or a possible stop sequence is held
    back), the token, and the value module's reading of the state it was predicted from (None without guidance)."""

    text: str
    token_id: int
    index: int
    """The token's position in the response (0 first)."""
    score: float | None
    """Discriminator score s of that state (s > 0: unsafe)."""
    delta_z_norm: float | None
    refreshed: bool
    """Whether the bridge was refreshed in the forward that predicted this token."""
    finish_reason: str | None = None
    """On the last chunk: "stop" or "length"."""


class TextStream:
    """Iterate over `StreamChunk`s of one prompt's answer while it is decoded in a background thread.

    Built by `svgt.SVGTModel.stream`; `"".join(c.text for c in stream)` is the text `generate` returns for the same
    prompt and settings. After the iteration, `finish_reason` and `telemetry` (the row's `RowTelemetry`) are set.
    Breaking out of the loop early stops the decoding at the next token. An error in decoding is raised from the
    iterator."""

    def __init__(self, backbone: Any, module: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 config: GenerationConfig, paragraphs: list[list[list[int]]] | None = None,
                 timeout: float | None = None, opinions: torch.Tensor | None = None) -> None:
        self.config, self.timeout = config, timeout
        eos = stop_token_ids(backbone, config.extra_stop_token_ids) if config.stop_at_eos else set()
        self._text = IncrementalText(backbone.tokenizer, eos, config.max_new_tokens, stop_strings(backbone, config))
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self.finish_reason: str | None = None
        self.telemetry: RowTelemetry | None = None
        decoder = GuidedDecoder(backbone, module, config, on_token=self._on_token)
        self._guided = decoder.guided
        self._thread = threading.Thread(target=self._decode,
                                        args=(decoder, input_ids, attention_mask, paragraphs, opinions),
                                        daemon=True, name="svgt-stream")
        self._thread.start()

    def _decode(self, decoder: GuidedDecoder, ids: torch.Tensor, mask: torch.Tensor,
                paragraphs: list[list[list[int]]] | None, opinions: torch.Tensor | None) -> None:
        try:
            result = decoder.run(ids, mask, paragraphs=paragraphs, opinions=opinions)
            self.telemetry = result.telemetry[0]
            if self._text.finish is None:  # the decoder stopped before this row saw its own end
                self._text.finish = result.finish_reasons[0]
                tail = self._text.release(self._text.text)
                if tail:
                    self._queue.put(("chunk", StreamChunk(tail, -1, len(self._text.ids), None, None, False)))
            self._queue.put(("end", None))
        except BaseException as exc:  # handed to the consumer's thread
            self._queue.put(("error", exc))

    def _on_token(self, token: torch.Tensor, telemetry: list[RowTelemetry]) -> bool:
        if self._stop.is_set():
            return False
        index = len(self._text.ids)
        delta = self._text.push(int(token[0]))
        tel = telemetry[0]
        guided = self._guided and index < len(tel.score)
        self._queue.put(("chunk", StreamChunk(
            delta, int(token[0]), index, tel.score[index] if guided else None,
            tel.delta_z_norm[index] if guided else None, bool(tel.refreshed[index]) if guided else False,
            self._text.finish)))
        return self._text.finish is None

    def __iter__(self) -> Iterator[StreamChunk]:
        try:
            while True:
                kind, item = self._queue.get(timeout=self.timeout)
                if kind == "chunk":
                    yield item
                elif kind == "error":
                    raise item
                else:
                    break
        finally:
            self._stop.set()
            self._thread.join()
            self.finish_reason = self._text.finish

    @property
    def text(self) -> str:
        """The text streamed so far (all of it once the iteration ended)."""
        return self._text.sent
