"""Pools built from a replayed teacher dataset (conf/corpus/omr_replay.yaml, openr1_replay.yaml).

Small local files in the published schemas stand in for the hub datasets: nvidia/OpenMathReasoning
(a row per solution, the model in ``generation_model``, several rows per problem) and
open-r1/OpenR1-Math-220k (a row per problem, generations and flags in list columns). The shipped
presets are used as they are, with ``teacher.replay.dataset`` pointed at the local file; the pool
follows it. The last test runs the paper's two-teacher comparison end to end as a Hydra multirun.
"""

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT, compose
from ded.plugins import validate
from ded.config import ConfigError
from ded.data.pools import PoolError, read_pool
from ded.generation import generate_cached
from ded.generation.factory import make_backend

# Five problems both teachers solved (products a small student does not get right), one only QwQ did.
BOTH = [(347, 29), (613, 47), (128, 91), (905, 38), (476, 53)]
QWQ_ONLY = "Compute $211 \\cdot 67$."
SAMPLING = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768}  # the replay configs' (a cache key part only)


def _problem(a: int, b: int) -> str:
    return f"Compute ${a} \\cdot {b}$."


def _solution(model: str, k: int, a: int, b: int) -> str:
    return f"<think>\n{model} try {k}: {a} times {b}\n</think>\nSo the product is \\boxed{{{a * b}}}."


def _omr_rows() -> list[tuple[str, str, str, str]]:
    """(problem, model, solution, expected answer), models interleaved as in the published split."""
    rows = []
    for a, b in BOTH:
        for k in (1, 2):
            rows += [(_problem(a, b), m, _solution(m, k, a, b), str(a * b)) for m in ("QwQ-32B", "DeepSeek-R1")]
    rows.append((QWQ_ONLY, "QwQ-32B", _solution("QwQ-32B", 1, 211, 67), str(211 * 67)))
    return rows


def _omr_file(path, rows=None, drop=()):
    """A parquet file in nvidia/OpenMathReasoning's cot schema (columns in `drop` left out)."""
    rows = rows or _omr_rows()
    cols = {
        "expected_answer": [r[3] for r in rows], "problem_type": ["has_answer_extracted"] * len(rows),
        "problem_source": ["aops_c4"] * len(rows), "generation_model": [r[1] for r in rows],
        "pass_rate_72b_tir": ["0.5"] * len(rows), "problem": [r[0] for r in rows],
        "generated_solution": [r[2] for r in rows], "inference_mode": ["cot"] * len(rows), "used_in_kaggle": [False] * len(rows),
    }  # fmt: skip
    pq.write_table(pa.table({k: v for k, v in cols.items() if k not in drop}), path)
    return path


def _pool_spec(teacher: str, corpus: str, dataset, *extra):
    """The pool spec of a shipped corpus preset with this teacher, its dataset a local file."""
    cfg = validate(compose([f"teacher={teacher}", f"corpus={corpus}", f"teacher.replay.dataset={dataset}", "paths.output_dir=/tmp/x", *extra]))
    return cfg.corpus.pools[0]


# --- the pool ------------------------------------------------------------------------------------


def test_omr_pool_one_question_per_text_held_by_both_teachers(tmp_path):
    rows = _omr_rows()
    rows[0] = (rows[0][0] + "\n", *rows[0][1:])  # a text with trailing whitespace: the pool strips it, replay still matches
    data = _omr_file(tmp_path / "omr.parquet", rows)
    spec = _pool_spec("replay_omr_qwq", "omr_replay", data)
    assert spec.source == str(data) and spec.fields["answer"] == "expected_answer" and spec.models == ["QwQ-32B", "DeepSeek-R1"]
    qs, report = read_pool(spec)
    assert [(q.text, q.answer) for q in qs] == [(_problem(a, b), str(a * b)) for a, b in BOTH]  # QWQ_ONLY dropped
    assert [q.id for q in qs] == ["omr-0", "omr-4", "omr-8", "omr-12", "omr-16"]  # named by each problem's first row
    assert (report.rows, report.merged, report.not_all_models, report.loaded) == (21, 15, 1, 5)

    # Both teachers replay every pool question: the texts are the dataset's own.
    for teacher in ("replay_omr_qwq", "replay_omr_r1"):
        t = validate(compose([f"teacher={teacher}", f"teacher.replay.dataset={data}", "paths.output_dir=/tmp/x"])).teacher
        cache = str(tmp_path / "cache")
        out, st = generate_cached(make_backend(t, cache), cache, qs, 2, prefix=[], sampling=SAMPLING, seed=0, desc="replay")
        assert st.missing == 0 and st.new_tokens == 0
        assert [r["text"] for r in out["omr-0"]] == [_solution(t.replay.model_value, k, *BOTH[0]) for k in (1, 2)]

    without = read_pool(_pool_spec("replay_omr_qwq", "omr_replay", data, "corpus.pools.0.models=[]"))[0]
    assert len(without) == 6  # no model filter: QwQ's extra problem too


