"""The code domain: readers (HumanEval, MBPP, LiveCodeBench), the final code block, grading in the
sandbox, pass@k, math and code mixed, in/out-of-domain reporting, and a whole pipeline run on code."""

import base64
import gzip
import json
import pickle
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from conftest import DATA, ROOT, needs_data
from ded.grading.answers import check_answer, check_answers
from ded.config import SandboxConfig
from ded.data.code import lcb_tests
from ded.data.solvers import SOLVERS
from ded.grading.answers import GradingSettings
from ded.grading.code import extract_code, make_spec
from ded.data.evalsets import load_eval_set
from ded.data.pools import PoolError, load_pools, read_pool
from ded.sandbox import check_isolation

needs_sandbox = pytest.mark.skipif(check_isolation() is not None, reason=f"no sandbox here: {check_isolation()}")


def block(code: str, before: str = "Here is my solution.") -> str:
    return f"{before}\n\n```python\n{code}\n```\n"


# --- the final code block ------------------------------------------------------------------------


def test_the_last_python_block_after_the_reasoning_is_the_answer():
    draft, final = "def f():\n    return 1", "def f():\n    return 2"
    assert extract_code(f"<think>\n```python\n{draft}\n```\n</think>\n\n" + block(final)) == final
    assert extract_code(block(draft) + "Better:\n" + block(final)) == final  # the last block wins
    assert extract_code(block(final) + "Run it with:\n```bash\npython f.py\n```\n") == final  # another language does not count
    assert extract_code("```\nprint(1)\n```") == "print(1)"  # an unlabeled block is Python
    assert extract_code("<think>\n```python\nprint(1)\n```\n") is None  # still thinking: a draft, no answer
    assert extract_code("Just prose, no code.") is None and extract_code("```python\nprint(1)") is None  # unclosed
    assert extract_code("```python\n\n```") is None  # empty
    long = "```python\n" * 200_000  # a looping generation: one pass over the fences, not a backtracking search
    assert extract_code(long) is None


def test_a_response_without_code_or_with_a_bad_gold_is_judged_without_running_anything():
    spec = make_spec("stdin", tests=[{"input": "1", "output": "1"}])
    assert check_answer("The answer is 1.", spec, "code").reason == "no_answer"
    assert check_answer(block("print(1)"), "not a spec", "code").reason == "bad_gold"


# --- HumanEval: the real file, canonical solutions pass, perturbed ones fail ------------------------


@needs_data
@needs_sandbox
def test_humaneval_canonical_solutions_pass_and_perturbed_ones_fail_on_the_real_file():
    qs = load_eval_set("humaneval", DATA)
    rows = [json.loads(x) for x in gzip.open(DATA / "benchmarks" / "humaneval.jsonl.gz", "rt")]
    assert len(qs) == len(rows) == 164 and {q.kind for q in qs} == {"code"} and {q.domain for q in qs} == {"code"}
    assert [q.reference for q in qs] == [r["prompt"] + r["canonical_solution"] for r in rows]  # for the code solver teacher
    canonical = [block(r["prompt"] + r["canonical_solution"]) for r in rows]
    # the model restates the function without the prompt's imports (they are put back), or only its body is wrong
    perturbed = [block(r["prompt"] + "    return None\n" + r["canonical_solution"]) for r in rows]
    verdicts = check_answers([(c, q.answer, "code") for c, q in zip(canonical + perturbed, qs + qs)])
    good, bad = verdicts[:164], verdicts[164:]
    assert [q.id for q, v in zip(qs, good) if not v.correct] == []
    assert [q.id for q, v in zip(qs, bad) if v.correct] == []
    assert {v.reason for v in bad} <= {"wrong", "runtime_error"}
    # a solution that restates only the function (no "from typing import List") still passes
    no_imports = "def has_close_elements(numbers, threshold):\n" + rows[0]["canonical_solution"]
    assert check_answer(block(no_imports), qs[0].answer, "code").correct


# --- LiveCodeBench: a small file in its schema -------------------------------------------------------


