"""The benchmark's Markdown tables, its plot of time per token, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLOT_VARIANTS_FIRST = ("hf_generate", "svgt_off", "recompute")


def _f(value: Any, fmt: str, missing: str = "–") -> str:
    return missing if value is None else format(value, fmt)


def _memory(stats: dict[str, Any]) -> str:
    mem = stats.get("memory")
    if not mem:
        return "–"
    return f"{mem['peak_mib']:.0f} (+{mem['delta_mib']:.0f})"


def _cell_table(cell: dict[str, Any]) -> list[str]:
    lines = [
        f"### batch {cell['batch']}, prompt {cell['prompt_len']}, {cell['new_tokens']} new tokens",
        "",
        "| variant | median s | tokens/s | TTFT ms | ms/token | ratio vs hf_generate | paired ratio "
        "| ratio vs svgt_off | peak MiB (+Δ) | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in cell["variants"].items():
        if "skipped" in s:
            lines.append(f"| {name} | – | – | – | – | – | – | – | – | skipped: {s['skipped']} |")
            continue
        notes = []
        if not s.get("lengths_match", True):
            notes.append(f"LENGTH MISMATCH: {s['tokens_generated']}")
        if s.get("refresh_step_ms") is not None and s.get("plain_step_ms") is not None:
            notes.append(f"median step {s['plain_step_ms']:.1f} ms, refresh step {s['refresh_step_ms']:.1f} ms")
        if "refresh_fraction" in s:
            notes.append(f"gate let {s['refreshes']}/{s['refresh_chances']} refreshes through "
                         f"(mean s {s['mean_score']:+.3f})")
        lines.append(
            f"| {name} | {s['median_s']:.3f} | {s['tokens_per_s']:.1f} | {1000 * s['ttft_s']:.1f} "
            f"| {_f(s.get('ms_per_token'), '.2f')} | {_f(s.get('ratio'), '.3f')} | {_f(s.get('paired_ratio'), '.3f')} "
            f"| {_f(s.get('ratio_vs_svgt_off'), '.3f')} | {_memory(s)} | {'; '.join(notes)} |"
        )
    return lines


def format_markdown(result: dict[str, Any]) -> str:
    bb, env, st = result["backbone"], result["environment"], result["settings"]
    weights = "random weights in this shape" if bb["random_weights"] else "real weights"
    lines = [
        f"# svgt speed benchmark{' (quick)' if result.get('quick') else ''}",
        "",
        f"- backbone: `{bb['name']}` ({bb['parameters'] / 1e6:.1f}M parameters, {bb['layers']} layers, "
        f"{bb['dtype']}, {weights})",
        f"- value module: {result['module']['source']} (K = {result['module']['bridge_tokens']}, "
        f"extract layer {result['module']['extract_layer']}, insert layer {result['module']['insert_layer']})",
        f"- device: {result['device']}" + (f" ({env['gpu']})" if env.get("gpu") else "")
        + f"; torch {env['torch']}, transformers {env['transformers']}, {env['torch_threads']} threads, "
        f"{env['cpu_count']} CPUs",
    ]
    if "load_average_at_start" in env:
        loads = f"- load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in env['load_average_at_start'])}"
        if "load_average_at_end" in env:
            loads += f"; at end: {', '.join(f'{x:.2f}' for x in env['load_average_at_end'])}"
        if env["load_average_at_start"][0] >= 1.0:  # measured before the benchmark itself ran: someone else's work
            loads += " — other work was running: timings taken UNDER LOAD"
        lines.append(loads)
    lines += [
        f"- started {result['started']}, finished {result.get('finished', '?')}; {st['warmup']} warm-up and "
        f"{st['repeats']} timed rounds per cell, variants interleaved (A B C … A B C …)",
        f"- telemetry: {st['telemetry']}",
        "- ratio = median time / hf_generate's median in the same cell; paired ratio = median over rounds of the "
        "per-round ratio; tokens/s counts batch × new tokens; peak memory from a separate untimed run "
        f"({_memory_method(result)})",
        "",
        "## Ratios to hf_generate" + (" (geometric mean over cells)" if len(result["cells"]) > 1 else ""),
        "",
        "| variant | ratio | ratio vs svgt_off |",
        "|---|---:|---:|",
    ]
    for name in st["variants"]:
        lines.append(f"| {name} | {_f(result['ratios'].get(name), '.3f')} "
                     f"| {_f(result['ratios_vs_svgt_off'].get(name), '.3f')} |")
    lines.append("")
    for cell in result["cells"]:
        lines += _cell_table(cell) + [""]
    if "training" in result:
        s3, ac = result["training"]["stage3"], result["training"]["activation_cache"]
        lines += [
            "## Training throughput",
            "",
            f"- stage 3: {s3['steps_per_s']:.3f} steps/s ({s3['examples_per_s']:.2f} examples/s; batch {s3['batch']},"
            f" prompt {s3['prompt_len']}, target {s3['response_len']} tokens; loss + backward + AdamW)",
            f"- activation cache (stages 1-2, {ac['items']} items of {ac['prompt_len']}+{ac['response_len']} tokens): "
            f"compute + write {ac['compute_and_write_s']:.2f} s, load {ac['load_s']:.3f} s, "
            f"speed-up {_f(ac['speedup'], '.0f')}x",
            "",
        ]
    lines += ["## Variants", ""]
    lines += [f"- `{name}`: {text}" for name, text in result["variant_descriptions"].items()]
    if result.get("files", {}).get("plot"):
        lines += ["", f"![time per token]({Path(result['files']['plot']).name})"]
    return "\n".join(lines) + "\n"


def _memory_method(result: dict[str, Any]) -> str:
    for cell in result["cells"]:
        for s in cell["variants"].values():
            if "memory" in s:
                return s["memory"]["method"] + "; +Δ over the level just before the run"
    return "not measured"


def plot_cell(result: dict[str, Any]) -> dict[str, Any] | None:
    """The cell with the most new tokens (then the smallest batch and prompt): the longest time-per-token curves."""
    cells = [c for c in result["cells"] if any("step_ms" in s for s in c["variants"].values())]
    if not cells:
        return None
    return max(cells, key=lambda c: (c["new_tokens"], -c["batch"], -c["prompt_len"]))


def write_plot(result: dict[str, Any], path: Path) -> bool:
    """Time per generated token against its position; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cell = plot_cell(result)
    if cell is None:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    names = sorted(cell["variants"], key=lambda n: (n not in PLOT_VARIANTS_FIRST, n))
    for name in names:
        steps = cell["variants"][name].get("step_ms")
        if not steps:
            continue
        style = dict(linewidth=2.0) if name in PLOT_VARIANTS_FIRST else dict(linewidth=1.0, alpha=0.8)
        ax.plot(range(2, len(steps) + 2), steps, label=name, **style)
    ax.set_xlabel("generated token")
    ax.set_ylabel("ms for this token (median over repeats)")
    ax.set_yscale("log")
    ax.set_title(f"{result['backbone']['name']} on {result['device']}: batch {cell['batch']}, "
                 f"prompt {cell['prompt_len']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, str | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench_quick" if result.get("quick") else "bench"
    plot = out_dir / f"{stem}_time_per_token.png"
    files: dict[str, str | None] = {"json": str(out_dir / f"{stem}.json"), "markdown": str(out_dir / f"{stem}.md"),
                                    "plot": str(plot)}
    result["files"] = files
    if not write_plot(result, plot):
        files["plot"] = None
    Path(files["markdown"]).write_text(format_markdown(result), encoding="utf-8")
    Path(files["json"]).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return files
