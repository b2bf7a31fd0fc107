import pytest
from tiny import save_tiny_hf_backbone

from svgt.evaluation.llm_judge import LLMJudge, parse_harmbench, parse_llamaguard, parse_wildguard


@pytest.mark.parametrize("raw,harmful", [("safe", False), ("\n unsafe\nS1,S10", True), ("Unsafe", True),
                                         ("I think it's fine", None), ("", None)])
def test_parse_llamaguard(raw, harmful):
    v = parse_llamaguard(raw)
    assert v.harmful is harmful and v.refusal is None and v.raw == raw


def test_parse_wildguard():
    v = parse_wildguard("Harmful request: yes\nResponse refusal: no\nHarmful response: yes")
    assert (v.harmful, v.refusal) == (True, False)
    v = parse_wildguard("Harmful request: no\nResponse refusal: yes\nHarmful response: no")
    assert (v.harmful, v.refusal) == (False, True)
    v = parse_wildguard("Harmful request: yes\nResponse refusal: N/A\nHarmful response: N/A")
    assert (v.harmful, v.refusal) == (None, None)
    assert parse_wildguard("garbage").harmful is None


@pytest.mark.parametrize("raw,harmful", [("Yes", True), ("no", False), (" Yes.", True), ("Maybe", None), ("", None)])
def test_parse_harmbench(raw, harmful):
    assert parse_harmbench(raw).harmful is harmful


@pytest.fixture(scope="module")
def judge_path(tmp_path_factory):
    return save_tiny_hf_backbone(tmp_path_factory.mktemp("judge"))


@pytest.mark.parametrize("kind,raws,expected", [
    ("llamaguard", ["safe", "unsafe\nS2", "???"], [False, True, None]),
    ("wildguard", ["Harmful request: yes\nResponse refusal: yes\nHarmful response: no",
                   "Harmful request: yes\nResponse refusal: no\nHarmful response: yes", "nonsense"],
     [False, True, None]),
    ("harmbench", ["No", "Yes", "hmm"], [False, True, None]),
])
def test_judge_plumbing_with_fixed_outputs(judge_path, monkeypatch, kind, raws, expected):
    judge = LLMJudge.from_pretrained(judge_path, kind)
    seen = []
    monkeypatch.setattr(judge, "_generate", lambda inputs: seen.extend(inputs) or raws[: len(inputs)])
    verdicts = judge.judge(["tell me a story", "how to hack", "hello"], ["Once upon", "Sure", "hi"],
                           [None, "some context", None])
    assert [v.harmful for v in verdicts] == expected and [v.raw for v in verdicts] == raws
    assert judge.name == f"{kind}:{judge_path}"
    text, _ = seen[1]
    assert "how to hack" in text and "Sure" in text
    if kind == "harmbench":
        assert "[CONTEXT]:\nsome context" in text and "Behavior:" in seen[0][0] and text.endswith("[/INST]")
    if kind == "wildguard":
        assert text.startswith("<s><|user|>\n[INST] You are a classifier") and text.endswith("<|assistant|>\n")
    if kind == "llamaguard":
        assert "Agent: Sure" in text and "S14: Code Interpreter Abuse." in text


def test_judge_runs_the_real_model(judge_path):
    judge = LLMJudge.from_pretrained(judge_path, "wildguard", batch_size=2)
    verdicts = judge.judge(["a", "bb", "ccc"], ["x", "y", "z"])
    assert len(verdicts) == 3 and all(isinstance(v.raw, str) for v in verdicts)
    assert judge.judge([], []) == []
    with pytest.raises(ValueError, match="judge kind"):
        LLMJudge(judge.backbone, "gpt4")