def _compressed(tests: list[dict]) -> str:
    """LiveCodeBench's later releases: base64(zlib(pickle(JSON string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def lcb_file(path: Path) -> Path:
    sums = {"question_title": "Sum", "question_content": "Read two integers a and b and print a+b.", "platform": "atcoder",
            "question_id": "abc001_a", "contest_id": "abc001", "contest_date": "2024-06-01T00:00:00", "starter_code": "",
            "difficulty": "easy", "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
            "private_test_cases": _compressed([{"input": "10 -3\n", "output": "7\n", "testtype": "stdin"}]), "metadata": "{}"}  # fmt: skip
    twice = {"question_title": "Twice", "question_content": "Return every number of nums doubled.", "platform": "leetcode",
             "question_id": "3001", "contest_id": "weekly-400", "contest_date": "2024-09-15T00:00:00",
             "starter_code": "class Solution:\n    def doubled(self, nums: List[int]) -> List[int]:\n        ",
             "difficulty": "easy", "public_test_cases": json.dumps([{"input": "[1, 2]", "output": "[2, 4]", "testtype": "functional"}]),
             "private_test_cases": json.dumps([{"input": "[]", "output": "[]", "testtype": "functional"}]),
             "metadata": json.dumps({"func_name": "doubled"})}  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in [sums, twice]))
    return path


@needs_sandbox
def test_livecodebench_rows_in_its_schema_are_read_windowed_and_graded(tmp_path):
    src = lcb_file(tmp_path / "lcb.jsonl")
    qs, report = read_pool({"source": str(src), "format": "livecodebench"})
    assert [q.id for q in qs] == ["lcb-abc001_a", "lcb-3001"] and {q.kind for q in qs} == {"code"}
    stdin_q, func_q = qs
    assert json.loads(stdin_q.answer)["style"] == "stdin" and len(json.loads(stdin_q.answer)["tests"]) == 2  # public + private
    assert "standard input" in stdin_q.text and "class Solution" in func_q.text and "```python" in func_q.text
    # a contamination window: only problems up to 2024-07-31 train
    early, report = read_pool({"source": str(src), "format": "livecodebench", "until": "2024-07-31"})
    assert [q.id for q in early] == ["lcb-abc001_a"] and report.outside_window == 1
    graded = check_answers([
        (block("a, b = map(int, input().split())\nprint(a + b)"), stdin_q.answer, "code"),
        (block("import sys\nprint(sum(map(int, sys.stdin.read().split())))"), stdin_q.answer, "code"),
        (block("a, b = map(int, input().split())\nprint(a + abs(b))"), stdin_q.answer, "code"),  # passes public, fails private
        (block("class Solution:\n    def doubled(self, nums):\n        return [2 * x for x in nums]"), func_q.answer, "code"),
        (block("class Solution:\n    def doubled(self, nums):\n        return nums"), func_q.answer, "code"),
        (block("class Solution:\n    def doubled(self, nums):\n        while True: pass"), func_q.answer, "code"),
        (block("def doubled(nums) return"), func_q.answer, "code"),
    ])  # fmt: skip
    assert [v.reason for v in graded] == ["correct", "correct", "wrong", "correct", "wrong", "timeout", "unparsable"]


def test_livecodebench_eval_set_takes_a_release_window(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    lcb_file(tmp_path / "benchmarks" / "livecodebench.jsonl")
    assert len(load_eval_set("livecodebench", str(tmp_path))) == 2
    later = load_eval_set("livecodebench", str(tmp_path), since="2024-08-01")
    assert [q.id for q in later] == ["livecodebench-1"] and json.loads(later[0].answer)["fn_name"] == "doubled"


FAST_IO = """import os, sys
from io import BytesIO, IOBase
class FastIO(IOBase):
    def __init__(self, file):
        self._fd, self.buffer, self.writable = file.fileno(), BytesIO(), "x" in file.mode or "r" not in file.mode
    def read(self):
        return os.read(self._fd, 1 << 20)
    def flush(self):
        if self.writable:
            os.write(self._fd, self.buffer.getvalue())
            self.buffer.truncate(0), self.buffer.seek(0)
