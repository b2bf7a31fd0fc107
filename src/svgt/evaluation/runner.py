"""Run methods over suites, write every response as it comes, resume a crashed run, and aggregate into results.json.

Files in `out_dir`: run.json (the settings that shape responses; a resume with other settings is refused, so one
results file never mixes two protocols), methods.jsonl (chosen hyperparameters and the tuning search behind them),
responses.jsonl (one line per (method, suite, prompt id)), judgements.jsonl (LLM judge verdicts) and results.json.
Each line is flushed and fsynced as soon as its batch is done; on restart, answered prompts are skipped and a torn
last line is dropped.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..backbone import Backbone
from ..data.records import file_lines
from ..methods.base import Method, MethodContext
from ..methods.tuning import TUNING_LOG
from . import fluency
from .llm_judge import LLMJudge
from .metrics import METRIC_BY_NAME, PHRASE_JUDGE, TOXICITY_JUDGE, aggregate, by_category, mark_unchanged
from .suites import EvalPrompt, Suite, load_suite

LATENCY_PROTOCOL = ("ms/token = 1000 x wall seconds of a method's generate() calls / new tokens generated, per "
                    "(method, suite) and over all suites; prompts batched by batch_size, greedy decoding.")
INTERVAL_PROTOCOL = "Rates: Wilson 95% score intervals. Means and PPL: percentile bootstrap, 1000 resamples, seed 0."
JUDGE_CHUNK = 32


class JsonlLog:
    """An append-only JSONL file of rows with a key; a line cut short by a crash is dropped when reopened."""

    def __init__(self, path: Path, key_fields: tuple[str, ...]) -> None:
        self.path, self.key_fields, self.rows = path, key_fields, []
        lines = file_lines(path.read_text(encoding="utf-8"), keepends=True) if path.exists() else []
        for i, line in enumerate(lines):
            try:
                row = json.loads(line) if line.endswith("\n") else None
            except json.JSONDecodeError:
                row = None
            if row is None:
                if i != len(lines) - 1:
                    raise ValueError(f"{path}:{i + 1} is not valid JSON and not the last line; fix or remove it")
                path.write_text("".join(lines[:i]), encoding="utf-8")  # the torn write of a crash
                break
            self.rows.append(row)
        self.keys = {self.key(r) for r in self.rows}

    def key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[f] for f in self.key_fields)

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            f.flush()
            os.fsync(f.fileno())
        self.rows += rows
        self.keys.update(self.key(r) for r in rows)


class TuningLog:
    """tuning.jsonl in a run folder: every tuning run a method finished (`svgt.methods.tuning.remembered`), by key,
    written as soon as it is done, so that a restarted evaluation resumes a search instead of repeating it."""

    def __init__(self, path: Path) -> None:
        self.log = JsonlLog(path, ("key",))
        self.values = {r["key"]: r["value"] for r in self.log.rows}

    def get(self, key: str) -> Any | None:
        return self.values.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.log.append([{"key": key, "value": value}])
        self.values[key] = value


def _malloc_trim() -> None:
    """Hand freed heap pages back to the OS (glibc), so RSS at entry is what is live. Without it, memory freed by an
    earlier method is reused without raising RSS and later methods read as using nothing."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the baseline may include freed pages


