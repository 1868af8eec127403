"""Damaged caches are rebuilt, never trusted and never fatal.

Sample cache: a real samples.jsonl written by generate_cached (a toy backend: the cache is the
subject, not the model) is damaged line by line, in every way a line can be unreadable; the
next generate_cached must warn naming file:line, regenerate exactly the damaged samples, keep
every other line byte for byte and leave no sample twice. A real process killed mid-append
leaves a torn batch that the next run completes.

Stage cache: a checkpoint whose files no longer match manifest.json (truncated, deleted,
altered, or the manifest itself unreadable or from before file lists) is reported with the
file at fault, removed and rebuilt; one case through the real train() on SmolLM2.
"""

import json
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from ded.core.cache import StageCache
from ded.data import Question
from ded.generation import Backend, Completion, generate_cached, generation_key, question_hash

SAMPLING = {"temperature": 0.7, "max_new_tokens": 8}
QS = [Question(f"q{j}", f"What is {j} + {j}? Think it through carefully, step by step.", str(2 * j)) for j in range(4)]
N = 3


class Echo(Backend):
    """Deterministic completions (the same request gives the same text), recording what it was asked."""

    def __init__(self, batch: int = 100):
        self.identity = {"backend": "faults-echo"}
        self.batch = batch
        self.asked: list[tuple[str, int]] = []

    def generate(self, requests, sampling):
        for k in range(0, len(requests), self.batch):
            part = requests[k : k + self.batch]
            self.asked += [(r.qhash, r.index) for r in part]
            yield [Completion(r, echo_text(r.messages[-1]["content"], r.index), 5, "stop") for r in part]


def echo_text(question: str, i: int) -> str:
    return f"<think>{question} ... é ... {'reasoning ' * 20}</think> sample {i}: \\boxed{{?}}"


def _gen(root, backend=None, qs=QS):
    return generate_cached(backend or Echo(), str(root), qs, N, prefix=[], sampling=SAMPLING, seed=0, desc="faults")


def _file(root) -> Path:
    (f,) = Path(root, "samples").glob("*/samples.jsonl")
    return f


