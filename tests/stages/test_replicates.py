"""replicate=: each replicate draws a fresh corpus (teacher samples, selection ties) and a fresh
training seed, while the questions and the student's pass-rate samples are shared through the
cache; the same replicate reproduces its corpus exactly."""

from pathlib import Path

from conftest import compose
import pytest

from ded.config import ConfigError
from ded.plugins import validate
from test_stages import make_run

from ded.stages import curation, passrate, questions, trajectories

SOLVER = ["corpus=multistep", "corpus.levels=[1,2]", "teacher=solver_varied", "corpus.trajectories.n=4", "corpus.trajectories.p=2",
          "corpus.size=null", "corpus.pool_size=4", "eval.size=2"]  # fmt: skip


def _corpus(tmp_path, cache_dir, replicate):
    from ded.pipeline import check_models

    ctx = make_run(tmp_path / f"r{replicate}", cache_dir, [*SOLVER, f"replicate={replicate}"])
    check_models(ctx)
    qs = questions.run(ctx)
    pr = passrate.run(ctx, qs)
    tr = trajectories.run(ctx, pr)
    corpus = curation.run(ctx, pr, tr)
    return qs, pr, tr, [(e["question"], e["response"]) for e in corpus.examples]


def test_replicates_redraw_the_corpus_and_share_the_questions_and_pass_rates(tmp_path, cache_dir):
    q1, p1, t1, c1 = _corpus(tmp_path, cache_dir, 1)
    q2, p2, t2, c2 = _corpus(tmp_path, cache_dir, 2)
    assert [q.text for q in q1.pool] == [q.text for q in q2.pool] and [q.text for q in q1.held_out] == [q.text for q in q2.held_out]
    assert p1.new_samples > 0 and p2.new_samples == 0  # the student's pass rates: drawn once, shared
    assert t1.new_samples > 0 and t2.new_samples > 0  # the teacher's samples: drawn anew per replicate
    assert c1 != c2 and {q for q, _ in c1} == {q for q, _ in c2}  # other wordings of the same questions
    fresh = tmp_path / "fresh_cache"
    fresh.mkdir()
    (fresh / "models").symlink_to((Path(cache_dir) / "models").resolve(), target_is_directory=True)
    *_, again = _corpus(tmp_path / "again", str(fresh), 1)
    assert again == c1  # a replicate reproduces from its number, regenerated in an empty cache


def test_replicate_seeds_are_distinct_per_stream_and_zero_keeps_the_set_seeds():
    def cfg(*o):
        return validate(compose(["paths.output_dir=/tmp/x", *o]))

    zero = cfg()
    assert zero.replicate == 0 and zero.replicate_seed(7, "train") == 7 and zero.replicate_seed(0, "teacher") == 0
    seeds = {(r, s, stream): cfg(f"replicate={r}").replicate_seed(s, stream) for r in (1, 2) for s in (1, 2) for stream in ("teacher", "train")}
    assert len(set(seeds.values())) == len(seeds)  # replicate 2 of seed 1 is not replicate 1 of seed 2, nor another stream
    assert all(0 <= v < 2**31 for v in seeds.values())
    with pytest.raises(ConfigError, match="replicate: must be an integer >= 0"):
        cfg("replicate=-2")
