"""scripts/subset_rates.py: rates of saved answers on a subset of prompts named by a run or by suite limits."""

import json

import pytest
from conftest import load_script

from svgt.evaluation.suites import load_suite


def _script():
    return load_script("scripts/subset_rates.py")


def _write_run(folder, rows):
    folder.mkdir()
    (folder / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_suites_name_the_same_prompts_as_a_limited_eval_run():
    ids = _script().suite_ids("jailbreak:3, inthewild:2")
    assert ids == {"jailbreak": {p.id for p in load_suite("jailbreak", 3).prompts},
                   "inthewild": {p.id for p in load_suite("inthewild", 2).prompts}}
    assert len(ids["jailbreak"]) == 3


def test_counts_only_the_named_prompts(tmp_path, capsys):
    first, second, third = load_suite("jailbreak", 3).prompts
    refusal, answer = "I can't help with that.", "Sure, step one is"
    rows = [{"method": "svgt", "suite": "jailbreak", "id": p.id, "category": None, "text": text}
            # the third is outside the subset: it must not count, though it is a refusal
            for p, text in ((first, refusal), (second, answer), (third, refusal))]
    run = _write_run(tmp_path / "run", rows)
    assert _script().main(["--suites", "jailbreak:2", "--methods", "svgt", f"gemma={run}"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "| gemma | svgt |" in line and "50.0% (1/2)" in line  # one of the two named prompts answered


def test_a_bad_suite_is_named():
    with pytest.raises(SystemExit, match="nosuch"):
        _script().suite_ids("harmbench:40,nosuch")
