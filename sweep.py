"""Run a named ablation suite from experiments/ as one Hydra multirun, then tabulate and plot it.

    python sweep.py diversity_ablation                 # run the suite, then summarise it
    python sweep.py diversity_ablation debug=tiny      # extra overrides go to every job
    python sweep.py diversity_ablation --summarize-only multirun/diversity_ablation/<time>
    python sweep.py teacher_choice --scale paper       # the suite's cluster size (its `paper:` block)
    python sweep.py components --replicates 1,2,3      # some replicates now ...
    python sweep.py components --replicates 4,5 --into multirun/components/<time>   # ... the rest later, one report

A suite is a yaml in experiments/: `sweep` (the multirun axes) and `fixed` (every job) at CPU size,
`replicates` (run outermost, `replicate=<r>` on every job: each replicate redraws the teacher's
samples, selection ties, data order and training seed, so a stopped suite holds every arm of its
first replicates), `also` (more multiruns into the same sweep folder, for an arm that is no point of
the product; its overrides come after `fixed`, so they win), `paper` (the same keys at the paper's
size), the summary's `metrics` and `plot`, `compare` (`by`: the column(s) naming the arms, several
joined by "/" with unset ones left out; `baseline`; optional `within`: a column every comparison is
repeated at; `pairs`: more declared [a, b] comparisons; `explore`: [a, b] comparisons reported as
exploratory; `labels`: display names of arms), `predict` (`by`: the arm column, `target`: the
trained score, `predictors`: metrics known before training; optional `within`: a column, such as the
student, every predictor table is repeated at, with predictors.png: each predictor against the score,
one panel per value) and `transfer` (`student`: the column naming the student; `baseline`: the
single predictor of the baseline rule, e.g. teacher accuracy; optional `alpha`: the ridge penalty): a
rule fitted on one student's teachers ranks another student's, both ways (ded/reporting/predictors.py),
into transfer.md/csv, transfer_ranks.csv and transfer.png.

The statistics (ded/reporting/stats.py, ded/reporting/comparisons.py, ded/reporting/predictors.py) go to comparisons.md/csv,
arms.csv, predictors.md/csv and forest.png: each arm minus the baseline on the crossed replicate x
question design (the primary interval; method-of-moments variance components, Satterthwaite df),
the smallest difference its own test detects at 80% power (noncentral t), a secondary interval
over the replicates' means, each arm's score (an all-zero arm gets its exact Clopper-Pearson
bound), each predictor's Spearman rho with an exact permutation p and a bootstrap interval over
replicates, and Holm's correction over the suite's declared comparisons and predictors together.
The suite's wall time goes to wall_time.txt.

The summary (summary.md, summary.csv, summary.png, runs.csv) is `ded.reporting.summary.summarize` over the
sweep directory, with the suite's metrics, plotted metric and description; it is read from each
job's record (metrics.json, config.yaml, .hydra/), so it can be rebuilt at any time. Every
`run.py -m` already ends with a default summary (the SweepSummary callback); this one replaces it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent


def load_suite(name: str) -> dict:
    path = ROOT / "experiments" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
        sys.exit(f"sweep.py: no suite {name!r} in experiments/; known suites: {known}")
    suite = yaml.safe_load(path.read_text())
    for key in ("sweep", "metrics"):
        if not suite.get(key):
            sys.exit(f"sweep.py: {path}: key {key!r} is missing or empty")
    if suite.get("compare"):
        from ded.reporting.comparisons import DEFAULT_METRIC, split_model

        try:  # the comparisons pair the plot metric's per-question accuracies: refuse one without them now, not after the runs
            split_model(suite.get("plot") or DEFAULT_METRIC)
        except ValueError as e:
            sys.exit(f"sweep.py: {path}: `plot` with a `compare` block: {e}")
    if suite.get("transfer") and not ((suite.get("predict") or {}).get("predictors") and suite["transfer"].get("student")):
        sys.exit(f"sweep.py: {path}: `transfer` needs `transfer.student` and a `predict` block with `by` and `predictors`")
    return suite


def summarize(sweep_dir: Path, suite: dict) -> int:
    """The suite's summary of `sweep_dir`, printed; the number of jobs holding a record."""
    from ded.reporting.summary import summarize as write_summary

    table = write_summary(sweep_dir, suite["metrics"], suite.get("plot"), suite.get("description", ""))
    print((sweep_dir / "summary.md").read_text())
    return len(table)


SIGNED, PLAIN = {"difference", "spearman rho", "rho minus baseline", "fit rho on A"}, {"detectable", "rep_detectable", "score"}


