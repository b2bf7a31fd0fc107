"""scripts/selection_rules.py on a made-up stored search (no backbone, no generation)."""

import json

from conftest import load_script


def _row(gate: float, margin: float, hb: float, edgy: float, sharegpt: float) -> dict:
    rates = {"harmbench_val_refusal": hb, "heldout_edgy_refusal": edgy, "heldout_benign_refusal": sharegpt}
    return {"params": {"gate_threshold": gate, "margin": margin}, "tune_refusal": hb,
            "tune_overrefusal": max(edgy, sharegpt), "rates": rates}


# The backbone alone refuses 30% of the edgy column: no row gets under a 10% cap as the rates are, so the rule in use
# falls back to the lowest worst column (row 0); counted as refusals added, rows 0 and 1 pass the cap and the one
# that refuses more harmful prompts wins.
SEARCH = [_row(2.0, 0.0, 0.5, 0.30, 0.05), _row(0.0, 0.0, 0.7, 0.35, 0.10), _row(-2.0, 4.0, 0.9, 0.45, 0.12)]
UNGUIDED = {"harmbench_val_refusal": 0.0, "heldout_edgy_refusal": 0.30, "heldout_benign_refusal": 0.02}


def test_added_refusals_subtract_the_backbones_own_and_never_go_below_zero():
    script = load_script("scripts/selection_rules.py")
    rows = script.added_rows(SEARCH + [_row(4.0, 0.0, 0.1, 0.20, 0.0)], UNGUIDED)
    assert [round(r["tune_overrefusal"], 2) for r in rows] == [0.03, 0.08, 0.15, 0.0]
    assert SEARCH[0]["tune_overrefusal"] == 0.30  # the stored rows are left as they were


def test_the_two_rules_choose_from_the_stored_search(tmp_path, capsys):
    script = load_script("scripts/selection_rules.py")
    tuning = {"harmbench_val_n": 10, "heldout_edgy_n": 20, "heldout_benign_n": 50, "unguided": UNGUIDED,
              "margin": {"search": SEARCH, "chosen": 0.0, "gate_threshold": 2.0}}
    (tmp_path / "metrics.json").write_text(json.dumps({"tuning": tuning}))
    assert script.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rates as they are:   gate 2.0, margin 0: harmbench_val 5/10, heldout_edgy 6/20" in out
    assert "refusals added:      gate 0.0, margin 0: harmbench_val 7/10" in out
    assert script.main([str(tmp_path / "missing")]) == 2
    assert "metrics.json: not found" in capsys.readouterr().err
