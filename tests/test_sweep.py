"""sweep.py: suites load with clear errors, and a finished sweep's jobs become one table and plot."""

import json
import subprocess
import sys

import yaml

from conftest import ROOT


def _job(root, num, overrides, metrics):
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / "metrics.json").write_text(json.dumps(metrics))


def test_summary_table_from_job_records(tmp_path):
    _job(tmp_path, 0, ["diversity=levenshtein", "corpus.size=32"], {"eval/heldout/trained/avg@4": 0.5, "eval/heldout/trained/avg@4_se": 0.1})
    _job(tmp_path, 1, ["diversity=random", "corpus.size=32"], {"eval/heldout/trained/avg@4": 0.25, "eval/heldout/trained/avg@4_se": 0.05})
    (tmp_path / "2").mkdir()  # an unfinished job (no metrics.json) is left out
    p = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "diversity_ablation", "--summarize-only", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and "diversity=random corpus.size=32" in rows[2] and ",0.25," in rows[2]
    assert (tmp_path / "summary.png").stat().st_size > 0 and "| 0.5 |" in (tmp_path / "summary.md").read_text()


def test_unknown_suite_lists_known_ones():
    p = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "no_such_suite"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "diversity_ablation" in p.stderr