def _cell(col: str, v) -> str:
    """One table cell: differences signed to 3 places, p values to 2 significant digits, df to 1 place."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if col in SIGNED | PLAIN:
            return f"{v:+.3f}" if col in SIGNED else f"{v:.3f}"
        if col.startswith("p"):
            return "<0.001" if v < 0.001 else f"{v:.2g}"
        return f"{v:.1f}" if col == "df" else f"{v:.3g}"
    return str(v)


def _md(rows: list[dict], cols: list[str], names: dict | None = None) -> list[str]:
    """A markdown table of `rows` (summary.markdown_table: pandas' to_markdown, "|" in an arm name escaped)."""
    import pandas as pd

    from ded.reporting.summary import markdown_table

    table = pd.DataFrame(rows).reindex(columns=cols)
    if not len(table):
        return ["(none)"]
    for c in cols:
        table[c] = [_cell(c, v) for v in table[c]]
    return [markdown_table(table.rename(columns=names or {}))]


def _ci(lo, hi) -> str:
    return "" if lo is None or lo != lo else f"[{lo:+.3f}, {hi:+.3f}]"


PRIMARY_WHY = ("Primary interval: the crossed replicate x question estimate (ded/reporting/stats.py `crossed`): each "
               "replicate is one trained model shared by every question and each question recurs in every replicate, "
               "so the variance of a mean has replicate, question and cell parts; their method-of-moments estimates "
               "with Satterthwaite's degrees of freedom give an interval for new replicates and new questions "
               "(simulated coverage: tests/reporting/test_stats.py). `detectable`: the smallest true difference that "
               "test finds with 80% power at the 5% level (noncentral t on its own df). Secondary: a t interval over "
               "the replicates' means (valid for these questions only). Both are conditional on what every replicate "
               "shares: the question pool, the student's pass-rate samples (so which questions compression keeps) and "
               "the evaluation's sampling seed. `p (Holm)`: Holm-corrected over the suite's declared comparisons (its "
               "declared predictors are a family of their own); exploratory rows are not corrected and claim nothing.")


def statistics(sweep_dir: Path, suite: dict, df) -> tuple[list[dict], list[dict], list[dict]]:
    """The suite's comparisons (compare), arm scores and predictors (predict), Holm-corrected as
    one family; written to comparisons.md/csv, predictors.md/csv and forest.png."""
    import pandas as pd

    from ded.reporting.comparisons import DEFAULT_METRIC, compare, forest_plot, holm_family, predict

    spec, pspec = suite.get("compare") or {}, suite.get("predict") or {}
    metric = suite.get("plot") or DEFAULT_METRIC  # the comparisons pair this metric's per-question accuracies
    comps, arms, preds = [], [], []
    if spec and not df.empty:
        comps, arms = compare(df, spec["by"], spec["baseline"], spec.get("within"), spec.get("pairs", ()), spec.get("explore", ()),
                              spec.get("labels"), metric)
    if pspec and not df.empty:
        preds = predict(df, pspec["by"], pspec.get("target") or suite.get("plot") or DEFAULT_METRIC, pspec["predictors"], pspec.get("within"))
    holm_family(comps)  # the declared comparisons: one family
    holm_family(preds)  # the declared predictors: another (exact Spearman p at 5 arms is at least 2/120)
    if comps or arms:
        within = spec.get("within")
        for r in comps:
            r["95% CI"], r["over replicates"] = _ci(r.get("ci95_low"), r.get("ci95_high")), _ci(r.get("rep_ci95_low"), r.get("rep_ci95_high"))
        for r in arms:
            r["95% CI"] = _ci(r.get("ci95_low"), r.get("ci95_high"))
        pd.DataFrame(comps).to_csv(sweep_dir / "comparisons.csv", index=False)
        pd.DataFrame(arms).to_csv(sweep_dir / "arms.csv", index=False)
        lv = [within] if within else []
        base = (spec.get("labels") or {}).get(str(spec["baseline"]), spec["baseline"])
        lines = [f"# {metric}: each arm minus the baseline ({base}), paired by replicate and question", "", PRIMARY_WHY, "",
                 *_md([{**r, within: r["within"]} if within else r for r in comps],
                      [*lv, "arm", "baseline", "family", "difference", "95% CI", "p", "p (Holm)", "survives Holm", "detectable",
                       "df", "replicates", "questions", "over replicates", "rep_detectable", "note"],
                      {"over replicates": "95% CI over replicates", "rep_detectable": "detectable over replicates"}),
                 "", "## Each arm's score", "", "Crossed 95% interval; an arm whose cells are all equal (it solved nothing) "
                 "gets the exact Clopper-Pearson bound over its samples instead.", "",
                 *_md([{**r, within: r["within"]} if within else r for r in arms],
                      [*lv, "arm", "score", "95% CI", "interval", "replicates", "questions", "samples"]),
                 "", f"Replicate key: `{(comps or arms)[0]['replicate key']}`. Figure: [forest.png](forest.png)."]  # fmt: skip
        (sweep_dir / "comparisons.md").write_text("\n".join(lines) + "\n")
        forest_plot(comps, sweep_dir / "forest.png", suite.get("description", ""), metric, within)
        print("\n".join(lines))
    if preds:
        for r in preds:
            r["replicate stability: 95% bootstrap range"] = _ci(r.get("ci95_low"), r.get("ci95_high")) or (
                "none: one replicate" if r.get("replicates per arm") == "1" else "")
        pd.DataFrame(preds).to_csv(sweep_dir / "predictors.csv", index=False)
        within = pspec.get("within")
        lines = [f"# Predictors of {pspec.get('target') or metric} across {pspec['by']}" + (f", per {within}" if within else ""), "",
                 "Spearman's rho between each predictor and the target over the arms' means; p: exact permutation test "
                 "(every ordering up to 10 arms; the evidence); stability range: rho over 2,000 resamples of each arm's "
                 "replicates, arms held fixed (descriptive: how much replicate noise moves the ranking, not a "
                 "confidence interval); p (Holm): over the suite's declared predictors.", "",
                 *_md([{**r, within: r["within"]} if within else r for r in preds],
                      [*([within] if within else []), "predictor", "spearman rho", "p", "p (Holm)", "survives Holm",
                       "replicate stability: 95% bootstrap range", "arms", "replicates per arm"])]  # fmt: skip
        if within:
            from ded.reporting.predictors import scatter_plot

            scatter_plot(df, pspec["by"], within, pspec.get("target") or metric, pspec["predictors"], sweep_dir / "predictors.png", preds)
            lines += ["", "Figure: [predictors.png](predictors.png)."]
        (sweep_dir / "predictors.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    return comps, arms, preds


TRANSFER_WHY = ("A rule fitted on one student only (ridge regression of the score on the predictors, each z-scored "
                "within the student, one point per teacher: its replicate mean) ranks the teachers of the other student "
                "from that student's predictors alone. rho: Spearman between the predicted and the measured ranking; "
                "p: permutation test over the teachers' orderings (exact up to 10 teachers, else 100,000 seeded ones); "
                "95% interval: 2,000 resamples of the ranked student's replicates (each teacher's, with replacement; the "
                "fit held fixed). The baseline rule knows teacher accuracy alone (fitted the same way: only its sign is "
                "learnt). `rho minus baseline`: the rule's gain over it, interval on the same resamples. p (Holm): over "
                "this table's rows. Definitions: ded/reporting/predictors.py.")


def transfer_report(sweep_dir: Path, suite: dict, df) -> list[dict]:
    """The suite's cross-student validation (transfer), written to transfer.md/csv, transfer_ranks.csv and transfer.png."""
    import pandas as pd

    from ded.reporting.comparisons import DEFAULT_METRIC, holm_family
    from ded.reporting.predictors import transfer, transfer_plot

    tspec, pspec = suite["transfer"], suite["predict"]
    target = pspec.get("target") or suite.get("plot") or DEFAULT_METRIC
    rows, ranks = transfer(df, pspec["by"], tspec["student"], target, pspec["predictors"], tspec.get("baseline"), float(tspec.get("alpha", 1.0)))
    if not rows:
        return rows
    holm_family(rows)  # the transfer rows: a family of their own
    for r in rows:
        none = "none: one replicate" if r.get("replicates per teacher") == "1" else ""  # nothing to resample
        r["95% CI"] = _ci(r.get("ci95_low"), r.get("ci95_high")) or none
        r["gain 95% CI"] = _ci(r.get("minus baseline ci95_low"), r.get("minus baseline ci95_high")) or (none if "rho minus baseline" in r else "")
    pd.DataFrame(rows).to_csv(sweep_dir / "transfer.csv", index=False)
    pd.DataFrame(ranks).to_csv(sweep_dir / "transfer_ranks.csv", index=False)
    transfer_plot(rows, ranks, sweep_dir / "transfer.png")
    lines = [f"# Cross-architecture validation: ranking the teachers for one {tspec['student']} with a rule fitted on another", "",
             TRANSFER_WHY, "",
             *_md(rows, ["fitted on", "ranked for", "rule", "spearman rho", "95% CI", "p", "p (Holm)", "survives Holm",
                         "rho minus baseline", "gain 95% CI", "fit rho on A", "weights (z units)", "teachers ranked",
                         "replicates per teacher", "note"],
                  {"spearman rho": "rho (predicted vs measured rank)", "fit rho on A": "rho on the student fitted"}),
             "", (f"Replicate key: `{rows[0]['replicate key']}`." if rows[0]["replicate key"] else "One replicate.")
             + " Figure: [transfer.png](transfer.png); each teacher's ranks: transfer_ranks.csv."]  # fmt: skip
    (sweep_dir / "transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def report(sweep_dir: Path, suite: dict) -> int:
    """Summary, comparisons, predictors and transfer of a sweep folder; the number of jobs holding a record."""
    n = summarize(sweep_dir, suite)
    if suite.get("compare") or suite.get("predict") or suite.get("transfer"):
        from ded.reporting.results import load_runs

        df = load_runs(sweep_dir, finished_only=True)
        statistics(sweep_dir, suite, df)
        if suite.get("transfer") and not df.empty:
            transfer_report(sweep_dir, suite, df)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", help="name of a file in experiments/ (without .yaml)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    ap.add_argument("--summarize-only", metavar="SWEEP_DIR", help="only rebuild the summary of a finished sweep")
    ap.add_argument("--scale", choices=["cpu", "paper"], default="cpu", help="cpu: the suite's sweep and fixed keys; paper: its paper block")
    ap.add_argument("--replicates", metavar="LIST", help="run only these of the suite's replicates, e.g. 1,2,3 (default: all)")
    ap.add_argument("--into", metavar="SWEEP_DIR", help="add the replicates to this earlier sweep folder of the suite (its report then covers all)")
    args = ap.parse_args()
    suite = load_suite(args.suite)
    if args.summarize_only:
        if not Path(args.summarize_only).is_dir():
            sys.exit(f"sweep.py: {args.summarize_only}: no such folder")
        if not report(Path(args.summarize_only), suite):
            sys.exit(f"sweep.py: no job holds a record (metrics.json) under {args.summarize_only}")
        return
    if args.scale == "paper":
        if not suite.get("paper"):
            sys.exit(f"sweep.py: suite {args.suite!r} has no paper block")
        suite = {**suite, **suite["paper"]}
    sweep_dir = ROOT / "multirun" / f"{args.suite}{'_paper' if args.scale == 'paper' else ''}" / time.strftime("%Y-%m-%d_%H-%M-%S")
    if args.into:
        sweep_dir = Path(args.into).resolve()
        if not sweep_dir.is_dir():
            sys.exit(f"sweep.py: --into {args.into}: no such folder")
    rc, start = 0, time.monotonic()
    replicates = suite.get("replicates") or [None]  # outermost: a stopped suite holds every arm of its first replicates
    if args.replicates:
        try:
            wanted = [int(r) for r in args.replicates.split(",") if r.strip()]
        except ValueError:
            sys.exit(f"sweep.py: --replicates {args.replicates!r}: give replicate numbers separated by commas, e.g. 4,5")
        if unknown := [r for r in wanted if r not in replicates]:
            sys.exit(f"sweep.py: --replicates {args.replicates}: {unknown} not in the suite's replicates {replicates}")
        replicates = wanted
    taken = {p.name.split("_")[0] for p in sweep_dir.glob("r*_*")} if args.into else set()
    if clash := [r for r in replicates if f"r{r}" in taken]:
        sys.exit(f"sweep.py: --into {sweep_dir}: replicates {clash} are there already; name others with --replicates")
    multiruns = [suite["sweep"], *suite.get("also", [])]
    for r in replicates:
        for i, axes in enumerate(multiruns):  # one multirun each, one folder for all
            rep = [] if r is None else [f"replicate={r}"]
            sub = ("" if r is None else f"r{r}_") + chr(97 + i)  # r1_a0, r1_a1..., r1_b0..., r2_a0...
            cmd = [sys.executable, str(ROOT / "run.py"), "-m", *suite.get("fixed", []), *axes, *rep, *args.overrides,
                   f"hydra.sweep.dir={sweep_dir}", f"hydra.sweep.subdir={sub}${{hydra.job.num}}"]  # fmt: skip
            print("+", " ".join(cmd), flush=True)
            rc = subprocess.call(cmd) or rc
    if sweep_dir.exists():  # a partly failed sweep is summarised too: its failed jobs say why
        wall = time.monotonic() - start
        with open(sweep_dir / "wall_time.txt", "a") as f:  # --into adds a line per addition
            f.write(f"{wall:.0f} s ({wall / 60:.1f} min) for {len(multiruns) * len(replicates)} multirun(s), replicates {replicates}\n")
        report(sweep_dir, suite)
        print(f"sweep.py: {args.suite} took {wall / 60:.1f} min; folder {sweep_dir}")
    sys.exit(rc)


if __name__ == "__main__":
    main()
