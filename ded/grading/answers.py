"""Answer kinds: how a question's gold answer is read, how a response's answer is found, and the verdict.

``ANSWER_KINDS`` holds one entry per kind of answer (``Question.kind``):

- ``math``: a mathematical expression, compared by math-verify. The response's answer is what
  it puts in ``\\boxed{}`` (several boxes form a set), or "the final answer is ...";
  free-floating numbers in the text do not count, so a response that lists several numbers is
  not scored correct because one of them is.
- ``gsm8k``: one number; the gold of a GSM8K row is the number after ``####``.
- ``choice``: one option letter; the gold of a row is a 0-based index or a letter.

Each kind reads a source row's gold (``gold``), finds the answer in a response (``extract``),
gives the verdict (``check``) and names the instruction an evaluation set appends to its
questions. ``render_choice_question`` is the one layout of a multiple-choice question, so one
row is one prompt whether it comes from a pool or an evaluation set.

A verdict's reason tells the failures apart, so a run can count them:

- ``no_answer``: the response gives no final answer (no ``\\boxed{}``, no "the answer is ...")
- ``unparsable``: it gives one, but it cannot be read as the kind's answer (an unclosed box, a
  symbol soup, two numbers in one GSM8K box, "E or F" for a choice)
- ``timeout``: parsing or comparing ran past the time limit, so a pathological response cannot
  hang a run (math: math-verify's signal alarm, main thread only, whole seconds; gsm8k and
  choice: a wall-clock deadline checked by the scans, which are linear in the response)
- ``bad_gold``: the gold answer itself does not parse

What a check needs besides the response and the gold travels with it: ``GradingSettings`` (the
``sandbox`` config section and the folders programs must not see; only code answers read them).
``check_answers`` hands each kind its own items in one batch (``AnswerKind.check_many``: one by
one by default, code in parallel sandboxes). ded/grading/__init__.py imports this module and
code.py, so whatever of ``ded.grading`` is imported, every kind is registered.

This module stays import-light (every run imports it before Hydra composes): math-verify is
imported on the first math check.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache

from ded.config import SandboxConfig
from ded.core.reasoning import split_reasoning
from ded.core.registry import Registry

LETTERS = "ABCDEFGHIJ"  # option letters; a multiple-choice question has 2 to 10 options


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str  # correct | wrong | no_answer | unparsable | timeout | bad_gold
    extracted: str | None = None


@dataclass(frozen=True)
class GradingSettings:
    """How a run grades, beyond each response and gold (only code answers read it)."""

    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # the ``sandbox`` config section: code answers' limits and workers
    hide: tuple[str, ...] = ()  # folders the programs must not see besides the repository, home and data (cache, output)


class GoldError(ValueError):
    """A source row's gold answer that cannot be read; `reason` is the skip count it falls under."""

    def __init__(self, message: str, reason: str = "bad_answer"):
        super().__init__(message)
        self.reason = reason


# --- the final answer in a text ----------------------------------------------------------------
#
# A response is untrusted text (a looping model writes megabytes of "\\boxed{"), and evaluation
# checks every sample: everything here is one pass over the text, and the regexes cannot
# backtrack over a run of openers (see ``_sub_closed``). The non-math kinds also carry a
# wall-clock ``_Deadline`` (checked in the brace scans and between steps), so whatever the kind a
# check ends within its ``timeout_s``.

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL = re.compile(r"\\(?:boxed|fbox)\s*\{|final answer is", re.IGNORECASE)
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:)\s*(?:\$\s*)?([^\n]*)", re.IGNORECASE)
_BRACE = re.compile(r"[{}]")
_BRACE_RUN = re.compile(r"\{+|\}+")


class CheckTimeout(Exception):
    """A check ran past its wall-clock limit (the verdict's reason is ``timeout``)."""


class _Deadline:
    """A wall-clock limit, checked by the scans every few thousand steps (no signals: any thread)."""

    def __init__(self, seconds: float | None):
        self.end = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.end is not None and time.monotonic() > self.end:
            raise CheckTimeout


_NO_DEADLINE = _Deadline(None)


def _close_of(text: str, start: int, deadline: _Deadline = _NO_DEADLINE) -> int | None:
    """Position of the '}' closing the brace opened just before `start`; None if unclosed. One
    forward pass over runs of equal braces."""
    depth = 1
    for k, m in enumerate(_BRACE_RUN.finditer(text, start)):
        if not k & 0xFFF:
            deadline.check()
        n = m.end() - m.start()
        if text[m.start()] == "{":
            depth += n
        elif n >= depth:
            return m.start() + depth - 1
        else:
            depth -= n
    return None


