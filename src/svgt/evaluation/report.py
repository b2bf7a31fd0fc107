"""report.md and plots from a results.json, so a report can be rebuilt (or restyled) without rerunning anything."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .metrics import METRIC_BY_NAME

TABLE_METRICS = ("asr", "refusal", "overrefusal", "unchanged", "looping", "toxicity", "perplexity", "ms_per_token",
                 "judge_asr", "judge_overrefusal")
RATES = {"asr", "refusal", "overrefusal", "unchanged", "looping", "toxic_fraction", "judge_asr", "judge_overrefusal"}
DIGITS = {"toxicity": 3, "perplexity": 2}
MARKERS = "osD^vP*X<>"
"""The marker shapes both scatter plots cycle through, one per method."""


def fmt(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if metric in RATES else f"{value:.{DIGITS.get(metric, 1)}f}"


def _not_applicable(est: dict[str, Any] | None) -> bool:
    """No prompts of the kind the metric needs (e.g. over-refusal on an all-harmful suite): drop the column. A
    metric that is *unavailable* (scorer missing) keeps its column, shown as n/a with the reason in the notes."""
    return est is None or (est["value"] is None and (est.get("note") or "").startswith("no "))


def _cell(metric: str, est: dict[str, Any], best: float | None) -> str:
    if est["value"] is None:
        return "–" if _not_applicable(est) else "n/a"
    text = fmt(metric, est["value"])
    return f"**{text}**" if best is not None and est["value"] == best else text


def _get(method: dict[str, Any], suite: str, metric: str) -> dict[str, Any]:
    return method["suites"][suite].get(metric) or {"value": None, "note": "no data"}


def _table(results: dict[str, Any]) -> list[str]:
    methods, suites = results["methods"], list(results["suites"])
    columns = []
    for suite in suites:
        for metric in TABLE_METRICS:
            ests = [_get(m, suite, metric) for m in methods.values()]
            if not all(_not_applicable(e) for e in ests):
                columns.append((suite, metric))
    header = ["method"] + [f"{s} {METRIC_BY_NAME[m].label}" for s, m in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {}
    for suite, metric in columns:  # the best value of a column, by the metric's own direction
        values = [e["value"] for m in methods.values() if (e := _get(m, suite, metric))["value"] is not None]
        pick = max if METRIC_BY_NAME[metric].higher_is_better else min
        best[suite, metric] = pick(values) if len(values) > 1 else None
    for name, m in methods.items():
        cells = [_cell(mt, _get(m, s, mt), best[s, mt]) for s, mt in columns]
        lines.append("| " + " | ".join([name] + cells) + " |")
    return lines


def _intervals(results: dict[str, Any]) -> list[str]:
    lines = []
    for suite, info in results["suites"].items():
        lines += ["", f"### {suite} (n = {info['n']}: {info['harmful']} harmful, {info['benign']} benign)", "",
                  "| method | metric | value | 95% interval | n | judge |", "|---|---|---|---|---|---|"]
        for name, m in results["methods"].items():
            for metric, est in m["suites"][suite].items():
                if _not_applicable(est):
                    continue
                ci = "–" if est["low"] is None else f"[{fmt(metric, est['low'])}, {fmt(metric, est['high'])}]"
                value = fmt(metric, est["value"]) if est["value"] is not None else "n/a"
                lines.append(f"| {name} | {METRIC_BY_NAME[metric].label} | {value} | {ci} | {est['n']} | "
                             f"{est['judge']} |")
    return lines


def _notes(results: dict[str, Any]) -> list[str]:
    notes = sorted({f"- {name} / {suite} / {metric}: {est['note']}"
                    for name, m in results["methods"].items() for suite, ests in m["suites"].items()
                    for metric, est in ests.items() if est.get("note") and not _not_applicable(est)})
    return ["", "Notes:"] + notes if notes else []


def plot_asr_vs_overrefusal(results: dict[str, Any], path: Path) -> bool:
    """One point per method: x = over-refusal on the first suite with benign prompts, y = ASR on the first with
    harmful ones. False (and no file) when the run has no such pair."""
    def first(metric: str) -> str | None:
        return next((s for s in results["suites"] if any(
            m["suites"][s].get(metric, {}).get("value") is not None for m in results["methods"].values())), None)

    harm_suite, benign_suite = first("asr"), first("overrefusal")
    if harm_suite is None or benign_suite is None:
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, m) in enumerate(results["methods"].items()):
        x, y = m["suites"][benign_suite]["overrefusal"]["value"], m["suites"][harm_suite]["asr"]["value"]
        if x is not None and y is not None:
            # Methods that refuse nothing pile up at the same point: a legend with the values stays readable where
            # text labels beside the points would print over each other.
            ax.scatter(100 * x, 100 * y, marker=MARKERS[i % len(MARKERS)], s=60, alpha=0.8,
                       label=f"{name} ({100 * x:.0f}, {100 * y:.0f})")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), title="method (x, y)", title_fontsize=8)
    ax.set(xlabel=f"over-refusal on {benign_suite} (%) ↓", ylabel=f"ASR on {harm_suite} (%) ↓",
           xlim=(-5, 105), ylim=(-5, 105), title="Safety vs over-refusal (lower-left is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _candidate(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items()) or "(default)"


def _search(results: dict[str, Any]) -> list[str]:
    """Per method, every candidate tried on the tuning set with its rates, the chosen one marked."""
    searched = {name: m["search"] for name, m in results["methods"].items() if m.get("search")}
    if not searched:
        return ["", "No method searched hyperparameters in this run (or it was written before searches were kept)."]
    lines = ["", "Every candidate each method tried, measured on the tuning set only (HarmBench val behaviours and "
             "held-out benign prompts, greedy, phrase judge), never on the suites above. Rates in %."]
    for name, rows in searched.items():
        r0 = rows[0]
        rule = next((r["rule"] for r in rows if r.get("chosen") and r.get("rule")), "not recorded")
        ppl = "tune_ppl" in r0  # searches written before PPL was measured have no column for it
        unguided = f"; the backbone's own answers: PPL {fmt('perplexity', r0.get('tune_ppl_unguided'))}" if ppl else ""
        header = "| candidate | tuning refusal ↑ | tuning over-refusal ↓ |" + (" benign PPL ↓ |" if ppl else "")
        lines += ["", f"**{name}** ({len(rows)} candidates; n = {r0.get('n_harmful', '?')} harmful, "
                  f"{r0.get('n_benign', '?')} benign, {r0.get('max_new_tokens', '?')} new tokens{unguided}; "
                  f"chosen: {rule})", "", header + " |", "|---|---|---|" + ("---|" if ppl else "") + "---|"]
        lines += [f"| {_candidate(r['params'])} | {fmt('refusal', r['tune_refusal'])} | "
                  f"{fmt('overrefusal', r['tune_overrefusal'])} |"
                  + (f" {fmt('perplexity', r.get('tune_ppl'))}{' ✗' if r.get('fluent') is False else ''} |"
                     if ppl else "")
                  + f" {'chosen' if r.get('chosen') else ''} |" for r in rows]
        if any(r.get("fluent") is False for r in rows):
            lines += ["", "✗: the candidate breaks the text (benign PPL over the rule's limit), so the rule passes "
                      "it over."]
    return lines


def plot_tuning_search(results: dict[str, Any], path: Path) -> bool:
    """Every searched candidate of every method on the tuning set: x = over-refusal, y = refusal. Hollow markers of
    different shapes and sizes stay distinguishable where candidates coincide; the chosen one is filled."""
    searched = {name: m["search"] for name, m in results["methods"].items() if m.get("search")}
    if not searched:
        return False
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, rows) in enumerate(searched.items()):
        colour, marker, size = f"C{i}", MARKERS[i % len(MARKERS)], 40 + 25 * (len(searched) - i)
        xs = [100 * r["tune_overrefusal"] for r in rows]
        ys = [100 * r["tune_refusal"] for r in rows]
        # faint: passed over for breaking the text
        edges = [to_rgba(colour, 0.3 if r.get("fluent") is False else 1.0) for r in rows]
        ax.scatter(xs, ys, marker=marker, s=size, facecolors="none", edgecolors=edges,
                   label=f"{name} ({len(rows)})")
        chosen = [(x, y) for x, y, r in zip(xs, ys, rows) if r.get("chosen")]
        if chosen:
            ax.scatter(*zip(*chosen), marker=marker, s=size, color=colour)
    caps = {100 * r["max_overrefusal"] for rows in searched.values() for r in rows if "max_overrefusal" in r}
    for cap in caps:
        ax.axvline(cap, color="grey", lw=0.8, ls="--")
    legend = ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), title="method (candidates)",
                       title_fontsize=8)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)  # a method's key is not faint because its first candidate is
    ax.set(xlabel="tuning over-refusal (%) ↓", ylabel="tuning refusal (%) ↑", xlim=(-5, 105), ylim=(-5, 105))
    ax.set_title("Tuning search: every candidate\n(filled: chosen; faint: breaks the text; dashed: the cap)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_trajectories(results: dict[str, Any], path: Path) -> bool:
    """Per-token discriminator score s (s > 0: unsafe) while decoding each trajectory prompt, one line per method."""
    curves = results.get("trajectories") or {}
    ids = sorted({c["id"] for cs in curves.values() for c in cs})
    if not ids:
        return False
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ids), 1, figsize=(7, 2.2 * len(ids)), squeeze=False, sharex=True)
    for ax, pid in zip(axes[:, 0], ids):
        for j, (name, cs) in enumerate(curves.items()):
            for c in (c for c in cs if c["id"] == pid):  # colour by method, the same in every panel
                ax.plot(range(len(c["scores"])), c["scores"], color=f"C{j}", label=name)
                ax.set_title(c["prompt"][:70], fontsize=8)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("s (> 0 unsafe)")
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("generated token")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _category_columns(methods: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (suite, category) of benign prompts that any method has counts for, in first-seen order."""
    suites = dict.fromkeys(s for m in methods.values() for s in m.get("overrefusal_by_category", {}))
    return [(suite, cat) for suite in suites
            for cat in dict.fromkeys(c for m in methods.values()
                                     for c in m.get("overrefusal_by_category", {}).get(suite, {}))]


