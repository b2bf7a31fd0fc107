"""What a wave of requests costs the server when it joins a running batch at once or a few prompts per step.

The scheduler prefills at most `max_join` prompts at a step boundary (`svgt serve --max-join`). This script times a
`ContinuousBatch` on the load check's prompts, guided with the shipped module: `--wave` prompts joining in chunks of
each `--chunks` size (one chunk per step, as the scheduler does), then decoding until every row has
`--new-tokens` tokens. It prints, per chunk size and repeat, the total wall time, the time spent in joins and in
steps, and the cache width at the end, so the cost of joining in pieces can be read apart from scheduling effects.

    .venv/bin/python benchmarks/join_cost.py                      # 16 prompts, chunks of 16 and 4, twice each
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from svgt.config import GenerationConfig
from svgt.continuous import ContinuousBatch
from svgt.pipeline import GuidedModel, load_guided_model
from svgt.prompts import encode_prompts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from load_check import PROMPTS  # noqa: E402  (the same prompts the load check sends)


def time_wave(guided: GuidedModel, prompts: list[str], chunk: int, new_tokens: int) -> dict[str, float]:
    """Seconds in total, in joins and in steps for `prompts` joining `chunk` per step, each row decoding
    `new_tokens` tokens; and the cache columns when the last row has its last token."""
    bb = guided.backbone
    cfg = GenerationConfig(max_new_tokens=new_tokens, stop_at_eos=False)
    joins = steps = 0.0
    start = time.perf_counter()
    with ContinuousBatch(bb, guided.module, cfg) as batch:
        pending = list(prompts)
        # The last chunk joins at step (chunks - 1) and needs `new_tokens` picks from there.
        for _ in range(new_tokens + (len(prompts) + chunk - 1) // chunk - 1):
            if pending:
                part, pending = pending[:chunk], pending[chunk:]
                ids, mask = encode_prompts(bb.tokenizer, part)
                t = time.perf_counter()
                batch.join(ids, mask)
                joins += time.perf_counter() - t
            batch.pick()
            columns = batch.columns
            t = time.perf_counter()
            batch.advance()
            steps += time.perf_counter() - t
    return {"total_s": time.perf_counter() - start, "join_s": joins, "step_s": steps, "columns": columns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--wave", type=int, default=16, help="prompts in the wave")
    parser.add_argument("--chunks", default="16,4", help="comma-separated prompts joined per step")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    chunks = [int(c) for c in args.chunks.split(",")]
    if args.wave < 1 or args.new_tokens < 1 or args.repeats < 1 or min(chunks) < 1:
        parser.error("--wave, --new-tokens, --repeats and every --chunks value must be >= 1")
    guided = load_guided_model(args.backbone)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.wave)]
    time_wave(guided, prompts[:2], 2, 2)  # warm-up
    print("| prompts per join | repeat | total (s) | joins (s) | steps (s) | cache columns at the end |")
    print("|---|---|---|---|---|---|")
    for repeat in range(args.repeats):
        for chunk in chunks:
            r = time_wave(guided, prompts, chunk, args.new_tokens)
            print(f"| {chunk} | {repeat + 1} | {r['total_s']:.2f} | {r['join_s']:.2f} | {r['step_s']:.2f} "
                  f"| {r['columns']} |")


if __name__ == "__main__":
    main()
