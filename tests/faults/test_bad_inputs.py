"""A table of bad inputs, each given to a real `python run.py`: every one stops with exit status 2,
one line on stderr naming the full key, file or line at fault, no traceback, within seconds, and
nothing generated; Hydra's compose errors (a mistyped key, a wrong type, an unknown option of a
config group) too. A run folder is one run's: one holding another run's record, or files without
a claim, is refused before anything is written there. The bound is generous (the machine may be
loaded); docs/benchmarks.md gives measured times."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

LIMIT_S = 20  # measured ~1 s each on a quiet 2-core machine; CI may run beside other work


def _pool(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


CASES = [
    # (id, overrides, what the message must contain)
    ("negative size", ["corpus.size=-3"], "corpus.size: must be > 0"),
    ("zero k", ["eval.k=0"], "eval.k: must be > 0"),
    ("negative learning rate", ["train.learning_rate=-1"], "train.learning_rate: must be > 0"),
    ("zero max_length", ["train.max_length=0"], "train.max_length: must be > 0"),
    ("zero logging_steps", ["train.logging_steps=0"], "train.logging_steps: must be > 0"),
    ("unknown distance", ["diversity.metric=cosine"], "diversity.metric: unknown value 'cosine'"),
    ("unknown selector", ["diversity.selector=best"], "diversity.selector: unknown value 'best'"),
    ("unknown stage", ["stop_after=train"], "stop_after: unknown value 'train'"),
    ("negative replicate", ["replicate=-1"], "replicate: must be an integer >= 0, got -1"),
    ("unknown eval set", ["eval.sets=[aime99]"], "eval.sets: unknown set(s) ['aime99']"),
    ("unknown optimizer", ["train.optim=adamw_wobble"], "train.optim: unknown value 'adamw_wobble'"),
    ("unknown hf engine", ["teacher.engine=paged"], "teacher.engine: unknown value 'paged'"),
    ("band upside down", ["corpus.pass_rate.min_rate=0.9", "corpus.pass_rate.max_rate=0.5"], "corpus.pass_rate: min_rate"),
    ("p above n", ["corpus.trajectories.p=9"], "corpus.trajectories.p"),
    ("exhausted level", ["corpus.levels=[1]", "corpus.pool_size=500"], "corpus.pool_size: cannot draw 500"),
    ("no accelerate file", ["train.accelerate_config=recipes/nope.yaml"], "train.accelerate_config: no such file"),
    ("binary pool file", ["corpus=gsm8k", "corpus.pools.0.source={binary}"], "{binary}:1: not UTF-8"),
    ("malformed pool row", ["corpus=gsm8k", "corpus.pools.0.source={badrow}"], "{badrow}:2: "),
    ("missing pool file", ["corpus=gsm8k", "corpus.pools.0.source={missing}"], "{missing}: no such file"),
    ("output root is a file", ["hydra.run.dir={afile}/run"], "hydra.run.dir={afile}/run"),
    ("output dir under a file", ["paths.output_dir={afile}/run"], "paths.output_dir={afile}/run: cannot create the run folder"),
    # Hydra's compose errors: the key as typed, the bad value, what is allowed or the nearest key
    ("mistyped key", ["corpus.sise=3"], "corpus.sise: no such key; did you mean corpus.size?"),
    ("wrong type", ["corpus.size=abc"], "corpus.size: expected an integer or null, got 'abc'"),
    ("unknown group option", ["diversity=cosine"], "diversity: unknown option 'cosine'; available: ['embedding', 'levenshtein', 'none', 'random']"),
    ("renamed key", ["train.epochs=2"], "train.epochs: no such key; did you mean train.num_train_epochs?"),
    ("wrong type in a list entry", ["corpus=gsm8k", "corpus.pools.0.weight=heavy"], "corpus.pools[0].weight: expected a number, got 'heavy'"),
    ("unreadable override", ["corpus.size=["], "cannot read the overrides: no viable alternative at input '['"),
    # a check of a section that sits in several places names the full key
    ("student sampling", ["student.sampling.temperature=-1"], "student.sampling.temperature: must be >= 0"),
    ("eval sampling", ["eval.sampling.top_p=3"], "eval.sampling.top_p: must be in (0, 1]"),
    ("teacher fewshot", ["teacher.fewshot=-1"], "teacher.fewshot: must be >= 0"),
    ("fewshot style the task lacks", ["teacher.fewshot_style=think"], "teacher.fewshot_style='think': the arithmetic task's worked examples are"),
    ("pool weight", ["corpus=gsm8k", "corpus.pools.0.weight=-1"], "corpus.pools[0].weight: must be >= 0"),
]


@pytest.mark.parametrize("case,overrides,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_stops_fast_with_one_named_message(case, overrides, needle, tmp_path, cache_dir):
    files = {
        "binary": _pool(tmp_path, "binary.jsonl", b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00 not text"),
        "badrow": _pool(tmp_path, "badrow.jsonl", b'{"question": "What is 1+1?", "answer": "#### 2"}\n{"question": "no answer"}\n'),
        "missing": str(tmp_path / "missing.jsonl"),
        "afile": _pool(tmp_path, "afile", b"a regular file"),
    }
    overrides = [o.format(**files) for o in overrides]
    needle = needle.format(**files)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), "logger=none", f"paths.cache_dir={cache_dir}", *overrides],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    seconds = time.perf_counter() - t0
    out = p.stdout + p.stderr
    assert p.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out[-2000:]  # one line, naming it
    assert seconds < LIMIT_S, f"{case}: {seconds:.1f} s"
    assert not (Path(cache_dir) / "samples").exists()  # nothing was generated


def test_a_bad_key_in_a_sweep_is_named_once_for_its_jobs(tmp_path, cache_dir):
    """-m: a compose error of the sweep's jobs is the same one line (the preflight's), nothing starts."""
    sweep = tmp_path / "sweep"
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "logger=none", f"paths.cache_dir={cache_dir}", "corpus.sise=3,4",
                        f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.splitlines() == ["error: every job: corpus.sise: no such key; did you mean corpus.size?",
                                     "error: 2 of 2 jobs cannot run here; nothing was started"]  # fmt: skip
    assert not sweep.exists()


def test_a_folder_holding_a_record_is_refused(tmp_path, cache_dir):
    """Two runs never write into one folder: the second, pointed at the first's, stops and the
    first's record is untouched."""
    out = tmp_path / "run"
    args = [sys.executable, str(ROOT / "run.py"), "logger=none", f"paths.cache_dir={cache_dir}", "stop_after=questions", f"hydra.run.dir={out}"]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    record = {f: (out / f).read_text() for f in ("metrics.json", "config.yaml", ".ded-run.json", ".hydra/overrides.yaml", "run.log")}
    second = subprocess.run([*args, "corpus.size=7"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "already holds the record of another run" in second.stdout + second.stderr
    assert {f: (out / f).read_text() for f in record} == record


def test_a_folder_with_files_but_no_claim_is_refused_and_an_empty_one_is_taken(tmp_path, cache_dir):
    """A run folder from an older version (a record, no .ded-run.json) is refused in one line and
    left as it was; an empty folder is a new run's."""
    args = [sys.executable, str(ROOT / "run.py"), "logger=none", f"paths.cache_dir={cache_dir}", "stop_after=questions"]
    old = tmp_path / "old"
    (old / ".hydra").mkdir(parents=True)
    (old / ".hydra" / "overrides.yaml").write_text("- name=older\n")
    (old / "metrics.json").write_text('{"run/status": "finished"}')
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    p = subprocess.run([*args, f"hydra.run.dir={old}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert lines[0].startswith(f"error: hydra.run.dir={old}: ") and "no run claim" in lines[0] and "or empty it" in lines[0]
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before  # nothing written, nothing added

    empty = tmp_path / "empty"
    empty.mkdir()
    p = subprocess.run([*args, f"hydra.run.dir={empty}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (empty / ".ded-run.json").exists() and json.loads((empty / "metrics.json").read_text())["run/status"] == "finished"
