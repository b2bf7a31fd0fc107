"""The speed benchmark on tiny random backbones: structure, interleaving, equal lengths, outputs. Never timings."""

import functools
import json
import math
import random
import statistics

import pytest
import torch
from tiny import tiny_backbone

from svgt.benchmark import QUICK_VARIANTS, RANDOM_CONFIGS, format_markdown, run_benchmark
from svgt.benchmark import runner as bench_runner
from svgt.benchmark.floor import RowCost, RowTimer, bridge_passes, floor_ratio, row_cost
from svgt.benchmark.measure import RssSampler
from svgt.benchmark.models import prompt_batch, random_backbone
from svgt.benchmark.stats import RatioInterval, bootstrap_ratio, bracketed_baselines, converged, paired_ratios
from svgt.benchmark.variants import parse_variant, token_forwards
from svgt.hooks import cache_keyword

VARIANTS = ["hf_generate", "svgt_off", "svgt_r0", "svgt_r1_fast", "svgt_r2_exact", "svgt_r2_fast_tel",
            "svgt_gated", "recompute"]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models are all thread overhead: on a busy 2-core machine two threads make these tests ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bench")
    yield run_benchmark("random:tiny-llama", batch_sizes=[1, 2], prompt_lens=[6], new_tokens=[5],
                        variants=VARIANTS, repeats=3, warmup=1, out_dir=out, training=True)
    torch.set_num_threads(threads)


def _rows(markdown: str, name: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith(f"| {name} |")]


def test_ratios_for_every_variant_with_baseline_one(result):
    assert list(result["ratios"]) == VARIANTS
    assert result["ratios"]["hf_generate"] == 1.0
    for cell in result["cells"]:
        assert cell["variants"]["hf_generate"]["ratio"] == 1.0
        assert cell["variants"]["svgt_off"]["ratio_vs_svgt_off"] == 1.0
        assert all(s["ratio"] > 0 for s in cell["variants"].values())
    json.dumps(result, allow_nan=False)  # JSON-able as returned


def test_variants_are_interleaved_after_warmup(result):
    for cell in result["cells"]:
        phases = [phase for phase, _ in cell["order"]]
        timed = [name for phase, name in cell["order"] if phase == "timed"]
        warm = [name for phase, name in cell["order"] if phase == "warmup"]
        assert warm == VARIANTS
        assert timed == VARIANTS * 3  # A B C ... A B C ..., not A A A B B B
        assert phases.index("timed") == len(warm)
        assert len(cell["variants"]["svgt_r1_fast"]["times_s"]) == 3
        # one more baseline run closes the last round, so that its variants are bracketed like the others'
        assert cell["order"][len(warm) + len(timed)] == ["closing", "hf_generate"]
        starts = cell["variants"]["svgt_r1_fast"]["starts_s"]
        assert starts == sorted(starts) and cell["closing_baseline"]["start_s"] > starts[-1]
        assert cell["variants"]["hf_generate"]["baseline_s"] == cell["variants"]["hf_generate"]["times_s"]


def test_every_variant_generates_the_same_number_of_tokens(result):
    for cell in result["cells"]:
        for name, stats in cell["variants"].items():
            assert stats["tokens_generated"] == 5, name
            assert stats["lengths_match"], name
            assert len(stats["step_ms"]) == 4, name  # per-token times after the first token
            assert stats["ttft_s"] > 0
            assert stats["memory"]["peak_mib"] > 0
        # forwards: N for the unguided ones; one more (the prompt alone, then the bridge) for the guided ones
        assert cell["variants"]["hf_generate"]["forwards_per_generation"] == 5
        assert cell["variants"]["svgt_r1_fast"]["forwards_per_generation"] == 6
        assert cell["variants"]["recompute"]["forwards_per_generation"] == 6
        # refresh every 2 over steps 0..3: steps 2 refresh, 0, 1, 3 do not
        assert cell["variants"]["svgt_r2_exact"]["refresh_step_ms"] > 0
        assert cell["variants"]["svgt_r2_exact"]["plain_step_ms"] > 0
        assert "refresh_step_ms" not in cell["variants"]["svgt_off"]


def test_gate_and_training_are_reported(result):
    gated = result["cells"][0]["variants"]["svgt_gated"]
    assert 0.0 <= gated["refresh_fraction"] <= 1.0
    assert gated["refresh_chances"] == 3  # steps 1..3 of 5 (the last token needs no forward)
    training = result["training"]
    assert training["stage3"]["steps_per_s"] > 0
    assert training["activation_cache"]["load_s"] > 0


