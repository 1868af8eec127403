"""Sharded generation (generation.shard=i/n): n jobs fill one generation key at the same time.

Four real processes generate the shards of one key with the real SmolLM2 model: their union is
a single process's samples, each (question, index) once, and their generation intervals overlap
(no shard waited for another's lock). A killed shard resumes with only what it lacks; readers
count a sample held twice once; a sharded run stops before curation; the pipeline's generation
stages split the pool the same way.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, compose
from ded.config import ConfigError
from ded.plugins import validate
from ded.data import Question, arithmetic
from ded.generation import Backend, Completion, generate_cached, generation_key, question_hash, shard_of, shard_questions
from ded.generation.sample_cache import SampleCache

N_SHARDS, N_SAMPLES = 4, 2
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4}  # hot: two jobs agree only if seeded alike


def _questions() -> list[Question]:
    """8 arithmetic questions, 2 of each shard of 4 (a plain pool of 8 splits unevenly)."""
    pool, _ = arithmetic.build(40, 2, [1, 2], seed=0)
    by_shard = {i: [q for q in pool if shard_of(question_hash(q.text), N_SHARDS) == i][:2] for i in range(N_SHARDS)}
    assert all(len(qs) == 2 for qs in by_shard.values())
    return [q for qs in by_shard.values() for q in qs]


# One shard job: load the model, wait until all four jobs have (so they start generating
# together), then generate its shard. Batch size 1: each request is seeded on its own, so a
# sample does not depend on which job generated it. One thread each: four jobs share two cores.
SHARD_JOB = r"""
import json, os, sys, time
from pathlib import Path
sys.path[:0] = {tests!r}
import torch
torch.set_num_threads(1)
from ded.generation import generate_cached
from ded.generation.backends.hf import HFBackend
from ded.core.models import load_model
from test_sharding import SAMPLING, N_SAMPLES, N_SHARDS, _questions
i, root, barrier = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
model = load_model({model!r}, "")
backend = HFBackend(lambda: model, {{"model": "smollm2-test"}}, batch_size=1)
(barrier / f"ready{{i}}").touch()
deadline = time.time() + 120
while len(list(barrier.glob("ready*"))) < N_SHARDS:
    assert time.time() < deadline, "the other shard jobs never got ready"
    time.sleep(0.02)
