"""A co-judge: another backbone's value module whose standardised prompt score is averaged into the first bridge's
decision (the gate and the Newton step's length), loaded with the artifact that names it, and consulted by every
path that starts a guided answer."""

import json

import pytest
import torch
from conftest import make_module
from tiny import save_tiny_hf_backbone

from svgt import GenerationConfig, ValueModuleConfig
from svgt.artifact import load_pretrained, read_config, save_pretrained
from svgt.backbone import load_backbone
from svgt.cojudge import attach_co_judge
from svgt.continuous import ContinuousBatch
from svgt.generation import GuidedDecoder, generate
from svgt.pipeline import load_guided_model
from svgt.prompts import left_pad

PROMPTS = ["hello world how are you", "tell me a story", "a cat", "how are you today my friend"]
OWN_STATS, JUDGE_STATS = [0.1, 1.5], [0.2, 2.0]
NO_GATE = dict(gate_threshold=float("-inf"), stop_at_eos=False)


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A co-judge artifact on a backbone of another family, loadable by the path it records."""
    root = tmp_path_factory.mktemp("cojudge")
    backbone = load_backbone(save_tiny_hf_backbone(root / "backbone", family="qwen2"))
    save_pretrained(make_module(backbone, seed=5, extract_layer=1), root / "judge", backbone)
    return root / "judge"


def _host(backbone, judge_dir, **overrides):
    module = make_module(backbone, co_judge=str(judge_dir), co_judge_stats=JUDGE_STATS, score_stats=[OWN_STATS],
                         **overrides)
    return attach_co_judge(module)


def _first_scores(backbone, module, prompts=PROMPTS, **cfg):
    out = generate(backbone, module, prompts, GenerationConfig(max_new_tokens=1, **{**NO_GATE, **cfg}),
                   chat_template=False)
    return torch.tensor([t.bridge_score for t in out.telemetry])


def test_the_co_judge_scores_prompts_as_its_own_module_would_before_its_first_bridge(llama, judge_dir):
    host = _host(llama, judge_dir)
    judge = host.co_judge
    alone = _first_scores(judge.backbone, judge.module)  # the judge guiding its own backbone
    assert torch.allclose(judge.scores(PROMPTS, chat_template=False), alone, atol=1e-5)
    assert torch.allclose(judge.opinions(PROMPTS, chat_template=False), (alone - 0.2) / 2.0, atol=1e-5)


def test_the_first_bridge_reads_the_average_of_both_judges_on_the_modules_scale(llama, judge_dir):
    host = _host(llama, judge_dir)
    own = _first_scores(llama, host, co_judge=False)
    opinions = host.co_judge.opinions(PROMPTS, chat_template=False)
    both = _first_scores(llama, host)
    expected = OWN_STATS[0] + OWN_STATS[1] * ((own - OWN_STATS[0]) / OWN_STATS[1] + opinions) / 2
    assert torch.allclose(both, expected, atol=1e-5) and not torch.allclose(both, own, atol=1e-3)


def test_the_co_judge_decides_the_gate_with_the_module(llama, judge_dir):
    """A gate between a prompt's own score and the average: the co-judge's vote is what bridges (or spares) it."""
    host = _host(llama, judge_dir)
    own, both = _first_scores(llama, host, co_judge=False), _first_scores(llama, host)
    row = int((both - own).abs().argmax())
    gate = float(own[row] + both[row]) / 2
    cfg = dict(max_new_tokens=4, stop_at_eos=False, gate_threshold=gate)
    with_judge = generate(llama, host, PROMPTS, GenerationConfig(**cfg), chat_template=False)
    without = generate(llama, host, PROMPTS, GenerationConfig(co_judge=False, **cfg), chat_template=False)
    bridged = [t.bridged_at is not None for t in with_judge.telemetry]
    assert bridged[row] == bool(both[row] > gate) and [t.bridged_at is not None for t in without.telemetry][row] == (
        bool(own[row] > gate)) and bridged[row] != (without.telemetry[row].bridged_at is not None)


def test_a_row_joining_a_running_batch_gets_its_opinion_and_the_tokens_it_gets_alone(llama, judge_dir):
    host = _host(llama, judge_dir, margin=1.0)
    first, joining = [2, 5, 6, 7, 8], [2, 9, 10]
    opinion = torch.tensor([3.0])
    cfg = GenerationConfig(max_new_tokens=6, **NO_GATE)
    ids, mask = left_pad([joining], 0)
    alone = GuidedDecoder(llama, host, cfg).run(ids, mask, opinions=opinion)
    plain = GuidedDecoder(llama, host, cfg).run(ids, mask)
    assert alone.telemetry[0].bridge_score != pytest.approx(plain.telemetry[0].bridge_score)
    out: list[int] = []
    with ContinuousBatch(llama, host, cfg) as batch:
        batch.join(*left_pad([first], 0))
        for step in range(8):
            if step == 2:
                batch.join(ids, mask, opinions=opinion)
            tokens = batch.pick().tolist()
            if step >= 2:
                out.append(tokens[1])
            batch.advance()
            if len(out) == 6:
                break
        assert batch.telemetry[1].bridge_score == pytest.approx(alone.telemetry[0].bridge_score)
    assert out == alone.token_ids[0]


def test_an_artifact_brings_its_co_judge_and_says_when_it_is_missing(tmp_path, llama, judge_dir):
    host = _host(llama, judge_dir)
    save_pretrained(host, tmp_path / "host", llama)
    loaded = load_pretrained(tmp_path / "host", llama)
    assert loaded.co_judge is not None and loaded.config.co_judge_stats == JUDGE_STATS
    assert torch.equal(_first_scores(llama, loaded), _first_scores(llama, host))
    bare = load_pretrained(tmp_path / "host", llama, co_judge=False)
    with pytest.raises(RuntimeError, match="co-judge .* none is attached"):
        _first_scores(llama, bare)
    assert torch.allclose(_first_scores(llama, bare, co_judge=False), _first_scores(llama, host, co_judge=False))
    alone = load_guided_model(llama, tmp_path / "host", co_judge=False).module  # what --no-co-judge loads
    assert alone.co_judge is None and torch.allclose(_first_scores(llama, alone), _first_scores(llama, bare,
                                                                                                co_judge=False))


def test_a_co_judge_needs_both_modules_statistics_and_an_artifact():
    base = dict(hidden_size=16, num_layers=4, extract_layer=2)
    with pytest.raises(ValueError, match="score_stats"):
        ValueModuleConfig(co_judge="x", co_judge_stats=[0.0, 1.0], **base)
    with pytest.raises(ValueError, match="co_judge_stats"):
        ValueModuleConfig(co_judge="x", score_stats=[[0.0, 1.0]], **base)
    module = make_module(type("B", (), {"hidden_size": 16, "num_layers": 4})(), co_judge="/nowhere",
                         co_judge_stats=[0.0, 1.0], score_stats=[[0.0, 1.0]])
    with pytest.raises(FileNotFoundError, match="neither a packaged artifact's name nor an artifact directory"):
        attach_co_judge(module)


def test_two_modules_can_name_each_other_and_each_is_asked_alone(tmp_path, llama, judge_dir):
    """The co-judge's own co-judge is not loaded: its opinion is its module's score, not a third average."""
    config = read_config(judge_dir)
    config["module"].update(co_judge=str(tmp_path / "host"), co_judge_stats=[0.0, 1.0],
                            score_stats=[[0.0, 1.0]])
    named = tmp_path / "judge-naming-host"
    named.mkdir()
    for f in judge_dir.iterdir():
        (named / f.name).write_bytes(f.read_bytes())
    (named / "svgt_config.json").write_text(json.dumps(config))
    host = make_module(llama, co_judge=str(named), co_judge_stats=JUDGE_STATS, score_stats=[OWN_STATS])
    save_pretrained(host, tmp_path / "host", llama)
    judge = attach_co_judge(host).co_judge
    assert judge.module.co_judge is None and judge.module.config.co_judge is None
    plain = attach_co_judge(_host(llama, judge_dir)).co_judge
    assert torch.allclose(judge.scores(PROMPTS, chat_template=False), plain.scores(PROMPTS, chat_template=False))


def test_the_co_judge_loads_in_the_hosts_dtype(tmp_path, judge_dir):
    """A host in half precision (as on a GPU) does not carry its co-judge's backbone in float32 beside it."""
    root = tmp_path / "bf16"
    host_backbone = load_backbone(save_tiny_hf_backbone(root / "backbone"), dtype="bfloat16")
    save_pretrained(make_module(host_backbone, co_judge=str(judge_dir), co_judge_stats=JUDGE_STATS,
                                score_stats=[OWN_STATS]), root / "host", host_backbone)
    judge = load_pretrained(root / "host", host_backbone).co_judge
    assert judge.backbone.dtype == torch.bfloat16 and judge.backbone.device == host_backbone.device
    assert torch.isfinite(judge.opinions(PROMPTS, chat_template=False)).all()
