"""Evaluation harness: suites of prompts, metrics with their direction and intervals, fluency, LLM judges, a
resumable runner and a report writer. Heavy optional pieces (matplotlib, profanity scorer) load only when used."""

from .fluency import perplexity, response_nll
from .llm_judge import JudgeVerdict, LLMJudge
from .metrics import METRICS, Estimate, Metric, aggregate, wilson
from .report import write_report
from .runner import run_evaluation
from .suites import EvalPrompt, Suite, load_suite

__all__ = [
    "Estimate", "EvalPrompt", "JudgeVerdict", "LLMJudge", "METRICS", "Metric", "Suite", "aggregate", "load_suite",
    "perplexity", "response_nll", "run_evaluation", "wilson", "write_report",
]
