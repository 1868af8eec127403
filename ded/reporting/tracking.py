"""The run record: a local folder next to Hydra's output, mirrored to Weights & Biases.

Local record (always): ``config.yaml`` (resolved), ``metrics.json`` (rewritten atomically after
every stage, so a crash keeps what was measured), ``corpus.jsonl``, ``plots/*.png`` and
``tables/*.jsonl``, and the artifacts (``corpus/``, ``checkpoint``, ``eval.json``: see
``ded/reporting/artifacts.py``). W&B gets the same metric names (``stage/split/metric``), the plots as
images, the tables as ``wandb.Table`` and the artifacts as W&B artifacts; it runs offline unless
``logger.mode=online``.

W&B is a mirror, never a reason to lose a run: if it cannot start (``logger.mode=online``
without network or API key, a bad entity, an unreachable ``WANDB_BASE_URL``; bound the wait
with ``WANDB_INIT_TIMEOUT``) or a call fails mid-run, one warning names the problem, the run
goes on with the local record only and ``metrics.json`` says so under ``wandb/error``.
"""

from __future__ import annotations

import json
import logging
import os
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
                    config={**resolved, "overrides": ident["overrides"], "choices": ident["choices"]},
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
                    self.metrics["wandb/sync"] = f"wandb sync {run_dir}"
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
            self._guard("log", lambda: self._wandb_log(flat, step))

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

            cols = list(rows[0])
            self._guard(f"table {name}", lambda: self.wandb.log({name: wandb.Table(columns=cols, data=[[_cell(r.get(c)) for c in cols] for r in rows])}))
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
        """``fn()``, or None after a W&B failure: warn once, naming it, and go on without W&B
        (the local record is complete on its own). Interrupts (Ctrl-C) still stop the run."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - any W&B failure: wandb.Error, network, a bad value
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            msg = msg if len(msg) <= 400 else msg[:400] + "..."
            log.warning("W&B %s failed (%s); continuing with the local record only (%s)", what, msg, self.dir)
            self.metrics["wandb/error"] = f"{what}: {msg}"
            run, self.wandb = self.wandb, None
            if run is not None and what != "finish":  # mid-run: close the W&B run, quietly
                try:
                    run.finish(exit_code=1)
                except Exception:  # noqa: BLE001 - already warned; the local record stands
                    pass
            self._flush()
            return None


def _cell(v):
    return v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v, default=str)


QUIET = ("paths.", "logger", "hydra.")  # override keys saying where a run is written, not what it is
GROUPS_AS_TAGS = ("teacher", "student", "corpus", "diversity", "train", "eval", "debug", "experiment")


def run_identity(cfg: DictConfig) -> dict:
    """How a run is told apart in a W&B project: its sweep (group), its overrides (name), what it
    runs (job_type), its config-group choices (tags such as teacher:qwq), from Hydra's job info
    when there is one."""
    overrides, choices, sweep = [], {}, None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        choices = {g: c for g, c in hc.runtime.choices.items() if not g.startswith("hydra") and c is not None}
        if hc.mode == RunMode.MULTIRUN:
            sweep = str(hc.sweep.dir)
    except ValueError:  # composed outside a Hydra job (tests, notebooks): no job info
        pass
    shown = [o for o in overrides if not o.lstrip("+~").startswith(QUIET)]
    return {
        "group": cfg.logger.group or sweep,
        "name": ",".join(shown) or cfg.name,
        "job_type": "pipeline" if cfg.stop_after == "evaluation" else f"until_{cfg.stop_after}",
        "tags": [f"{g}:{choices[g]}" for g in GROUPS_AS_TAGS if g in choices] + list(cfg.logger.tags),
        "overrides": overrides,
        "choices": choices,
    }

