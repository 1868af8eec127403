"""The run record: a local folder next to Hydra's output, mirrored to Weights & Biases.

Local record (always): ``config.yaml`` (resolved), ``metrics.json`` (rewritten atomically after
every stage, so a crash keeps what was measured), ``corpus.jsonl``, ``plots/*.png`` and
``tables/*.jsonl``, and the artifacts (``corpus/``, ``checkpoint``, ``eval.json``: see
``ded/reporting/artifacts.py``). W&B gets the same metric names (``stage/split/metric``), the plots as
images, the tables as ``wandb.Table`` and the artifacts as W&B artifacts; it runs offline unless
``logger.mode=online``.

W&B is a mirror, never a reason to lose a run. Every W&B call is guarded on its own: a call that
fails (a table, an image, an artifact, a log) is warned once and recorded once in ``metrics.json``
(``wandb/errors``: one "<call>: <error>" per failed call; ``wandb/error``: the first), and the
run's other W&B calls go on. Only a W&B run that cannot start (``logger.mode=online`` without
network or API key, a bad entity, an unreachable ``WANDB_BASE_URL``; bound the wait with
``WANDB_INIT_TIMEOUT``) or a W&B process that died mid-run leaves the run with its local record
only.

Names W&B is searched by (``run_identity``): the group is ``sweep_group(sweep folder)``, the
folder from its ``multirun`` component on (``multirun/2026-11-27/15-00-00-abc123``, however
Hydra was given it: relative or absolute), the full path kept as ``sweep_dir`` in the W&B config
and ``wandb/sweep_dir`` in metrics.json; the run name is the job's overrides (``run_name``); both
fit W&B's 128 characters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ded.core.cache import atomic_write_text
from ded.core.errors import WriteError

log = logging.getLogger(__name__)


class Tracker:
    def __init__(self, cfg: DictConfig, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        (self.dir / "plots").mkdir(parents=True, exist_ok=True)
        (self.dir / "tables").mkdir(exist_ok=True)
        self.metrics: dict = {}
        self._curves: set[str] = set()
        self._artifacts: dict = {}  # name -> the wandb.Artifact this run logged (a later artifact's input)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        atomic_write_text(self.dir / "config.yaml", OmegaConf.to_yaml(resolved))
        ident = run_identity(cfg)
        self.metrics.update({"wandb/group": ident["group"], "wandb/name": ident["name"], "wandb/job_type": ident["job_type"]})
        if ident["sweep_dir"]:
            self.metrics["wandb/sweep_dir"] = ident["sweep_dir"]
        self._failed: set[str] = set()  # the W&B calls that failed once (warned and recorded once each)
        self.wandb = None
        if cfg.logger.backend == "wandb" and cfg.logger.mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")

            def start():
                import wandb

                return wandb.init(
                    project=cfg.logger.project,
                    entity=cfg.logger.entity,
                    group=ident["group"],
                    name=ident["name"],
                    job_type=ident["job_type"],
                    tags=ident["tags"],
                    config={**resolved, "overrides": ident["overrides"], "choices": ident["choices"], "sweep_dir": ident["sweep_dir"]},
                    dir=str(self.dir),
                    mode=cfg.logger.mode,
                    reinit="finish_previous",
                )

            where = f"mode={cfg.logger.mode}, project={cfg.logger.project!r}, entity={cfg.logger.entity!r}"
            if cfg.logger.mode == "online" and os.environ.get("WANDB_BASE_URL"):
                where += f", WANDB_BASE_URL={os.environ['WANDB_BASE_URL']}"
            self.wandb = self._guard(f"init ({where})", start)
            if self.wandb is not None:
                run_dir = str(Path(self.wandb.dir).parent)
                self.metrics["wandb/run_dir"] = run_dir
                if cfg.logger.mode == "offline":  # the URL exists only once synced
                    self.metrics["wandb/sync"] = sync_command([run_dir], cfg.logger.project, cfg.logger.entity)
                elif getattr(self.wandb, "url", None):
                    self.metrics["wandb/url"] = self.wandb.url
                    log.info("W&B run: %s", self.wandb.url)

    def log(self, metrics: dict, step: int | None = None) -> None:
        """Summary metrics (one value per name) or, with `step`, a point of a curve."""
        flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
        if step is None:
            self.metrics.update(flat)
            self._flush()
        else:  # appended at once: a crash mid-training keeps every point logged so far
            with open(self.dir / "history.jsonl", "a") as f:
                f.write(json.dumps({"step": step, **flat}) + "\n")
        if self.wandb is not None and flat:
            first = next(iter(flat))  # the call is named by its first key: a curve's every step is one call
            self._guard(f"log {first}" + (f" (+{len(flat) - 1} more)" if len(flat) > 1 else ""), lambda: self._wandb_log(flat, step))

    def _wandb_log(self, flat: dict, step: int | None) -> None:
        if step is None:
            self.wandb.summary.update(flat)
        else:
            # Curves get their own x axis (e.g. train/step), so they never fight W&B's
            # global step, which the image and table logs advance.
            axis = f"{next(iter(flat)).split('/')[0]}/step"
            for k in flat:
                if k not in self._curves:
                    self.wandb.define_metric(k, step_metric=axis)
                    self._curves.add(k)
            self.wandb.log({**flat, axis: step})

    def plot(self, name: str, fig) -> Path:
        """Save a matplotlib figure (and close it: a long sweep would otherwise hold every one)."""
        import matplotlib.pyplot as plt

        path = self.dir / "plots" / f"{name.replace('/', '_')}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        if self.wandb is not None:
            import wandb

            self._guard(f"plot {name}", lambda: self.wandb.log({name: wandb.Image(str(path))}))
        return path

    def table(self, name: str, rows: list[dict], local: bool = True) -> Path:
        """``tables/<name>.jsonl`` and a ``wandb.Table``; ``local=False``: the W&B table only (for
        rows the run already keeps elsewhere, such as the corpus)."""
        path = self.dir / "tables" / f"{name.replace('/', '_')}.jsonl"
        if local:
            atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
        if self.wandb is not None and rows:
            import wandb

            # Every row's keys, in first-seen order (rows of two shapes, e.g. filter/rejects, keep
            # all their columns; a missing cell is None); a column may mix types (an id that is an
            # int in one row and a str in another), which wandb.Table refuses by default.
            cols = list(dict.fromkeys(k for r in rows for k in r))
            data = [[_cell(r.get(c)) for c in cols] for r in rows]
            self._guard(f"table {name}", lambda: self.wandb.log({name: wandb.Table(columns=cols, data=data, allow_mixed_types=True)}))
        return path

    def artifact(self, kind: str, name: str, type: str, *, local: str | os.PathLike | None = None, files: dict | None = None,
                 references: dict | None = None, metadata: dict | None = None, inputs: tuple | list = (),
                 description: str | None = None) -> bool:
        """Record an artifact of the run: ``artifact/<kind>`` (its name) and ``artifact/<kind>_path``
        (``local``) in metrics.json, always; and, with W&B, a W&B artifact output by this run.

        ``files``: {name in the artifact: local file or folder}, copied into the artifact.
        ``references``: {name in the artifact: local file or folder}, recorded as ``file://``
        references (nothing is copied or uploaded). They are added with ``checksum=False``: a
        checksum reads every byte (a 32B checkpoint is tens of GB, on every run that reuses it);
        W&B then records each file's path and size, and the caller pins the content otherwise
        (the checkpoint's stage-cache manifest, with its sha256 list, goes in as a file).
        ``inputs``: names of artifacts this one is made from, kept in its metadata (``inputs``).
        Online, each input that this run logged is also declared used (``run.use_artifact``), so
        W&B's lineage graph links them through the run. Offline, wandb refuses ``use_artifact``
        ("Cannot use artifact when in offline mode", wandb 0.31), so the metadata is the lineage.
        Returns whether W&B took it; a W&B failure warns and the run goes on (``_guard``)."""
        self.log({f"artifact/{kind}": name, **({f"artifact/{kind}_path": str(local)} if local is not None else {})})
        if self.wandb is None:
            return False
        meta = json.loads(json.dumps({**(metadata or {}), "inputs": list(inputs)}, default=str))  # W&B takes JSON values only

        def publish():
            import wandb

            run = self.wandb
            art = wandb.Artifact(name, type=type, description=description, metadata=meta)
            for n, p in (files or {}).items():
                if Path(p).is_dir():
                    art.add_dir(str(p), name=None if n in ("", ".") else n)
                else:
                    art.add_file(str(p), name=n)
            for n, p in (references or {}).items():
                art.add_reference(Path(p).absolute().as_uri(), name=n, checksum=False)
            logged = run.log_artifact(art)
            if not run.offline:
                for up in (self._artifacts[i] for i in inputs if i in self._artifacts):
                    up.wait()  # use_artifact needs the committed version (it is logged by this same run)
                    run.use_artifact(up)
            self._artifacts[name] = logged
            return True

        return bool(self._guard(f"artifact {name}", publish))

    def write(self, filename: str, text: str) -> Path:
        path = self.dir / filename
        atomic_write_text(path, text)
        return path

    def _flush(self) -> None:
        try:
            atomic_write_text(self.dir / "metrics.json", json.dumps(self.metrics, indent=1, sort_keys=True, default=str))
        except WriteError as e:  # a full disk must not hide the error that stopped the run: warn, keep the rest
            log.warning("the run record was not updated: %s", e)

    def finish(self, ok: bool = True, status: str | None = None) -> None:
        """Close the record: ``run/status`` finished, failed, or `status` (interrupted: a failed W&B run)."""
        self.metrics["run/status"] = status or ("finished" if ok else "failed")
        self._flush()
        if self.wandb is not None:
            run = self.wandb

            def close():
                run.summary["run/status"] = self.metrics["run/status"]
                run.finish(exit_code=0 if ok else 1)

            self._guard("finish", close)
            self.wandb = None

    def _guard(self, what: str, fn):
        """``fn()``, or None when that W&B call fails: the first failure of each call is warned and
        recorded (``wandb/errors``, and ``wandb/error`` for the run's first), and the run's other
        W&B calls go on. A failed ``init`` or a dead W&B process (its socket closed: a
        ConnectionError) ends W&B for the run; the local record is complete on its own.
        Interrupts (Ctrl-C) still stop the run."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - any W&B failure: wandb.Error, network, a bad value
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            msg = msg if len(msg) <= 400 else msg[:400] + "..."
            run = self.wandb
            fatal = run is None or what.startswith(("init", "finish")) or isinstance(e, ConnectionError) or getattr(run, "_is_finished", False)
            if fatal:
                self.wandb = None
            if what in self._failed and not fatal:
                return None  # warned and recorded already
            self._failed.add(what)
            after = "continuing with the local record only" if fatal else "the run's other W&B calls go on"
            log.warning("W&B %s failed (%s); %s (%s)", what, msg, after, self.dir)
            self.metrics.setdefault("wandb/error", f"{what}: {msg}")
            self.metrics.setdefault("wandb/errors", []).append(f"{what}: {msg}")
            if fatal and run is not None and what != "finish":  # close what is left of the W&B run, quietly
                _close_dead(run)
            self._flush()
            return None


def _close_dead(run) -> None:
    """Finish a W&B run whose process may be gone; if it is, tear the connection down so that
    wandb's exit hook does not print a traceback at exit."""
    try:
        run.finish(exit_code=1)
    except Exception:  # noqa: BLE001 - already warned; the local record stands
        try:
            import wandb

            wandb.teardown()  # unregisters wandb's exit hook first, then fails on the closed socket
        except Exception:  # noqa: BLE001 - the same dead process
            pass


def _cell(v):
    return v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v, default=str)


QUIET = ("paths.", "logger", "hydra.")  # override keys saying where a run is written, not what it is
GROUPS_AS_TAGS = ("teacher", "student", "corpus", "diversity", "train", "eval", "debug", "experiment")


W_MAX = 128  # W&B's limit on a group's length (names are kept to it too, to stay readable in its tables)


def _fit(text: str, limit: int = W_MAX, sep: str = "/", whole: str | None = None) -> str:
    """`text`, or when longer than `limit`: its last `sep`-separated parts that fit, then ``~`` and
    a short hash of `whole` (default: `text`), so two long texts that share their tail stay apart."""
    if len(text) <= limit:
        return text
    tag = hashlib.sha1((whole or text).encode()).hexdigest()[:8]
    parts, kept = text.split(sep), []
    while parts and len(sep.join([parts[-1], *kept])) + len(tag) + 1 <= limit:
        kept.insert(0, parts.pop())
    return f"{sep.join(kept)}~{tag}" if kept else f"{text[-(limit - len(tag) - 1):]}~{tag}"


def sweep_group(sweep_dir: str | os.PathLike, cwd: str | os.PathLike | None = None) -> str:
    """The W&B group of a sweep folder: its path from the last ``multirun`` component on
    (``multirun/2026-11-27/15-00-00-abc123``, ``multirun/diversity_ablation/2026-12-03_05-14-13``),
    the same whether the folder was given relative (to `cwd`, default the working directory) or
    absolute; a folder outside any ``multirun`` gives its last two components. At most 128
    characters (a longer one keeps its last components, then ``~`` and a hash of the whole)."""
    # Made absolute without resolving links: a `multirun` that links to scratch space keeps its name.
    parts = Path(os.path.abspath(Path(cwd or os.getcwd(), Path(sweep_dir).expanduser()))).parts  # an absolute sweep_dir replaces cwd
    if "multirun" in parts[:-1]:
        rel = parts[len(parts) - 1 - parts[::-1].index("multirun") :]
    else:
        rel = parts[-2:]
    return _fit("/".join(rel))


def run_name(overrides: list[str], fallback: str) -> str:
    """A run's W&B name: its overrides joined by commas (``debug=tiny,diversity=random``), or
    `fallback` without any. Over 128 characters it keeps ``name=`` (a suite's arm label) and the
    last overrides that fit (a suite gives its fixed keys first and the arm's own axes and
    replicate last), then ``~`` and a hash of them all
    (``name=full,corpus.trajectories.p=8,corpus.size=32,replicate=1~1a2b3c4d``)."""
    if not overrides:
        return fallback
    full = ",".join(overrides)
    label = [o for o in overrides if o.lstrip("+~").split("=")[0] == "name" and len(o) <= 40][:1]
    rest = ",".join(o for o in overrides if o not in label)
    return full if len(full) <= W_MAX else ",".join([*label, _fit(rest, W_MAX - sum(len(o) + 1 for o in label), sep=",", whole=full)])


def sync_command(run_dirs: list[str], project: str | None, entity: str | None) -> str:
    """The ``wandb sync`` command that uploads offline runs into `entity`/`project` (the config's
    logger.entity and logger.project: the ones the dashboard command names)."""
    opts = (["--project", project] if project else []) + (["--entity", entity] if entity else [])
    return shlex.join(["wandb", "sync", *opts, *map(str, run_dirs)])


def run_identity(cfg: DictConfig) -> dict:
    """How a run is told apart in a W&B project: its sweep (group: `sweep_group` of the
    multirun folder, or logger.group), its overrides (name: `run_name`), what it runs
    (job_type), its config-group choices (tags such as teacher:qwq), from Hydra's job info when
    there is one; `sweep_dir` is the multirun folder's absolute path (None for a single run)."""
    overrides, choices, sweep_dir = [], {}, None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        choices = {g: c for g, c in hc.runtime.choices.items() if not g.startswith("hydra") and c is not None}
        if hc.mode == RunMode.MULTIRUN:
            sweep_dir = os.path.abspath(Path(hc.runtime.cwd, str(hc.sweep.dir)))  # relative: to where the multirun was launched
    except ValueError:  # composed outside a Hydra job (tests, notebooks): no job info
        pass
    shown = [o for o in overrides if not o.lstrip("+~").startswith(QUIET)]
    group = _fit(cfg.logger.group) if cfg.logger.group else (sweep_group(sweep_dir) if sweep_dir else None)
    return {
        "group": group,
        "name": run_name(shown, cfg.name),
        "job_type": "pipeline" if cfg.stop_after == "evaluation" else f"until_{cfg.stop_after}",
        "tags": [f"{g}:{choices[g]}" for g in GROUPS_AS_TAGS if g in choices] + list(cfg.logger.tags),
        "overrides": overrides,
        "choices": choices,
        "sweep_dir": sweep_dir,
    }
