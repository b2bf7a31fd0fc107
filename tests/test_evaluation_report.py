import json
from pathlib import Path

from svgt.evaluation.report import write_report

FIXTURE = Path(__file__).parent / "fixtures" / "evaluation" / "results_small.json"


def table_rows(text):
    start = text.index("| method | harmbench ASR")
    rows = [line for line in text[start:].splitlines()[:4] if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def test_report_table_values_and_plots(tmp_path):
    path = write_report(FIXTURE, tmp_path)
    text = path.read_text()
    header, _, none, svgt = table_rows(text)
    assert header == ["method", "harmbench ASR ↓", "harmbench refusal ↑", "harmbench toxicity ↓",
                      "harmbench ms/token ↓", "overrefusal over-refusal ↓", "overrefusal toxicity ↓",
                      "overrefusal PPL ↓", "overrefusal ms/token ↓"]  # not-applicable columns are dropped
    assert none == ["none", "75.0", "25.0", "0.125", "**20.0**", "**0.0**", "0.020", "**3.50**", "**19.0**"]
    assert svgt == ["svgt", "**25.0**", "**75.0**", "n/a", "26.0", "25.0", "**0.010**", "4.25", "25.0"]
    assert "unavailable: alt-profanity-check cannot be used" in text  # n/a explained, not shown as zero
    assert "| svgt | 25.5 | 130.0 | 12.5 |" in text
    assert "| svgt | ASR ↓ | 25.0 | [10.0, 90.0] | 4 | phrase list |" in text
    assert "- `alpha` = `0.3`" in text and "copyright behaviors excluded" in text and "PPL protocol text" in text
    for png in ("asr_vs_overrefusal.png", "trajectory.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"]({png})" in text


def test_report_without_plot_data(tmp_path):
    results = json.loads(FIXTURE.read_text())
    results["trajectories"] = {}
    for m in results["methods"].values():
        del m["suites"]["overrefusal"]
    results["suites"].pop("overrefusal")
    (tmp_path / "r.json").write_text(json.dumps(results))
    text = write_report(tmp_path / "r.json", tmp_path / "out").read_text()
    assert "- trajectory.png: no data for this plot." in text and "- asr_vs_overrefusal.png: no data" in text
    assert not (tmp_path / "out" / "trajectory.png").exists()


def test_report_shows_every_tuning_candidate_and_plots_them(tmp_path):
    results = json.loads(FIXTURE.read_text())
    rule = "highest tuning refusal with tuning over-refusal <= 10%; if none, the lowest over-refusal"
    results["methods"]["svgt"]["search"] = [
        {"params": {"alpha": a}, "tune_refusal": r, "tune_overrefusal": o, "n_harmful": 30, "n_benign": 30,
         "max_new_tokens": 24, "chosen": a == 0.3, **({"rule": rule, "max_overrefusal": 0.1} if a == 0.3 else {})}
        for a, r, o in ((0.1, 0.0, 0.0), (0.3, 0.5, 0.1), (0.9, 0.9, 0.4))]
    (tmp_path / "r.json").write_text(json.dumps(results))
    text = write_report(tmp_path / "r.json", tmp_path / "out").read_text()
    section = text[text.index("## Tuning search"):text.index("## Plots")]
    assert "none**" not in section  # no search, no table
    assert f"**svgt** (3 candidates; n = 30 harmful, 30 benign, 24 new tokens; chosen: {rule})" in section
    assert "| alpha=0.1 | 0.0 | 0.0 |  |" in section and "| alpha=0.3 | 50.0 | 10.0 | chosen |" in section
    assert "| alpha=0.9 | 90.0 | 40.0 |  |" in section
    assert (tmp_path / "out" / "tuning_search.png").stat().st_size > 1000 and "](tuning_search.png)" in text


def test_report_of_a_run_without_searches_says_so(tmp_path):
    text = write_report(FIXTURE, tmp_path).read_text()
    assert "No method searched hyperparameters" in text and "- tuning_search.png: no data for this plot." in text


def test_tuning_search_shows_benign_ppl_when_measured(tmp_path):
    results = json.loads(FIXTURE.read_text())
    results["methods"]["svgt"]["search"] = [
        {"params": {"alpha": a}, "tune_refusal": 0.0, "tune_overrefusal": 0.0, "tune_ppl": p, "tune_ppl_unguided": 2.0,
         "n_harmful": 30, "n_benign": 30, "max_new_tokens": 24, "chosen": a == 0.1, "fluent": p < 3}
        for a, p in ((0.1, 2.25), (4, 31.5))]
    (tmp_path / "r.json").write_text(json.dumps(results))
    text = write_report(tmp_path / "r.json", tmp_path / "out").read_text()
    assert "24 new tokens; the backbone's own answers: PPL 2.00; chosen" in text
    assert "| candidate | tuning refusal ↑ | tuning over-refusal ↓ | benign PPL ↓ | |" in text
    assert "| alpha=0.1 | 0.0 | 0.0 | 2.25 | chosen |" in text and "| alpha=4 | 0.0 | 0.0 | 31.50 ✗ |  |" in text
    assert "✗: the candidate breaks the text" in text


def test_overrefusal_by_category_table_and_plot_for_every_method(tmp_path):
    results = json.loads(FIXTURE.read_text())
    cats = {"none": {"history": (0, 10), "medical": (1, 31)}, "svgt": {"history": (9, 10), "sharegpt": (2, 187)}}
    for name, m in results["methods"].items():
        m["overrefusal_by_category"] = {"overrefusal": {c: {"refused": r, "n": n} for c, (r, n) in cats[name].items()}}
    (tmp_path / "r.json").write_text(json.dumps(results))
    text = write_report(tmp_path / "r.json", tmp_path / "out").read_text()
    assert "| history | 0/10 | 9/10 |" in text and "| sharegpt | – | 2/187 |" in text
    assert (tmp_path / "out" / "overrefusal_by_category.png").stat().st_size > 1000
    assert "](overrefusal_by_category.png)" in text
    plain = write_report(FIXTURE, tmp_path / "plain").read_text()
    assert "- overrefusal_by_category.png: no data for this plot." in plain
