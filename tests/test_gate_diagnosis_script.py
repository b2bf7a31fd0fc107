"""scripts/gate_diagnosis.py's benign tally (no backbone: answers and scores are made up here)."""

from conftest import load_script

REFUSAL, ANSWER = "I'm sorry, but I can't help with that.", "Sure, here is a recipe."


def _row(prompt: str, text: str, source: str = "sharegpt") -> dict:
    return {"prompt": prompt, "text": text, "source": source}


def test_refusals_split_into_the_backbones_own_and_those_a_bridge_or_a_later_refresh_added():
    script = load_script("scripts/gate_diagnosis.py")
    rows = [_row("a", REFUSAL), _row("b", REFUSAL), _row("c", REFUSAL), _row("d", ANSWER), _row("e", REFUSAL),
            _row("f", ANSWER), _row("g", REFUSAL, "edgy")]
    scores = [-8.0, -1.0, 3.0, 0.5, -6.0, 9.0, 10.0]
    own = {"a": True, "b": False, "c": False, "e": False, "g": True}
    tally = script.benign_tally(rows, scores, own, gate=-2.0)
    assert tally["sharegpt"] == {"n": 6, "refused": 4, "own": 1, "added_gated": 1, "added_bridged": 2,
                                 "bridged_by_band": {"+(0, 2]": [1, 1], "+(2, 4]": [1, 0], "+(4, 8]": [1, 1],
                                                     "> +8": [1, 0]}}
    assert tally["edgy"] == {"n": 1, "refused": 1, "own": 1, "added_gated": 0, "added_bridged": 0,
                             "bridged_by_band": {"> +8": [1, 1]}}


def test_without_a_gate_every_prompt_is_bridged():
    script = load_script("scripts/gate_diagnosis.py")
    tally = script.benign_tally([_row("a", REFUSAL), _row("b", ANSWER)], [-9.0, -1.0], {"a": False}, gate=None)
    assert tally["sharegpt"]["added_bridged"] == 1 and tally["sharegpt"]["bridged_by_band"] == {"all": [2, 1]}
