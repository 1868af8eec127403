"""Answer verification with math-verify.

The model's answer is what it puts in ``\\boxed{}`` (several boxes form a set) (math-verify's boxed extraction,
which also accepts "the final answer is ..."). Free-floating numbers in the text do not count:
a response that lists several numbers must not be scored correct because one of them is.
Every parse and comparison is time-limited (math-verify's own timeouts) so a pathological
expression cannot hang a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from math_verify import LatexExtractionConfig, parse, verify

PRED_CONFIG = [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)]
GOLD_CONFIG = [LatexExtractionConfig(boxed_match_priority=0), ]


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str  # "correct" | "wrong" | "no_answer" | "bad_gold"
    extracted: str | None = None


@lru_cache(maxsize=65536)
def _parse_gold(gold: str):
    text = gold if "\\boxed" in gold or gold.startswith("$") else f"${gold}$"
    return parse(text, extraction_config=GOLD_CONFIG, parsing_timeout=5)


def check(response: str, gold: str, timeout_s: int = 5) -> Verdict:
    """Is the boxed answer in `response` equivalent to `gold`?"""
    g = _parse_gold(gold)
    if not g:
        return Verdict(False, "bad_gold")
    p = parse(response, extraction_config=PRED_CONFIG, extraction_mode="first_match", parsing_timeout=timeout_s)
    if not p:
        return Verdict(False, "no_answer")
    ok = verify(g, p, timeout_seconds=timeout_s)
    return Verdict(bool(ok), "correct" if ok else "wrong", str(p[-1]))
