"""The benchmark's Markdown tables, its plot of time per token, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .measure import UNDER_LOAD

PLOT_VARIANTS_FIRST = ("hf_generate", "svgt_off", "recompute")


def _f(value: Any, fmt: str, missing: str = "–") -> str:
    return missing if value is None else format(value, fmt)


def _memory(stats: dict[str, Any]) -> str:
    mem = stats.get("memory")
    if not mem:
        return "–"
    return f"{mem['peak_mib']:.0f} (+{mem['delta_mib']:.0f})"


def _ratio_ci(ratio: float | None, ci: list[float] | None) -> str:
    """`1.190 [1.172, 1.205]`: the median paired ratio and its 95% interval."""
    if ratio is None:
        return "–"
    return f"{ratio:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _stopping(result: dict[str, Any]) -> str:
    """How the timed rounds ended: as asked, converged, or at the time cap."""
    st = result["settings"]
    target = f"±{100 * st.get('target', 0.02):g}%"
    stopped = result.get("stopped", "fixed")
    if stopped == "converged":
        return f"stopped: converged (every interval within {target} of its median ratio)"
    if stopped == "time cap":
        return (f"stopped: time cap ({st.get('max_seconds'):g} s of timed rounds per cell) before every interval was "
                f"within {target}")
    return "fixed number of rounds"


def _rounds(result: dict[str, Any]) -> str:
    counts = sorted({c.get("rounds", result["settings"]["repeats"]) for c in result["cells"]})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _floor_line(result: dict[str, Any]) -> list[str]:
    """What the floor column means and the row cost it was computed from."""
    if "floor" not in result:
        return []
    parts = []
    for c in result["floor"]["row_cost"]:
        one = f"{c['batch']} row" + ("s" if c["batch"] > 1 else "")
        parts.append(f"batch {c['batch']}, {c.get('context', '?')} cached: {c['one_ms']:.3f} ms at {one}, "
                     f"{c['many_ms']:.3f} ms at {c['batch'] * (c['k'] + 1)} rows, × {c['upper_layers']} layers = "
                     f"{c['extra_ms']:.2f} ms (medians over rounds)")
    return ["- floor: the lowest ratio a guided variant can reach on this machine = (svgt_off's time + (first bridge "
            "+ refreshes) × one bridge pass) / hf_generate's time, in each timed round, then the median over rounds; "
            "a bridge pass is the K bridge rows' work in the layers from the insert layer up (a decoding forward over "
            f"the cache, per decoder layer, {'; '.join(parts)}); gap = ratio − floor"]


def _cell_table(cell: dict[str, Any]) -> list[str]:
    rounds = f" — {cell['rounds']} rounds" if "rounds" in cell else ""
    if cell.get("stopped", "fixed") != "fixed":
        rounds += f", {cell['stopped']}"
    lines = [
        f"### batch {cell['batch']}, prompt {cell['prompt_len']}, {cell['new_tokens']} new tokens{rounds}",
        "",
        "| variant | median s | tokens/s | TTFT ms | ms/token | ratio [95% CI] | ratio of medians "
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
        if s.get("floor_ratio") is not None:
            notes.append(f"floor {s['floor_ratio']:.3f} (gap {s['gap_to_floor']:+.3f})")
        if "refresh_fraction" in s:
            notes.append(f"gate let {s['refreshes']}/{s['refresh_chances']} refreshes through "
                         f"(mean s {s['mean_score']:+.3f})")
        lines.append(
            f"| {name} | {s['median_s']:.3f} | {s['tokens_per_s']:.1f} | {1000 * s['ttft_s']:.1f} "
            f"| {_f(s.get('ms_per_token'), '.2f')} | {_ratio_ci(s.get('ratio'), s.get('ratio_ci'))} "
            f"| {_f(s.get('ratio_of_medians'), '.3f')} "
            f"| {_f(s.get('ratio_vs_svgt_off'), '.3f')} | {_memory(s)} | {'; '.join(notes)} |"
        )
    return lines


def under_load(env: dict[str, Any]) -> bool:
    """Whether other work ran when the benchmark started: the CPUs' busy share in the half second before it, where
    measured (Linux); else the 1-minute load average, which still carries a job that ended up to minutes before."""
    if "cpu_busy_at_start" in env:
        return env["cpu_busy_at_start"] >= UNDER_LOAD
    return env.get("load_average_at_start", [0.0])[0] >= 1.0


def _load_reason(env: dict[str, Any]) -> str:
    if "cpu_busy_at_start" in env:
        return f"{100 * env['cpu_busy_at_start']:.0f}% of all CPUs' time busy just before the start"
    return f"1-minute load average {env['load_average_at_start'][0]:.2f} at the start"


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
        if "cpu_busy_at_start" in env:
            loads += f"; CPUs busy just before the start: {100 * env['cpu_busy_at_start']:.0f}%"
        lines.append(loads)
    if under_load(env):
        lines.append(f"- other work was running: timings taken UNDER LOAD ({_load_reason(env)})")
    boot = st.get("bootstrap", {"resamples": 2000, "level": 0.95})
    lines += [
        f"- started {result['started']}, finished {result.get('finished', '?')}; {st['warmup']} warm-up and "
        f"{_rounds(result)} timed rounds per cell, variants interleaved (A B C … A B C …); {_stopping(result)}",
        f"- telemetry: {st['telemetry']}",
        "- ratio = median over rounds of the variant's time / hf_generate's time in the same round, interpolated to "
        "where the variant ran between that round's hf_generate run and the next (a closing run after the last), "
        f"[{100 * boot['level']:g}% percentile-bootstrap interval, {boot['resamples']} resamples of the rounds, "
        "seeded]; ratio of medians = median time / hf_generate's median; tokens/s counts batch × new tokens; peak "
        f"memory from a separate untimed run ({_memory_method(result)})",
        *_floor_line(result),
        "",
        "## Ratios to hf_generate" + (" (geometric mean over cells)" if len(result["cells"]) > 1 else ""),
        "",
    ]
    floors = result.get("floor_ratios")
    if floors is not None:
        lines += ["| variant | ratio [95% CI] | ratio vs svgt_off [95% CI] | floor | gap to floor |",
                  "|---|---:|---:|---:|---:|"]
    else:
        lines += ["| variant | ratio [95% CI] | ratio vs svgt_off [95% CI] |", "|---|---:|---:|"]
    for name in st["variants"]:
        vs_hf = _ratio_ci(result["ratios"].get(name), result.get("ratio_ci", {}).get(name))
        vs_off = _ratio_ci(result["ratios_vs_svgt_off"].get(name), result.get("ratio_vs_svgt_off_ci", {}).get(name))
        row = f"| {name} | {vs_hf} | {vs_off} |"
        if floors is not None:
            gap = result["gaps_to_floor"].get(name)
            row += f" {_f(floors.get(name), '.3f')} | {_f(gap, '+.3f')} |"
        lines.append(row)
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
