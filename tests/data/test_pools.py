import json
import os
from collections import Counter
from pathlib import Path

import pytest

from conftest import DATA, needs_data

from ded.data import Question
from ded.grading.answers import last_boxed
from ded.data.pools import PoolError, PoolSpec, load_pool, load_pools, mix_pools, read_pool
from ded.core.registry import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- built-in readers on the real sets ----------------------------------------------------------


@needs_data
@pytest.mark.parametrize(
    "file,fmt,rows,first_answer",
    [
        ("pools/gsm8k_train.jsonl", "gsm8k", 7473, "72"),
        ("pools/math_test5000.jsonl", "math", 5000, "2"),
        ("benchmarks/math500.jsonl", "math", 500, "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("benchmarks/aime24.jsonl", "aime", 30, "204"),
        ("benchmarks/aime25.jsonl", "aime", 30, "70"),
        ("benchmarks/amc23.jsonl", "amc", 40, "27"),  # stored as 27.0
        ("benchmarks/gsm8k_test.jsonl", "gsm8k", 1319, "18"),
        ("benchmarks/mmlu_stem.jsonl", "choice", 3018, "C"),  # stored as the index 2
    ],
)
def test_builtin_readers_on_reference_sets(file, fmt, rows, first_answer):
    qs, report = read_pool(PoolSpec(str(DATA / file), fmt))
    assert len(qs) == rows == report.loaded and not report.skipped
    assert qs[0].answer == first_answer
    assert len({q.id for q in qs}) == rows and all(q.text and q.answer for q in qs)


@needs_data
def test_math_boxed_answers_agree_with_math500_answer_field():
    # MATH-500 rows carry both the solution and an answer field; the \boxed{} reader must agree.
    pool = {q.text: q for q in load_pool(PoolSpec(str(DATA / "pools/math_test5000.jsonl"), "math"))}
    bench = load_pool(PoolSpec(str(DATA / "benchmarks/math500.jsonl"), "math"))
    assert all(pool[q.text].answer == q.answer for q in bench)
    assert {q.level for q in pool.values()} <= {0, 1, 2, 3, 4, 5}


def test_last_boxed_nested_and_unclosed():
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("no box") is None
    with pytest.raises(ValueError, match="unclosed"):
        last_boxed("\\boxed{\\frac{1}{2}")


# --- local files with a field mapping --------------------------------------------------------------


def test_jsonl_with_field_mapping(tmp_path):
    p = _jsonl(tmp_path / "mine.jsonl", [
        {"q": "What is 2+2?", "gold": "4", "uid": "a", "area": "arith"},
        {"q": "What is 3+3?", "gold": 6, "uid": "b", "area": "arith"},
    ])
    qs = load_pool({"source": str(p), "fields": {"question": "q", "answer": "gold", "id": "uid", "domain": "area"}})
    assert [(q.id, q.text, q.answer, q.domain) for q in qs] == [("mine-a", "What is 2+2?", "4", "arith"), ("mine-b", "What is 3+3?", "6", "arith")]


def test_parquet_and_gzip(tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"problem": f"Find x{i}.", "solution": f"It is $\\boxed{{{i}}}$.", "level": "Level 2"} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    qs = load_pool(PoolSpec(str(tmp_path / "m.parquet"), "math"))
    assert [q.answer for q in qs] == ["0", "1", "2", "3", "4"] and qs[0].level == 2 and qs[0].id == "m-0"
    with gzip.open(tmp_path / "g.jsonl.gz", "wt") as f:
        f.write(json.dumps({"question": "q?", "answer": "x\n#### 1,234"}) + "\n")
    assert load_pool(PoolSpec(str(tmp_path / "g.jsonl.gz"), "gsm8k"))[0].answer == "1234"


# --- malformed input: fail with file and line, or skip and count --------------------------------------


def _broken(tmp_path) -> Path:
    return _jsonl(tmp_path / "broken.jsonl", [
        {"question": "ok 1", "answer": "a\n#### 5"},
        "",  # blank lines are not rows
        '{"question": "torn", "answer": ',  # line 3: invalid JSON
        {"question": "no marker", "answer": "just 7"},  # line 4: no '#### N'
        {"answer": "#### 3"},  # line 5: no question key
        {"question": "bad number", "answer": "#### seven"},  # line 6
        {"question": "ok 2", "answer": "#### 8"},
    ])


@pytest.mark.parametrize("line,text", [(3, "invalid JSON"), (4, "no '#### N' line"), (5, "missing or empty key 'question'"), (6, "not a number")])
def test_malformed_row_fails_naming_file_and_line(tmp_path, line, text):
    p = _broken(tmp_path)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(ln for i, ln in enumerate(lines, 1) if i in (1, 2, line, 7)) + "\n")
    pos = {3: 3, 4: 3, 5: 3, 6: 3}[line]  # the bad row is now on line 3
    with pytest.raises(PoolError, match=rf"{p}:{pos}: .*{text}"):
        load_pool(PoolSpec(str(p), "gsm8k"))


def test_malformed_rows_skipped_and_counted(tmp_path):
    qs, report = read_pool(PoolSpec(str(_broken(tmp_path)), "gsm8k", on_error="skip"))
    assert [q.text for q in qs] == ["ok 1", "ok 2"]
    assert report.rows == 6 and report.loaded == 2
    assert report.skipped == Counter({"invalid_json": 1, "no_answer": 1, "missing_key": 1, "bad_answer": 1})
    assert report.errors[0].startswith(f"{tmp_path / 'broken.jsonl'}:3: invalid JSON")