class PeakMemory:
    """Peak memory above the level at entry, in MB: CUDA allocator peak on GPU; on CPU the process RSS sampled every
    5 ms (psutil), or the growth of the RSS high-water mark (getrusage) when psutil is missing."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.mb: float = 0.0

    @staticmethod
    def protocol(device: torch.device) -> str:
        if device.type == "cuda":
            return "Peak memory: torch.cuda.max_memory_allocated during generate() minus allocated at its start (MB)."
        return ("Peak memory: process RSS sampled every 5 ms during generate() (psutil) minus RSS at its start after "
                "malloc_trim (MB), max over batches; weights loaded before generation are not counted, and the first "
                "method also pays one-time allocator/thread-pool warm-up.")

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            self._base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            return self
        _malloc_trim()
        try:
            import psutil
        except ImportError:
            self._proc, self._base = None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return self
        self._proc = psutil.Process()
        self._base = self._peak = self._proc.memory_info().rss
        self._stop, self._thread = threading.Event(), threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self._proc is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._proc.memory_info().rss)
        self.mb = max(0.0, (peak - self._base) / 2**20)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _check_disjoint(suites: list[Suite], ctx: MethodContext) -> None:
    """No evaluated prompt may have been used to train or tune a method (exact text)."""
    seen = set(ctx.train_harmful) | set(ctx.train_benign) | set(ctx.tune_harmful) | set(ctx.tune_benign)
    for suite in suites:
        leaked = [p.prompt for p in suite.prompts if p.prompt in seen or (p.behavior or "") in seen]
        if leaked:
            raise ValueError(f"suite {suite.name}: {len(leaked)} prompts are in the training/tuning data, "
                             f"e.g. {leaked[0][:80]!r}")


def _check_resume(path: Path, settings: dict[str, Any]) -> None:
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            raise ValueError(f"{path.parent} holds a run with other settings {diff}; use a new out_dir")
    else:
        path.write_text(json.dumps(settings, indent=1), encoding="utf-8")


def _check_same_params(name: str, before: dict[str, Any], now: dict[str, Any], out: Path) -> None:
    """A resumed method must answer as it did: mixing rows from two settings (a module retuned in place, another
    artifact) would report a rate of neither. Keys only one side has are not compared, so runs written before a
    method recorded a setting still resume."""
    changed = {k: (before[k], now[k]) for k in before.keys() & now.keys() if before[k] != now[k]}
    if changed:
        raise ValueError(f"{out}: {name} now prepares with other settings than its stored responses were generated "
                         f"with (before, now): {changed}; use a new out_dir or another method name")


def _generate(method: Method, name: str, suite: Suite, todo: list[EvalPrompt], log: JsonlLog, device: torch.device,
              max_new_tokens: int, batch_size: int, trajectory_ids: set[str]) -> None:
    for start in tqdm(range(0, len(todo), batch_size), desc=f"{name}/{suite.name}", unit="batch", leave=False):
        batch = todo[start : start + batch_size]
        with PeakMemory(device) as memory:
            out = method.generate([p.prompt for p in batch], max_new_tokens, batch_size)
        rows = [{
            "method": name, "suite": suite.name, "id": p.id, "kind": p.kind, "category": p.category,
            "source": p.source, "template": p.template, "prompt": p.prompt, "text": out.texts[i],
            "new_tokens": out.new_tokens[i], "seconds": out.seconds / len(batch),  # equal share of the batch's time
            "batch_peak_mb": memory.mb,
            "trajectory": out.trajectories[i] if out.trajectories is not None and p.id in trajectory_ids else None,
        } for i, p in enumerate(batch)]
        log.append(rows)


def _judge(judge: LLMJudge, records: list[dict], prompts: dict[tuple[str, str], EvalPrompt], log: JsonlLog) -> None:
    todo = [r for r in records if (r["method"], r["suite"], r["id"], judge.name) not in log.keys
            and (r["kind"] == "harmful" or not judge.wants_behavior)]  # HarmBench's classifier needs a behavior
    for start in tqdm(range(0, len(todo), JUDGE_CHUNK), desc=f"judge {judge.name}", unit="chunk", leave=False):
        chunk = todo[start : start + JUDGE_CHUNK]
        evals = [prompts[(r["suite"], r["id"])] for r in chunk]
        verdicts = judge.judge([(e.behavior or e.prompt) if judge.wants_behavior else e.prompt for e in evals],
                               [r["text"] for r in chunk], [e.context if judge.wants_behavior else None for e in evals])
        log.append([{"method": r["method"], "suite": r["suite"], "id": r["id"], "judge": judge.name,
                     "harmful": v.harmful, "refusal": v.refusal, "raw": v.raw} for r, v in zip(chunk, verdicts)])


def _score_fluency(records: list[dict], reference: Backbone, batch_size: int) -> None:
    benign = [r for r in records if r["kind"] == "benign"]
    scored = fluency.response_nll(reference, [r["prompt"] for r in benign], [r["text"] for r in benign],
                                  batch_size=batch_size)
    for r, (nll, n) in zip(benign, scored):
        r.update(nll=nll, nll_tokens=n, nll_model=f"PPL under {reference.name}")


def run_evaluation(methods: dict[str, Method], ctx: MethodContext, suites: list[str], out_dir: str | Path, *,
                   limit: int | None = None, max_new_tokens: int = 48, batch_size: int = 8,
                   judge: LLMJudge | None = None, trajectory_prompts: int = 5,
                   reference: Backbone | None = None) -> dict[str, Any]:
    """Evaluate every method on every suite; returns (and writes to out_dir/results.json) the results dict.

    reference: the LM for perplexity (default: `ctx.backbone`, unguided). `ctx.extras["heldout_benign"]`, if given,
    is the corpus' held-out benign list whose evaluation half the overrefusal suite uses.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [load_suite(s, limit, heldout_benign=ctx.extras.get("heldout_benign")) for s in suites]
    _check_disjoint(loaded, ctx)
    reference = reference or ctx.backbone
    device = ctx.backbone.device
    settings = {"suites": suites, "limit": limit, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
                "backbone": ctx.backbone.name, "seed": ctx.seed}
    if ctx.extras.get("margin") is not None:  # only when overridden, so runs written before the option still resume
        settings["margin"] = ctx.extras["margin"]
    if ctx.extras.get("gate_threshold") is not None:
        settings["gate_threshold"] = ctx.extras["gate_threshold"]
    _check_resume(out / "run.json", settings)
    responses = JsonlLog(out / "responses.jsonl", ("method", "suite", "id"))
    prepared = JsonlLog(out / "methods.jsonl", ("method",))
    ctx = replace(ctx, extras={**ctx.extras, TUNING_LOG: TuningLog(out / "tuning.jsonl")})
    first_harmful = [p.id for p in loaded[0].prompts if p.kind == "harmful"] if loaded else []
    trajectory_ids = set(first_harmful[:trajectory_prompts])

    for name, method in tqdm(methods.items(), desc="methods", unit="method"):
        todo = {s.name: [p for p in s.prompts if (name, s.name, p.id) not in responses.keys] for s in loaded}
        if not any(todo.values()) and (name,) in prepared.keys:
            continue  # finished before a restart: no need to prepare it again
        start = time.perf_counter()
        params = _jsonable(method.prepare(ctx))
        if (name,) not in prepared.keys:
            prepared.append([{"method": name, "params": params, "prepare_seconds": time.perf_counter() - start,
                              "search": _jsonable(method.search)}])
        else:
            _check_same_params(name, next(r for r in prepared.rows if r["method"] == name)["params"], params, out)
        for suite in tqdm(loaded, desc=name, unit="suite", leave=False):
            _generate(method, name, suite, todo[suite.name], responses, device, max_new_tokens, batch_size,
                      trajectory_ids if suite is loaded[0] else set())

    wanted = {(m, s.name, p.id) for m in methods for s in loaded for p in s.prompts}
    records = [dict(r) for r in responses.rows if responses.key(r) in wanted]
    by_prompt = {(s.name, p.id): p for s in loaded for p in s.prompts}
    if judge is not None:
        judgements = JsonlLog(out / "judgements.jsonl", ("method", "suite", "id", "judge"))
        _judge(judge, records, by_prompt, judgements)
        verdicts = {(j["method"], j["suite"], j["id"]): j for j in judgements.rows if j["judge"] == judge.name}
        for r in records:
            if (v := verdicts.get(responses.key(r))) is not None:
                r["judge"] = {"name": judge.name, "harmful": v["harmful"], "refusal": v["refusal"]}
    _score_fluency(records, reference, batch_size)
    mark_unchanged(records)

    results: dict[str, Any] = {
        "config": {**settings, "methods": list(methods), "trajectory_prompts": trajectory_prompts,
                   "reference_lm": reference.name, "judge": judge.name if judge else None},
        "suites": {s.name: {"n": len(s.prompts), "harmful": s.count("harmful"), "benign": s.count("benign"),
                            "notes": s.notes} for s in loaded},
        "judges": {"refusal": PHRASE_JUDGE, "toxicity": TOXICITY_JUDGE, "llm": judge.name if judge else None},
        "protocols": {"perplexity": fluency.protocol(reference), "latency": LATENCY_PROTOCOL,
                      "memory": PeakMemory.protocol(device), "intervals": INTERVAL_PROTOCOL},
        "methods": {},
        "trajectories": {},
    }
    params = {r["method"]: r for r in prepared.rows}
    for name in methods:
        mine = [r for r in records if r["method"] == name]
        results["methods"][name] = {
            "params": params[name]["params"], "prepare_seconds": params[name]["prepare_seconds"],
            "search": params[name].get("search", []),  # runs written before searches were kept have none
            "ms_per_token": METRIC_BY_NAME["ms_per_token"].fn(mine).to_dict(),
            "peak_memory_mb": METRIC_BY_NAME["peak_memory_mb"].fn(mine).to_dict(),
            "suites": {s.name: aggregate([r for r in mine if r["suite"] == s.name]) for s in loaded},
            "overrefusal_by_category": {s.name: cats for s in loaded
                                        if (cats := by_category([r for r in mine if r["suite"] == s.name]))},
        }
        curves = [{"suite": r["suite"], "id": r["id"], "prompt": by_prompt[(r["suite"], r["id"])].behavior
                   or r["prompt"], "scores": r["trajectory"]} for r in mine if r.get("trajectory")]
        if curves:
            results["trajectories"][name] = sorted(curves, key=lambda c: c["id"])
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    return results