sys.stdout = FastIO(sys.stdout)
a, b = map(int, FastIO(sys.stdin).read().split())
sys.stdout.buffer.write(str(a + b).encode() + b"\\n")
sys.stdout.flush()
os._exit(0)
"""


@needs_sandbox
def test_how_real_solutions_read_write_and_exit_is_graded_as_the_judges_do(tmp_path):
    """Each test runs in its own process: reading fd 0 in any way, replacing sys.stdout, os._exit
    after flushing, a bare except around a slow loop, LeetCode code that uses List without importing
    it, prints in a functional solution; integers compared exactly, floats within 1e-6."""
    (q_in, q_fn), _ = read_pool({"source": str(lcb_file(tmp_path / "lcb.jsonl")), "format": "livecodebench"})
    sums = [
        "a, b = map(int, input().split())\nprint(a + b)",
        "import sys\na, b = map(int, sys.stdin.buffer.read().split())\nsys.stdout.write(str(a + b))",
        "f = open(0)\ndef g(): pass\nprint(sum(map(int, f.read().split())))",  # fd 0 closed later by the collector
        "import sys\nsys.stdout = open(1, 'w')\nprint(sum(map(int, input().split())))",
        "a, b = map(int, input().split())\nprint(a + b)\nexit()",
        "if __name__ == '__main__':\n    print(sum(map(int, input().split())))",
        FAST_IO,
    ]
    wrong = [
        "import time\nfor _ in range(100):\n    try:\n        time.sleep(1)\n    except BaseException:\n        break\nprint(sum(map(int, input().split())))",
        "print(sum(map(int, input().split())) + 1000000000000)",
    ]
    doubled = [
        "class Solution:\n    def doubled(self, nums: List[int]) -> List[int]:\n        return [2 * x for x in nums]",  # List: no import
        "class Solution:\n    def doubled(self, nums):\n        for i in range(100000): print('debug', i)\n        return tuple(2 * x for x in nums)",
    ]
    v = check_answers([(block(c), q_in.answer, "code") for c in sums + wrong] + [(block(c), q_fn.answer, "code") for c in doubled])
    assert [x.reason for x in v] == ["correct"] * len(sums) + ["timeout", "wrong"] + ["correct"] * len(doubled), [x.extracted for x in v]
    near = make_spec("stdin", tests=[{"input": "", "output": "998244352 0.30000000\n"}])
    v = check_answers([(block(c), near, "code") for c in ["print(998244352, 0.1 + 0.2)", "print(998244000, 0.3)", "print(998244352, 0.31)"]])
    assert [x.reason for x in v] == ["correct", "wrong", "wrong"]


@needs_sandbox
def test_the_grading_settings_travel_with_each_check_and_a_remembered_verdict_is_theirs():
    """sandbox.per_test_s decides whether a slow solution passes; the verdict of one setting is
    never reused under another (the memo's key holds the limits), in a batch or alone."""
    spec = make_spec("functional", tests=[{"input": "1", "output": "2"}], fn_name="slow_double")
    slow = block("import time\ndef slow_double(x):\n    time.sleep(1.2)\n    return 2 * x")
    tight, loose = GradingSettings(SandboxConfig(per_test_s=0.5)), GradingSettings(SandboxConfig(per_test_s=4.0))
    assert check_answers([(slow, spec, "code")], settings=tight)[0].reason == "timeout"
    assert check_answers([(slow, spec, "code")], settings=loose)[0].reason == "correct"
    assert check_answer(slow, spec, "code", settings=tight).reason == "timeout"  # checked again: the tight verdict
    assert check_answer(slow, spec, "code").reason == "correct"  # no settings: the sandbox section's defaults (4 s a test)


@needs_data
@needs_sandbox
def test_humaneval_answers_that_give_only_the_function_or_only_its_body_pass():
    """The prompt's helpers (encode_cyclic for HumanEval/38) and imports are there for a solution
    that restates only its function, and a bare body completes the prompt's header."""
    rows = {json.loads(x)["task_id"]: json.loads(x) for x in gzip.open(DATA / "benchmarks" / "humaneval.jsonl.gz", "rt")}
    qs = {q.source.rsplit(":", 1)[-1]: q for q in load_eval_set("humaneval", DATA)}
    pairs = []
    for tid in ("HumanEval/38", "HumanEval/10", "HumanEval/0"):
        r, q = rows[tid], qs[str(int(tid.split("/")[1]) + 1)]
        only = r["prompt"][r["prompt"].index("def " + r["entry_point"]) :] + r["canonical_solution"]
        pairs += [(block(only), q.answer, "code"), (block(r["canonical_solution"]), q.answer, "code")]
    pairs.append((block("from __future__ import annotations\n" + rows["HumanEval/0"]["prompt"] + rows["HumanEval/0"]["canonical_solution"]), qs["1"].answer, "code"))
    assert [v.reason for v in check_answers(pairs)] == ["correct"] * 7


def test_a_pickled_test_field_may_hold_a_string_and_nothing_else():
    assert lcb_tests(_compressed([{"input": "1", "output": "2"}])) == [{"input": "1", "output": "2"}]

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    hostile = base64.b64encode(zlib.compress(pickle.dumps(Boom()))).decode()
    from ded.grading.answers import GoldError

    with pytest.raises(GoldError, match="neither JSON nor"):
        lcb_tests(hostile)


def test_bad_code_rows_name_the_file_and_line(tmp_path):
    src = tmp_path / "lcb.jsonl"
    src.write_text(json.dumps({"question_content": "x", "question_id": "1", "public_test_cases": "[]", "private_test_cases": ""}) + "\n")
    with pytest.raises(PoolError, match=r"lcb\.jsonl:1: no test cases"):
        read_pool({"source": str(src), "format": "livecodebench"})
    (tmp_path / "he.jsonl").write_text(json.dumps({"prompt": "def f():\n", "task_id": "t/0"}) + "\n")
    with pytest.raises(PoolError, match=r"he\.jsonl:1: missing key 'entry_point'"):
        read_pool({"source": str(tmp_path / "he.jsonl"), "format": "humaneval"})


@needs_sandbox
def test_mbpp_rows_are_graded_by_their_asserts(tmp_path):
    row = {"task_id": 2, "text": "Write a function to find the shared elements of two lists.",
           "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
           "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
                         "assert set(similar_elements((1, 2), (3, 4))) == set()"], "test_setup_code": ""}  # fmt: skip
    src = tmp_path / "mbpp.jsonl"
    src.write_text(json.dumps(row) + "\n")
    (q,), _ = read_pool({"source": str(src), "format": "mbpp"})
    assert "assert set(similar_elements" in q.text and q.reference == row["code"]  # the code solver teacher's answer
    solver = SOLVERS["code"].varied(q.text, q.reference, random.Random(0))  # the solver teacher answers with the reference
    answers = [block(row["code"]), block("def similar_elements(a, b):\n    return a"), solver]
    ok, wrong, solved = check_answers([(a, q.answer, "code") for a in answers])
    assert ok.correct and wrong.reason == "wrong" and solved.correct