def _records(f: Path) -> list[dict]:
    """The records a correct reader sees: every line that is one complete, well-formed record."""
    out = []
    for line in f.read_bytes().split(b"\n")[:-1]:
        try:
            r = json.loads(line.decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(r, dict) and type(r.get("q")) is str and type(r.get("i")) is int and type(r.get("text")) is str:
            out.append(r)
    return out


def _assert_complete(root, out):
    """Every asked sample returned with its right text, and each (question, index) once in the file."""
    for q in QS:
        assert [r["text"] for r in out[q.id]] == [echo_text(q.text, i) for i in range(N)]
    pairs = [(r["q"], r["i"]) for r in _records(_file(root))]
    assert sorted(pairs) == sorted({(question_hash(q.text), i) for q in QS for i in range(N)}), "a sample missing or twice"


def _redo(line: bytes, **change) -> bytes:
    rec = json.loads(line)
    for k, v in change.items():
        if v is DROP:
            del rec[k]
        else:
            rec[k] = v
    return json.dumps(rec, ensure_ascii=False).encode() + b"\n"


DROP = object()
MID = 5  # the damaged line (1-based): in the middle of 12


def _middle(line: bytes, insert: bytes) -> bytes:
    """Head and tail intact, the middle of the trajectory broken."""
    m = len(line) // 2
    return line[:m] + insert + line[m:]


# name -> (damage applied to the file's lines (0-based list), the line numbers it breaks)
DAMAGE = {
    "bad_json_in_the_middle": (lambda ls: ls.__setitem__(MID - 1, _middle(ls[MID - 1], b'"}, "oops')), [MID]),
    "two_lines_joined": (lambda ls: ls.__setitem__(slice(MID - 1, MID + 1), [ls[MID - 1][:-1] + ls[MID]]), [MID, MID + 1]),
    "not_utf8": (lambda ls: ls.__setitem__(MID - 1, ls[MID - 1].replace("é".encode(), b"\xff\xfe", 1)), [MID]),
    "a_number": (lambda ls: ls.__setitem__(MID - 1, b"123\n"), [MID]),
    "a_list": (lambda ls: ls.__setitem__(MID - 1, b"[1, 2]\n"), [MID]),
    "another_object": (lambda ls: ls.__setitem__(MID - 1, b'{"x": 1}\n'), [MID]),
    "no_text": (lambda ls: ls.__setitem__(MID - 1, _redo(ls[MID - 1], text=DROP)), [MID]),
    "no_q": (lambda ls: ls.__setitem__(MID - 1, _redo(ls[MID - 1], q=DROP)), [MID]),
    "no_i": (lambda ls: ls.__setitem__(MID - 1, _redo(ls[MID - 1], i=DROP)), [MID]),
    "text_not_a_string": (lambda ls: ls.__setitem__(MID - 1, _redo(ls[MID - 1], text=5)), [MID]),
    "index_a_string": (lambda ls: ls.__setitem__(MID - 1, _redo(ls[MID - 1], i=str(json.loads(ls[MID - 1])["i"]))), [MID]),
    "index_a_bool": (lambda ls: ls.__setitem__(MID - 1, _redo(ls[MID - 1], i=True)), [MID]),  # True == 1 in a set
    "question_a_number": (lambda ls: ls.__setitem__(MID - 1, _redo(ls[MID - 1], q=7)), [MID]),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_sample_line_is_warned_and_regenerated(tmp_path, caplog, case):
    _gen(tmp_path)
    f = _file(tmp_path)
    before = f.read_bytes().split(b"\n")[:-1]
    before = [x + b"\n" for x in before]
    assert len(before) == len(QS) * N
    damage, broken = DAMAGE[case]
    lost = {(r["q"], r["i"]) for r in map(json.loads, (before[k - 1] for k in broken))}
    lines = list(before)
    damage(lines)
    f.write_bytes(b"".join(lines))

    b = Echo()
    with caplog.at_level(logging.WARNING):
        out, st = _gen(tmp_path, b)  # no exception
    assert sorted(b.asked) == sorted(lost) and st.new_samples == len(lost)  # exactly the damaged samples again
    warned = caplog.text
    assert f"{f}:{broken[0]}:" in warned, warned
    _assert_complete(tmp_path, out)
    after = f.read_bytes()
    kept = b"".join(lines)  # every other line byte-identical, in place; the new samples appended
    assert after.startswith(kept) and after.count(b"\n") == len(lines) + len(lost)

    b = Echo()  # and the next run generates nothing
    out, st = _gen(tmp_path, b)
    assert b.asked == [] and st.new_samples == 0
    _assert_complete(tmp_path, out)


def test_a_torn_last_line_is_ignored_then_cut(tmp_path, caplog):
    _gen(tmp_path)
    f = _file(tmp_path)
    lines = f.read_bytes().split(b"\n")[:-1]
    f.write_bytes(b"\n".join(lines[:-1]) + b"\n" + lines[-1][: len(lines[-1]) // 2])  # a crash mid-append
    b = Echo()
    out, _ = _gen(tmp_path, b)
    assert len(b.asked) == 1
    _assert_complete(tmp_path, out)
    assert f.read_bytes().split(b"\n")[:-1][: len(lines) - 1] == lines[:-1]


def test_deleted_meta_and_empty_sample_file(tmp_path):
    _gen(tmp_path)
    f = _file(tmp_path)
    (f.parent / "meta.json").unlink()
    b = Echo()
    _, st = _gen(tmp_path, b)
    assert b.asked == [] and (f.parent / "meta.json").exists()
    f.write_bytes(b"")
    b = Echo()
    out, _ = _gen(tmp_path, b)
    assert len(b.asked) == len(QS) * N
    _assert_complete(tmp_path, out)


# A child process generates through the real generate_cached; its second batch is cut by SIGKILL
# in the middle of the write (half of its last line written), while it holds the key's lock.
KILLED = r"""
import json, os, signal, sys
sys.path.insert(0, {tests!r})
from ded.generation.sample_cache import SampleCache
from faults.test_cache_damage import Echo, _gen

calls = []
real_append = SampleCache.append

def append(self, records):
    calls.append(len(records))
    if len(calls) < 2:
        return real_append(self, records)
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    last = json.dumps(records[-1], ensure_ascii=False) + "\n"
    with open(self.file, "a", encoding="utf-8") as f:
        f.write(payload[: len(payload) - len(last) // 2])
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

SampleCache.append = append
_gen(sys.argv[1], Echo(batch=5))
"""


def test_sigkill_mid_batch_then_every_sample_exactly_once(tmp_path):
    code = KILLED.format(tests=str(ROOT / "tests"))
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    f = _file(tmp_path)
    raw = f.read_bytes()
    assert not raw.endswith(b"\n") and raw.count(b"\n") == 9  # batch 1 (5) + 4 of batch 2, then half a line
    b = Echo()
    out, st = _gen(tmp_path, b)  # the lock died with the child
    assert st.new_samples == len(QS) * N - 9 == len(b.asked)
    _assert_complete(tmp_path, out)
    assert f.read_bytes().startswith(raw[: raw.rfind(b"\n") + 1])  # the torn half-line cut, the rest kept


SHARED = r"""
import json, sys
sys.path.insert(0, {tests!r})
from faults.test_cache_damage import Echo, _gen
b = Echo()
out, st = _gen(sys.argv[1], b)
print("ASKED", json.dumps(b.asked))
"""


def test_two_processes_share_a_damaged_key(tmp_path):
    """Two real processes need the same key holding a corrupt line: one regenerates it, the other
    waits on the lock and generates nothing; no sample twice."""
    _gen(tmp_path)
    f = _file(tmp_path)
    lines = [x + b"\n" for x in f.read_bytes().split(b"\n")[:-1]]
    lost = json.loads(lines[MID - 1])
    lines[MID - 1] = _middle(lines[MID - 1], b"\x00garbage\x00")
    f.write_bytes(b"".join(lines))
    code = SHARED.format(tests=str(ROOT / "tests"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    asked = []
    for p in procs:
        o, e = p.communicate(timeout=120)
        assert p.returncode == 0, e[-3000:]
        assert f"{f}:{MID}:" in e  # each names the corrupt line
        asked += json.loads(next(x for x in o.splitlines() if x.startswith("ASKED"))[6:])
    assert asked == [[lost["q"], lost["i"]]]
    out, _ = _gen(tmp_path)
    _assert_complete(tmp_path, out)


# ---------------------------------------------------------------- stage cache (checkpoints)


@pytest.fixture
def small_hash_limit(monkeypatch):
    """Files over 1 KiB are checked by size only, as a real model shard over 64 MiB is."""
    monkeypatch.setattr("ded.core.cache.HASH_MAX_BYTES", 1024, raising=False)


def _publish(root) -> tuple[StageCache, Path]:
    cache = StageCache(root)
    with cache.build("train", "k", {"student": "x"}) as tmp:
        (tmp / "model.safetensors").write_bytes(bytes(range(256)) * 16)  # 4 KiB: size only
        (tmp / "config.json").write_text('{"hidden_size": 8}')  # hashed
        (tmp / "tok").mkdir()
        (tmp / "tok" / "tokenizer.json").write_text('{"vocab": {}}')
    return cache, cache.path("train", "k")


def _truncate(p):
    with open(p / "model.safetensors", "r+b") as f:
        f.truncate(1000)


def _alter(p):
    (p / "config.json").write_text('{"hidden_size": 9}')  # same size, other content


def _garbage_manifest(p):
    (p / "manifest.json").write_bytes(b'{"stage": "train", "ke\xff')


def _old_manifest(p):
    m = json.loads((p / "manifest.json").read_text())
    del m["files"]
    (p / "manifest.json").write_text(json.dumps(m))


ARTIFACT_DAMAGE = {
    "truncated_shard": (_truncate, "model.safetensors has 1000 bytes"),
    "deleted_file": (lambda p: (p / "tok" / "tokenizer.json").unlink(), "tok/tokenizer.json is missing"),
    "altered_small_file": (_alter, "config.json does not match its sha256"),
    "garbage_manifest": (_garbage_manifest, "manifest.json is unreadable"),
    "manifest_without_file_list": (_old_manifest, "manifest.json has no file list"),
}


@pytest.mark.parametrize("case", list(ARTIFACT_DAMAGE))
@pytest.mark.parametrize("through", ["get", "build"])
def test_a_damaged_artifact_is_named_removed_and_rebuilt(tmp_path, caplog, small_hash_limit, case, through):
    cache, p = _publish(tmp_path)
    assert cache.get("train", "k") == p
    damage, why = ARTIFACT_DAMAGE[case]
    damage(p)
    with caplog.at_level(logging.WARNING):
        if through == "get":
            assert cache.get("train", "k") is None
        with cache.build("train", "k", {}) as tmp:  # the lock path treats it as absent too
            assert tmp is not None
            (tmp / "model.safetensors").write_bytes(b"rebuilt")
    assert f"{p}: {why}" in caplog.text
    assert cache.get("train", "k") == p and (p / "model.safetensors").read_bytes() == b"rebuilt"
    assert not list(p.parent.glob("k.*damaged*"))


def test_train_retrains_a_truncated_checkpoint(smollm_path, tmp_path, caplog):
    """A real train() over a cached checkpoint whose model.safetensors was cut short retrains it,
    naming the file, where it used to reuse it and fail in SafetensorError with no path."""
    from ded.config import TrainConfig
    from ded.training.sft import checkpoint_key, train

    corpus = [{"question": "What is $2 + 3$?", "response": "$\\boxed{5}$"}, {"question": "What is $1 + 1$?", "response": "$\\boxed{2}$"}]
    cfg = TrainConfig(per_device_train_batch_size=2, num_train_epochs=1)
    cache = StageCache(tmp_path)
    key = checkpoint_key({"model": "smollm2"}, corpus, [], cfg)
    with cache.build("train", key, {"student": "smollm2"}) as tmp:  # a "trained" checkpoint: the base weights
        shutil.copytree(smollm_path, tmp, dirs_exist_ok=True)
        (tmp / "train_info.json").write_text(json.dumps({"steps": 0}))
    ckpt = Path(cache.path("train", key))
    with open(ckpt / "model.safetensors", "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)

    with caplog.at_level(logging.WARNING):
        path, k, info = train(smollm_path, {"model": "smollm2"}, corpus, [], cfg, cache)
    assert not info["cached"] and info["steps"] == 1 and k == key
    assert f"{ckpt}: model.safetensors has" in caplog.text
    from safetensors.torch import load_file

    assert load_file(str(Path(path) / "model.safetensors"))  # whole again
    _, _, info = train(smollm_path, {"model": "smollm2"}, corpus, [], cfg, cache)
    assert info["cached"]