def boxed_contents(text: str, deadline: _Deadline = _NO_DEADLINE) -> list[str | None]:
    """Contents of every \\boxed{...}/\\fbox{...} with balanced braces, in order; an unclosed box
    yields None in its place (so "there was a box but it is broken" is visible). One pass: a stack
    of open braces from the first box on (a box's close is where its brace is popped)."""
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return []
    boxes, closes, stack = set(starts), {}, []
    for k, m in enumerate(_BRACE.finditer(text, starts[0] - 1)):
        if not k & 0xFFF:
            deadline.check()
        if m.group() == "{":
            stack.append(m.end())
        elif stack:
            s = stack.pop()
            if s in boxes:
                closes[s] = m.start()
    return [text[s : closes[s]] if s in closes else None for s in starts]


def _last_box(text: str, deadline: _Deadline = _NO_DEADLINE) -> str | None | bool:
    """The last box's content (the last opener's, as ``boxed_contents(text)[-1]``); None if that
    box is unclosed; False without a box. Linear: one scan from the last opener."""
    last = None
    for k, m in enumerate(_BOX.finditer(text)):
        if not k & 0xFFF:
            deadline.check()
        last = m
    if last is None:
        return False
    end = _close_of(text, last.end(), deadline)
    return None if end is None else text[last.end() : end]


def last_boxed(text: str) -> str | None:
    """The last box's content, stripped; None without a box. A worked solution whose last box is
    unclosed is broken, not unanswered: GoldError."""
    box = _last_box(text)
    if box is False:
        return None
    if box is None:
        raise GoldError("unclosed \\boxed{ in the solution", "no_answer")
    return box.strip()


def has_final_answer(response: str) -> bool:
    """Does the response commit to a final answer (a box, or "the final answer is")?"""
    return bool(_FINAL.search(response))


def final_text(response: str, deadline: _Deadline = _NO_DEADLINE) -> str | None:
    """What the response gives as its final answer: the last box, else the last "answer is ..."
    line, else GSM8K's own "#### N" line; "" for a broken box; None for no final answer at all.
    CheckTimeout past `deadline`."""
    box = _last_box(response, deadline)
    if box is not False:
        return "" if box is None else box
    last = None
    for k, m in enumerate(_ANSWER_IS.finditer(response)):
        if not k & 0xFFF:
            deadline.check()
        last = m
    if last is not None:
        return last.group(1)
    if "####" in response:
        return response.rsplit("####", 1)[1].split("\n")[0]
    return None


def _sub_closed(pattern: re.Pattern, repl, text: str) -> str:
    """``pattern.sub(repl, text)`` for a pattern whose every match ends with '}' (``\\text{[^}]*}``):
    applied up to the last '}' only. The same result, but a run of unclosed ``\\text{`` after the
    last '}' is not rescanned to the end of the text once per opener (quadratic)."""
    end = text.rfind("}") + 1
    return pattern.sub(repl, text[:end]) + text[end:]


def render_choice_question(question: str, choices: list) -> str:
    """A multiple-choice question as the model sees it: the question, then one lettered option a line."""
    return question.strip() + "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


# --- answer kinds ------------------------------------------------------------------------------

MATH_INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = "\n\nAnswer with the letter of the correct choice within \\boxed{}."


class AnswerKind:
    instruction: str = ""  # appended to an evaluation set's questions of this kind

    def gold(self, value, n_choices: int | None = None) -> str:
        """The gold answer of a source row as a Question carries it; GoldError if it cannot be read."""
        raise NotImplementedError

    def extract(self, response: str, n_choices: int | None = None) -> str | None:
        """The response's answer as this kind reads it; None if there is none to read."""
        raise NotImplementedError

    def check(self, response: str, gold, timeout_s: int = 5, n_choices: int | None = None,
              settings: GradingSettings | None = None) -> Verdict:  # fmt: skip
        """The verdict on a response's answer part (its reasoning already taken off)."""
        raise NotImplementedError

    def check_many(self, items: list[tuple[str, str]], settings: GradingSettings, progress: bool = False) -> list[Verdict]:
        """Verdicts for (response, gold) pairs of this kind, in order: one by one, in this thread
        (math-verify's time limits use signals: main thread only)."""
        return [self.check(split_reasoning(response)[1], gold, settings=settings) for response, gold in items]


ANSWER_KINDS: Registry[AnswerKind] = Registry("Question.kind")


@lru_cache(maxsize=1)
def _extraction():
    """math-verify's extraction settings (prediction, gold): only boxes and "final answer is"
    count in a response; the gold may also be bare LaTeX."""
    from math_verify import LatexExtractionConfig

    return (
        [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)],
        [LatexExtractionConfig(boxed_match_priority=0)],
    )


