"""Dashboards as code: a W&B workspace for a DED project and sweep group.

    python notebooks/dashboard.py --entity E --project ded --group <sweep group>          # print the outline
    python notebooks/dashboard.py --entity E --project ded --group <sweep group> --save   # save it, print its URL

Sections (metric names exactly as the harness logs them):
  Training (live)  line plots on the x axis train/step (TRL's live curves)
  Results          held-out and out-of-domain avg@k: scalars over the runset, bars grouped by config
  Predictors       do corpus entropy under the student / PCA shift / diversity predict the trained score?
  Corpus           diversity, duplicate share, size, pool pass rate (one bar per run)
  Media            the plots each run logs as images

The results use the k-free names every run logs beside its ``avg@<k>`` ones
(``eval_heldout_trained_avg_at_k``, ...: ded.reporting.results.sortable), so one workspace fits
any ``eval.k`` and the runs table sorts by the trained score (W&B's UI sorts and filters only on
names matching ``^[_a-zA-Z][_a-zA-Z0-9]*$``). ``--k N`` names the ``avg@N`` metrics instead, for
runs logged before the k-free names existed. The runset is filtered to the W&B group (the sweep:
a multirun's ``wandb/group``, or ``logger.group``) and to running or finished runs
(``--finished-only``: finished runs only). Saving needs network and an
API key (``wandb login`` or WANDB_API_KEY); without them ``--save`` prints one ``error:`` line
and exits 2. ``build_workspace`` builds the same object without saving (tests, notebooks).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ded.reporting.results import sortable  # noqa: E402  # W&B's sortable form of a metric name

# Config keys the Results panels group by (W&B stores the resolved config nested; `choices` are
# the Hydra config-group choices the tracker adds, e.g. choices.diversity = levenshtein | embedding
# | random | none, which tells the selection methods apart where diversity.metric does not).
DEFAULT_BY = ("choices.diversity", "corpus.size", "teacher.name")
TRAIN_CURVES = ("train/loss", "train/learning_rate", "train/grad_norm", "train/mean_token_accuracy")
TRAIN_AXIS = "train/step"
PREDICTORS = ("analysis/corpus/student_entropy", "analysis/pca_shift/corpus_vs_own", "corpus/diversity/levenshtein/char")
CORPUS = ("corpus/diversity/levenshtein/char", "corpus/duplicate_share", "corpus/examples", "passrate/pool/mean")
# `ctx.tracker.plot(name, ...)` in ded/stages: logged once per run as wandb.Image.
MEDIA = ("train/curves", "passrate/histogram", "analysis/pca_corpus_vs_own", "analysis/pca_trained_vs_base", "eval/accuracy_by_level")
SECTIONS = ("Training (live)", "Results", "Predictors", "Corpus", "Media")


RESULTS = {"trained": "eval/heldout/trained/avg@k", "base": "eval/heldout/base/avg@k", "delta": "eval/heldout/delta_avg@k",
           "ood_delta": "eval/out_of_domain/delta_avg@k"}  # fmt: skip


def result_metrics(k: int | None = None) -> dict[str, str]:
    """The Results metrics: their sortable k-free names (what every run logs beside avg@<k>), or
    with `k` the avg@<k> names (runs logged before the k-free names)."""
    return {key: name.replace("@k", f"@{k}") if k is not None else sortable(name) for key, name in RESULTS.items()}


def _api():
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    return ws, wr


def build_workspace(entity: str, project: str, group: str | None = None, k: int | None = None, name: str | None = None,
                    by: Sequence[str] = DEFAULT_BY, finished_only: bool = False, runset_groupby: Sequence[str] = ()):  # fmt: skip
    """The DED workspace (a ``wandb_workspaces.workspaces.Workspace``), built, not saved.

    `group`: keep only runs of this W&B group (the sweep); `k`: None, the k-free names; a number,
    the avg@<k> names (runs logged before the k-free names);
    `by`: config keys the Results bars group by (one bar panel per key); `finished_only`: hide
    running runs too (they are kept by default so the Training section is live);
    `runset_groupby`: config keys that group the runs table itself (and so every panel)."""
    ws, wr = _api()
    r, at = result_metrics(k), f"@{k}" if k is not None else "@k"

    training = [wr.LinePlot(title=m, x=TRAIN_AXIS, y=[m], title_x=TRAIN_AXIS) for m in TRAIN_CURVES]
    results = [wr.ScalarChart(title=f"{m} (mean ± stderr over runs)", metric=m, groupby_aggfunc="mean", groupby_rangefunc="stderr") for m in r.values()]
    for key in by:
        results.append(wr.BarPlot(title=f"held-out avg{at} by {key}", metrics=[r["trained"], r["base"]], groupby=wr.Config(key),
                                  groupby_aggfunc="mean", groupby_rangefunc="stderr", orientation="v"))  # fmt: skip
        results.append(wr.BarPlot(title=f"delta avg{at} by {key}", metrics=[r["delta"], r["ood_delta"]], groupby=wr.Config(key),
                                  groupby_aggfunc="mean", groupby_rangefunc="stderr", orientation="v"))  # fmt: skip
    predictors = [wr.ScatterPlot(title=f"{x} vs {r['trained']}", x=x, y=r["trained"], regression=True) for x in PREDICTORS]
    corpus = [wr.BarPlot(title=m, metrics=[m]) for m in CORPUS]
    # Images: a media browser, one column per run. (Tables such as eval/summary would need a
    # WeavePanel query; they are left out.)
    media = [wr.MediaBrowser(title=m, media_keys=[m], mode="grid", grid_x_axis="run") for m in MEDIA]

    sections = [
        ws.Section(name=SECTIONS[0], panels=training, is_open=True, panel_settings=ws.SectionPanelSettings(x_axis=TRAIN_AXIS),
                   layout_settings=ws.SectionLayoutSettings(columns=2, rows=2)),  # fmt: skip
        ws.Section(name=SECTIONS[1], panels=results, is_open=True, layout_settings=ws.SectionLayoutSettings(columns=4, rows=2)),
        ws.Section(name=SECTIONS[2], panels=predictors, is_open=True),
        ws.Section(name=SECTIONS[3], panels=corpus, layout_settings=ws.SectionLayoutSettings(columns=4, rows=1)),
        ws.Section(name=SECTIONS[4], panels=media),
    ]

    states = ["finished"] if finished_only else ["running", "finished"]
    conditions = [ws.Metric("State").isin(states)]
    if group:
        conditions.insert(0, ws.Metric("Group") == group)
    runset = ws.RunsetSettings(
        filters=ws.And(*conditions),
        groupby=[ws.Config(key) for key in runset_groupby],
        order=[ws.Ordering(ws.Summary(r["trained"]), ascending=False)],
        pinned_columns=[f"summary:{m}" for m in r.values()],
    )
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name or (f"DED sweep {group}" if group else "DED runs"),
        sections=sections,
        settings=ws.WorkspaceSettings(x_axis=TRAIN_AXIS, max_runs=50),
        runset_settings=runset,
    )


def _metric_name(m) -> str:
    return m if isinstance(m, str) else getattr(m, "name", str(m))


def describe_panel(p) -> str:
    kind = type(p).__name__
    if kind == "LinePlot":
        return f"line     {', '.join(_metric_name(m) for m in p.y)}  (x: {_metric_name(p.x)})"
    if kind == "BarPlot":
        by = f"  by config {p.groupby.name} ({p.groupby_aggfunc} ± {p.groupby_rangefunc})" if p.groupby is not None else "  (one bar per run)"
        return f"bar      {', '.join(_metric_name(m) for m in p.metrics)}{by}"
    if kind == "ScalarChart":
        return f"scalar   {_metric_name(p.metric)}  ({p.groupby_aggfunc} ± {p.groupby_rangefunc})"
    if kind == "ScatterPlot":
        return f"scatter  x={_metric_name(p.x)}  y={_metric_name(p.y)}{'  + regression' if p.regression else ''}"
    if kind == "MediaBrowser":
        return f"media    {', '.join(p.media_keys)}"
    return f"{kind.lower():8} {p.title or ''}"


def outline(w) -> str:
    rs = w.runset_settings
    lines = [
        f"workspace {w.name!r} in {w.entity}/{w.project}",
        f"runs: {rs.filters or '(all)'}",
        f"runs grouped by: {', '.join(g.name for g in rs.groupby) or '(none)'}; sorted by: "
        + ", ".join(f"{o.item.name} {'asc' if o.ascending else 'desc'}" for o in rs.order),
    ]
    for s in w.sections:
        axis = f"  [x axis {s.panel_settings.x_axis}]" if s.panel_settings.x_axis != "Step" else ""
        lines.append(f"\n== {s.name} ({len(s.panels)} panels){axis}")
        lines += [f"  {describe_panel(p)}" for p in s.panels]
    return "\n".join(lines)


def save(w, timeout: float = 20.0) -> str:
    """Save to W&B and return the URL; RuntimeError with one readable line when it cannot."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        raise RuntimeError(f"WANDB_MODE={mode}: saving a workspace needs the W&B server (unset WANDB_MODE or set it to online)")
    try:
        import wandb

        wandb.Api(timeout=timeout)  # checks the key and the server first, within `timeout`
        w.save()
        return w.url
    except Exception as e:  # noqa: BLE001 - no key, no network, bad entity: one line, no traceback
        msg = " ".join(f"{type(e).__name__}: {e}".split())
        raise RuntimeError(msg if len(msg) <= 400 else msg[:400] + "...") from None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build (and with --save, save) the DED W&B workspace for a project and sweep group.")
    ap.add_argument("--entity", default=os.environ.get("WANDB_ENTITY"), help="W&B entity (default: $WANDB_ENTITY)")
    ap.add_argument("--project", default="ded", help="W&B project (logger.project; default: ded)")
    ap.add_argument("--group", default=None, help="W&B group: the sweep (a multirun's sweep folder, or logger.group)")
    ap.add_argument("--k", type=int, default=None, help="name the avg@K metrics instead of the k-free ones (runs logged before the "
                    "k-free names; default: the k-free names, any eval.k)")
    ap.add_argument("--name", default=None, help="workspace name (default: 'DED sweep <group>')")
    ap.add_argument("--by", action="append", default=None, metavar="KEY",
                    help=f"config key the Results bars group by (repeatable; default: {' '.join(DEFAULT_BY)})")
    ap.add_argument("--group-runs-by", action="append", default=[], metavar="KEY", help="config key that groups the runs table (repeatable)")
    ap.add_argument("--finished-only", action="store_true", help="only finished runs (default: running and finished)")
    ap.add_argument("--save", action="store_true", help="save the workspace to W&B and print its URL (needs network and an API key)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the W&B server (default: 20)")
    a = ap.parse_args(argv)
    if not a.entity:
        print("error: --entity is required (or set WANDB_ENTITY)", file=sys.stderr)
        return 2
    try:
        w = build_workspace(a.entity, a.project, a.group, a.k, a.name, by=tuple(a.by or DEFAULT_BY), finished_only=a.finished_only,
                            runset_groupby=tuple(a.group_runs_by))  # fmt: skip
    except ImportError as e:
        print(f"error: {e} (pip install wandb-workspaces, or pip install -e '.[analysis]')", file=sys.stderr)
        return 2
    if not a.save:
        print(outline(w))
        return 0
    try:
        url = save(w, a.timeout)
    except RuntimeError as e:
        print(f"error: could not save the workspace to W&B ({e})", file=sys.stderr)
        return 2
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
