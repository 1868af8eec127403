import os
from pathlib import Path

import pytest

from conftest import DATA, needs_data

from ded.data import Question
from ded.data.decontam import decontaminate, deduplicate
from ded.data.pools import PoolSpec, load_pool

ROOT = Path(__file__).resolve().parents[2]

BENCH = [
    "Let $f(x) = 3x^2 - 5$. What is the value of $f(f(1))$ when you evaluate it carefully?",
    "How many positive divisors does the number 196 have in total?",
    "What is 7 times 8?",
]


def _qs(*texts):
    return [Question(f"q{i}", t, "1") for i, t in enumerate(texts)]


@needs_data
def test_math_test_set_against_math500_removes_all_500_and_few_others():
    pool = load_pool(PoolSpec(str(DATA / "pools/math_test5000.jsonl"), "math"))
    bench = load_pool(PoolSpec(str(DATA / "benchmarks/math500.jsonl"), "math"))
    res = decontaminate(pool, {"math500": bench})  # n=8, min_overlap=0.5, exact dedup
    truth = {q.text for q in bench}
    removed = {r["question"] for r in res.rejects if r["reason"] == "ngram:math500"}
    extras = removed - truth
    print(f"\nMATH test 5000 vs MATH-500: removed {len(removed)}, contaminated among them {len(removed & truth)}, extras {len(extras)}")
    assert truth <= removed  # every contaminated problem goes
    assert len(extras) <= 60  # others: same-template siblings (~1% of the 4500 clean problems)
    assert res.counts["ngram:math500"] == len(removed) and len(res.kept) == 5000 - len(removed)
    assert not {q.text for q in res.kept} & truth
    # open-r1/s1's any-shared-8-gram rule also finds all 500, but takes ~7x as many clean ones
    loose = decontaminate(pool, {"math500": bench}, min_overlap=0.0)
    assert loose.counts["ngram:math500"] - 500 > 5 * len(extras)


def test_ngram_overlap_cases():
    pool = _qs(
        "Solve this: Let $f(x) = 3x^2 - 5$. What is the value of $f(f(1))$ when you evaluate it carefully? Show work.",  # wrapped copy
        "Let $f(x) = 3x^2 - 5$. What is the value of $f(f(2))$ when you evaluate it carefully?",  # another problem: kept
        "what is 7 times 8?",  # short: equal after lowercasing
        "What is 7 times 9?",  # short, different
        "How many positive divisors does the number 360 have? Give the count of its prime factors too.",  # clean
    )
    res = decontaminate(pool, {"bench": BENCH}, n=8)
    assert [q.id for q in res.kept] == ["q1", "q3", "q4"]
    assert res.counts == {"ngram:bench": 2}
    # the changed number breaks 8 of its 10 8-grams; any shared 8-gram (s1/open-r1) would drop it
    assert decontaminate(pool[1:2], {"bench": BENCH}, min_overlap=0).counts == {"ngram:bench": 1}
    r0 = next(r for r in res.rejects if r["id"] == "q0")
    assert r0["benchmark_index"] == 0 and r0["overlap"] == 1.0 and r0["benchmark_text"] == BENCH[0]


def test_fuzzy_match_catches_rewording_that_breaks_ngrams():
    # every few words differ by punctuation/spelling, so no 8-gram survives, but the text is ~the same
    reworded = "Let f(x)=3x^2-5; what's the value of f(f(1)), when you evaluate it carefully ?"
    assert decontaminate(_qs(reworded), {"bench": BENCH}).kept
    res = decontaminate(_qs(reworded), {"bench": BENCH}, fuzzy_threshold=85)
    assert not res.kept and res.counts == {"fuzzy:bench": 1} and res.rejects[0]["benchmark_index"] == 0


def test_dedup_exact_and_near_identical_with_same_numbers():
    pool = _qs(
        "A shop sells 12 apples at 3 dollars each. How much money does it make in total from the apples?",
        "A  shop sells 12 apples at 3 dollars each.   How much money does it make in total from the apples?",  # whitespace
        "a shop sells 12 apples at 3 dollars each. how much money does it make in total from the apples?",  # case
        "A shop sells 12 apples at 3 dollars each. How much money does it make in total from these apples?",  # near
        "A shop sells 12 apples at 4 dollars each. How much money does it make in total from the apples?",  # other numbers
    )
    exact = deduplicate(pool, "exact")
    assert [q.id for q in exact.kept] == ["q0", "q3", "q4"] and exact.counts == {"duplicate": 2}
    fuzzy = deduplicate(pool, "fuzzy")
    assert [q.id for q in fuzzy.kept] == ["q0", "q4"] and fuzzy.counts == {"duplicate": 2, "near_duplicate": 1}
    assert next(r for r in fuzzy.rejects if r["id"] == "q3")["duplicate_of"] == "q0"
    # decontaminate deduplicates what it keeps and reports both kinds of reasons together
    res = decontaminate(pool + _qs("What is 7 times 8?"), {"bench": BENCH}, dedup="fuzzy")
    assert res.counts == {"duplicate": 2, "near_duplicate": 1, "ngram:bench": 1}
    with pytest.raises(ValueError, match="allowed"):
        deduplicate(pool, "minhash")
