"""The speed benchmark on tiny random backbones: structure, interleaving, equal lengths, outputs. Never timings."""

import json

import pytest
import torch
from tiny import tiny_backbone

from svgt.benchmark import QUICK_VARIANTS, RANDOM_CONFIGS, format_markdown, run_benchmark
from svgt.benchmark.measure import RssSampler
from svgt.benchmark.models import prompt_batch, random_backbone
from svgt.benchmark.variants import parse_variant, token_forwards

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
    r = run_benchmark(backbone, quick=True, repeats=2, new_tokens=[8], prompt_lens=[8], memory=False)
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
    assert [n for _, n in r["cells"][0]["order"]] == ["hf_generate", "svgt_r1_fast"]
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


@pytest.mark.parametrize("name,params", [("smollm2-135m", 134.5e6), ("llama-3.2-3b", 3.21e9), ("mistral-7b", 7.25e9)])
def test_random_configs_have_the_real_shapes(name, params):
    backbone = random_backbone(name, device="meta")  # shapes only, nothing allocated
    count = sum(p.numel() for p in backbone.model.parameters())
    assert count == pytest.approx(params, rel=0.01)
    assert backbone.num_layers == RANDOM_CONFIGS[name]["num_hidden_layers"]


def test_rss_sampler_sees_an_allocation():
    with RssSampler() as sampler:
        big = torch.ones(64 * 1024 * 1024 // 4 * 3)  # 192 MiB, touched
        del big
    assert sampler.peak - sampler.baseline > 100 * 1024 * 1024
