"""Filters with reasons, in datatrove's convention.

A filter is a callable that returns True to keep an item or ``(False, reason)`` to drop it.
``FilterLog.apply`` runs one filter over items, counts drops by reason and keeps every dropped
item (with its reason) for inspection; ``run_filters`` chains several (an item is dropped by
the first filter that rejects it, so each reject has exactly one reason).

Trajectory filters take ``(question, sample)`` pairs, where ``sample`` is the generation
cache's dict: ``text``, ``finish`` ("stop" | "length"), ``n_tokens`` when known.

- ``Complete``: not cut off by the token limit ("truncated").
- ``Correct``: the answer verifies under the question's answer kind (ded.grading.answers reasons).
- ``Length``: response length in tokens within [min_tokens, max_tokens].
- ``ThinkFormat``: one closed <think>...</think> block followed by a non-empty answer.
- ``Repetition``: not stuck in a loop (content repeated copy after copy; markup lines and step
  templates do not count).
- ``Language``: letters mostly in the expected scripts (reasoning models drift into Chinese).
- ``Duplicate``: not an exact copy of a kept trajectory of the same question (``dedup``).
- ``PassRateFilter`` (questions): keep a band of student pass rates (``pass_rates``).

``build_trajectory_filters(corpus.filters, grading)`` makes the chain a run applies from the
``TRAJECTORY_FILTERS`` plug-ins: each is a factory that reads the config and the run's grading
settings (``ded.grading.answers.GradingSettings``) and returns its filter, or None when the
config leaves it off. The chain runs in registration order, cheapest first,
``correct`` (answer verification) last.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from ded.core.registry import Registry
from ded.grading.answers import GradingSettings, check_answer, check_samples

if TYPE_CHECKING:
    from ded.config import TrajectoryFilters

Filter = Callable[[Any], bool | tuple[bool, str]]  # True to keep, (False, reason) to drop


@dataclass
class FilterLog:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    rejects: list[dict] = field(default_factory=list)  # the dropped items, with their reason

    def apply(self, items: list, fn: Callable, describe: Callable = lambda x: x) -> list:
        out = []
        for it in items:
            res = fn(it)
            if res is True:
                out.append(it)
                self.kept += 1
            else:
                reason = res[1]
                self.dropped[reason] += 1
                self.rejects.append({"reason": reason, **describe(it)})
        return out


def run_filters(items: Iterable, filters: list[Filter], describe: Callable = lambda x: x, log: FilterLog | None = None) -> tuple[list, FilterLog]:
    """Apply `filters` in order; an item must pass all. Returns (kept items, the log)."""
    log = log or FilterLog()

    def chain(it):
        for f in filters:
            res = f(it)
            if res is not True:
                return res
        return True

    return log.apply(list(items), chain, describe), log


def _text(item) -> str:
    return item[1]["text"]


# --- questions ---------------------------------------------------------------------------------


def pass_rates(questions, samples: dict[str, list[dict]], settings: GradingSettings | None = None) -> dict[str, float]:
    """Each question's share of correct samples, graded under `settings`: {question id: rate}."""
    return {q.id: float(np.mean([v.correct for v in vs])) for q, vs in zip(questions, check_samples(questions, samples, settings))}


class PassRateFilter:
    """Drop questions the student already solves (rate >= max_rate) or never approaches (< min_rate).
    max_rate 1.0 is no upper cut: compression off keeps even the questions solved k out of k times."""

    def __init__(self, rates: dict[str, float], min_rate: float, max_rate: float):
        self.rates, self.min_rate, self.max_rate = rates, min_rate, max_rate

    def __call__(self, q):
        r = self.rates[q.id]
        if self.max_rate < 1.0 and r >= self.max_rate:
            return False, "too_easy"
        if r < self.min_rate:
            return False, "too_hard"
        return True


# --- trajectories --------------------------------------------------------------------------------


class Complete:
    """Drop truncated generations, and replayed questions the dataset holds no trajectory for."""

    def __call__(self, item):
        finish = item[1].get("finish")
        if finish == "length":
            return False, "truncated"
        if finish == "missing":
            return False, "missing"
        return True


class Correct:
    """The response's final answer verifies against the gold under `kind` (math | gsm8k |
    choice; by default the question's own ``Question.kind``); reasons: wrong, no_answer,
    unparsable, timeout, bad_gold; code answers run under `settings` (None: the defaults)."""

    def __init__(self, kind: str | None = None, timeout_s: int = 5, settings: GradingSettings | None = None):
        self.kind, self.timeout_s = kind, timeout_s  # kind None: each question's own (Question.kind)
        self.settings = settings

    def __call__(self, item):
        q, s = item
        v = check_answer(s["text"], q.answer, self.kind or q.kind, self.timeout_s, settings=self.settings)
        return True if v.correct else (False, v.reason)


