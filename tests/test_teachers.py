"""The CPU teacher line-up (conf/teacher/) and the predictor study that uses it
(experiments/teacher_predictors.yaml): each added teacher runs at tiny size, and every job of the
suite composes with the teacher it names, at the temperature its config states, drawing samples
that both students share and no other teacher of the line-up draws."""

from pathlib import Path

import pytest
import yaml

from conftest import ROOT, compose

# The teachers this line-up added, with the temperature each config states (None: the experiment's).
ADDED = {"smollm2_fewshot_cold": 0.3, "smollm2_fewshot_hot": 1.2, "smollm2_oneshot": None}


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory, model_cache):
    """One sample cache for the module's tiny runs (the student's pass-rate samples are drawn once)."""
    d = tmp_path_factory.mktemp("teacher_cache")
    (d / "models").symlink_to(Path(model_cache) / "models", target_is_directory=True)
    return d


@pytest.mark.parametrize("teacher", [pytest.param(t, marks=[pytest.mark.slow] if ADDED[t] is not None else []) for t in sorted(ADDED)])
def test_each_added_teacher_runs_at_tiny_size(teacher, teacher_cache, tmp_path):
    """Up to the trajectories stage on the multi-step task: its header says which axis it moves,
    and it writes text for every kept question at its own temperature. The two temperature variants
    (smollm2_fewshot's prompt, only the temperature moved) run under -m slow; the default run checks
    their temperatures in the suite test below."""
    from ded.pipeline import run

    header = (ROOT / "conf" / "teacher" / f"{teacher}.yaml").read_text().split("defaults:")[0]
    assert header.startswith("# Axis") or header.startswith("# Axes"), teacher
    overrides = ["debug=tiny", "logger=none", "corpus=multistep", "corpus.levels=[1,2]", "corpus.pool_size=4", f"teacher={teacher}",
                 f"paths.cache_dir={teacher_cache}", f"paths.output_dir={tmp_path / 'run'}", "stop_after=trajectories"]  # fmt: skip
    cfg = compose(overrides)
    if ADDED[teacher] is not None:
        assert cfg.teacher.sampling.temperature == ADDED[teacher]
    m = run(cfg)
    assert m["run/status"] == "finished" and m["generation/teacher/new_samples"] == 2 * m["passrate/pool/kept"] > 0
    assert m["generation/teacher/new_tokens"] > 0


def _suite_jobs(scale: str = "cpu") -> list[list[str]]:
    """Every job's overrides in the predictor suite, as sweep.py launches it and Hydra splits it."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    suite = yaml.safe_load((ROOT / "experiments" / "teacher_predictors.yaml").read_text())
    parser, jobs = OverridesParser.create(), []
    for r in suite["replicates"]:
        for axes in [suite["sweep"], *suite.get("also", [])]:
            cmd = [*suite["fixed"], *axes, f"replicate={r}"]  # sweep.py's order
            jobs += BasicSweeper.split_arguments(parser.parse_overrides(cmd), None)[0]
    return jobs


def test_the_predictor_suite_composes_every_job_and_shares_samples_between_students(tmp_path):
    """Every teacher x student x replicate composes and validates; analysis runs (the predictors);
    a temperature variant keeps its own temperature under experiment=multistep_cpu (which sets 0.8
    for every teacher); and the teacher's sample-cache key (what the trajectories stage uses) is
    the same for both students of a replicate, new in each replicate, and different for every
    teacher: one generation serves both students, and no two teachers are the same corpus."""
    from ded.generation import generation_key
    from ded.generation.factory import make_backend
    from ded.plugins import validate
    from ded.stages import Run, prompt_prefix_for, sampling_args

    suite = yaml.safe_load((ROOT / "experiments" / "teacher_predictors.yaml").read_text())
    jobs = _suite_jobs()
    keys, teachers, students = {}, set(), set()
    for job in jobs:
        conf = validate(compose([*job, f"paths.output_dir={tmp_path / 'x'}", f"paths.cache_dir={tmp_path / 'c'}"]))
        pick = {o.split("=")[0]: o.split("=", 1)[1] for o in job}
        teacher, student, rep = pick["teacher"], pick["student"], int(pick["replicate"])
        teachers.add(teacher)
        students.add(student)
        assert conf.analysis.enabled and conf.corpus.task == "multistep", job
        assert conf.teacher.sampling.temperature == ADDED.get(teacher) or (ADDED.get(teacher) is None and conf.teacher.sampling.temperature == 0.8), job
        backend = make_backend(conf.teacher, str(tmp_path / "c"))  # loads nothing: the key is the backend's identity
        keys[teacher, student, rep] = generation_key(backend, prompt_prefix_for(conf.teacher), sampling_args(conf.teacher.sampling),
                                                     Run(conf, None, "", None).corpus_seed)  # fmt: skip
    reps = suite["replicates"]
    assert len(jobs) == len(keys) == len(teachers) * len(students) * len(reps) and len(teachers) >= 10 and len(reps) >= 3
    assert students == {"smollm2", "gemma3_270m"} and set(ADDED) <= teachers
    for r in reps:
        assert all(keys[t, "smollm2", r] == keys[t, "gemma3_270m", r] for t in teachers)  # the student does not enter the key
        assert len({keys[t, "smollm2", r] for t in teachers}) == len(teachers)  # every teacher its own corpus
    assert len({keys["smollm2_fewshot", "smollm2", r] for r in reps}) == len(reps)  # each replicate redraws
    assert set(suite["predict"]["predictors"]) >= {"filter/teacher/kept_share", "analysis/corpus/student_entropy",
                                                   "analysis/pca_shift/corpus_vs_own", "analysis/repr_sim/corpus_vs_own"}  # fmt: skip
    assert suite["predict"]["within"] == suite["transfer"]["student"] == "choice.student"
