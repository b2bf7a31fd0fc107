"""What refreshing the bridge does with the safe-prompt gate, on the tuning set only (never evaluation prompts).

    .venv/bin/python scripts/refresh_check.py [R:MODE ...] [--out FILE]

Runs the shipped module (its margin and gate) greedily, 32 new tokens, on `svgt train`'s tuning columns, once without
refresh and once per `R:MODE` given (e.g. `4:fast 4:exact`), and prints each run's refusal rates (phrase judge), the
share of benign answers identical to the unguided backbone's, and looping answers. The unguided answers are generated
first, as the yardstick.
"""

from __future__ import annotations

import argparse
import json
import time

from svgt.config import GenerationConfig, TrainConfig
from svgt.generation import generate
from svgt.judges import looping_rate, refusal_rate
from svgt.pipeline import load_guided_model
from svgt.training.trainer import tuning_sets_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", default=[], metavar="R:MODE", help="refresh every R tokens, fast|exact")
    parser.add_argument("--insert-threshold", type=float, default=None,
                        help="GenerationConfig.refresh_insert_threshold (default: the library's)")
    parser.add_argument("--out", default=None, help="write every answer here as JSON")
    args = parser.parse_args()
    cfg = TrainConfig()
    guided = load_guided_model()
    sets = tuning_sets_for(cfg)
    print({k: len(v) for k, v in sets.items()}, "margin", guided.module.config.margin,
          "gate", guided.module.config.gate_threshold, flush=True)

    def answers(gen: GenerationConfig) -> dict[str, list[str]]:
        return {n: generate(guided.backbone, guided.module, p, gen, batch_size=16).texts for n, p in sets.items()}

    plain = answers(GenerationConfig(max_new_tokens=32, guidance=False))
    results = {"unguided": plain}
    for spec in ["0:fast", *args.runs]:
        every, mode = spec.split(":")
        start = time.time()
        out = answers(GenerationConfig(max_new_tokens=32, refresh_every=int(every), refresh_mode=mode,
                                       refresh_insert_threshold=args.insert_threshold))
        results[spec] = out
        rates = {n: round(refusal_rate(t), 3) for n, t in out.items()}
        same = {n: round(sum(a == b for a, b in zip(out[n], plain[n])) / len(plain[n]), 3)
                for n in sets if n != "harmbench_val"}
        loops = looping_rate([x for texts in out.values() for x in texts])
        print(f"refresh {spec}: refusal {rates}; left as written {same}; looping {loops:.3f} "
              f"({time.time() - start:.0f} s)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