class Length:
    """Response length in tokens within [min_tokens, max_tokens]. Tokens: the sample's
    ``n_tokens`` when the backend recorded it, else `count(text)` (default: whitespace words)."""

    def __init__(self, min_tokens: int = 0, max_tokens: int | None = None, count: Callable[[str], int] | None = None):
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.count = count or (lambda t: len(t.split()))

    def __call__(self, item):
        s = item[1]
        n = s.get("n_tokens")
        n = self.count(s["text"]) if n is None else n
        if n < self.min_tokens:
            return False, "too_short"
        if self.max_tokens is not None and n > self.max_tokens:
            return False, "too_long"
        return True


class ThinkFormat:
    """Exactly one <think>...</think> block, opened once at the start (a chat template may have
    put the opening tag in the prompt, so a missing opener is allowed with `opener_in_prompt`),
    and a non-empty answer after it."""

    def __init__(self, open_tag: str = "<think>", close_tag: str = "</think>", opener_in_prompt: bool = False):
        self.open_tag, self.close_tag, self.opener_in_prompt = open_tag, close_tag, opener_in_prompt

    def __call__(self, item):
        t = _text(item)
        n_open, n_close = t.count(self.open_tag), t.count(self.close_tag)
        if n_close == 0:
            return False, "format:no_think" if n_open == 0 else "format:unclosed_think"
        if n_close > 1 or n_open > 1:
            return False, "format:multiple_think"
        if n_open == 0 and not self.opener_in_prompt:
            return False, "format:no_think_open"
        if n_open == 1 and not t.lstrip().startswith(self.open_tag):
            return False, "format:text_before_think"
        if not t.split(self.close_tag, 1)[1].strip():
            return False, "format:empty_answer"
        return True


# Lines that carry no content of their own: display delimiters, environments, lone braces,
# punctuation (markup); and short connectives that open or join steps ("Therefore,",
# "Simplifying both sides, we get:"), written again at every step of a healthy solution.
_MARKUP = re.compile(r"\\(?:begin|end)\s*\{[^{}]{0,40}\}(?:\{[^{}]{0,40}\}|\[[^\]]{0,40}\])*|\\[\[\]()]|\$\$|\[/?asy\]|\\hline|\\\\")
_CONNECTIVES = frozenset("therefore thus so hence now then next finally first second third also and but or again".split())
_ENUMERATOR = re.compile(r"^(?:[-*#>\s]*(?:step|case|part)\s*\d+\s*[.:)]?\**\s*|\(?\d{1,3}[.)]\s+|[-*#>]+\s*)", re.IGNORECASE)
_NO_MATH = re.compile(r"[\d$\\=^_{}<>+*/|]")
# A closed Asymptote figure: a solution redraws its figure for each case, so figure code repeats
# without looping; the n-gram rules skip it (the line rule still sees its lines).
_FIGURE = re.compile(r"\[asy\].*?\[/asy\]", re.DOTALL)
_TOKEN = re.compile(r"\w+|\\[A-Za-z]+|[^\w\s]")


def _without_figures(text: str) -> str:
    # Only up to the last "[/asy]": a run of unclosed "[asy]" after it is not rescanned per opener.
    end = text.rfind("[/asy]") + len("[/asy]") if "[/asy]" in text else 0
    return _FIGURE.sub("\n", text[:end]) + text[end:]


def _is_markup(line: str) -> bool:
    return not any(c.isalnum() for c in _MARKUP.sub("", line))


def _is_template(line: str) -> bool:
    """A step template: a few words with no math that lead into what follows ("...we get:",
    "Therefore,"), or a lone connective."""
    words = line.split()
    if len(words) == 1 and words[0].strip(".,:;!*#").lower() in _CONNECTIVES:
        return True
    return len(words) <= 8 and line.endswith((":", ",")) and not _NO_MATH.search(line)


def content_lines(text: str) -> list[str]:
    """The lines of `text` that carry content, as the repetition filter compares them: stripped,
    list and step numbers off ("Step 3:", "2."), without blank lines, markup lines and step
    templates. A markup line written again right after itself stays (healthy markup alternates
    with content; a model stuck on "\\]" does not)."""
    out, previous = [], None
    for line in text.splitlines():
        line = _ENUMERATOR.sub("", line.strip()).strip()
        if not line:
            continue
        if line == previous or not (_is_markup(line) or _is_template(line)):
            out.append(line)
        previous = line
    return out


def _beyond(units: list, min_count: int) -> list[bool]:
    """For each unit, whether it is at least its `min_count`-th occurrence so far."""
    seen: Counter = Counter()
    out = []
    for u in units:
        seen[u] += 1
        out.append(seen[u] >= min_count)
    return out


