"""The three prompt benchmarks: the paper's transformations, sizes, order, seeds, and correct answers."""
import re

import numpy as np
import pytest

from ogdash.core.errors import OgdashError
from ogdash.data.prompts import MATH_PROBLEMS, TASKS, TRANSFORMATIONS, make_prompts

# Appendix B.1.4's examples on "Welcome to the real world."
PAPER_EXAMPLES = [
    "world. real the to Welcome",
    "wElCoMe To ThE rEaL wOrLd.",
    "Welcome 1to 1the 1real 1world.",
    "W*lc*m* t* th* r**l w*rld.",
    "Wwellccomme tto tthhe rreall wworrlldd.",
    "Welcome To The Real World.",
    "Wlcm t th rl wrld.",
    "Welcomely toly thely really world.ly",
    "eoe o e ea o.",
    "Welcome Welcome to to the the real real world. world.",
]


def test_transformations_match_the_papers_examples():
    assert len(TRANSFORMATIONS) == 10 and len({name for name, _, _ in TRANSFORMATIONS}) == 10
    for (_, _, fn), expected in zip(TRANSFORMATIONS, PAPER_EXAMPLES):
        assert fn("Welcome to the real world.") == expected


@pytest.mark.parametrize("task", list(TASKS))
def test_default_sizes_and_class_major_order(task):
    b = make_prompts(task)
    assert (b.train.n, b.test.n, b.n_classes) == (900, 100, 10)
    assert np.array_equal(b.train.labels, np.arange(900) // 90)
    assert np.array_equal(b.test.labels, np.arange(100) // 10)
    assert len(set(b.train.ids) | set(b.test.ids)) == 1000
    assert not set(b.train.prompts) & set(b.test.prompts)  # test prompts are unseen
    assert all(p.endswith("->") for p in b.train.prompts)


def test_seeded_and_small():
    a = make_prompts("sentence_transformations", per_class=3, test_per_class=2, seed=1)
    assert (a.train.n, a.test.n) == (30, 20)
    assert a.fingerprint() == make_prompts("sentence_transformations", per_class=3, test_per_class=2, seed=1).fingerprint()
    assert a.fingerprint() != make_prompts("sentence_transformations", per_class=3, test_per_class=2, seed=2).fingerprint()
    name, title, fn = TRANSFORMATIONS[4]
    prompt, completion = a.train.prompts[12], a.train.completions[12]
    assert prompt.startswith(f"{name} is a chatbot") and title in prompt
    sentence = prompt.split("For example: ")[1][: -len(" ->")]
    assert completion == " " + fn(sentence)


def test_math_answers_follow_the_reasoning():
    r = make_prompts("math_reason", per_class=20, test_per_class=2)
    n = make_prompts("math_no_reason", per_class=20, test_per_class=2)
    assert r.train.prompts == n.train.prompts  # same problems, only the completion differs
    for i in range(r.train.n):
        prompt, completion = r.train.prompts[i], r.train.completions[i]
        assert prompt.startswith("Solve the following math problem.")
        m = re.fullmatch(r" Reason: (.*) Answer: (-?\d+)", completion)
        assert m, completion
        last = m.group(1).rstrip(".").split("=")[-1]
        assert eval(last, {"__builtins__": {}}) == int(m.group(2)) >= 0  # the reasoning yields the answer
        assert n.train.completions[i] == f" Answer: {m.group(2)}"
    assert len(MATH_PROBLEMS) == 10


def test_bad_requests():
    with pytest.raises(OgdashError, match="Unknown prompt benchmark"):
        make_prompts("poetry")
    with pytest.raises(OgdashError, match="at least 1"):
        make_prompts("math_reason", per_class=0)