def test_omr_pool_conflicting_answers_fail_or_are_counted(tmp_path):
    rows = _omr_rows()
    rows[3] = (*rows[3][:3], "1")  # the same problem with another gold answer
    data = _omr_file(tmp_path / "omr.parquet", rows)
    spec = _pool_spec("replay_omr_qwq", "omr_replay", data)
    with pytest.raises(PoolError, match=r"omr.parquet: row 3: answer '1' differs from '10063'.*row 0.*on_error=skip"):
        read_pool(spec)
    spec.on_error = "skip"
    qs, report = read_pool(spec)
    assert report.skipped == {"conflicting_answer": 1} and qs[0].answer == "10063"


def test_openr1_pool_answers_from_the_answer_column(tmp_path):
    rows = [  # open-r1/OpenR1-Math-220k: one row per problem, 2-4 generations in list columns
        {"problem": _problem(a, b), "solution": "...", "answer": str(a * b), "problem_type": "Algebra", "uuid": f"u{i}",
         "generations": [_solution("r1", 1, a, b), _solution("r1", 2, a, b)], "correctness_math_verify": [True, True],
         "correctness_llama": None, "finish_reasons": ["stop", "stop"]}
        for i, (a, b) in enumerate(BOTH[:3])
    ]  # fmt: skip
    data = tmp_path / "openr1.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = _pool_spec("replay_openr1_r1", "openr1_replay", data)
    qs, report = read_pool(spec)
    assert [(q.id, q.answer) for q in qs] == [("openr1-0", "10063"), ("openr1-1", "28811"), ("openr1-2", "11648")]
    assert report.merged == 0


def test_missing_column_or_dataset_fails_naming_key_and_file(tmp_path):
    data = _omr_file(tmp_path / "omr.parquet", drop=("expected_answer",))
    spec = _pool_spec("replay_omr_qwq", "omr_replay", data)
    with pytest.raises(PoolError, match=r"omr.parquet has no column 'expected_answer' \(corpus.pools\[\].fields.answer\); its columns: \["):
        read_pool(spec)  # before any row: a hub dataset's column list is checked the same way
    spec = _pool_spec("replay_omr_qwq", "omr_replay", data, "teacher.replay.question=question")
    with pytest.raises(PoolError, match=r"'question' \(corpus.pools\[\].fields.question\)"):
        read_pool(spec)  # the pool reads the teacher's question column
    jsonl = tmp_path / "omr.jsonl"  # no schema: the first row says which key is missing, and where
    jsonl.write_text(json.dumps({"problem": "Find $x$.", "generation_model": "QwQ-32B"}) + "\n")
    with pytest.raises(PoolError, match=r"omr.jsonl:1: missing or empty key 'expected_answer' \(answer\)"):
        read_pool(_pool_spec("replay_omr_qwq", "omr_replay", jsonl))
    with pytest.raises(PoolError, match=r"nope.parquet: no such file \(corpus.pools\[\].source\)"):
        read_pool(_pool_spec("replay_omr_qwq", "omr_replay", tmp_path / "nope.parquet"))
    with pytest.raises(ConfigError, match=r"corpus.pools\[0\].models: needs fields.model"):
        _pool_spec("replay_s1k_r1", "omr_replay", data)  # a teacher whose dataset names no model


