"""One textual form for a reasoning trajectory, whatever produced it.

Reasoning models deliver their thinking in three ways: inline ``<think>...</think>`` (R1 raw
output), only the closing tag (QwQ-32B, R1-Distill: the chat template already put ``<think>\\n``
into the prompt, so the generation starts inside the thought), or a separate field
(``reasoning_content`` from vLLM/SGLang with a reasoning parser, DeepSeek's API; a separate
column in s1K). Distillation trains on the thinking *and* the answer, so every backend stores
one string: ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``; ``split_reasoning`` takes it
apart again for whoever needs only the answer (verification reads the final ``\\boxed{}``).
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def join_reasoning(reasoning: str | None, answer: str | None) -> str:
    """The stored form of a separately delivered reasoning trace and answer."""
    answer = answer or ""
    if not reasoning:
        return normalize_think(answer)
    return f"{OPEN}\n{reasoning.strip()}\n{CLOSE}\n\n{answer.lstrip()}"


def normalize_think(text: str) -> str:
    """Give a generation that starts inside its thought (a closing tag only) its opening tag."""
    if CLOSE in text and OPEN not in text.split(CLOSE, 1)[0]:
        return f"{OPEN}\n{text.lstrip()}"
    return text


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning or None, answer) of a stored trajectory. An unclosed thought (the generation
    hit its token limit while thinking) is all reasoning and an empty answer."""
    head, sep, tail = text.partition(CLOSE)
    if sep:
        return head.replace(OPEN, "", 1).strip(), tail.strip()
    if text.lstrip().startswith(OPEN):
        return text.replace(OPEN, "", 1).strip(), ""
    return None, text