class Repetition:
    """Drop loops: text that repeats the same content again and again, the way a model stuck in
    a loop does (the same sentence, equation or block of lines, copy after copy).

    Repeated *structure* is not a loop: markup lines (``\\[``, ``\\]``, ``$$``, ``\\begin{align}``,
    lone braces), step templates ("Simplifying both sides, we get:", "Therefore,") and list
    numbers are left out, and content counts as repeated only from its `min_count`-th occurrence
    on (a healthy solution restates an equation or redraws a figure once; a loop copies it over
    and over). On what is left, drop when

    - repeated token n-grams (words, LaTeX commands and symbols, so ``=a+b=a+b=...`` counts; closed
      ``[asy]`` figures left out) cover more than `max_dup_ngram` of the tokens, or more than
      `max_dup_tail` of the last quarter (a model that fell into a loop late in a long trace);
      only for at least `min_tokens` tokens: a short answer that names one expression three
      times is no loop;
    - repeated content lines are more than `max_dup_lines` of the content lines.
    """

    def __init__(self, n: int = 24, min_count: int = 3, max_dup_ngram: float = 0.5, max_dup_tail: float = 0.65,
                 max_dup_lines: float = 0.5, min_tokens: int = 200):  # fmt: skip
        self.n, self.min_count = n, min_count
        self.max_dup_ngram, self.max_dup_tail, self.max_dup_lines = max_dup_ngram, max_dup_tail, max_dup_lines
        self.min_tokens = min_tokens

    def scores(self, text: str) -> dict[str, float]:
        """The shares the filter compares with its thresholds: ngram, tail, lines."""
        lines = content_lines(text)
        body = lines if "[/asy]" not in text else content_lines(_without_figures(text))  # a second scan only when there are figures
        tokens = _TOKEN.findall("\n".join(body))
        out = {"ngram": 0.0, "tail": 0.0, "lines": 0.0}
        if len(tokens) >= max(self.min_tokens, 2 * self.n):
            grams = [hash(tuple(tokens[i : i + self.n])) for i in range(len(tokens) - self.n + 1)]
            covered = bytearray(len(tokens))
            for i, hit in enumerate(_beyond(grams, self.min_count)):
                if hit:
                    covered[i : i + self.n] = b"\x01" * self.n
            tail = covered[-(len(tokens) // 4) :]
            out["ngram"], out["tail"] = sum(covered) / len(tokens), sum(tail) / len(tail)
        if lines:
            out["lines"] = sum(_beyond(lines, self.min_count)) / len(lines)
        return out

    def __call__(self, item):
        s = self.scores(_text(item))
        if s["ngram"] > self.max_dup_ngram or s["tail"] > self.max_dup_tail or s["lines"] > self.max_dup_lines:
            return False, "repetition"
        return True


def script_of(ch: str) -> str:
    """The Unicode script family of a letter, from its name: LATIN, CJK, CYRILLIC, GREEK, ..."""
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")):
        return "CJK"
    return name.split(" ", 1)[0] if name else "UNKNOWN"


class Language:
    """At least `min_share` of the letters are in the allowed `scripts` (default Latin, plus
    Greek for math symbols). Reasoning models sometimes switch language mid-trace (R1 and QwQ
    drift into Chinese); a script check catches that without a language-ID model."""

    def __init__(self, scripts: tuple[str, ...] = ("LATIN", "GREEK"), min_share: float = 0.95):
        self.scripts, self.min_share = tuple(s.upper() for s in scripts), min_share

    def __call__(self, item):
        letters = [c for c in re.sub(r"\\[a-zA-Z]+", " ", _text(item)) if c.isalpha()]
        if not letters:
            return True
        share = sum(script_of(c) in self.scripts for c in letters) / len(letters)
        return True if share >= self.min_share else (False, "language")


class Duplicate:
    """Not an exact copy (whitespace aside) of a trajectory of the same question kept before it.
    Run last, so only copies of a kept trajectory count; the first of each text stays. A small
    teacher often writes the same solution twice, and selection would otherwise spend P on it."""

    def __init__(self):
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, item):
        key = (item[0].id, " ".join(_text(item).split()))
        if key in self.seen:
            return False, "duplicate"
        self.seen.add(key)
        return True


# --- the configured chain ------------------------------------------------------------------------

# A factory: (corpus.filters, the run's grading settings) -> its filter, or None when the config leaves it off.
TRAJECTORY_FILTERS: Registry[Callable[["TrajectoryFilters", GradingSettings | None], Filter | None]] = Registry("corpus.filters")

TRAJECTORY_FILTERS.register("complete", lambda fc, grading: Complete())
TRAJECTORY_FILTERS.register("length", lambda fc, grading: Length(fc.min_tokens, fc.max_tokens) if fc.min_tokens or fc.max_tokens else None)
TRAJECTORY_FILTERS.register("think_format", lambda fc, grading: ThinkFormat() if fc.think_format else None)
TRAJECTORY_FILTERS.register("repetition", lambda fc, grading: Repetition() if fc.repetition else None)
TRAJECTORY_FILTERS.register("language", lambda fc, grading: Language() if fc.language else None)
TRAJECTORY_FILTERS.register("correct", lambda fc, grading: Correct(settings=grading))
TRAJECTORY_FILTERS.register("dedup", lambda fc, grading: Duplicate() if fc.dedup else None)


def build_trajectory_filters(fc: TrajectoryFilters, grading: GradingSettings | None = None) -> list[Filter]:
    """The chain ``corpus.filters`` configures, in registration order (an item is dropped by the
    first that rejects it); `grading`: how its ``correct`` filter grades (None: the defaults)."""
    return [f for _, make in TRAJECTORY_FILTERS.items() if (f := make(fc, grading)) is not None]
