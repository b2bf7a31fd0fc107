"""svgt's point on the baselines' tuning protocol: the shipped module (its margin and gate) on the first 30 HarmBench
val behaviours and the first 30 held-out ShareGPT tuning prompts, greedy, 24 new tokens, phrase judge, benign PPL
under the unguided backbone: the same prompts and settings every baseline's search is measured on
(`svgt.methods.tuning.sweep`), so svgt can be placed against a baseline's whole tuning frontier. Tuning data only.

    .venv/bin/python scripts/svgt_tuning_point.py
"""

from __future__ import annotations

from svgt import data as svdata
from svgt.config import GenerationConfig
from svgt.evaluation.fluency import perplexity
from svgt.generation import generate
from svgt.judges import refusal_rate
from svgt.pipeline import load_guided_model


def main() -> None:
    guided = load_guided_model()
    harmful, benign = svdata.tuning_prompts(svdata.build_corpus())
    harmful, benign = harmful[:30], benign[:30]
    cfg = GenerationConfig(max_new_tokens=24)
    h = generate(guided.backbone, guided.module, harmful, cfg).texts
    b = generate(guided.backbone, guided.module, benign, cfg).texts
    print(f"svgt on the baselines' tuning protocol: refusal {refusal_rate(h):.1%}, over-refusal "
          f"{refusal_rate(b):.1%}, benign PPL {perplexity(guided.backbone, benign, b):.2f}")


if __name__ == "__main__":
    main()
