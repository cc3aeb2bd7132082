"""The three prompt benchmarks of DataInf (Kwon et al. 2024) that the paper's Section 7 uses.

Each benchmark has 10 classes (task types); by default 90 training and 10 test prompts
per class. A prompt is a text the model reads and a completion it should write; the
loss is taken on the completion only. Everything is generated here from a seed, so the
same seed gives the same prompts on every machine, and test prompts never repeat a
training prompt.

- ``sentence_transformations``: a made-up chatbot name is tied to one of ten sentence
  transformations; the prompt names the bot and the transformation and gives a
  sentence, the completion is the transformed sentence.
- ``math_no_reason`` / ``math_reason``: ten arithmetic word-problem templates filled
  with random positive integers; the completion is ``Answer: N``, preceded by the
  intermediate reasoning line ``Reason: ...`` in the "with reasoning" variant.

Ordering is class-major: training prompt ``i`` belongs to class ``i // per_class``
(90 by default) and test prompt ``j`` to class ``j // test_per_class``.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ogdash.core.errors import OgdashError

TASKS = {
    "sentence_transformations": "Sentence Transformations",
    "math_no_reason": "Math Without Reasoning",
    "math_reason": "Math With Reasoning",
}

# --------------------------------------------------------------------------- sentences

_SUBJECTS = ["The old fisherman", "A young girl", "My neighbor", "The tired doctor", "Our teacher", "The little dog",
             "A curious cat", "The brave pilot", "Her grandfather", "The quiet student", "A busy baker",
             "The clever fox", "His sister", "The happy farmer", "A lonely sailor", "The new manager",
             "Every child", "The small robot", "A famous singer", "The proud king"]
_VERBS = ["found", "painted", "carried", "watched", "built", "cleaned", "opened", "sold", "lost", "fixed",
          "borrowed", "visited", "followed", "described", "hid", "counted", "drew", "baked", "shared", "moved"]
_OBJECTS = ["a red box", "the broken chair", "an old map", "the green door", "a silver key", "the wooden boat",
            "a warm blanket", "the heavy stone", "a tiny garden", "the blue kite", "a secret letter",
            "the empty bottle", "a golden ring", "the small house", "a strange book", "the bright lamp",
            "a paper crown", "the long ladder", "a fresh loaf", "the dusty piano"]
_ENDINGS = ["near the river", "after dinner", "in the morning", "before the storm", "at the market",
            "under the bridge", "during the party", "behind the school", "last winter", "by the window",
            "on the hill", "with great care", "in the rain", "at midnight", "before lunch", "in the park"]


def _sentence(rng: random.Random) -> str:
    parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    if rng.random() < 0.6:
        parts.append(rng.choice(_ENDINGS))
    return " ".join(parts) + "."


_VOWELS = set("aeiouAEIOU")


def _is_consonant(ch: str) -> bool:
    return ch.isalpha() and ch not in _VOWELS


def reverse_words(s: str) -> str:
    return " ".join(reversed(s.split()))


def capitalize_every_other_letter(s: str) -> str:
    out, k = [], 0
    for ch in s:
        if ch.isalpha():
            out.append(ch.upper() if k % 2 else ch.lower())
            k += 1
        else:
            out.append(ch)
    return "".join(out)


def insert_one_between_words(s: str) -> str:
    return " 1".join(s.split())


def replace_vowels_with_star(s: str) -> str:
    return "".join("*" if ch in _VOWELS else ch for ch in s)


def double_consonants(s: str) -> str:
    return "".join(ch + ch.lower() if _is_consonant(ch) else ch for ch in s)


def capitalize_every_word(s: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in s.split())


def remove_vowels(s: str) -> str:
    return "".join(ch for ch in s if ch not in _VOWELS)


def add_ly(s: str) -> str:
    return " ".join(w + "ly" for w in s.split())


def remove_consonants(s: str) -> str:
    return "".join(ch for ch in s if not _is_consonant(ch))


def repeat_words(s: str) -> str:
    return " ".join(f"{w} {w}" for w in s.split())


# (chatbot name, transformation title, function): one class each, in this order.
TRANSFORMATIONS: list[tuple[str, str, Callable[[str], str]]] = [
    ("Wordflip", "reverse the order of the words", reverse_words),
    ("Zigzara", "capitalize every other letter", capitalize_every_other_letter),
    ("Onesy", "insert the number 1 between every word", insert_one_between_words),
    ("Starvox", "replace every vowel with *", replace_vowels_with_star),
    ("Dubbleton", "double every consonant", double_consonants),
    ("Titulo", "capitalize every word", capitalize_every_word),
    ("Voweless", "remove all vowels", remove_vowels),
    ("Lylabot", "add ly to the end of each word", add_ly),
    ("Konsonix", "remove all consonants", remove_consonants),
    ("Echolia", "repeat each word twice", repeat_words),
]


def _transformation_example(cls: int, rng: random.Random) -> tuple[str, str]:
    name, title, fn = TRANSFORMATIONS[cls]
    sentence = _sentence(rng)
    prompt = (f"{name} is a chatbot that performs a specific transformation on sentences: {title}. "
              f"For example: {sentence} ->")
    return prompt, " " + fn(sentence)


# --------------------------------------------------------------------------- math


def _r(rng: random.Random, lo: int = 1, hi: int = 99) -> int:
    return rng.randint(lo, hi)


def _pizza(rng):
    a, b = _r(rng, 1, 20), _r(rng, 1, 20)
    c = _r(rng, a + b, 99)
    return (f"Jane ate {a} slices of pizza and her brother ate {b} slices from a pizza that originally had {c} "
            "slices. How many slices of the pizza are left?",
            f"Combined slices eaten = {a} + {b}. Left = {c} - ({a} + {b}).", c - (a + b))


def _chaperones(rng):
    a, b, c = _r(rng, 2, 20), _r(rng, 1, 5), _r(rng, 10, 99)
    return (f"For every {a} students going on a field trip, there are {b} adults needed as chaperones. "
            f"If {c} students are attending, how many adults are needed?",
            f"Adults needed = ({b} * {c}) // {a}.", (b * c) // a)


def _purchase(rng):
    a, b, c = _r(rng), _r(rng), _r(rng)
    return (f"In an aquarium, there are {a} sharks and {b} dolphins. If they bought {c} more sharks, "
            "how many sharks would be there in total?",
            f"Total sharks = {a} + {c}.", a + c)


def _game(rng):
    a, b, c, d = (_r(rng) for _ in range(4))
    return (f"John scored {a} points in the first game, {b} points in the second, {c} in the third, and {d} in "
            "the fourth game. What is his total points?",
            f"Total points = {a} + {b} + {c} + {d}.", a + b + c + d)


def _reading(rng):
    a, b = _r(rng, 1, 12), _r(rng)
    return (f"Elise reads for {a} hours each day. How many hours does she read in total in {b} days?",
            f"Total hours read = {a} * {b}.", a * b)


def _discount(rng):
    a = _r(rng, 2, 99)
    b = _r(rng, 1, a - 1)
    return (f"A shirt costs {a}. There's a {b}-dollar off sale. How much does the shirt cost after the discount?",
            f"Cost after discount = {a} - {b}.", a - b)


def _area(rng):
    a, b = _r(rng), _r(rng)
    return (f"A rectangular garden has a length of {a} meters and a width of {b} meters. What is its area?",
            f"Area = {a} * {b}.", a * b)


def _savings(rng):
    a, b = _r(rng), _r(rng)
    return (f"If James saves {a} each week, how much will he save after {b} weeks?",
            f"Total savings = {a} * {b}.", a * b)


def _cupcakes(rng):
    a = _r(rng, 2, 24)
    b = _r(rng, a, 99)
    return (f"A bakery sells cupcakes in boxes of {a}. If they have {b} cupcakes, how many boxes can they fill?",
            f"Boxes filled = {b} // {a}.", b // a)


def _interest(rng):
    a, b, c = _r(rng), _r(rng, 1, 20), _r(rng, 1, 10)
    return (f"Jake invests {a} at an annual interest rate of {b}%. How much interest will he earn after {c} years?",
            f"Interest = ({a} * {b} * {c}) // 100.", (a * b * c) // 100)


# (class name, problem generator): one class each, in this order.
MATH_PROBLEMS: list[tuple[str, Callable[[random.Random], tuple[str, str, int]]]] = [
    ("pizza", _pizza), ("chaperones", _chaperones), ("purchase", _purchase), ("game", _game),
    ("reading", _reading), ("discount", _discount), ("area", _area), ("savings", _savings),
    ("cupcakes", _cupcakes), ("interest", _interest),
]


def _math_example(cls: int, rng: random.Random, reasoning: bool) -> tuple[str, str]:
    problem, reason, answer = MATH_PROBLEMS[cls][1](rng)
    prompt = f"Solve the following math problem. {problem} ->"
    completion = f" Reason: {reason} Answer: {answer}" if reasoning else f" Answer: {answer}"
    return prompt, completion


# --------------------------------------------------------------------------- the benchmark type


@dataclass(frozen=True, eq=False)
class PromptSplit:
    """One split: ``prompts[i] + completions[i]`` is sample i's full text; ``labels[i]`` its class."""

    ids: tuple[str, ...]
    prompts: tuple[str, ...]
    completions: tuple[str, ...]
    labels: np.ndarray  # int64 (n,)

    @property
    def n(self) -> int:
        return len(self.prompts)

    def text(self, i: int) -> str:
        return self.prompts[i] + self.completions[i]

    def fingerprint(self) -> str:
        """SHA-256 of every prompt, completion and label, in order."""
        h = hashlib.sha256()
        for p, c, y in zip(self.prompts, self.completions, self.labels):
            h.update(f"{p}\x1f{c}\x1f{int(y)}\x1e".encode())
        return h.hexdigest()


