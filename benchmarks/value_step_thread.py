"""Would the value module cost less on a second thread? Guided generation (the quick cell, refresh every token) with
each newest token's value state computed after the forward, as svgt does, against computed on a worker thread that
starts as soon as the extract layer has run, while the layers above it run.

The value module's weights are read cold after every backbone forward (`benchmarks/value_step_cache.py`), so its
step costs about three times what it costs in a loop. Only the extract layer's state is needed, and the layers above
it take a third of a step or more, so on a machine with a core to spare the value state could be ready when the
forward ends. This measures whether that holds here: `--worker-threads` gives the worker 1 intra-op thread (it
takes time from a core the forward uses) or 0 (torch's default: a second thread team as wide as the forward's).

Paired rounds (each round times svgt's own way, then the worker, then `svgt_off`); the tokens must match to the
token, or it stops. Prints the medians and the median paired ratio of the worker's time to svgt's own.

    .venv/bin/python benchmarks/value_step_thread.py --rounds 10 --worker-threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from svgt.benchmark.models import bench_backbone, bench_module, prompt_batch
from svgt.benchmark.variants import generation_config, make_runner, parse_variant
from svgt.generation import GuidedDecoder


class ValueStateBeside:
    """While open, a guided decoding step hands its newest token's extract-layer state to a worker thread as soon as
    the extract layer has run (a forward hook on that layer), and `GuidedDecoder._observe` returns what the worker
    computed instead of computing it after the forward. Prefill forwards are left as they are."""

    def __init__(self, layer: torch.nn.Module, worker_threads: int) -> None:
        init: dict[str, Any] = {}
        if worker_threads:
            init = {"initializer": torch.set_num_threads, "initargs": (worker_threads,)}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="value-beside", **init)
        self.layer = layer
        self.stepping: GuidedDecoder | None = None
        self.pending: Future | None = None
        self.offloaded = 0

    def __enter__(self) -> ValueStateBeside:
        self._observe, self._advance = GuidedDecoder._observe, GuidedDecoder._advance
        beside = self

        def advance(decoder: GuidedDecoder, *args: Any, **kwargs: Any) -> torch.Tensor:
            beside.stepping, beside.pending = (decoder if decoder.guided else None), None
            try:
                return beside._advance(decoder, *args, **kwargs)
            finally:
                beside.stepping, beside.pending = None, None

        def observe(decoder: GuidedDecoder, state: torch.Tensor) -> Any:
            if beside.pending is None:
                return beside._observe(decoder, state)
            pending, beside.pending = beside.pending, None
            beside.offloaded += 1
            return pending.result()

        GuidedDecoder._advance, GuidedDecoder._observe = advance, observe
        self.handle = self.layer.register_forward_hook(self._capture)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()
        GuidedDecoder._advance, GuidedDecoder._observe = self._advance, self._observe

    def _capture(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        decoder = self.stepping
        if decoder is None:
            return
        # Copied now: the layers above may reuse the tensor; svgt's own path reads it after the forward.
        state = (output[0] if isinstance(output, tuple) else output)[:, -1].float().clone()
        self.pending = self.pool.submit(self._work, decoder, state)

    def _work(self, decoder: GuidedDecoder, state: torch.Tensor) -> Any:
        with torch.inference_mode():  # per thread
            return self._observe(decoder, state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--worker-threads", type=int, default=1, help="intra-op threads of the worker; 0: default")
    args = parser.parse_args()
    backbone = bench_backbone(args.backbone, "cpu", None)
    module, source = bench_module(backbone)
    ids, mask = prompt_batch(backbone, 1, 64)
    cfg = generation_config(parse_variant("svgt_r1_fast"), 64)  # as the bench runs it, keeping the tokens to compare

    def guided() -> list[list[int]]:
        return GuidedDecoder(backbone, module, cfg).run(ids, mask).token_ids

    plain = make_runner(parse_variant("svgt_off"), backbone, module, ids, mask, 64)
    beside = ValueStateBeside(backbone.layers[module.config.extract_layer], args.worker_threads)

    def timed(run: Any, offload: bool = False) -> tuple[float, Any]:
        start = time.perf_counter()
        if offload:
            with beside:
                out = run()
        else:
            out = run()
        return time.perf_counter() - start, out

    reference = timed(guided)[1]
    timed(guided, offload=True)
    timed(plain)
    times: dict[str, list[float]] = {"after the forward (svgt)": [], "on a worker": [], "svgt_off": []}
    for r in range(args.rounds):
        for label, run, offload in (("after the forward (svgt)", guided, False), ("on a worker", guided, True),
                                    ("svgt_off", plain, False)):
            seconds, out = timed(run, offload)
            if label != "svgt_off" and out != reference:
                raise SystemExit(f"round {r}: {label} generated other tokens than the first run")
            times[label].append(seconds)
    print(f"{backbone.name} ({source}), svgt_r1_fast, batch 1, prompt 64, 64 new tokens, {args.rounds} rounds, "
          f"worker with {args.worker_threads or torch.get_num_threads()} intra-op thread(s); value states computed "
          f"on the worker: {beside.offloaded}")
    print("| value state | median s | median ratio to svgt_off |\n|---|---:|---:|")
    for label, values in times.items():
        ratio = statistics.median(a / b for a, b in zip(values, times["svgt_off"]))
        print(f"| {label} | {statistics.median(values):.3f} | {ratio:.3f} |")
    beside.pool.shutdown()
    paired = statistics.median(a / b for a, b in zip(times["on a worker"], times["after the forward (svgt)"]))
    print(f"worker / svgt's own, median paired ratio: {paired:.3f}")


if __name__ == "__main__":
    main()