def _categories(results: dict[str, Any]) -> list[str]:
    """Over-refusal per category of each suite's benign prompts: refused / n per method, one table per suite."""
    lines: list[str] = []
    methods = results["methods"]
    columns = _category_columns(methods)
    for suite in dict.fromkeys(s for s, _ in columns):
        cats = [c for s, c in columns if s == suite]
        lines += ["", f"### {suite}", "", "| category | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for cat in cats:
            cells = []
            for m in methods.values():
                cell = m.get("overrefusal_by_category", {}).get(suite, {}).get(cat)
                cells.append("–" if cell is None else f"{cell['refused']}/{cell['n']}")
            lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    return lines or ["", "No benign prompts with categories in these suites."]


def plot_overrefusal_by_category(results: dict[str, Any], path: Path) -> bool:
    """Heat map of over-refusal: one row per method, one column per category of each suite's benign prompts, each
    cell the share refused with its count. False (and no file) when no benign prompt has a category."""
    methods = results["methods"]
    columns = _category_columns(methods)
    if not columns:
        return False
    import matplotlib.pyplot as plt
    import numpy as np

    cells = [[methods[name].get("overrefusal_by_category", {}).get(suite, {}).get(cat) for suite, cat in columns]
             for name in methods]
    share = np.array([[np.nan if c is None or not c["n"] else 100 * c["refused"] / c["n"] for c in row]
                      for row in cells])
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * len(columns), 1.0 + 0.45 * len(methods)))
    image = ax.imshow(np.ma.masked_invalid(share), cmap="Reds", vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            text = "–" if c is None else f"{c['refused']}/{c['n']}"
            dark = not np.isnan(share[i, j]) and share[i, j] > 60
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    one_suite = len({suite for suite, _ in columns}) == 1
    ax.set_xticks(range(len(columns)), [cat if one_suite else f"{suite}: {cat}" for suite, cat in columns],
                  rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), list(methods), fontsize=8)
    fig.colorbar(image, ax=ax, label="refused (%) ↓", fraction=0.03)
    ax.set_title("Over-refusal by category (benign prompts refused / n)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(results_json_path: str | Path, out_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, also on machines without a display
    results = json.loads(Path(results_json_path).read_text(encoding="utf-8"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = results["config"]
    lines = ["# svgt evaluation report", "",
             f"Backbone `{c['backbone']}`, suites {', '.join(c['suites'])}, limit {c['limit']}, "
             f"max_new_tokens {c['max_new_tokens']}, batch size {c['batch_size']}, seed {c['seed']}.", "",
             "## Results", "", "Rates in %; best of each column in bold; n/a = metric unavailable (see notes).", ""]
    lines += _table(results) + _notes(results)
    lines += ["", "## Over-refusal by category", "", "Benign prompts refused / benign prompts, per category."]
    lines += _categories(results)
    lines += ["", "## Cost", "", "| method | ms/token ↓ | peak memory MB ↓ | prepare s |", "|---|---|---|---|"]
    for name, m in results["methods"].items():
        lines.append(f"| {name} | {fmt('ms_per_token', m['ms_per_token']['value'])} | "
                     f"{fmt('peak_memory_mb', m['peak_memory_mb']['value'])} | {m['prepare_seconds']:.1f} |")
    lines += ["", "## Intervals"] + _intervals(results)
    lines += ["", "## Judges and protocols", "", f"- Refusal / ASR / over-refusal: {results['judges']['refusal']}.",
              f"- Toxicity: {results['judges']['toxicity']} (mean over all responses; toxic = score > 0.5).",
              f"- LLM judge: {results['judges']['llm'] or 'none'}."]
    lines += [f"- {k.capitalize()}: {v}" for k, v in results["protocols"].items()]
    lines += ["", "Suites:"] + [f"- {s}: {info['notes']}" for s, info in results["suites"].items()]
    lines += ["", "## Chosen hyperparameters"]
    for name, m in results["methods"].items():
        lines += ["", f"**{name}**", ""] + ([f"- `{k}` = `{json.dumps(v)}`" for k, v in m["params"].items()]
                                           or ["- (none)"])
    lines += ["", "## Tuning search"] + _search(results)
    lines += ["", "## Plots", ""]
    for fname, plot in (("asr_vs_overrefusal.png", plot_asr_vs_overrefusal),
                        ("overrefusal_by_category.png", plot_overrefusal_by_category),
                        ("trajectory.png", plot_trajectories), ("tuning_search.png", plot_tuning_search)):
        lines.append(f"![{fname}]({fname})" if plot(results, out / fname) else f"- {fname}: no data for this plot.")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