def test_outputs_markdown_json_plot(result):
    files = result["files"]
    md = open(files["markdown"], encoding="utf-8").read()
    assert md == format_markdown(result)
    for name in VARIANTS:
        # one row in the summary table and one in each cell's table
        assert len(_rows(md, name)) == 1 + len(result["cells"]), name
    assert "Training throughput" in md
    saved = json.load(open(files["json"], encoding="utf-8"))
    assert saved["ratios"] == pytest.approx(result["ratios"])
    with open(files["plot"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_quick_mode_on_a_backbone_object(tmp_path):
    backbone = tiny_backbone("llama")
    r = run_benchmark(backbone, quick=True, repeats=2, new_tokens=[8], prompt_lens=[8], memory=False, max_seconds=0)
    assert list(r["ratios"]) == QUICK_VARIANTS
    assert r["ratios"]["hf_generate"] == 1.0
    assert r["settings"]["batch_sizes"] == [1] and len(r["cells"]) == 1
    assert "training" not in r and "files" not in r
    timed = [n for p, n in r["cells"][0]["order"] if p == "timed"]
    assert timed == QUICK_VARIANTS * 2
    # nothing stays attached to the backbone
    assert not backbone.model._forward_hooks
    assert all(not layer._forward_pre_hooks and not layer._forward_hooks for layer in backbone.layers)


def test_quadratic_variants_are_skipped_past_the_time_limit(tmp_path):
    r = run_benchmark("random:tiny-llama", batch_sizes=[1], prompt_lens=[4], new_tokens=[4], repeats=1, warmup=0,
                      variants=["hf_generate", "svgt_r1_fast", "svgt_r1_exact", "recompute"], time_limit_s=0.0,
                      memory=False, training=False, out_dir=tmp_path)
    stats = r["cells"][0]["variants"]
    assert "skipped" in stats["recompute"] and "skipped" in stats["svgt_r1_exact"]
    assert "skipped" not in stats["svgt_r1_fast"]
    assert set(r["ratios"]) == {"hf_generate", "svgt_r1_fast"}
    assert r["cells"][0]["order"] == [["timed", "hf_generate"], ["timed", "svgt_r1_fast"], ["closing", "hf_generate"]]
    md = format_markdown(r)
    assert len(_rows(md, "recompute")) == 2 and "skipped" in _rows(md, "recompute")[1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="baseline"):
        run_benchmark("random:tiny-llama", variants=["svgt_off"], new_tokens=[2], prompt_lens=[2])
    with pytest.raises(ValueError, match="unknown variant"):
        parse_variant("svgt_fancy")
    with pytest.raises(ValueError, match="random config"):
        run_benchmark("random:gpt-5", quick=True)


def test_variant_names_and_costs():
    assert parse_variant("svgt_r10_exact").refresh_every == 10
    assert parse_variant("svgt_r5").refresh_mode == "fast"
    assert parse_variant("svgt_r5_fast_tel").telemetry
    assert not parse_variant("svgt_r1_fast").telemetry
    assert parse_variant("svgt_gated", 0.3).gate_threshold == 0.3
    costs = {n: token_forwards(parse_variant(n), 1, 64, 64, 8)
             for n in ["svgt_off", "svgt_r0", "svgt_r1_fast", "svgt_r1_exact", "recompute"]}
    assert costs["svgt_off"] < costs["svgt_r0"] < costs["svgt_r1_fast"] < costs["svgt_r1_exact"] < costs["recompute"]


def test_prompts_have_exact_length_and_differ():
    backbone = random_backbone("tiny-llama")
    ids, mask = prompt_batch(backbone, 3, 50)
    assert ids.shape == (3, 50) and bool(mask.all())
    assert not torch.equal(ids[0], ids[1])


@pytest.mark.parametrize("name,params", [("smollm2-135m", 134.5e6), ("llama-3.2-1b", 1.24e9), ("llama-3.2-3b", 3.21e9),
                                         ("mistral-7b", 7.25e9)])
def test_random_configs_have_the_real_shapes(name, params):
    backbone = random_backbone(name, device="meta")  # shapes only, nothing allocated
    count = sum(p.numel() for p in backbone.model.parameters())
    assert count == pytest.approx(params, rel=0.01)
    assert backbone.num_layers == RANDOM_CONFIGS[name]["num_hidden_layers"]


def test_bench_offers_every_random_config():
    from svgt.cli import RANDOM_CONFIG_NAMES

    assert sorted(RANDOM_CONFIG_NAMES) == sorted(RANDOM_CONFIGS)


def test_rss_sampler_sees_an_allocation():
    with RssSampler() as sampler:
        big = torch.ones(64 * 1024 * 1024 // 4 * 3)  # 192 MiB, touched
        del big
    assert sampler.peak - sampler.baseline > 100 * 1024 * 1024


# --- statistics: paired ratios, bootstrap intervals, the stopping rule --------------------------------------------


def test_constant_paired_ratios_give_a_zero_width_interval_whatever_the_drift():
    base = [1.0, 2.0, 4.0, 8.0, 3.0]  # the machine's speed drifts 8x between rounds...
    iv = bootstrap_ratio([([1.25 * b for b in base], base)])  # ...but within a round the ratio holds
    assert (iv.median, iv.lo, iv.hi, iv.rounds) == (pytest.approx(1.25), pytest.approx(1.25), pytest.approx(1.25), 5)
    assert iv.rel_halfwidth == pytest.approx(0.0, abs=1e-12)
    assert bootstrap_ratio([(base, base)]).as_list() == [1.0, 1.0]


def test_bracketed_baselines_cancel_a_drift_that_is_linear_over_the_round():
    # the machine slows steadily: 1% more per second in log time; the variant costs 1.2x where it runs
    speed = [math.exp(0.01 * t) for t in range(0, 40)]
    base_starts, starts = [0.0, 10.0, 20.0], [7.0, 17.0, 27.0]
    base = [speed[int(t)] for t in base_starts]
    times = [1.2 * speed[int(t)] for t in starts]
    bracketed = bracketed_baselines(starts, base_starts, base, closing=(30.0, speed[30]))
    assert [t / b for t, b in zip(times, bracketed)] == pytest.approx([1.2] * 3, rel=1e-12)
    assert all(t / b > 1.2 * 1.06 for t, b in zip(times, base))  # the round's own baseline run is 7 s stale
    # without a closing run the last round keeps its own baseline; the baseline run itself is never moved
    assert bracketed_baselines(starts, base_starts, base)[2] == base[2]
    assert bracketed_baselines(base_starts, base_starts, base, closing=(30.0, speed[30])) == base
    with pytest.raises(ValueError, match="one baseline run per round"):
        bracketed_baselines(starts[:2], base_starts, base)


def test_skewed_sample_gives_its_median_and_ignores_the_outlier():
    ratios = [1.00, 1.01, 1.02, 1.02, 1.03, 1.04, 5.0]  # one round hit by someone else's job
    iv = bootstrap_ratio([(ratios, [1.0] * len(ratios))])
    assert iv.median == pytest.approx(1.02)
    assert iv.lo <= iv.median <= iv.hi < 1.1
    even = bootstrap_ratio([([1.0, 2.0, 3.0, 100.0], [1.0] * 4)])
    assert even.median == pytest.approx(2.5)  # the middle two averaged, as statistics.median does


def test_interval_contains_the_median_narrows_with_rounds_and_is_seeded():
    rng = random.Random(1)
    ratios = [1.2 * math.exp(rng.gauss(0.0, 0.05)) for _ in range(400)]
    widths = []
    for n in (10, 40, 400):
        iv = bootstrap_ratio([(ratios[:n], [1.0] * n)])
        assert iv.lo <= iv.median <= iv.hi and iv.rounds == n
        widths.append(iv.hi - iv.lo)
    assert widths[0] > widths[1] > widths[2] and widths[2] < widths[0] / 3
    assert widths[2] / 1.2 == pytest.approx(2 * 1.96 * 1.2533 * 0.05 / math.sqrt(400), rel=0.35)  # median's s.e.
    again = bootstrap_ratio([(ratios[:40], [1.0] * 40)])
    assert again == bootstrap_ratio([(ratios[:40], [1.0] * 40)])  # seeded: the same timings, the same interval


def test_several_cells_combine_as_a_geometric_mean():
    iv = bootstrap_ratio([([2.0] * 3, [1.0] * 3), ([0.5] * 6, [1.0] * 6)])
    assert iv.as_list() == pytest.approx([1.0, 1.0]) and iv.median == pytest.approx(1.0)
    assert iv.rounds == 3  # the fewest of any cell


def test_paired_ratios_and_convergence_rule():
    assert paired_ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError, match="one baseline time per round"):
        paired_ratios([1.0, 2.0], [1.0])
    tight, loose = RatioInterval(1.0, 0.99, 1.015, 5), RatioInterval(1.0, 0.97, 1.01, 5)
    assert tight.rel_halfwidth == pytest.approx(0.015) and loose.rel_halfwidth == pytest.approx(0.03)  # farther end
    assert converged([tight]) and not converged([tight, loose]) and converged([tight, loose], target=0.031)


def test_stop_rule_converged_before_time_cap():
    ok, wide = RatioInterval(1.2, 1.19, 1.21, 5), RatioInterval(1.2, 1.0, 1.4, 5)
    base = RatioInterval(1.0, 1.0, 1.0, 5)
    assert bench_runner._stop({"hf_generate": base, "v": ok}, 100.0, 10.0, 60.0, 0.02) == "converged"
    assert bench_runner._stop({"hf_generate": base, "v": wide}, 55.0, 10.0, 60.0, 0.02) == "time cap"
    assert bench_runner._stop({"hf_generate": base, "v": wide}, 40.0, 10.0, 60.0, 0.02) is None


@pytest.fixture
def fake_clock(monkeypatch):
    """Replace each timed generation's start and seconds with a seeded synthetic timing: one generation a second,
    the machine's speed drifting smoothly, each variant a fixed multiple of the baseline with 3% noise (svgt_off 1.0,
    r1 1.2, r5 1.05)."""
    truth = {"hf_generate": 1.0, "svgt_off": 1.0, "svgt_r1_fast": 1.2, "svgt_r5_fast": 1.05}
    rng, calls, real = random.Random(3), [], bench_runner._timed_run

    def timed(runner, clock, device, new):
        record, outcome = real(runner, clock, device, new)
        name = QUICK_VARIANTS[len(calls) % len(QUICK_VARIANTS)]
        drift = 1.0 + 0.5 * math.sin(len(calls) / len(QUICK_VARIANTS))
        noise = 1.0 if name == "hf_generate" else math.exp(rng.gauss(0.0, 0.03))
        record["start"], record["seconds"] = float(len(calls)), drift * truth[name] * noise
        calls.append(name)
        return record, outcome

    monkeypatch.setattr(bench_runner, "_timed_run", timed)
    return truth


def test_quick_adds_rounds_until_every_interval_is_within_two_percent(fake_clock):
    r = run_benchmark(tiny_backbone("llama"), quick=True, repeats=3, warmup=0, new_tokens=[4], prompt_lens=[4],
                      memory=False, max_seconds=120, floor=False)
    cell = r["cells"][0]
    assert r["stopped"] == cell["stopped"] == "converged"
    assert r["rounds"] == cell["rounds"] > 3 and r["settings"]["adaptive"]
    hf = cell["variants"]["hf_generate"]

    def interval(name: str, n: int) -> RatioInterval:
        """The interval the run saw after `n` rounds: no baseline run after the last one yet."""
        v = cell["variants"][name]
        return bootstrap_ratio([(v["times_s"][:n], bracketed_baselines(v["starts_s"][:n], hf["starts_s"][:n],
                                                                       hf["times_s"][:n]))])

    others = [n for n in QUICK_VARIANTS if n != "hf_generate"]
    # it stopped at the first round (from the third on) where every interval was within ±2%, not before, not after
    assert converged([interval(n, cell["rounds"]) for n in others])
    for n in range(3, cell["rounds"]):
        assert not converged([interval(name, n) for name in others])
    for name in others:
        lo, hi = r["ratio_ci"][name]
        assert lo <= r["ratios"][name] <= hi and (hi - lo) / 2 <= 0.02 * r["ratios"][name]
        assert r["ratios"][name] == pytest.approx(fake_clock[name], rel=0.05)


def test_quick_stops_at_the_time_cap_and_says_so():
    r = run_benchmark("random:tiny-llama", quick=True, repeats=2, new_tokens=[4], prompt_lens=[4], memory=False,
                      max_seconds=0.0, target=0.0)
    assert r["stopped"] == r["cells"][0]["stopped"] == "time cap" and r["rounds"] == 2
    assert "stopped: time cap (0 s of timed rounds per cell)" in format_markdown(r)


def test_fixed_rounds_still_get_paired_ratios_and_intervals(result):
    assert result["stopped"] == "fixed" and result["rounds"] == 3 and not result["settings"]["adaptive"]
    assert "floor" not in result and "floor_ratios" not in result  # measured with quick (or floor=True) only
    for cell in result["cells"]:
        assert (cell["rounds"], cell["stopped"]) == (3, "fixed")
        hf = cell["variants"]["hf_generate"]
        closing = (cell["closing_baseline"]["start_s"], cell["closing_baseline"]["seconds"])
        for name, s in cell["variants"].items():
            assert s["baseline_s"] == pytest.approx(bracketed_baselines(s["starts_s"], hf["starts_s"], hf["times_s"],
                                                                        closing))
            assert s["ratio"] == s["paired_ratio"] == pytest.approx(statistics.median(
                t / b for t, b in zip(s["times_s"], s["baseline_s"])))
            assert s["ratio_ci"][0] <= s["ratio"] <= s["ratio_ci"][1]
            assert s["ratio_of_medians"] == pytest.approx(s["median_s"] / cell["variants"]["hf_generate"]["median_s"])
    for name in VARIANTS:
        lo, hi = result["ratio_ci"][name]
        assert lo <= result["ratios"][name] <= hi
    assert result["ratio_ci"]["hf_generate"] == [1.0, 1.0]


# --- the floor: the bridge rows' cost above the insert layer ------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_row_cost_on_a_tiny_model(family):
    backbone = tiny_backbone(family)
    cost = row_cost(backbone, 8, 1, batch=2, repeats=3, context=5)
    assert cost.one_ms > 0 and cost.many_ms > 0 and cost.extra_ms >= 0
    assert (cost.layers, cost.insert_layer, cost.upper_layers, cost.k, cost.batch, cost.context) == (4, 1, 3, 8, 2, 5)
    assert json.loads(json.dumps(cost.to_json()))["extra_ms"] == cost.extra_ms
    with pytest.raises(ValueError, match="k >= 1"):
        row_cost(backbone, 0, 1)
    with pytest.raises(ValueError, match="context >= 1"):
        row_cost(backbone, 8, 1, context=0)


def test_row_cost_times_forwards_over_an_unchanged_cache(monkeypatch):
    """Every timed forward sees the same `context`-long cache (a fresh copy each), at 1 and K + 1 new rows alternately,
    with logits for the last row only: a cache that grew between forwards would time longer and longer attention."""
    backbone = tiny_backbone("llama")
    seen = []
    forward = backbone.model.forward

    @functools.wraps(forward)  # keeps the signature row_cost reads `logits_to_keep` from
    def spy(*args, **kwargs):
        past = kwargs.get(cache_keyword(backbone.model))
        if past is not None and past.get_seq_length() > 0:  # a timed forward (the prefill fills an empty cache)
            seen.append((kwargs["input_ids"].shape[1], past.get_seq_length(), kwargs.get("logits_to_keep")))
        return forward(*args, **kwargs)

    monkeypatch.setattr(backbone.model, "forward", spy)
    row_cost(backbone, 4, 1, repeats=3, context=7)
    assert len(seen) == 8  # a warm-up pass and 3 timed passes, each at both row counts
    assert {length for _, length, _ in seen} == {7} and {keep for _, _, keep in seen} == {1}
    assert [rows for rows, _, _ in seen] == [5, 1, 1, 5, 5, 1, 1, 5]
    # svgt bench prices every round with one timer: the cache is prefilled once, not once a round
    seen.clear()
    prefills = []

    @functools.wraps(forward)
    def counting(*args, **kwargs):
        past = kwargs.get(cache_keyword(backbone.model))
        if past is None or past.get_seq_length() == 0:
            prefills.append(kwargs["input_ids"].shape[1])
        return spy(*args, **kwargs)

    monkeypatch.setattr(backbone.model, "forward", counting)
    timer = RowTimer(backbone, 4, 1, context=7)
    timer(2), timer(2)
    assert prefills == [7] and len(seen) == 12 and {length for _, length, _ in seen} == {7}


def test_floor_ratio_counts_the_first_bridge_and_every_refresh():
    # steps 1..62 of a 64-token generation can refresh; the first bridge is one more pass
    assert [bridge_passes(r, 64) for r in (0, 1, 5, 10)] == [1, 63, 13, 7]
    cost = RowCost(one_ms=0.3, many_ms=1.0, batch=1, k=8, layers=30, insert_layer=17, threads=2)
    assert cost.extra_ms == pytest.approx(13 * 0.7)
    assert floor_ratio(cost, 1, 64, baseline_s=4.0) == pytest.approx(1 + 63 * 0.0091 / 4.0)
    assert floor_ratio(cost, 5, 64, baseline_s=4.0) == pytest.approx(1 + 13 * 0.0091 / 4.0)
    assert RowCost(1.0, 0.9, 1, 8, 30, 17, 2).extra_ms == 0.0  # timing noise never makes rows free
    # from svgt's own unguided decoding when given: 3.6 s unguided against 4.0 s for the baseline
    assert floor_ratio(cost, 1, 64, baseline_s=4.0, unguided_s=3.6) == pytest.approx((3.6 + 63 * 0.0091) / 4.0)


def test_quick_reports_the_floor_beside_the_guided_ratios():
    r = run_benchmark("random:tiny-llama", quick=True, repeats=2, new_tokens=[6], prompt_lens=[4], memory=False,
                      max_seconds=0.0)
    (cost,) = r["floor"]["row_cost"]
    # priced over the cell's cache halfway through: 4 prompt tokens, 8 bridge columns, 3 of 6 new tokens
    assert (cost["k"], cost["insert_layer"], cost["layers"], cost["context"]) == (8, 1, 4, 15)
    assert set(r["floor_ratios"]) == {"svgt_r1_fast", "svgt_r5_fast"}  # only the fused-refresh variants
    stats = r["cells"][0]["variants"]
    # each round's floor from that round's own figures: svgt_off's time plus the bridge passes at the round's row
    # cost, over hf_generate's time bracketed to where svgt_off ran; the median over rounds (so r=1's floor is never
    # under r=5's)
    hf, off = stats["svgt_off"]["baseline_s"], stats["svgt_off"]["times_s"]
    for name, every in (("svgt_r1_fast", 1), ("svgt_r5_fast", 5)):
        per_round = [(o + bridge_passes(every, 6) * e / 1e3) / h
                     for e, h, o in zip(cost["extra_ms_rounds"], hf, off)]
        assert r["floor_ratios"][name] == pytest.approx(statistics.median(per_round))
    assert r["floor_ratios"]["svgt_r1_fast"] >= r["floor_ratios"]["svgt_r5_fast"] > 0
    for name in ("svgt_r1_fast", "svgt_r5_fast"):
        assert r["gaps_to_floor"][name] == pytest.approx(r["ratios"][name] - r["floor_ratios"][name])
        assert stats[name]["gap_to_floor"] == pytest.approx(stats[name]["ratio"] - stats[name]["floor_ratio"])
    assert "floor_ratio" not in stats["svgt_off"]
    # timed at the end of every timed round, not once after them all
    assert cost["rounds"] == r["cells"][0]["rounds"] == len(cost["extra_ms_rounds"])
    rounds = [name for phase, name in r["cells"][0]["order"] if phase in ("timed", "floor")]
    assert rounds == (QUICK_VARIANTS + ["row_cost"]) * r["cells"][0]["rounds"]
    json.dumps(r, allow_nan=False)


def test_the_floor_is_priced_round_by_round():
    """Each round's row cost is divided by the baseline's time of that same round: a machine that ran slow for a
    round slows both, and the round's floor stays where it was."""
    def cost(extra_ms: float) -> RowCost:  # 13 layers above the insert layer
        return RowCost(one_ms=1.0, many_ms=1.0 + extra_ms / 13, batch=1, k=8, layers=30, insert_layer=17, threads=2)

    stats = {"hf_generate": {"times_s": [1.0, 3.0, 1.0]}, "svgt_r1_fast": {"ratio": 1.7}}
    summary = bench_runner._floors(stats, [parse_variant("hf_generate"), parse_variant("svgt_r1_fast")],
                                   [cost(10.0), cost(30.0), cost(20.0)], 64)
    # per round 1 + 63 passes × (10, 30, 20) ms / (1, 3, 1) s = 1.63, 1.63, 2.26; the median of medians would say 2.26
    assert stats["svgt_r1_fast"]["floor_ratio"] == pytest.approx(1.63)
    assert stats["svgt_r1_fast"]["gap_to_floor"] == pytest.approx(0.07)
    assert summary["rounds"] == 3 and summary["extra_ms_rounds"] == pytest.approx([10.0, 30.0, 20.0])
    # with svgt_off in the run, a round's floor starts from svgt_off's time in that round, not the baseline's
    stats["svgt_off"] = {"times_s": [0.9, 2.7, 0.9]}
    bench_runner._floors(stats, [parse_variant("svgt_r1_fast")], [cost(10.0), cost(30.0), cost(20.0)], 64)
    assert stats["svgt_r1_fast"]["floor_ratio"] == pytest.approx(1.53)  # 0.9 + 0.63, 2.7 + 1.89, 0.9 + 1.26


# --- the report -----------------------------------------------------------------------------------------------------


def _fixed_report(r: dict) -> dict:
    """A quick result with known numbers written over the measured ones."""
    r["ratios"] = {"hf_generate": 1.0, "svgt_off": 0.98, "svgt_r1_fast": 1.19, "svgt_r5_fast": 1.05}
    r["ratio_ci"] = {"hf_generate": [1.0, 1.0], "svgt_off": [0.97, 0.99], "svgt_r1_fast": [1.172, 1.205],
                     "svgt_r5_fast": [1.04, 1.06]}
    r["floor_ratios"] = {"svgt_r1_fast": 1.17, "svgt_r5_fast": 1.034}
    r["gaps_to_floor"] = {"svgt_r1_fast": 0.02, "svgt_r5_fast": 0.016}
    r["stopped"], r["rounds"] = "converged", 14
    r["cells"][0].update(rounds=14, stopped="converged")
    return r


def test_report_shows_intervals_floor_rounds_and_stopping():
    r = run_benchmark("random:tiny-llama", quick=True, repeats=2, new_tokens=[4], prompt_lens=[4], memory=False,
                      max_seconds=0.0)
    md = format_markdown(_fixed_report(r))
    assert "| variant | ratio [95% CI] | ratio vs svgt_off [95% CI] | floor | gap to floor |" in md
    assert _rows(md, "svgt_r1_fast")[0].startswith("| svgt_r1_fast | 1.190 [1.172, 1.205] | ")
    assert _rows(md, "svgt_r1_fast")[0].endswith(" | 1.170 | +0.020 |")
    assert _rows(md, "svgt_off")[0].endswith(" | – | – |")
    assert "1 warm-up and 14 timed rounds per cell" in md
    assert "stopped: converged (every interval within ±2% of its median ratio)" in md
    assert "### batch 1, prompt 4, 4 new tokens — 14 rounds, converged" in md
    assert "- floor: the lowest ratio a guided variant can reach on this machine" in md
    assert "ms at 9 rows, × 3 layers = " in md
    cell_row = _rows(md, "svgt_r1_fast")[1]
    assert "floor " in cell_row and "(gap " in cell_row


def test_report_without_a_floor_has_no_floor_columns(result):
    md = format_markdown(result)
    assert "| variant | ratio [95% CI] | ratio vs svgt_off [95% CI] |\n" in md
    assert "fixed number of rounds" in md and "- floor" not in md
    r1 = result["cells"][0]["variants"]["svgt_r1_fast"]
    lo, hi = r1["ratio_ci"]
    assert f"| {r1['ratio']:.3f} [{lo:.3f}, {hi:.3f}] | {r1['ratio_of_medians']:.3f} |" in _rows(md, "svgt_r1_fast")[1]


def test_cli_bench_max_seconds(monkeypatch, capsys):
    import svgt.benchmark
    from svgt.cli import build_parser, main

    assert build_parser().parse_args(["bench", "--quick", "--max-seconds", "30"]).max_seconds == 30.0
    assert build_parser().parse_args(["bench"]).max_seconds is None
    assert build_parser().parse_args(["bench", "--artifact", "runs/x"]).artifact == "runs/x"
    seen = {}

    def small(spec, **kwargs):  # the CLI's settings, on small axes so the test stays fast
        seen.update(kwargs)
        return run_benchmark(spec, **kwargs, new_tokens=[4], prompt_lens=[4])

    monkeypatch.setattr(svgt.benchmark, "run_benchmark", small)
    assert main(["bench", "--backbone", "random:tiny-llama", "--quick", "--repeats", "2", "--max-seconds", "0",
                 "--json", "--device", "cpu"]) == 0
    assert (seen["quick"], seen["max_seconds"], seen["repeats"], seen["artifact"]) == (True, 0.0, 2, None)
    out = json.loads(capsys.readouterr().out)
    assert out["stopped"] in {"time cap", "converged"} and out["rounds"] == 2
    assert out["settings"]["max_seconds"] == 0.0 and "floor_ratios" in out and "ratio_ci" in out


def _step_parts():
    from conftest import load_script

    return load_script("benchmarks/step_parts.py")


def test_step_parts_times_every_piece_and_puts_the_decoder_back():
    """benchmarks/step_parts.py wraps library methods while it times them: it must count every call of a refresh
    generation, time three forwards per refresh over the same cache without changing what is generated, and leave
    the classes as they were."""
    from conftest import make_module

    from svgt import GenerationConfig
    from svgt.bridge import LatentValueBridge
    from svgt.generation import GuidedDecoder
    from svgt.value_space import ValueSpace

    parts = _step_parts()
    backbone = tiny_backbone("llama")
    module = make_module(backbone)
    ids, mask = prompt_batch(backbone, 1, 6)
    names = [(GuidedDecoder, "_forward"), (GuidedDecoder, "_observe"), (GuidedDecoder, "_bridge_and_token"),
             (ValueSpace, "correction"), (LatentValueBridge, "forward")]
    before = {(o, n): o.__dict__[n] for o, n in names}
    new, k = 5, module.config.num_bridge_tokens
    cfg = GenerationConfig(max_new_tokens=new, refresh_every=1, momentum=0.3, gate_threshold=float("-inf"),
                           stop_at_eos=False, telemetry=False)  # as the bench's svgt_r1_fast
    outputs = []

    def run():
        outputs.append(GuidedDecoder(backbone, module, cfg).run(ids, mask).token_ids)

    run()
    totals, per = parts.pieces(run, 2)
    assert len(totals) == 2 and all(t > 0 for t in totals)
    # the prompt, the first bridge, a plain step (step 0), then a fused refresh for every later step
    assert {label: runs[0][0] for label, runs in per.items() if label.startswith("backbone")} == {
        "backbone forward: 6 rows": 1, f"backbone forward: {k} rows": 1, "backbone forward: 1 row": 1,
        f"backbone forward: {k + 1} rows": new - 2}
    assert per["refresh inputs and masks"][0][0] == new - 2
    assert per["correction Δz (score and gradient)"][0][0] == new - 1  # the first bridge's and each refresh's
    times = parts.forwards(run, 2)
    assert {label: len(v) for label, v in times.items()} == {
        "plain, 1 row": 2 * (new - 2), "plain, K + 1 rows": 2 * (new - 2), "fused refresh (svgt)": 2 * (new - 2)}
    assert {(o, n): o.__dict__[n] for o, n in names} == before
    assert all(out == outputs[0] for out in outputs)  # the side forwards ran on copies of the cache


# --- what ran beside it, and which module ----------------------------------------------------------------------------

STAT = "cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_busy_share_counts_other_work_and_not_idle_or_io_wait(tmp_path):
    from svgt.benchmark.measure import busy_share, cpu_busy_now

    before = STAT.format(user=100, system=50, idle=800, iowait=50)
    after = STAT.format(user=130, system=60, idle=850, iowait=60)  # 40 busy, 60 idle or waiting
    assert busy_share(before, after) == pytest.approx(0.4)
    assert busy_share(before, before) is None  # no tick passed
    with pytest.raises(ValueError, match="'cpu' line"):
        busy_share("cpu0 1 2 3 4 5 6 7 8\n", before)
    stat = tmp_path / "stat"
    stat.write_text(before)
    assert cpu_busy_now(0.0, str(stat)) is None  # the file did not move: no tick to judge by
    assert cpu_busy_now(0.0, str(tmp_path / "missing")) is None


def test_under_load_reads_the_cpus_now_not_a_job_that_just_ended():
    from svgt.benchmark.report import under_load

    # A load average of 1.9 right after an evaluation ended, with the CPUs idle now: not under load.
    assert not under_load({"load_average_at_start": [1.9, 1.5, 1.0], "cpu_busy_at_start": 0.03})
    assert under_load({"load_average_at_start": [0.2, 0.1, 0.1], "cpu_busy_at_start": 0.6})
    assert under_load({"load_average_at_start": [1.2, 1.0, 1.0]})  # not Linux: the load average is all there is
    assert not under_load({})


def test_report_says_why_it_was_under_load(result):
    r = json.loads(json.dumps(result))
    r["environment"].update(load_average_at_start=[0.1, 0.1, 0.1], cpu_busy_at_start=0.72)
    md = format_markdown(r)
    assert "CPUs busy just before the start: 72%" in md
    assert "timings taken UNDER LOAD (72% of all CPUs' time busy just before the start)" in md
    r["environment"]["cpu_busy_at_start"] = 0.02
    assert "UNDER LOAD" not in format_markdown(r)


def test_bench_uses_the_artifact_it_is_given(tmp_path):
    from svgt.artifact import save_pretrained
    from svgt.pipeline import untrained_module

    backbone = random_backbone("tiny-llama")
    module = untrained_module(backbone, insert_layer=0, extract_layer=1)
    save_pretrained(module, tmp_path / "vm", backbone)
    r = run_benchmark(backbone, quick=True, repeats=1, new_tokens=[3], prompt_lens=[4], memory=False,
                      max_seconds=0.0, floor=False, artifact=tmp_path / "vm")
    assert r["module"]["source"] == str(tmp_path / "vm")
    assert (r["module"]["extract_layer"], r["module"]["insert_layer"]) == (1, 0)
    assert f"value module: {tmp_path / 'vm'} (K = " in format_markdown(r)