def test_hub_dataset_read_in_its_used_columns_and_checked_first(tmp_path, monkeypatch):
    """The hub path (the presets' default): the trajectory column is never read; a missing column
    fails naming the dataset, split and key before any row."""
    import datasets

    rows = _omr_rows()
    full = datasets.Dataset.from_dict({"problem": [r[0] for r in rows], "generation_model": [r[1] for r in rows],
                                       "generated_solution": [r[2] for r in rows], "expected_answer": [r[3] for r in rows]})  # fmt: skip
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: asked.append((a, kw)) or full)
    spec = _pool_spec("replay_omr_qwq", "omr_replay", "nvidia/OpenMathReasoning")
    seen = []
    monkeypatch.setattr(datasets.Dataset, "__iter__", lambda ds: (seen.append(ds.column_names), iter(ds.to_list()))[1])
    assert len(read_pool(spec)[0]) == 5 and asked == [(("nvidia/OpenMathReasoning", None), {"split": "cot", "revision": None})]
    assert seen == [["problem", "expected_answer", "generation_model"]]  # not generated_solution
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: full.remove_columns("generation_model"))
    with pytest.raises(PoolError, match=r"hub dataset 'nvidia/OpenMathReasoning' \[cot\] has no column 'generation_model' \(corpus.pools\[\].fields.model\)"):
        read_pool(spec)


# --- the comparison, end to end ------------------------------------------------------------------


@pytest.mark.slow  # two replayed-teacher runs end to end, ~1 min on 2 cores
def test_two_replayed_teachers_compared_end_to_end(cache_dir, tmp_path):
    """`run.py -m teacher=replay_omr_qwq,replay_omr_r1 corpus=omr_replay`: the pool comes from the
    dataset, the teachers' trajectories from its rows (no tokens generated), and each job trains and
    evaluates the student; the second job reuses the first's student samples (the same pool)."""
    data = _omr_file(tmp_path / "omr.parquet")
    sweep = tmp_path / "sweep"
    # `++`: a multirun first composes the sweep without its swept groups (the default teacher has no
    # replay section), so a key only the swept teachers have must be force-added
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "teacher=replay_omr_qwq,replay_omr_r1", "corpus=omr_replay", f"++teacher.replay.dataset={data}",
         "debug=tiny", "logger=none", "corpus.pool_size=3", "eval.size=2", "eval.k=1", "corpus.pass_rate.k=1", "analysis.enabled=false",
         "student.sampling.max_new_tokens=4", "eval.sampling.max_new_tokens=4",  # the student's answers only need to exist
         f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    solutions = {m: {s for _, model, s, _ in _omr_rows() if model == m} for m in ("QwQ-32B", "DeepSeek-R1")}
    both = {_problem(a, b) for a, b in BOTH}
    for num, model in enumerate(["QwQ-32B", "DeepSeek-R1"]):
        job = sweep / str(num)
        assert yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["teacher"]["backend"] == "replay"
        m = json.loads((job / "metrics.json").read_text())
        assert m["run/status"] == "finished" and (m["data/pool/questions"], m["data/heldout/questions"]) == (3, 2)
        assert m["generation/teacher/new_tokens"] == 0  # replayed rows, nothing generated
        assert m["generation/teacher/new_samples"] == 2 * m["passrate/pool/kept"]  # n=2 rows of this teacher per kept question
        corpus = [json.loads(x) for x in (job / "corpus.jsonl").read_text().splitlines()]
        assert corpus and all(e["response"] in solutions[model] and e["question"] in both for e in corpus)  # this teacher's own traces
        assert m["train/steps"] >= 1 and 0 <= m["eval/heldout/trained/avg@1"] <= 1 and 0 <= m["eval/heldout/base/avg@1"] <= 1
    second = json.loads((sweep / "1" / "metrics.json").read_text())
    assert second["generation/student/new_samples"] == 0 and second["eval/heldout/base/new_samples"] == 0  # the same questions