@dataclass(frozen=True, eq=False)
class PromptBenchmark:
    """A prompt benchmark: 10 classes, a class-major training split and test split."""

    task: str
    classes: tuple[str, ...]
    train: PromptSplit
    test: PromptSplit
    seed: int

    @property
    def title(self) -> str:
        return TASKS[self.task]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """SHA-256 of every prompt, completion and label: the data part of every cache key."""
        return hashlib.sha256(f"{self.task}|{self.train.fingerprint()}|{self.test.fingerprint()}".encode()).hexdigest()


def _split(task: str, name: str, rows: list[tuple[str, str, int]]) -> PromptSplit:
    return PromptSplit(ids=tuple(f"{task}-{name}-{i:04d}" for i in range(len(rows))),
                       prompts=tuple(r[0] for r in rows), completions=tuple(r[1] for r in rows),
                       labels=np.array([r[2] for r in rows], dtype=np.int64))


def make_prompts(task: str, per_class: int = 90, test_per_class: int = 10, seed: int = 0) -> PromptBenchmark:
    """Generate one benchmark.

    Parameters
    ----------
    task : {"sentence_transformations", "math_no_reason", "math_reason"}
    per_class : training prompts per class, default 90 (the paper's).
    test_per_class : test prompts per class, default 10 (the paper's).
    seed : the generator's seed; the two math variants share their problems for a seed.

    Returns
    -------
    PromptBenchmark with ``10 * per_class`` training and ``10 * test_per_class`` test
    prompts, class-major; every prompt is distinct.
    """
    if task not in TASKS:
        raise OgdashError(f"Unknown prompt benchmark {task!r}; choose one of {', '.join(TASKS)}.")
    if per_class < 1 or test_per_class < 1:
        raise OgdashError(f"per_class and test_per_class must be at least 1; got {per_class} and {test_per_class}.")
    if task == "sentence_transformations":
        classes = tuple(f"{name}: {title}" for name, title, _ in TRANSFORMATIONS)
        make = _transformation_example
    else:
        classes = tuple(name for name, _ in MATH_PROBLEMS)
        reasoning = task == "math_reason"

        def make(cls, rng):
            return _math_example(cls, rng, reasoning)

    train_rows, test_rows = [], []
    for cls in range(len(classes)):
        rng = random.Random(f"{seed}:{cls}")  # one stream per class: math variants share problems
        seen: set[str] = set()
        rows = []
        tries = 0
        while len(rows) < per_class + test_per_class:
            prompt, completion = make(cls, rng)
            tries += 1
            if prompt in seen:
                if tries > 100 * (per_class + test_per_class):
                    raise OgdashError(f"Could not generate {per_class + test_per_class} distinct prompts per class; "
                                      "ask for fewer.")
                continue
            seen.add(prompt)
            rows.append((prompt, completion, cls))
        train_rows += rows[:per_class]
        test_rows += rows[per_class:]
    return PromptBenchmark(task=task, classes=classes, train=_split(task, "train", train_rows),
                           test=_split(task, "test", test_rows), seed=seed)


