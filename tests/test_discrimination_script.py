"""scripts/discrimination.py's summary of several runs of one recipe (no backbone: reports are made up here)."""

import pytest
from conftest import load_script


def _script():
    return load_script("scripts/discrimination.py")


def _report(edgy: float, share: float, everything: float) -> dict:
    return {"layers": "extract 2, insert 2", "harmbench_val_vs": {"heldout_benign": share, "heldout_edgy": edgy},
            "heldout_contrast": {"all": everything, "n": 4, "by_category": {}}}


def test_recipes_are_consecutive_groups_with_mean_and_range():
    reports = {"a0": _report(0.9, 0.95, 0.8), "a1": _report(0.7, 0.97, 0.9), "a2": _report(0.8, 0.96, 0.85),
               "b0": _report(0.6, 0.5, 0.7), "b1": _report(0.5, 0.6, 0.6), "b2": _report(0.7, 0.7, 0.5),
               "mean": _report(0.0, 0.0, 0.0), "a0, answers": _report(0.0, 0.0, 0.0)}  # rows of no recipe
    names = ["a0", "a1", "a2", "b0", "b1", "b2"]
    rows = _script().recipe_rows(reports, names, 3)
    assert [first for first, _ in rows] == ["a0", "b0"]
    a, b = rows[0][1], rows[1][1]
    assert list(a) == ["heldout_benign", "heldout_edgy", "contrast, all"]
    assert a["heldout_edgy"] == pytest.approx((0.8, 0.7, 0.9))
    assert b["heldout_benign"] == pytest.approx((0.6, 0.5, 0.7))
    assert b["contrast, all"] == pytest.approx((0.6, 0.5, 0.7))
    with pytest.raises(ValueError, match="groups of 4"):
        _script().recipe_rows(reports, names, 4)


def test_each_artifact_is_scored_on_its_own_backbone_unless_one_is_named():
    configs = [{"backbone": {"name": "gemma-3-270m"}}, {"backbone": {"name": "smollm2-135m-instruct"}}]
    assert _script().backbone_names(configs, None) == ["gemma-3-270m", "smollm2-135m-instruct"]
    assert _script().backbone_names(configs, "gpt2") == ["gpt2", "gpt2"]


def test_answers_from_two_backbones_are_refused_before_anything_loads(tmp_path, capsys):
    from svgt.artifact import save_pretrained
    from conftest import make_module
    from tiny import tiny_backbone

    folders = []
    for name in ("one", "two"):
        bb = tiny_backbone("llama")
        save_pretrained(make_module(bb), tmp_path / name, bb)
        folders.append(tmp_path / name)
    config = folders[1] / "svgt_config.json"
    config.write_text(config.read_text().replace('"name": "', '"name": "other-', 1))
    with pytest.raises(SystemExit):
        _script().main(["--answers", "8", *map(str, folders)])
    assert "--answers reads one backbone's answers" in capsys.readouterr().err


def test_the_gate_at_an_edgy_share_lets_at_most_that_share_through():
    scores = {"harmbench_val": [5.0, 3.0, 1.0, -1.0], "heldout_edgy": [float(x) for x in range(10)], "empty": []}
    point = _script().gate_at(scores, "heldout_edgy", 0.2)
    # 2 of 10 edgy prompts may pass: the threshold is the third highest, 7, and only 8 and 9 are above it.
    assert point["threshold"] == 7.0 and point["heldout_edgy"] == 0.2
    assert point["harmbench_val"] == 0.0 and "empty" not in point
    assert _script().gate_at(scores, "heldout_edgy", 0.0)["heldout_edgy"] == 0.0
    assert _script().gate_at(scores, "heldout_edgy", 1.0)["heldout_edgy"] == 1.0