def test_other_malformed_cases(tmp_path):
    dup = _jsonl(tmp_path / "dup.jsonl", [{"id": 1, "question": "a", "answer": "1"}, {"id": 1, "question": "b", "answer": "2"}])
    with pytest.raises(PoolError, match=r"dup.jsonl:2: duplicate id 'dup-1' \(first at .*dup.jsonl:1\)"):
        load_pool(str(dup))
    aime = _jsonl(tmp_path / "aime.jsonl", [{"problem": "p", "answer": 2.5}])
    with pytest.raises(PoolError, match=r"aime.jsonl:1: answer 2.5 is not an integer"):
        load_pool(PoolSpec(str(aime), "aime"))
    assert load_pool(PoolSpec(str(aime), "amc"))[0].answer == "2.5"
    math = _jsonl(tmp_path / "m.jsonl", [{"problem": "p", "solution": "no box here"}])
    with pytest.raises(PoolError, match=r"m.jsonl:1: no answer key and no \\boxed"):
        load_pool(PoolSpec(str(math), "math"))
    with pytest.raises(PoolError, match=r"corpus\.pools\[\]\.format: unknown format 'csv'"):
        load_pool(PoolSpec(str(math), "csv"))  # the schema knows no format: reading the pool checks it
    with pytest.raises(ConfigError, match=r"^fields: unknown name"):  # a PoolSpec alone names its own key (in a config: corpus.pools[0].fields)
        PoolSpec(str(math), "math", fields={"problem": "q"})
    with pytest.raises(ConfigError, match=r"^on_error: 'ignore'"):
        PoolSpec(str(math), on_error="ignore")
    with pytest.raises(PoolError, match="no such file"):
        load_pool(str(tmp_path / "missing.jsonl"))


def test_hub_name_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PoolError, match="cannot load hub dataset 'ded-no-such-org/no-such-set'.*local .jsonl"):
        load_pool(PoolSpec("ded-no-such-org/no-such-set", "gsm8k"))


# --- mixing ---------------------------------------------------------------------------------------------


def _pool(name, n):
    return [Question(f"{name}-{i}", f"{name} question {i}", str(i)) for i in range(n)]


def test_mix_proportions_seed_and_errors():
    pools = {"a": _pool("a", 100), "b": _pool("b", 40)}
    mix = mix_pools(pools, {"a": 3, "b": 1}, size=80, seed=0)
    assert Counter(q.id.split("-")[0] for q in mix) == {"a": 60, "b": 20}
    assert [q.id for q in mix] == [q.id for q in mix_pools(pools, {"a": 3, "b": 1}, size=80, seed=0)]
    assert [q.id for q in mix] != [q.id for q in mix_pools(pools, {"a": 3, "b": 1}, size=80, seed=1)]
    # size=None: the largest mix the pools supply at 1:1 is 80 (b runs out at 40)
    assert Counter(q.id.split("-")[0] for q in mix_pools(pools, {"a": 1, "b": 1})) == {"a": 40, "b": 40}
    with pytest.raises(PoolError, match="pool 'b' holds 40 questions; a mix of 120 .* needs 60"):
        mix_pools(pools, {"a": 1, "b": 1}, size=120)


def test_load_pools_mixes_files(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"question": f"a{i}", "answer": "1"} for i in range(30)])
    b = _jsonl(tmp_path / "b.jsonl", [{"question": f"b{i}", "answer": "1"} for i in range(30)])
    qs, reports = load_pools([{"source": str(a), "weight": 2}, {"source": str(b), "weight": 1}], size=30, seed=3)
    assert Counter(q.id.split("-")[0] for q in qs) == {"a": 20, "b": 10} and [r.loaded for r in reports] == [30, 30]
    with pytest.raises(PoolError, match="names must be distinct"):
        load_pools([str(a), str(a)])


# --- tasks: the pool task through the typed corpus config ---------------------------------------------


def test_pool_task_from_the_typed_config_and_a_bad_format_names_its_key(tmp_path):
    from conftest import compose
    from ded.plugins import validate
    from ded.data.tasks import TASKS, load_task

    p = _jsonl(tmp_path / "p.jsonl", [{"question": f"q{i}?", "answer": f"#### {i}"} for i in range(12)])
    pool = ["corpus.task=pool", f"corpus.pools=[{{source: {p}, format: gsm8k, weight: 2}}]", "corpus.pool_size=8", "eval.size=4"]
    cfg = validate(compose(pool + ["paths.output_dir=/tmp/x"]))
    assert isinstance(cfg.corpus.pools[0], PoolSpec) and cfg.corpus.pools[0].name == "p"
    train, held = load_task(cfg.corpus, cfg.eval.size)
    assert len(train) == 8 and len(held) == 4 and not {q.id for q in train} & {q.id for q in held}
    assert {q.kind for q in train} == {"gsm8k"}
    assert sorted(TASKS.names()) == ["arithmetic", "multistep", "pool"]
    bad = [x.replace("gsm8k", "csv") for x in pool]
    with pytest.raises(ConfigError, match=r"corpus\.pools\[0\]\.format: unknown format 'csv'"):
        validate(compose(bad + ["paths.output_dir=/tmp/x"]))
    with pytest.raises(ConfigError, match="corpus.task: unknown value 'poll'"):
        validate(compose(["corpus.task=poll", "paths.output_dir=/tmp/x"]))