# --- mixing, scoring, scope ----------------------------------------------------------------------


@needs_data
def test_math_and_code_pools_mix_in_proportion_each_keeping_its_answer_kind():
    specs = [{"source": str(DATA / "pools" / "gsm8k_train.jsonl"), "format": "gsm8k", "weight": 3},
             {"source": str(DATA / "benchmarks" / "humaneval.jsonl.gz"), "format": "humaneval", "weight": 1}]  # fmt: skip
    qs, _ = load_pools(specs, size=40, seed=1)
    kinds = {(q.domain, q.kind) for q in qs}
    assert kinds == {("math", "gsm8k"), ("code", "code")}
    assert sum(q.kind == "code" for q in qs) == 10  # 1 part in 4


@needs_data
@needs_sandbox
def test_pass_at_k_on_code_counts_passing_programs():
    from ded.evaluation.scoring import score

    rows = [json.loads(x) for x in gzip.open(DATA / "benchmarks" / "humaneval.jsonl.gz", "rt")][:3]
    qs = load_eval_set("humaneval", DATA, limit=3)
    good = [{"text": block(r["prompt"] + r["canonical_solution"]), "n_tokens": 10, "finish": "stop"} for r in rows]
    bad = {"text": "no code", "n_tokens": 3, "finish": "stop"}
    samples = {qs[0].id: [good[0], good[0]], qs[1].id: [good[1], bad], qs[2].id: [bad, bad]}
    res = score(qs, samples)
    assert res["avg@2"] == pytest.approx(0.5) and res["pass@1"] == pytest.approx(0.5) and res["pass@2"] == pytest.approx(2 / 3)
    assert res["no_answer_rate"] == pytest.approx(0.5)


