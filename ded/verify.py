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

from ded.generation.text import split_reasoning
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
    """Is the boxed answer in `response` equivalent to `gold`?

    For a reasoning trace (``<think>...</think>answer``) only the part after the thought counts:
    a box inside the thinking is a draft, and an unclosed thought has no answer yet.
    """
    g = _parse_gold(gold)
    if not g:
        return Verdict(False, "bad_gold")
    _, response = split_reasoning(response)
    p = parse(response, extraction_config=PRED_CONFIG, extraction_mode="first_match", parsing_timeout=timeout_s)
    if not p:
        return Verdict(False, "no_answer")
    ok = verify(g, p, timeout_seconds=timeout_s)
    return Verdict(bool(ok), "correct" if ok else "wrong", str(p[-1]))


# --- answer kinds: math (math-verify), gsm8k (an integer), choice (a letter) -------------------
#
# ``check`` above is the pipeline's math check and keeps its behaviour. ``check_answer`` takes the
# answer kind and splits the failures further, so a run can count them apart:
#   no_answer   - the response gives no final answer (no \boxed{}, no "the answer is ...")
#   unparsable  - it gives one, but it cannot be read as the kind's answer (an unclosed box, a
#                 symbol soup, two numbers in one GSM8K box, "E or F" for a choice)
#   timeout     - parsing or comparing ran past the time limit (math-verify's signal alarm:
#                 main thread only; the limit is whole seconds)
#   bad_gold    - the gold answer itself does not parse

import re  # noqa: E402
import time  # noqa: E402

KINDS = ("math", "gsm8k", "choice")
CHOICE_LETTERS = "ABCDEFGHIJ"
_FINAL = re.compile(r"\\(?:boxed|fbox)\s*\{|final answer is", re.IGNORECASE)
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:)\s*(?:\$\s*)?([^\n]*)", re.IGNORECASE)


def has_final_answer(response: str) -> bool:
    """Does the response commit to a final answer (a box, or "the final answer is")?"""
    return bool(_FINAL.search(response))


def boxed_contents(text: str) -> list[str | None]:
    """Contents of every \\boxed{...}/\\fbox{...} with balanced braces, in order; an unclosed box
    yields None in its place (so "there was a box but it is broken" is visible)."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth = 1
        for i in range(m.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                out.append(text[m.end() : i])
                break
        else:
            out.append(None)
    return out


def _final_text(response: str) -> str | None:
    """What the response gives as its final answer: the last box, else the last "answer is ..."
    line; "" for a broken box; None for no final answer at all."""
    boxes = boxed_contents(response)
    if boxes:
        return boxes[-1] if boxes[-1] is not None else ""
    m = list(_ANSWER_IS.finditer(response))
    if m:
        return m[-1].group(1)
    if "####" in response:  # GSM8K's own answer line
        return response.rsplit("####", 1)[1].split("\n")[0]
    return None


def _check_math(response: str, gold: str, timeout_s: int) -> Verdict:
    # Same extraction and comparison as `check`, so correct/wrong agree with it; the elapsed time
    # tells a timeout (math-verify logs it and returns "nothing parsed" / "not equal").
    g = _parse_gold(gold)
    if not g:
        return Verdict(False, "bad_gold")
    t = time.monotonic()
    p = parse(response, extraction_config=PRED_CONFIG, extraction_mode="first_match", parsing_timeout=timeout_s)
    if not p:
        if time.monotonic() - t >= timeout_s:
            return Verdict(False, "timeout")
        return Verdict(False, "unparsable" if has_final_answer(response) else "no_answer")
    t = time.monotonic()
    ok = bool(verify(g, p, timeout_seconds=timeout_s))
    if ok:
        return Verdict(True, "correct", str(p[-1]))
    if time.monotonic() - t >= timeout_s:
        return Verdict(False, "timeout", str(p[-1]))
    # math-verify falls back to the raw string when nothing in the box parses as math.
    parsed = any(not isinstance(x, str) for x in p)
    return Verdict(False, "wrong" if parsed else "unparsable", str(p[-1]))


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d)(?:,|\{,\})(?=\d{3}\b)")


def _gsm8k_number(text: str) -> float | None:
    """The one number in a final answer ("\\$1,234", "18 dollars", "18.00"); None if not exactly one."""
    text = re.sub(r"\\text\{[^}]*\}|\\(?:mathrm|textbf)\{[^}]*\}", " ", text)  # units, words
    text = _THOUSANDS.sub("", text.replace("\\!", ""))
    nums = _NUMBER.findall(text)
    return float(nums[0]) if len(nums) == 1 else None


def _check_gsm8k(response: str, gold: str) -> Verdict:
    g = _gsm8k_number(str(gold).rsplit("####", 1)[-1])
    if g is None:
        return Verdict(False, "bad_gold")
    final = _final_text(response)
    if final is None:
        return Verdict(False, "no_answer")
    x = _gsm8k_number(final)
    if x is None:
        return Verdict(False, "unparsable", final.strip() or None)
    ok = abs(x - g) < 1e-9
    return Verdict(ok, "correct" if ok else "wrong", f"{x:g}")


def _choice_letter(text: str, letters: str) -> str | None:
    """A single option letter: "B", "(B)", "B)", "B.", "\\text{(B)}", "B. the mortality rate"."""
    text = re.sub(r"\\text(?:bf)?\{([^}]*)\}", r"\1", text).strip().strip("$*").strip().upper()
    m = re.fullmatch(rf"\(?([{letters}])\)?(?:[.:)]\s.*|[.:)])?", text, flags=re.DOTALL)
    return m.group(1) if m else None


def _check_choice(response: str, gold, n_choices: int | None) -> Verdict:
    letters = CHOICE_LETTERS[: n_choices or len(CHOICE_LETTERS)]
    if isinstance(gold, int) or str(gold).strip().isdigit():
        i = int(gold)
        g = letters[i] if 0 <= i < len(letters) else None
    else:
        g = str(gold).strip().strip("()").upper()
        g = g if len(g) == 1 and g in letters else None
    if g is None:
        return Verdict(False, "bad_gold")
    final = _final_text(response)
    if final is None:
        return Verdict(False, "no_answer")
    x = _choice_letter(final, letters)
    if x is None:
        return Verdict(False, "unparsable", final.strip() or None)
    return Verdict(x == g, "correct" if x == g else "wrong", x)


def check_answer(response: str, gold, kind: str = "math", timeout_s: int = 5, n_choices: int | None = None) -> Verdict:
    """Verdict for `response` against `gold` under the answer `kind` (math | gsm8k | choice).

    math: math-verify on the boxed answer (as `check`), each parse and comparison limited to
    `timeout_s` seconds. gsm8k: the final answer must be exactly one number equal to the gold
    integer (commas, "$" and units are ignored). choice: the final answer must be one option
    letter; gold is a letter or a 0-based index; `n_choices` bounds the letters.
    """
    # As in `check`: only the part after a closed thought counts (a box inside it is a draft).
    _, response = split_reasoning(response)
    if kind == "math":
        return _check_math(response, str(gold), timeout_s)
    if kind == "gsm8k":
        return _check_gsm8k(response, gold)
    if kind == "choice":
        return _check_choice(response, gold, n_choices)
    raise ValueError(f"answer kind: unknown kind {kind!r}; allowed: {list(KINDS)}")
