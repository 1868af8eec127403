"""Benchmarks read from the real reference files in ../shared/data (skipped where absent)."""

import json
import os
import re
from pathlib import Path

import pytest

from conftest import ROOT
from ded.data.benchmarks import REGISTRY, BenchmarkError, load_benchmark
from ded.verify import check

DATA = os.environ.get("DED_DATA_DIR") or str(ROOT.parent / "shared" / "data")
needs_data = pytest.mark.skipif(not Path(DATA, "benchmarks").is_dir(), reason=f"reference data not found at {DATA}")


def _perturb(ans: str) -> str | None:
    m = re.search(r"\d", ans)
    return None if m is None else ans[: m.start()] + str((int(m.group()) + 1) % 10) + ans[m.end() :]


@needs_data
@pytest.mark.parametrize("name,n", [("aime24", 30), ("math500", 500)])
def test_gold_answers_verify_against_themselves_and_fail_perturbed(name, n):
    qs = load_benchmark(name, DATA)
    assert len(qs) == n
    perturbed_checked = 0
    for q in qs:
        assert check(f"So the answer is $\\boxed{{{q.answer}}}$.", q.answer).correct, q.answer
        wrong = _perturb(q.answer)
        if wrong is not None:
            assert not check(f"\\boxed{{{wrong}}}", q.answer).correct, (q.answer, wrong)
            perturbed_checked += 1
    assert perturbed_checked >= 0.9 * n


@needs_data
def test_every_registered_benchmark_loads_with_gold_answers():
    for name, b in REGISTRY.items():
        qs = load_benchmark(name, DATA, limit=20)
        assert len(qs) == 20 and all(q.answer and q.text for q in qs), name
        assert {q.domain for q in qs} == {b.domain}
    mc = load_benchmark("mmlu_stem", DATA, limit=5)
    assert all(q.answer in "ABCD" and "\nA. " in q.text for q in mc)
    assert load_benchmark("gsm8k", DATA, limit=1)[0].answer == "18"
    assert load_benchmark("amc23", DATA, limit=1)[0].answer == "27"  # stored as 27.0


def test_malformed_file_names_file_and_line(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    good = {"problem": "1+1?", "answer": "2"}
    (tmp_path / "benchmarks" / "aime24.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(BenchmarkError, match=r"aime24\.jsonl:2"):
        load_benchmark("aime24", str(tmp_path))
    (tmp_path / "benchmarks" / "aime24.jsonl").write_text(json.dumps({"problem": "1+1?"}) + "\n")
    with pytest.raises(BenchmarkError, match=r"aime24\.jsonl:1: no field 'answer'"):
        load_benchmark("aime24", str(tmp_path))


def test_unknown_benchmark_lists_allowed():
    with pytest.raises(BenchmarkError, match="allowed"):
        load_benchmark("aime99")


@needs_data
def test_benchmarks_carry_the_answer_kind_they_are_scored_with():
    from ded.verify import check_answer

    assert {q.kind for q in load_benchmark("mmlu_stem", DATA, limit=3)} == {"choice"}
    assert {q.kind for q in load_benchmark("gsm8k", DATA, limit=3)} == {"gsm8k"}
    assert {q.kind for q in load_benchmark("aime24", DATA, limit=3)} == {"math"}
    q = load_benchmark("mmlu_stem", DATA, limit=1)[0]
    assert check_answer(f"The answer is ({q.answer}).", q.answer, q.kind).correct