# --------------------------------------------------------------------------- a five-task instruction set

# task -> (kind, index): sentence transformations by their TRANSFORMATIONS index, math problems by MATH_PROBLEMS'
INSTRUCTION_TASKS = {
    "reverse": ("sentence", 0), "capitalize": ("sentence", 5), "remove_vowels": ("sentence", 6),
    "add": ("math", 2), "multiply": ("math", 6),
}


@dataclass(frozen=True)
class InstructionSet:
    """A generated fine-tuning set in the shape people bring: records with ``id``, ``task``, ``prompt`` and
    ``completion``. ``wrong``: {id: the correct completion} of the training records whose completion was
    replaced by a wrong one (a planted mistake); the test records are all correct."""

    train: tuple[dict, ...]
    test: tuple[dict, ...]
    wrong: dict


def _wrong_completion(task: str, prompt: str, right: str, rng: random.Random) -> str:
    kind, index = INSTRUCTION_TASKS[task]
    if kind == "math":  # a plausible but wrong number
        answer = int(right.split("Answer: ")[1])
        return f" Answer: {max(0, answer + rng.choice([-1, 1]) * rng.randint(1, 20)) or answer + 3}"
    sentence = prompt.split("For example: ")[1][: -len(" ->")]
    for k in rng.sample(range(len(TRANSFORMATIONS)), len(TRANSFORMATIONS)):  # the wrong rule
        wrong = " " + TRANSFORMATIONS[k][2](sentence)
        if k != index and wrong != right:
            return wrong
    raise OgdashError("could not make a wrong completion")  # not reached: ten rules never all agree


