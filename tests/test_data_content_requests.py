"""Constructed content requests: matched harmful/benign frames, seeded, and clear of every evaluation prompt."""

from svgt.data import evaluation_texts, find_overlaps
from svgt.data.content_requests import (
    BENIGN_AIMS,
    BENIGN_CODE_AIMS,
    HARMFUL_AIMS,
    HARMFUL_CODE_AIMS,
    content_requests,
)


def test_aims_pair_up_and_do_not_repeat():
    assert len(HARMFUL_AIMS) == len(BENIGN_AIMS) and len(HARMFUL_CODE_AIMS) == len(BENIGN_CODE_AIMS)
    aims = HARMFUL_AIMS + BENIGN_AIMS + HARMFUL_CODE_AIMS + BENIGN_CODE_AIMS
    assert len(set(aims)) == len(aims)


def test_the_two_sides_differ_only_in_the_aim():
    harmful, benign = content_requests(3, seed=1)
    n_aims = len(HARMFUL_AIMS) + len(HARMFUL_CODE_AIMS)
    assert len(harmful) == len(benign) == 3 * n_aims
    aims = list(zip(HARMFUL_AIMS + HARMFUL_CODE_AIMS, BENIGN_AIMS + BENIGN_CODE_AIMS))
    for i, (h, b) in enumerate(zip(harmful, benign)):
        bad, good = aims[i // 3]
        assert bad in h and good in b
        assert h.replace(bad, "") == b.replace(good, "")  # same lead-in, same kind of text


def test_seeded_and_varied():
    assert content_requests(4, seed=0) == content_requests(4, seed=0)
    assert content_requests(4, seed=0) != content_requests(4, seed=1)
    harmful, _ = content_requests(4, seed=0)
    first = harmful[: len(HARMFUL_AIMS) * 4 : 4]  # one request per aim
    assert len({h.split(" that ")[0].split(" telling ")[0] for h in first}) > 5  # lead-ins and kinds vary
    assert content_requests(0) == ([], [])


def test_no_request_overlaps_an_evaluation_prompt():
    # The training-time leak check would drop an overlapping one silently to the reader; keep the list clear of them.
    harmful, benign = content_requests(14, seed=0)  # every kind of text for every aim
    assert find_overlaps(harmful + benign, evaluation_texts()) == []


def test_no_harmful_aim_paraphrases_a_harmbench_behaviour():
    # Stricter than the 8-gram leak check, because these aims are hand-written: a paraphrase of a HarmBench behaviour
    # ("step-by-step instructions for making a pipe bomb") shares no 8-gram with it yet teaches that very behaviour.
    import re

    from svgt.data.packaged import harmbench

    stop = set("a an the to of and or that with for in on as is are be it its my me you your how into from by".split())

    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in stop and len(w) > 2}

    behaviours = [words(row.prompt) for row in harmbench("test") + harmbench("val")]
    for aim in HARMFUL_AIMS + HARMFUL_CODE_AIMS:
        mine = words(aim)
        shared = max(len(mine & theirs) for theirs in behaviours)
        assert shared / len(mine) < 0.5, aim