@lru_cache(maxsize=65536)
def _parse_gold(gold: str):
    from math_verify import parse

    text = gold if "\\boxed" in gold or gold.startswith("$") else f"${gold}$"
    return parse(text, extraction_config=_extraction()[1], parsing_timeout=5)


def _parse_response(response: str, timeout_s: int):
    from math_verify import parse

    return parse(response, extraction_config=_extraction()[0], extraction_mode="first_match", parsing_timeout=timeout_s)


class MathAnswer(AnswerKind):
    instruction = MATH_INSTRUCTION

    def gold(self, value, n_choices=None) -> str:
        if isinstance(value, float) and value.is_integer():  # AMC 2023 stores 27.0
            value = int(value)
        text = str(value).strip()
        if not text:
            raise GoldError("empty answer", "empty")
        return text

    def extract(self, response, n_choices=None):
        p = _parse_response(response, 5)
        return str(p[-1]) if p else None

    def check(self, response, gold, timeout_s=5, n_choices=None, settings=None) -> Verdict:
        # math-verify logs a timeout and returns "nothing parsed" / "not equal": the elapsed time
        # tells. Its alarms count whole seconds; the comparison gets what the parse left of
        # `timeout_s` (rounded up), so parse and comparison together stay within ~timeout_s + 1 s.
        from math_verify import verify

        g = _parse_gold(str(gold))
        if not g:
            return Verdict(False, "bad_gold")
        limit = max(1, math.ceil(timeout_s))
        t0 = t = time.monotonic()
        p = _parse_response(response, limit)
        if not p:
            if time.monotonic() - t >= limit:
                return Verdict(False, "timeout")
            return Verdict(False, "unparsable" if has_final_answer(response) else "no_answer")
        left = limit - (time.monotonic() - t0)
        if left <= 0:
            return Verdict(False, "timeout", str(p[-1]))
        budget = math.ceil(left)
        t = time.monotonic()
        ok = bool(verify(g, p, timeout_seconds=budget))
        if ok:
            return Verdict(True, "correct", str(p[-1]))
        if time.monotonic() - t >= budget:
            return Verdict(False, "timeout", str(p[-1]))
        # math-verify falls back to the raw string when nothing in the box parses as math.
        parsed = any(not isinstance(x, str) for x in p)
        return Verdict(False, "wrong" if parsed else "unparsable", str(p[-1]))


class _FinalAnswerKind(AnswerKind):
    """A kind whose answer is read from the response's final-answer text (``final_text``)."""

    def read(self, final: str, n_choices: int | None):
        """The kind's answer in a final-answer text (a comparable value); None if not readable."""
        raise NotImplementedError

    def gold_value(self, gold, n_choices: int | None):
        """The gold as `read` returns answers; None if it does not parse."""
        raise NotImplementedError

    def show(self, value) -> str:
        return str(value)

    def extract(self, response, n_choices=None):
        final = final_text(response)
        x = None if final is None else self.read(final, n_choices)
        return None if x is None else self.show(x)

    def check(self, response, gold, timeout_s=5, n_choices=None, settings=None) -> Verdict:
        g = self.gold_value(gold, n_choices)
        if g is None:
            return Verdict(False, "bad_gold")
        deadline = _Deadline(timeout_s)
        try:
            final = final_text(response, deadline)
            if final is None:
                return Verdict(False, "no_answer")
            x = self.read(final, n_choices)
            deadline.check()
        except CheckTimeout:
            return Verdict(False, "timeout")
        if x is None:
            return Verdict(False, "unparsable", final.strip() or None)
        ok = self.same(x, g)
        return Verdict(ok, "correct" if ok else "wrong", self.show(x))

    def same(self, x, g) -> bool:
        return x == g


_GOLD_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d)(?:,|\{,\})(?=\d{3}\b)")
_WORDS = re.compile(r"\\text\{[^}]*\}|\\(?:mathrm|textbf)\{[^}]*\}")
_TEXT_ARG = re.compile(r"\\text(?:bf)?\{([^}]*)\}")


def _one_number(text: str) -> float | None:
    """The one number in a final answer ("\\$1,234", "18 dollars", "18.00"); None if not exactly one."""
    text = _sub_closed(_WORDS, " ", text)  # units, words
    text = _THOUSANDS.sub("", text.replace("\\!", ""))
    nums = _NUMBER.findall(text)
    return float(nums[0]) if len(nums) == 1 else None


