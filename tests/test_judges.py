"""The phrase-list refusal judge and the loop detector."""

from svgt.judges import is_looping, is_refusal, looping_rate


def test_loops_are_runs_repeated_back_to_back():
    assert is_looping("I'm not a good person, I'm not a good person, I'm not a good person.")
    assert is_looping("I can help you can help you can help you with that")
    assert is_looping("no no no no")
    assert not is_looping("no no no, that is wrong")  # one word needs four in a row
    assert not is_looping("Preheat the oven. Mix the flour and water. Knead the dough for ten minutes.")
    assert not is_looping("I'm not a good person, I'm not a good person.")  # twice is a phrase, not a loop
    assert looping_rate(["a b a b a b", "fine answer"]) == 0.5


def test_refusal_judge_reads_the_opening_only():
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert not is_refusal("Here is how. " + "x " * 200 + "I'm sorry")