_, st = generate_cached(backend, root, _questions(), N_SAMPLES, prefix=[], sampling=SAMPLING, seed=0, desc="shard", shard=(i, N_SHARDS))
print("STATS", json.dumps({{"new": st.new_samples, "cached": st.cached}}), flush=True)
os._exit(0)  # skip the interpreter's teardown of torch (seconds on busy cores)
"""


def _pairs(path: Path) -> list[tuple[str, int, str]]:
    return [(r["q"], r["i"], r["text"]) for r in map(json.loads, path.read_text().splitlines())]


def test_four_shard_processes_fill_one_key_at_once(tmp_path, smollm_path):
    import torch

    from ded.generation.backends.hf import HFBackend
    from ded.core.models import load_model

    qs = _questions()
    # The reference: one unsharded process, the same model, seeds and thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_model(smollm_path, "")
        backend = HFBackend(lambda: model, {"model": "smollm2-test"}, batch_size=1)
        single, _ = generate_cached(backend, str(tmp_path / "single"), qs, N_SAMPLES, prefix=[], sampling=SAMPLING, seed=0, desc="single")
    finally:
        torch.set_num_threads(threads)
    expected = {(question_hash(q.text), i): single[q.id][i]["text"] for q in qs for i in range(N_SAMPLES)}
    assert len(set(expected.values())) > len(qs)  # the samples of a question differ: each follows its own seed

    root, barrier = tmp_path / "sharded", tmp_path / "barrier"
    barrier.mkdir()
    code = SHARD_JOB.format(tests=[str(ROOT / "tests"), str(Path(__file__).resolve().parent)], model=smollm_path)  # conftest and this module
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i), str(root), str(barrier)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(N_SHARDS)]  # fmt: skip
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-3000:]
            assert json.loads(next(x for x in out.splitlines() if x.startswith("STATS"))[6:]) == {"new": 2 * N_SAMPLES, "cached": 0}
    finally:
        for p in procs:  # one job failed: the others would wait at the barrier
            if p.poll() is None:
                p.kill()

    key = generation_key(backend, [], SAMPLING, 0)
    kdir = root / "samples" / key
    assert not (kdir / "samples.jsonl").exists()
    assert sorted(p.name for p in kdir.glob("shards/*.jsonl")) == [f"{i}of4.jsonl" for i in range(N_SHARDS)]
    seen = []
    for i in range(N_SHARDS):
        recs = _pairs(kdir / "shards" / f"{i}of4.jsonl")
        assert {shard_of(q, N_SHARDS) for q, _, _ in recs} == {i}  # each job generated its own share only
        seen += recs
    assert len(seen) == len({(q, i) for q, i, _ in seen}) == len(expected)  # no (question, index) twice
    assert {(q, i): t for q, i, t in seen} == expected  # the union is the single process's samples
    union = SampleCache(root, key).read()  # and the reader sees that union
    assert {(q, i): r["text"] for q, recs in union.items() for i, r in recs.items()} == expected

    intervals = [json.loads((kdir / "shards" / f"{i}of4.json").read_text())["intervals"] for i in range(N_SHARDS)]
    assert all(len(runs) == 1 and runs[0]["status"] == "done" and runs[0]["new_samples"] == 2 * N_SAMPLES for runs in intervals)
    starts, ends = [runs[0]["start_unix"] for runs in intervals], [runs[0]["end_unix"] for runs in intervals]
    assert max(starts) < min(ends), f"a shard waited for another: starts {starts}, ends {ends}"

    # An unsharded job on the sharded key finds every sample there: it generates none.
    _, st = generate_cached(backend, str(root), qs, N_SAMPLES, prefix=[], sampling=SAMPLING, seed=0, desc="unsharded")
    assert (st.new_samples, st.cached) == (0, len(expected)) and not (kdir / "samples.jsonl").exists()


class Echo(Backend):
    """Deterministic completions, recording what it was asked; `die_after` batches, then it fails
    (a job killed mid-generation)."""

    def __init__(self, batch: int = 2, die_after: int | None = None, text: str = "sample"):
        self.identity = {"backend": "shard-echo"}
        self.batch, self.die_after, self.text = batch, die_after, text
        self.asked: list[tuple[str, int]] = []

    def generate(self, requests, sampling):
        for k in range(0, len(requests), self.batch):
            if self.die_after is not None and k // self.batch == self.die_after:
                raise RuntimeError("killed")
            part = requests[k : k + self.batch]
            self.asked += [(r.qhash, r.index) for r in part]
            yield [Completion(r, f"{self.text} {r.messages[-1]['content']} #{r.index}", 3, "stop") for r in part]


QS = [Question(f"q{j}", f"What is {j} + {j}?", str(2 * j)) for j in range(12)]


def _gen(root, backend, shard=None, n=3):
    return generate_cached(backend, str(root), QS, n, prefix=[], sampling=SAMPLING, seed=0, desc="echo", shard=shard)


def test_a_killed_shard_resumes_and_a_sample_held_twice_counts_once(tmp_path):
    mine = [(question_hash(q.text), i) for q in shard_questions(QS, (1, 2)) for i in range(3)]
    with pytest.raises(RuntimeError, match="killed"):
        _gen(tmp_path, Echo(die_after=2), shard=(1, 2))  # two batches cached, then the job dies
    (kdir,) = Path(tmp_path, "samples").iterdir()
    f = kdir / "shards" / "1of2.jsonl"
    with open(f, "a") as fh:
        fh.write('{"q": "torn", "i": 0, "te')  # and a crash mid-append
    runs = json.loads((kdir / "shards" / "1of2.json").read_text())["intervals"]
    assert [(r["status"], r["new_samples"]) for r in runs] == [("failed", 4)]

    b = Echo()
    out, st = _gen(tmp_path, b, shard=(1, 2))
    assert sorted(b.asked) == sorted(mine[4:]) and (st.cached, st.new_samples) == (4, len(mine) - 4)  # only what it lacked
    assert set(out) == {q.id for q in shard_questions(QS, (1, 2))}  # a shard returns its own questions
    assert sorted((r["q"], r["i"]) for r in map(json.loads, f.read_text().splitlines())) == sorted(mine)  # torn tail cut
    runs = json.loads((kdir / "shards" / "1of2.json").read_text())["intervals"]
    assert [r["status"] for r in runs] == ["failed", "done"] and runs[1]["start_unix"] <= runs[1]["end_unix"]

    b = Echo(text="unsharded")  # an unsharded job generates only what no shard holds
    out, st = _gen(tmp_path, b)
    assert {q for q, _ in b.asked} == {question_hash(q.text) for q in shard_questions(QS, (0, 2))} and st.cached == len(mine)
    # A sample held twice (an unsharded job that ran beside a shard): counted once, the first file read wins.
    q, i = mine[0]
    dup = json.loads(f.read_text().splitlines()[0]) | {"text": "the shard's copy"}
    with open(f, "a") as fh:
        fh.write(json.dumps(dup) + "\n")
    first = json.loads(f.read_text().splitlines()[0])
    cache = SampleCache(tmp_path, kdir.name)
    assert cache.read({q})[q][i] == first and sum(map(len, cache.index().values())) == len(QS) * 3
    b = Echo()
    again, st = _gen(tmp_path, b)
    assert b.asked == [] and again == out


def test_generation_shard_form_and_stop_after():
    base = ["paths.output_dir=/tmp/x"]
    cfg = validate(compose([*base, "generation.shard=1/4", "stop_after=trajectories"]))
    assert cfg.generation.shard_pair == (1, 4)
    assert validate(compose(base)).generation.shard_pair is None
    for bad in ("4/4", "1of4", "-1/4", "1/0", "1"):
        with pytest.raises(ConfigError, match=r"^generation\.shard: "):
            validate(compose([*base, f"generation.shard={bad}", "stop_after=passrate"]))
    with pytest.raises(ConfigError, match=r"generation.shard: .*stop_after=trajectories .*got stop_after=curation"):
        validate(compose([*base, "generation.shard=0/2", "stop_after=curation"]))


def test_sharded_generation_stages_split_the_pool(tmp_path):
    """passrate then trajectories with generation.shard=0/2 (toy backends: the split is the
    subject): both keys get shard files of the shard's questions; an unsharded run asks for
    the rest only."""
    from ded.core.cache import StageCache
    from ded.stages import Run, passrate, questions, trajectories
    from ded.reporting.tracking import Tracker

    cache_dir = str(tmp_path / "cache")  # no model: the toy backends need none

    def stages(shard_overrides, name):
        paths = [f"paths.cache_dir={cache_dir}", f"paths.output_dir={tmp_path / name}"]
        cfg = compose(["debug=tiny", "logger=none", *paths, *shard_overrides])
        conf = validate(cfg)
        ctx = Run(conf, Tracker(cfg, conf.paths.output_dir), cache_dir, StageCache(cache_dir))
        ctx.backends = {"student": Echo(text="student"), "teacher": Echo(text="teacher")}
        qs = questions.run(ctx)
        pr = passrate.run(ctx, qs)
        tr = trajectories.run(ctx, pr)
        return qs, pr, tr, ctx.backends

    qs, pr, tr, used = stages(["generation.shard=0/2", "stop_after=trajectories"], "shard0")
    share = {q.id for q in shard_questions(qs.pool, (0, 2))}
    assert 0 < len(share) < len(qs.pool) and set(pr.rates) == share and set(tr.samples) <= share
    assert {p.name for p in Path(cache_dir, "samples").glob("*/shards/*.jsonl")} == {"0of2.jsonl"}
    assert len(list(Path(cache_dir, "samples").glob("*/shards/0of2.jsonl"))) == 2  # the student's key and the teacher's

    qs, pr, tr, used = stages([], "full")
    rest = {question_hash(q.text) for q in qs.pool if q.id not in share}
    assert {q for q, _ in used["student"].asked} == rest and set(pr.rates) == {q.id for q in qs.pool}
    kept_rest = {question_hash(q.text) for q in pr.kept if q.id not in share}
    assert {q for q, _ in used["teacher"].asked} == kept_rest and set(tr.samples) == {q.id for q in pr.kept}