def make_instruction_set(per_task: int = 200, test_per_task: int = 20, wrong_rate: float = 0.1,
                         seed: int = 0) -> InstructionSet:
    """Five tasks from the built-in generators (three sentence transformations, addition, multiplication),
    ``per_task`` training and ``test_per_task`` test records each; in each task ``round(wrong_rate * per_task)``
    training completions are replaced by wrong ones (another transformation's output, an answer off by 1-20).
    Training records are shuffled (tasks interleave, as in real data); same seed, same records."""
    if per_task < 2 or test_per_task < 1 or not 0 <= wrong_rate < 1:
        raise OgdashError(f"per_task >= 2, test_per_task >= 1 and 0 <= wrong_rate < 1 are needed; got {per_task}, "
                          f"{test_per_task}, {wrong_rate}.")
    train, test, wrong = [], [], {}
    for task, (kind, index) in INSTRUCTION_TASKS.items():
        rng = random.Random(f"{seed}:{task}")
        seen: set[str] = set()
        rows: list[tuple[str, str]] = []
        while len(rows) < per_task + test_per_task:
            if kind == "sentence":
                prompt, completion = _transformation_example(index, rng)
            else:
                prompt, completion = _math_example(index, rng, reasoning=False)
            if prompt not in seen:
                seen.add(prompt)
                rows.append((prompt, completion))
        bad = set(rng.sample(range(per_task), round(wrong_rate * per_task)))
        for i, (prompt, completion) in enumerate(rows[:per_task]):
            rid = f"{task}-{i:04d}"
            if i in bad:
                wrong[rid] = completion
                completion = _wrong_completion(task, prompt, completion, rng)
            train.append({"id": rid, "task": task, "prompt": prompt, "completion": completion})
        test += [{"id": f"{task}-test-{i:03d}", "task": task, "prompt": p, "completion": c}
                 for i, (p, c) in enumerate(rows[per_task:])]
    random.Random(seed).shuffle(train)
    return InstructionSet(tuple(train), tuple(test), wrong)
