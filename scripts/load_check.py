#!/usr/bin/env python
"""Load check for the svgt server: N concurrent OpenAI clients against a server this script starts itself.

The server runs in-process on 127.0.0.1 (a free port) on the given backbone (default: smollm2-135m-instruct, which
loads offline) and is stopped at the end. The same requests are sent up to four times: with continuous batching (the
server's default: waiting requests join the running batch at a step boundary, up to `--max-batch` rows and
`--max-join` per step), with continuous batching where a whole wave joins at once (`max_join=max_batch`, when that
differs), with whole-request batching (a batch is fixed when it starts), and one at a time (`max_batch=1`). Each run
reports requests/s, completion tokens/s, p50/p95 latency (and p50/p95 time to first token with `--stream`), the mean
rows a forward pass served, and errors, which must be 0 (the exit status is 1 otherwise). Prints a markdown table.

    python scripts/load_check.py --clients 8 --requests 64 --max-tokens 32
    python scripts/load_check.py --clients 2 --requests 4 --max-tokens 8      # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

PROMPTS = [
    "What are three tips for getting better sleep?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn leaves.",
    "Give me a short recipe for pancakes.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Summarise the plot of Romeo and Juliet in one paragraph.",
    "How do vaccines train the immune system?",
    "Suggest a name for a friendly robot.",
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_load(base_url: str, model: str, args: argparse.Namespace, after_warmup=lambda: None) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="load-check", max_retries=0, timeout=args.timeout)
    extra = {"svgt": {"enabled": not args.no_guidance, "refresh_every": args.refresh_every}}
    latencies: list[float] = []
    ttfts: list[float] = []
    errors: list[str] = []
    tokens = 0
    next_index = 0

    async def one(i: int) -> None:
        nonlocal tokens
        messages = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        start = time.perf_counter()
        try:
            if args.stream:
                stream = await client.chat.completions.create(
                    model=model, messages=messages, max_tokens=args.max_tokens, temperature=0, stream=True,
                    stream_options={"include_usage": True}, extra_body=extra)
                first = None
                async for part in stream:
                    if first is None and part.choices and part.choices[0].delta.content:
                        first = time.perf_counter() - start
                    if part.usage is not None:
                        tokens += part.usage.completion_tokens
                if first is not None:
                    ttfts.append(first)
            else:
                resp = await client.chat.completions.create(
                    model=model, messages=messages, max_tokens=args.max_tokens, temperature=0, extra_body=extra)
                tokens += resp.usage.completion_tokens
            latencies.append(time.perf_counter() - start)
        except Exception as exc:  # counted, reported, and fail the run
            errors.append(f"{type(exc).__name__}: {exc}")

    async def worker() -> None:
        nonlocal next_index
        while next_index < args.requests:
            i, next_index = next_index, next_index + 1
            await one(i)

    await one(0)  # warm-up, not counted
    after_warmup()
    latencies.clear(), ttfts.clear(), errors.clear()
    tokens = 0
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.clients)))
    wall = time.perf_counter() - start
    await client.close()
    return {"wall": wall, "latencies": latencies, "ttfts": ttfts, "errors": errors, "tokens": tokens}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--artifact", default=None, help="value module directory (default: the packaged one)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=64, help="requests per configuration (bounded)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=8, help="the batched configuration's max_batch")
    parser.add_argument("--max-join", type=int, default=4, help="requests prefilled per step (server default 4)")
    parser.add_argument("--max-queue", type=int, default=256)
    parser.add_argument("--batch-window", type=float, default=0.015,
                        help="seconds an idle worker waits for more requests to batch (server default 0.015)")
    parser.add_argument("--refresh-every", type=int, default=0)
    parser.add_argument("--no-guidance", action="store_true", help="send svgt.enabled=false")
    parser.add_argument("--stream", action="store_true", help="stream responses and report time to first token")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the server (on a busy CPU, 1 avoids OpenMP stalls)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request client timeout (s)")
    parser.add_argument("--only-batched", action="store_true", help="continuous batching only (no comparisons)")
    args = parser.parse_args(argv)
    if min(args.clients, args.requests, args.max_tokens, args.max_batch, args.max_join) < 1:
        parser.error("--clients, --requests, --max-tokens, --max-batch and --max-join must be >= 1")

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    from svgt.backbone import load_backbone
    from svgt.pipeline import load_guided_model
    from svgt.serving import BackgroundServer, create_app

    t0 = time.perf_counter()
    guided = load_guided_model(load_backbone(args.backbone, device=args.device), args.artifact)
    print(f"loaded {args.backbone} ({'trained' if guided.trained else 'UNTRAINED'} value module) in "
          f"{time.perf_counter() - t0:.1f}s on {args.device}", file=sys.stderr)

    # (name, max_batch, continuous, max_join)
    configs = [("continuous", args.max_batch, True, args.max_join)]
    if not args.only_batched:
        if args.max_join < args.max_batch:
            configs.append(("continuous, waves join at once", args.max_batch, True, args.max_batch))
        configs.append(("whole batches", args.max_batch, False, args.max_batch))
        if args.max_batch > 1:
            configs.append(("one at a time", 1, False, 1))
    rows = []
    total_errors = 0
    for name, max_batch, continuous, max_join in configs:
        app = create_app(guided, api_key=None, max_queue=args.max_queue, max_batch=max_batch, model_name="svgt",
                         batch_window_s=args.batch_window, continuous=continuous, max_join=max_join)
        warm: dict = {}
        with BackgroundServer(app) as server:
            result = asyncio.run(run_load(server.base_url, "svgt", args,
                                          lambda: warm.update(app.state.scheduler.stats())))
            stats = app.state.scheduler.stats()
        # Steps of the timed requests only (the warm-up request's are subtracted).
        steps = stats["steps"] - warm["steps"]
        row_steps = stats["mean_rows_per_step"] * stats["steps"] - warm["mean_rows_per_step"] * warm["steps"]
        n_ok = len(result["latencies"])
        total_errors += len(result["errors"])
        for err in result["errors"][:5]:
            print(f"error ({name}): {err}", file=sys.stderr)
        rows.append({
            "name": name,
            "max_batch": max_batch,
            "max_join": max_join if continuous else "-",
            "ok": n_ok,
            "errors": len(result["errors"]),
            "rps": n_ok / result["wall"],
            "tps": result["tokens"] / result["wall"],
            "p50": percentile(result["latencies"], 50),
            "p95": percentile(result["latencies"], 95),
            "ttft50": percentile(result["ttfts"], 50) if args.stream else None,
            "ttft95": percentile(result["ttfts"], 95) if args.stream else None,
            "rows": row_steps / max(1, steps),
            "joined": stats["joined"] - warm["joined"],
        })

    print(f"\n{args.clients} clients, {args.requests} requests, max_tokens={args.max_tokens}, "
          f"guidance={'off' if args.no_guidance else 'on'}, backbone={args.backbone}, device={args.device}, "
          f"torch threads={__import__('torch').get_num_threads()}\n")
    head = ("| scheduling | max_batch | max_join | ok | errors | req/s | completion tok/s | p50 latency (s) "
            "| p95 latency (s) |")
    head += " p50 TTFT (s) | p95 TTFT (s) |" if args.stream else ""
    head += " mean rows per step | joined mid-batch |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        line = (f"| {r['name']} | {r['max_batch']} | {r['max_join']} | {r['ok']} | {r['errors']} | {r['rps']:.2f} "
                f"| {r['tps']:.1f} | {r['p50']:.2f} | {r['p95']:.2f} |")
        line += f" {r['ttft50']:.2f} | {r['ttft95']:.2f} |" if args.stream else ""
        line += f" {r['rows']:.2f} | {r['joined']} |"
        print(line)
    base = rows[-1]["tps"]
    for r in rows[:-1]:
        if base > 0:
            print(f"\n{r['name']}: {r['tps'] / base:.2f}x the completion tokens/s of {rows[-1]['name']}")
    if total_errors:
        print(f"\nFAILED: {total_errors} errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
