"""Evaluation benchmarks: a registry of names -> how to read them, from a local file or the hub.

A benchmark is read from ``<data_dir>/<file>`` when that file exists (``eval.data_dir``, e.g.
the reference copies in ``../shared/data``), otherwise from the Hugging Face hub by name. Each
entry says which field holds the question and how to get the gold answer, and whether the
benchmark is in-domain (math reasoning, what DED trains for) or out-of-domain.
"""

from __future__ import annotations

import gzip
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path

from ded.data import Question

MATH_SUFFIX = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
MC_SUFFIX = "\n\nAnswer with the letter of the correct choice within \\boxed{}."


@dataclass(frozen=True)
class Benchmark:
    name: str
    file: str  # file name under data_dir
    hub: str  # hub dataset id (and split) used when no local file exists
    hub_split: str
    question: tuple[str, ...]  # candidate fields for the question text, first present wins
    answer: str  # field with the gold answer
    kind: str  # answer kind, as ded.verify names it: "math" | "gsm8k" | "choice"
    domain: str  # "in" | "out"


REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("aime24", "benchmarks/aime24.jsonl", "HuggingFaceH4/aime_2024", "train", ("problem",), "answer", "math", "in"),
        Benchmark("aime25", "benchmarks/aime25.jsonl", "yentinglin/aime_2025", "train", ("problem",), "answer", "math", "in"),
        Benchmark("math500", "benchmarks/math500.jsonl", "HuggingFaceH4/MATH-500", "test", ("problem",), "answer", "math", "in"),
        Benchmark("amc23", "benchmarks/amc23.jsonl", "math-ai/amc23", "test", ("problem", "question"), "answer", "math", "in"),
        Benchmark("gsm8k", "benchmarks/gsm8k_test.jsonl", "openai/gsm8k", "test", ("question",), "answer", "gsm8k", "in"),
        Benchmark("mmlu_stem", "benchmarks/mmlu_stem.jsonl", "TIGER-Lab/MMLU-STEM", "test", ("question",), "answer", "choice", "out"),
    ]
}


class BenchmarkError(ValueError):
    pass


def _gold(b: Benchmark, row: dict, where: str) -> str:
    if b.answer not in row:
        raise BenchmarkError(f"{where}: no field {b.answer!r} (fields: {sorted(row)})")
    a = row[b.answer]
    if b.kind == "gsm8k":
        if "####" not in str(a):
            raise BenchmarkError(f"{where}: GSM8K answer without '####'")
        return str(a).split("####")[-1].strip().replace(",", "")
    if b.kind == "choice":
        return string.ascii_uppercase[int(a)] if isinstance(a, int) or str(a).isdigit() else str(a).strip()
    if isinstance(a, float) and a.is_integer():  # AMC stores 27.0
        a = int(a)
    return str(a)


def _text(b: Benchmark, row: dict, where: str) -> str:
    q = next((row[f] for f in b.question if row.get(f)), None)
    if q is None:
        raise BenchmarkError(f"{where}: none of the question fields {list(b.question)} is present")
    if b.kind == "choice":
        choices = row.get("choices")
        if not choices:
            raise BenchmarkError(f"{where}: multiple-choice row without 'choices'")
        q += "\n" + "\n".join(f"{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(choices))
        return q + MC_SUFFIX
    return q + MATH_SUFFIX


def _rows(b: Benchmark, data_dir: str | None):
    path = Path(data_dir, b.file) if data_dir else None
    if path is not None and path.exists():
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line), f"{path}:{lineno}"
                except json.JSONDecodeError as e:
                    raise BenchmarkError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        return
    try:
        from datasets import load_dataset

        ds = load_dataset(b.hub, split=b.hub_split)
    except Exception as e:
        hint = f" (looked for {path})" if path else " (eval.data_dir is not set)"
        raise BenchmarkError(
            f"benchmark {b.name!r}: no local file{hint} and the hub dataset {b.hub!r} could not be loaded "
            f"({type(e).__name__}). Set eval.data_dir (or DED_DATA_DIR) to a folder holding {b.file}."
        ) from None
    for i, row in enumerate(ds):
        yield row, f"{b.hub}[{i}]"


def load_benchmark(name: str, data_dir: str | None = None, limit: int | None = None) -> list[Question]:
    if name not in REGISTRY:
        raise BenchmarkError(f"eval.benchmarks: unknown benchmark {name!r}; allowed: {sorted(REGISTRY)}")
    b = REGISTRY[name]
    data_dir = data_dir or os.environ.get("DED_DATA_DIR")
    out = []
    for i, (row, where) in enumerate(_rows(b, data_dir)):
        if limit is not None and len(out) >= limit:
            break
        out.append(Question(id=f"{name}-{i}", text=_text(b, row, where), answer=_gold(b, row, where), domain=b.domain, kind=b.kind))
    return out