class Gsm8kAnswer(_FinalAnswerKind):
    instruction = MATH_INSTRUCTION

    def gold(self, value, n_choices=None) -> str:
        """The number after the last '####' of a GSM8K solution ('1,234' -> '1234')."""
        text = str(value)
        if "####" not in text:
            raise GoldError("answer has no '#### N' line", "no_answer")
        number = text.rsplit("####", 1)[1].strip().replace(",", "").replace("$", "").strip()
        if not _GOLD_NUMBER.match(number):
            raise GoldError(f"'#### {number}' is not a number", "bad_answer")
        return number

    def gold_value(self, gold, n_choices):
        # A bare number or a whole GSM8K solution (its '####' line).
        return _one_number(str(gold).rsplit("####", 1)[-1])

    def read(self, final, n_choices):
        return _one_number(final)

    def same(self, x, g) -> bool:
        return abs(x - g) < 1e-9

    def show(self, value) -> str:
        return f"{value:g}"


class ChoiceAnswer(_FinalAnswerKind):
    instruction = CHOICE_INSTRUCTION

    def gold(self, value, n_choices=None) -> str:
        """A 0-based option index (2 -> 'C') or a letter ('c', '(C)' -> 'C'), within `n_choices`."""
        letters = LETTERS[: n_choices or len(LETTERS)]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) or str(value).strip().isdigit():
            i = int(value)
            if not 0 <= i < len(letters):
                raise GoldError(f"answer index {i} is out of range for {len(letters)} choices", "bad_answer")
            return letters[i]
        g = str(value).strip().strip("()").upper()
        if len(g) != 1 or g not in letters:
            raise GoldError(f"answer {value!r} is neither a choice index nor a letter", "bad_answer")
        return g

    def gold_value(self, gold, n_choices):
        try:
            return self.gold(gold, n_choices)
        except GoldError:
            return None

    def read(self, final, n_choices):
        """A single option letter: "B", "(B)", "B)", "B.", "\\text{(B)}", "B. the mortality rate"."""
        letters = LETTERS[: n_choices or len(LETTERS)]
        text = _sub_closed(_TEXT_ARG, r"\1", final).strip().strip("$*").strip().upper()
        m = re.fullmatch(rf"\(?([{letters}])\)?(?:[.:)]\s.*|[.:)])?", text, flags=re.DOTALL)
        return m.group(1) if m else None


ANSWER_KINDS.register("math", MathAnswer())
ANSWER_KINDS.register("gsm8k", Gsm8kAnswer())
ANSWER_KINDS.register("choice", ChoiceAnswer())


def check_answers(items: list[tuple[str, str, str]], progress: bool = False, settings: GradingSettings | None = None) -> list[Verdict]:
    """Verdicts for (response, gold, kind) triples, in order: each kind checks its own items in
    one batch (``AnswerKind.check_many``; code: parallel sandboxes, with a progress bar if asked)."""
    settings = settings or GradingSettings()
    by_kind: dict[str, list[int]] = {}
    for i, (_, _, kind) in enumerate(items):
        by_kind.setdefault(kind, []).append(i)
    out: list[Verdict | None] = [None] * len(items)
    for kind, where in by_kind.items():
        for i, v in zip(where, ANSWER_KINDS[kind].check_many([items[i][:2] for i in where], settings, progress)):
            out[i] = v
    return out  # type: ignore[return-value]


def check_samples(questions, samples: dict[str, list[dict]], settings: GradingSettings | None = None) -> list[list[Verdict]]:
    """Each question's verdicts on its samples (``samples[q.id]``, the cache's dicts), checked in
    one batch (``check_answers``)."""
    flat = iter(check_answers([(s["text"], q.answer, q.kind) for q in questions for s in samples[q.id]], settings=settings))
    return [[next(flat) for _ in samples[q.id]] for q in questions]


def check_answer(response: str, gold, kind: str = "math", timeout_s: int = 5, n_choices: int | None = None,
                 settings: GradingSettings | None = None) -> Verdict:  # fmt: skip
    """Verdict for `response` against `gold` under the answer `kind` (an ``ANSWER_KINDS`` name).

    math: math-verify on the boxed answer. gsm8k: the final answer must be exactly one number
    equal to the gold (commas, "$" and units are ignored). choice: the final answer must be one
    option letter; gold is a letter or a 0-based index; `n_choices` bounds the letters. code: the
    final ```python block must pass the gold's tests in the sandbox, under `settings` (None: the
    defaults).

    Whatever the kind, a check takes time linear in the response and ends within about
    `timeout_s` seconds (math: math-verify's alarms, whole seconds, parse and comparison sharing
    the limit, main thread only; gsm8k and choice: a wall-clock deadline, any thread), with
    Verdict(False, "timeout") past it; code has its own limits (``settings.sandbox``).

    For a reasoning trace (``<think>...</think>answer``) only the part after the thought counts:
    a box inside the thinking is a draft, and an unclosed thought has no answer yet.
    """
    answers = ANSWER_KINDS[kind]
    _, response = split_reasoning(response)
    return answers.check(response, gold, timeout_s, n_choices, settings or GradingSettings())