# --- the whole pipeline on a code pool -----------------------------------------------------------


SMALL = ["corpus.pool_size=4", "corpus.size=4", "corpus.pass_rate.k=1", "corpus.trajectories.n=2", "corpus.trajectories.p=1",
         "student.sampling.max_new_tokens=32", "eval.size=3", "eval.k=1", "eval.sampling.max_new_tokens=32", "eval.limit=3",
         "eval.per_set.gsm8k.max_new_tokens=16", "train.num_train_epochs=1", "train.per_device_train_batch_size=4",
         "analysis.enabled=false", "logger=none"]  # fmt: skip


def code_run(cache_dir, out: Path, *extra: str) -> dict:
    """experiment=code_cpu at its smallest: HumanEval problems, the code solver teacher, the embedded SmolLM2."""
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), "experiment=code_cpu", *SMALL, *extra, f"paths.cache_dir={cache_dir}",
                        f"hydra.run.dir={out}"], cwd=out.parent, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["run/status"] == "finished" and m["data/pool/questions"] == 4
    assert m["filter/teacher/kept"] == 8 and m["filter/teacher/kept_share"] == 1.0  # every reference solution passed its tests
    corpus = [json.loads(x) for x in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(corpus) == 4 and all("```python" in e["response"] and json.loads(e["answer"])["style"] == "assert" for e in corpus)
    return m


@needs_data
@needs_sandbox
def test_a_code_pool_becomes_a_corpus_of_programs_that_pass_their_tests(cache_dir, tmp_path):
    """The student's pass rate and the teacher's trajectories graded in the sandbox, then selection."""
    m = code_run(cache_dir, tmp_path / "run", "stop_after=curation")
    assert m["passrate/pool/kept"] == 4 and m["generation/student/new_samples"] == 4  # the 135M student passes none


@pytest.mark.slow
@needs_data
@needs_sandbox
def test_every_stage_runs_on_a_code_pool(cache_dir, tmp_path):
    """... trained and evaluated on held-out HumanEval (in domain) and GSM8K (out of domain). About 4 min on 2 cores."""
    out = tmp_path / "run"
    m = code_run(cache_dir, out)
    for split in ("heldout", "gsm8k"):
        for model in ("base", "trained"):
            assert 0 <= m[f"eval/{split}/{model}/avg@1"] <= 1 and 0 <= m[f"eval/{split}/{model}/pass@1"] <= 1
    assert "eval/in_domain/delta_avg@1" in m and "eval/out_of_domain/delta_avg@1" in m
    ev = json.loads((out / "eval.json").read_text())
    assert ev["provenance"]["sandbox"]["per_test_s"] == 4.0


def test_code_questions_are_not_contaminated_by_their_shared_instruction(tmp_path):
    """Every code question ends with the same instruction sentence: decontamination must not count it."""
    from ded.data.decontam import decontaminate

    src = lcb_file(tmp_path / "lcb.jsonl")
    pool, _ = read_pool({"source": str(src), "format": "livecodebench"})
    bench = ["Print the number of vowels in the given string s." + pool[0].text[pool[0].text.index("\n\nThink it through") :]]
    assert len(decontaminate(pool, {"lcb_later": bench}, n=8, min_overlap=0.0).kept) == 2
    assert len(decontaminate(pool, {"same": [pool[0].text]}, n=8, min_overlap=0.5).kept) == 1  # a real overlap still counts


def test_in_domain_follows_the_answer_kind_for_subjects_outside_the_list():
    from ded.data.evalsets import area_of, scope_of

    assert area_of("Algebra", "math") == "math" and area_of("code", "code") == "code" and area_of("arithmetic") == "math"
    assert scope_of("math500", {area_of("Algebra", "math")}) == "in" and scope_of("humaneval", {"math"}) == "out"


def test_livecodebench_is_read_from_a_local_file_and_says_how_to_get_one(tmp_path):
    from ded.data.evalsets import EvalSetError, check_available

    assert "test*.jsonl" in check_available("livecodebench", str(tmp_path))
    with pytest.raises(EvalSetError, match="local file only"):
        load_eval_set("livecodebench", str(tmp_path))
    with pytest.raises(PoolError, match=r"corpus.pools\[\].until: an ISO date"):
        read_pool({"source": str(lcb_file(tmp_path / "l.jsonl")), "format": "livecodebench", "until": "2024-7-31"})


def test_grading_code_is_known_before_the_run():
    from conftest import compose
    from ded.plugins import validate
    from ded.preflight import grades_code

    def grades(*o):
        return grades_code(validate(compose([*o, "paths.output_dir=/tmp/unused"])))

    assert grades("experiment=code_cpu") and grades("eval.sets=[humaneval]") and grades("corpus=math_code")
    assert not grades() and not grades("corpus=gsm8k", "eval.sets=[gsm8k]")


def test_the_paper_scale_code_configuration_trains_before_and_scores_after_one_day():
    from conftest import compose
    from ded.plugins import validate

    c = validate(compose(["experiment=paper_32b_code", "paths.output_dir=/tmp/unused"]))
    assert c.name == "paper_32b_code" and c.teacher.name == "qwq-32b" and c.train.num_machines == 2
    (pool,) = c.corpus.pools
    assert pool.format == "livecodebench" and pool.until == "2024-07-31" and c.eval.since == "2024-08-01"
    assert c.eval.sets[0] == "livecodebench" and c.sandbox.per_test_s == 6 and not c.corpus.filters.repetition


def _folder_the_sandbox_would_show(name: str) -> Path | None:
    """A new, world-readable folder outside everything the sandbox hides or replaces anyway (/tmp,
    /var/tmp, /dev/shm, the repository, home); None where no such place is writable."""
    import os
    import secrets

    covered = [Path(p).resolve() for p in ("/tmp", "/var/tmp", "/dev/shm", ROOT, Path.home())]
    for parent in (ROOT.parent, Path("/var/lib"), Path("/srv"), Path("/opt"), Path("/mnt")):
        real = parent.resolve()
        if any(real == c or c in real.parents for c in covered) or not os.access(real, os.W_OK):
            continue
        folder = real / f".ded-{name}-{secrets.token_hex(4)}"
        try:
            folder.mkdir(mode=0o755)
        except OSError:
            continue
        folder.chmod(0o755)
        return folder
    return None


@needs_sandbox
def test_every_folder_the_config_reads_data_from_is_hidden_from_graded_code(monkeypatch):
    """The folders named by eval.data_dir, corpus.pools[].source, DED_DATA_DIR and the Hugging Face
    cache variables are hidden from graded programs, whichever key named them: with DED_DATA_DIR
    unset, a program that prints a benchmark file from eval.data_dir is not graded correct."""
    import secrets
    import shutil

    from conftest import compose
    from ded.config import PoolSpec
    from ded.pipeline import grading_settings
    from ded.plugins import validate

    folders = [_folder_the_sandbox_would_show(name) for name in ("data", "pool", "hf")]
    try:
        if None in folders:
            pytest.skip("no writable folder outside /tmp, the repository and home (the sandbox hides or replaces those anyway)")
        data, pool, hf = folders
        secret = secrets.token_hex(16)
        (data / "benchmark.jsonl").write_text(secret)
        (data / "benchmark.jsonl").chmod(0o644)
        (pool / "pool.jsonl").write_text('{"question": "q", "answer": "1"}\n')
        monkeypatch.delenv("DED_DATA_DIR", raising=False)
        monkeypatch.setenv("HF_HOME", str(hf))
        conf = validate(compose([f"eval.data_dir={data}", "paths.output_dir=/tmp/unused"]))
        conf.corpus.pools.append(PoolSpec(source=str(pool / "pool.jsonl"), format="gsm8k"))
        settings = grading_settings(conf)
        assert {str(data), str(pool), str(hf)} <= set(settings.hide), settings.hide
        spec = make_spec("stdin", tests=[{"input": "", "output": secret}])
        reader = block(f"print(open({str(data / 'benchmark.jsonl')!r}).read())")
        assert check_answers([(reader, spec, "code")], settings=GradingSettings(conf.sandbox))[0].correct  # visible unless hidden
        assert check_answers([(reader, spec, "code")], settings=settings)[0].reason != "correct"
    finally:
        for folder in folders:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
