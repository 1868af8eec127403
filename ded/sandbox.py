"""Run untrusted Python programs (model-written code answers) in a sealed, throw-away sandbox.

    from ded.sandbox import Limits, run, run_many
    r = run("print(input()[::-1])", stdin="abc\\n")          # Result(status='ok', stdout='cba\\n', ...)
    rs = run_many([(program, stdin), ...], Limits(wall_s=5), workers=8, progress=True)

Every run is a fresh process tree (ded/sandbox_init.py, started as ``python -I -S``) in new
network, mount, PID, IPC, UTS and cgroup namespaces:

* no network: the new network namespace has no interface up, not even loopback;
* a private working directory: /tmp/work on a size-capped tmpfs (``disk_mb``; /var/tmp and /dev/shm
  get their own), everything else read-only; the repository, the harness's working directory, its
  home and ``DED_DATA_DIR`` (plus any ``hide=`` paths) are covered by empty mounts; /run is emptied;
* a fresh /proc that shows only the run's own processes, and a minimal environment: nothing of the
  harness's environment variables (API keys, tokens) reaches the program;
* limits: wall clock (enforced here), CPU time, address space, processes, file size, open files
  (rlimits); stdout + stderr capped at ``output_bytes`` (past it the run is killed); where this
  process may make memory cgroups, ``memory_mb`` bounds the whole run, whatever holds the memory
  (``memory_bound`` says which bound applies here); System V IPC capped in the run's IPC namespace;
* a syscall filter (seccomp): no keyrings, memfds, io_uring, userfaultfd, bpf or perf_event_open,
  sockets of the unix and inet families only, no other ABI (``syscall_filter`` says what applies);
* as root the program runs as a fresh uid (2_000_000 + random, no groups, no capabilities,
  no_new_privs), because rlimits do not bind root; without root it runs in an unprivileged user
  namespace as the harness's own uid, with the same mounts and limits;
* when the program ends, its PID namespace ends: the kernel kills every process it left; as root the
  run's uid is then swept (kill every process of it) before ``run`` returns.

A hostile program is contained and reported as a failed Result (``status`` != "ok"); ``run`` raises
only SandboxError, when the sandbox itself cannot be built here (``check_isolation`` says why).
``run_many`` runs jobs in parallel, one thread per worker, each waiting on its own sandbox.
"""

from __future__ import annotations

import errno
import marshal
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ded.core.errors import UserError

INIT = Path(__file__).with_name("sandbox_init.py")
REPO_ROOT = Path(__file__).resolve().parents[1]
UID_BASE, UID_SPAN = 2_000_000, 1 << 30  # fresh uids come from here: no real user, no other run
FALLBACK_INTERPRETERS = ("/usr/bin/python3", "/usr/local/bin/python3")
PROGRAM_NAME = "main.py"  # what ded/sandbox_init.py writes the program to, in /tmp/work
STOP_GRACE_S = 2.0  # how long a stopped run may take to tear itself down before SIGKILL
CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    """A run's limits. ``memory_mb`` is each process's RLIMIT_AS everywhere and, where this process
    may make memory cgroups (``memory_bound()`` says), also the bound of the whole run: every process,
    tmpfs file and System V segment of it together (past it the OOM killer takes the program)."""

    wall_s: float = 10.0  # wall clock for the whole run
    cpu_s: int = 10  # RLIMIT_CPU of the program (and of each process it starts)
    memory_mb: int = 1024  # RLIMIT_AS per process; the whole run's memory where a cgroup can be made (above)
    nproc: int = 16  # RLIMIT_NPROC: processes and threads of the run
    output_bytes: int = 1 << 20  # stdout + stderr kept; past it the run is killed ("output_limit")
    disk_mb: int = 64  # size of each private tmpfs (/tmp holding /tmp/work, /var/tmp, /dev/shm); RLIMIT_FSIZE

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"Limits.{name} must be positive, got {value!r}")


@dataclass
class Result:
    """How one run ended. status:

    ok            exit status 0
    error         any other exit status (an exception, a syntax error, sys.exit(n), a failed assert)
    memory        it ended with a MemoryError (the address-space limit)
    timeout       the wall clock ran out (returncode None) or the CPU limit did (returncode -SIGXCPU/-SIGKILL)
    output_limit  stdout + stderr passed output_bytes; what came before is kept
    signal        killed by a signal it caused itself (returncode -signal)
    """

    status: str
    returncode: int | None  # exit status, -signal, or None when the harness stopped the run
    stdout: str  # decoded with errors="replace"; stdout + stderr hold at most output_bytes bytes
    stderr: str
    wall_s: float  # from start to clean-up, sandbox setup included

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class SandboxError(UserError):
    """The sandbox cannot be built on this machine; the message says why and what to do."""


def run(program: str, stdin: str = "", limits: Limits = Limits(), files: dict[str, str] | None = None, *,
        interpreter: str | None = None, hide: tuple[str, ...] | list[str] = (), partner: str | None = None) -> Result:
    """Run `program` (Python source) once in a fresh sandbox, feeding it `stdin`.

    `files` are written next to the program in /tmp/work (relative names). `interpreter` is the
    Python that runs it (default: this one if the sandbox's user can execute it, else the system's).
    `hide` adds paths the program must not see. Never raises for anything the program does.

    `partner` (Python source) runs beside `program` in the same sandbox, out of its reach: its own
    uid (as root), its own PID namespace; `program` holds its stdin as fd 3 and its stdout as fd 4.
    `files` then go to the partner's /tmp/work and `program` runs from / (ded/sandbox_init.py).
    The code grader is built on this: the judge is `program`, the solution runs in the partner.
    """
    reason = check_isolation()
    if reason:
        raise SandboxError(f"the code sandbox cannot run here: {reason}")
    return _run(program, stdin, limits, files or {}, interpreter, tuple(hide), partner)


def run_many(jobs: list[tuple[str, str]], limits: Limits = Limits(), workers: int | None = None, progress: bool = False, *,
             files: dict[str, str] | None = None, interpreter: str | None = None,
             hide: tuple[str, ...] | list[str] = (), partner: str | None = None) -> list[Result]:
    """Run (program, stdin) jobs in parallel sandboxes; results in the order of `jobs`.

    `workers` defaults to the usable cores. Each worker is a thread waiting on its own sandbox
    process, so the cost in this process is small. `progress` shows a tqdm bar.
    """
    reason = check_isolation()
    if reason:
        raise SandboxError(f"the code sandbox cannot run here: {reason}")
    from concurrent.futures import ThreadPoolExecutor, as_completed  # lazily: keep this module import-light

    workers = max(1, workers or len(os.sched_getaffinity(0)))
    results: list[Result | None] = [None] * len(jobs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="sandbox", unit="run")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")
    try:
        futures = {pool.submit(_run, program, stdin, limits, files or {}, interpreter, tuple(hide), partner): i
                   for i, (program, stdin) in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if bar is not None:
                bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error: no new runs; running ones end by their limits
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# can the sandbox run here? (cached)

_isolation_lock = threading.Lock()
_isolation: list[str | None] = []


def check_isolation() -> str | None:
    """None if the sandbox works on this machine, else one line saying why not. Cached.

    Runs a trivial program through the full sandbox once (~0.1 s), so a pass means the
    namespaces, mounts, uid change and interpreter all work here.
    """
    with _isolation_lock:
        if not _isolation:
            _isolation.append(_probe())
        return _isolation[0]


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"it needs Linux namespaces (this is {sys.platform})"
    if not sys.executable:
        return "sys.executable is unknown, so the sandbox's starter cannot be launched"
    if os.geteuid() != 0:
        for name, bad, what in (
            ("kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=0"),
            ("user/max_user_namespaces", "0", "user.max_user_namespaces=0"),
            ("kernel/apparmor_restrict_unprivileged_userns", "1", "kernel.apparmor_restrict_unprivileged_userns=1"),
        ):
            try:
                value = Path("/proc/sys", name).read_text().strip()
            except OSError:
                continue
            if value == bad:
                return (f"not root and unprivileged user namespaces are disabled ({what}): run as root, "
                        "or allow them (sysctl)")
    try:
        r = _run("print(6 * 7)", "", Limits(wall_s=30), {}, None, (), None)
    except SandboxError as e:
        return str(e)
    if r.status != "ok" or r.stdout.strip() != "42":
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return f"a trivial program failed inside the sandbox ({r.status}: {tail})"
    return None


# ---------------------------------------------------------------------------------------------
# interpreter: which Python runs the programs, and which paths it needs (never hidden)


def default_interpreter() -> str:
    """The Python that runs sandboxed programs when run() gets no interpreter= (detected once)."""
    return _interpreter(None)[0]


_interpreters: dict[str | None, tuple[str, tuple[str, ...]]] = {}
_interpreters_lock = threading.Lock()


def _interpreter(path: str | None) -> tuple[str, tuple[str, ...]]:
    """(interpreter, paths it needs visible); detected once per requested path."""
    with _interpreters_lock:
        if path not in _interpreters:
            _interpreters[path] = _detect_interpreter(path)
        return _interpreters[path]


def _detect_interpreter(path: str | None) -> tuple[str, tuple[str, ...]]:
    if path is None:
        candidates = [sys.executable] + [p for p in FALLBACK_INTERPRETERS if os.path.exists(p)]
        usable = [p for p in candidates if os.geteuid() != 0 or _usable_by_anyone(p)]
        if not usable:
            raise SandboxError(f"no Python that an unprivileged user may execute: tried {', '.join(candidates)} "
                               "(pass interpreter=, or make one world-executable)")
        path = usable[0]
    path = os.path.abspath(path)
    try:  # a trusted interpreter, asked once, outside the sandbox, where its files are; with site (no -S): a venv's prefix
        out = subprocess.run([path, "-I", "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxError(f"the sandbox's interpreter {path} does not start: {e}") from e
    keep = {path, os.path.realpath(path), *_symlink_chain(path), *(os.path.realpath(p) for p in out[:2] if p)}
    return path, tuple(sorted(keep))


def _symlink_chain(path: str) -> list[str]:
    """Every link on the way from `path` to the file it names (venv/bin/python -> python3 -> /usr/bin/python3)."""
    chain: list[str] = []
    while os.path.islink(path) and len(chain) < 40:
        chain.append(path)
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    return chain


def _usable_by_anyone(path: str) -> bool:
    """Whether a user with no groups can execute `path`: every directory searchable, the file executable."""
    for p in {os.path.abspath(path), os.path.realpath(path)}:
        try:
            if not os.stat(p).st_mode & 0o001:
                return False
            parent = os.path.dirname(p)
            while True:
                if not os.stat(parent).st_mode & 0o001:
                    return False
                if parent == "/":
                    break
                parent = os.path.dirname(parent)
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# paths the program must not see

NEVER_HIDDEN = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/proc", "/sys",
                "/var", "/run", "/tmp", "/boot"}
REPLACED = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/proc")  # the sandbox replaces these wholesale


def _hidden_paths(extra: tuple[str, ...]) -> list[str]:
    """The repository, the working directory, home, DED_DATA_DIR and `extra`, as real paths."""
    try:
        cwd = os.getcwd()
    except OSError:  # deleted under us: nothing there to hide
        cwd = ""
    wanted = [str(REPO_ROOT), cwd, os.path.expanduser("~"), os.environ.get("DED_DATA_DIR", ""), *extra]
    out: list[str] = []
    for p in wanted:
        if not p or not os.path.exists(p):
            continue
        real = os.path.realpath(p)
        if real in NEVER_HIDDEN or any(real.startswith(r + "/") for r in REPLACED) or real in out:
            continue
        out.append(real)
    return out


# ---------------------------------------------------------------------------------------------
# uids (root mode): one fresh uid per run

_uids_lock = threading.Lock()
_uids_in_use: set[int] = set()


def _allocate_uid() -> int:
    lo, span = _uid_range()
    with _uids_lock:
        while True:
            uid = lo + int.from_bytes(os.urandom(8), "little") % span
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _release_uid(uid: int) -> None:
    with _uids_lock:
        _uids_in_use.discard(uid)


def _uid_range() -> tuple[int, int]:
    """UID_BASE.. when this user namespace maps it (the usual case); else the top of what it maps."""
    try:
        extents = [tuple(map(int, line.split())) for line in Path("/proc/self/uid_map").read_text().splitlines()]
    except OSError:
        return UID_BASE, UID_SPAN
    for inside, _, count in extents:
        if inside <= UID_BASE and UID_BASE + UID_SPAN <= inside + count:
            return UID_BASE, UID_SPAN
    inside, _, count = max(extents, key=lambda e: e[2])
    if count < 2048:
        raise SandboxError(f"this user namespace maps only {count} uids; the sandbox needs spare uids for its runs")
    return inside + count // 2, count // 2 - 1  # the upper half: above the system's and people's uids


# ---------------------------------------------------------------------------------------------
# what bounds a run here: the syscall filter, a memory cgroup per run

FILTERED_MACHINES = ("x86_64", "aarch64")  # the machines ded/sandbox_init.py has syscall tables for (SYSCALL_NUMBERS)
CGROUP_PREFIX = "ded-sandbox-"  # a run's memory cgroup: ded-sandbox-<harness pid>-<random>


def _filtered_here() -> bool:
    """Whether ded/sandbox_init.py installs its syscall filter on this machine (a 64-bit one it has a table for)."""
    return os.uname().machine in FILTERED_MACHINES and sys.maxsize > 2**32


def syscall_filter() -> str:
    """One line: the syscall filter every sandboxed program runs under on this machine, or why none."""
    machine = os.uname().machine
    if _filtered_here():
        return (f"seccomp ({machine}): keyrings, memfd, io_uring, userfaultfd, bpf, perf_event_open denied; "
                "sockets only of the unix, inet and inet6 families; other syscall ABIs killed")
    return f"none: no syscall table for {machine} (namespaces, rlimits and the fresh uid still apply)"


def memory_bound() -> str:
    """One line: what bounds a run's memory on this machine."""
    found = _memory_cgroup()
    if found is not None:
        return f"a memory cgroup per run (cgroup {found[0]})"
    if not _filtered_here():
        return "RLIMIT_AS per process; SysV shm capped by the IPC namespace (as root); memfd not denied (no syscall filter)"
    if os.geteuid() != 0:  # no root in the run's user namespace to own its IPC limits: the filter denies SysV IPC instead
        return "RLIMIT_AS per process; memfd and SysV shm denied"
    return "RLIMIT_AS per process; memfd denied; SysV shm capped by the IPC namespace"


def memory_cgroup_parent() -> str | None:
    """The cgroup folder this process makes its runs' memory cgroups in, or None where it cannot."""
    found = _memory_cgroup()
    return None if found is None else found[1]


_cgroup_lock = threading.Lock()
_cgroup: list[tuple[str, str] | None] = []


def _memory_cgroup() -> tuple[str, str] | None:
    """("v1" | "v2", folder) where this process may make a memory cgroup per run; detected once."""
    with _cgroup_lock:
        if not _cgroup:
            _cgroup.append(_find_memory_cgroup())
        return _cgroup[0]


def _find_memory_cgroup() -> tuple[str, str] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    v2 = v1 = None
    for line in memberships:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    candidates = []
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, fs = left.split(), right.split()
        if len(fields) < 5 or len(fs) < 3:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if fs[0] == "cgroup2" and v2 is not None and (own := _cgroup_folder(point, root, v2)):
            # v2: children need "memory" in their parent's subtree_control; a cgroup holding processes
            # (ours) cannot enable it unless it is the root, so the parent is the usual place
            candidates += [("v2", own), ("v2", os.path.dirname(own))] if own != point else [("v2", own)]
        elif fs[0] == "cgroup" and v1 is not None and "memory" in fs[2].split(",") and (own := _cgroup_folder(point, root, v1)):
            candidates.append(("v1", own))
    for version, folder in candidates:
        if version == "v2":
            try:
                if "memory" not in Path(folder, "cgroup.subtree_control").read_text().split():
                    continue
            except OSError:
                continue
        if _can_make_cgroups(version, folder):
            _remove_stale_cgroups(folder)
            return version, folder
    return None


def _cgroup_folder(mount_point: str, mount_root: str, path: str) -> str | None:
    """Where cgroup `path` (as /proc/self/cgroup names it) is under a mount of the hierarchy."""
    if mount_root == "/":
        return os.path.normpath(mount_point + path)
    if path == mount_root or path.startswith(mount_root + "/"):
        return os.path.normpath(mount_point + path[len(mount_root):])
    return None


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _can_make_cgroups(version: str, folder: str) -> bool:
    """Make a probe cgroup with a memory limit in `folder`, have a child process join it as a run's
    outer process will, and remove it."""
    probe = os.path.join(folder, f"{CGROUP_PREFIX}{os.getpid()}-probe-{os.urandom(4).hex()}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    try:
        _set_memory_limit(version, probe, 1 << 30)
        join = [sys.executable, "-I", "-S", "-c", "import sys\nwith open(sys.argv[1], 'w') as f: f.write('0')", _join_file(probe)]
        return subprocess.run(join, capture_output=True, timeout=30, cwd="/", check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _remove_cgroup(probe)


def _set_memory_limit(version: str, folder: str, limit: int) -> None:
    """Memory and swap together at most `limit` bytes (v1: memory+swap needs the memory limit first)."""
    if version == "v2":
        files = [("memory.max", str(limit)), ("memory.swap.max", "0")]
    else:
        files = [("memory.limit_in_bytes", str(limit)), ("memory.memsw.limit_in_bytes", str(limit))]
    for name, value in files:
        path = os.path.join(folder, name)
        if name in ("memory.swap.max", "memory.memsw.limit_in_bytes") and not os.path.exists(path):
            continue  # no swap accounting here (no swap, or it is off): the memory limit is all of it
        with open(path, "w") as f:
            f.write(value)


def _make_run_cgroup(memory_mb: int) -> str | None:
    """A fresh memory cgroup for one run, limited to `memory_mb`; None where none can be made here."""
    found = _memory_cgroup()
    if found is None:
        return None
    version, parent = found
    path = os.path.join(parent, f"{CGROUP_PREFIX}{os.getpid()}-{os.urandom(8).hex()}")
    try:
        os.mkdir(path)
        try:
            _set_memory_limit(version, path, memory_mb << 20)
        except OSError:
            _remove_cgroup(path)
            raise
    except OSError as e:
        raise SandboxError(f"cannot make the run's memory cgroup in {parent} ({e.strerror}); "
                           f"this machine made one before (cgroup {version}): is it out of cgroups or memory?") from e
    return path


def _join_file(cgroup: str) -> str:
    """Where a process writes "0" to join `cgroup`: v1's ``tasks`` moves the writing thread without
    the kernel's global lock (the outer process has one thread); v2 has ``cgroup.procs`` only."""
    tasks = os.path.join(cgroup, "tasks")
    return tasks if os.path.exists(tasks) else os.path.join(cgroup, "cgroup.procs")


def _remove_cgroup(path: str, wait_s: float = 5.0) -> None:
    """Remove a run's cgroup; whatever still lives in it (it should be nothing) is killed first."""
    deadline, delay = time.monotonic() + wait_s, 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                return  # left for _remove_stale_cgroups of a later harness
        _kill_cgroup(path)
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


def _kill_cgroup(path: str) -> None:
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:  # cgroup v2, Linux 5.14+
            f.write("1")
        return
    except OSError:
        pass
    try:
        pids = [int(p) for p in Path(path, "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _remove_stale_cgroups(parent: str) -> None:
    """Empty run cgroups of harnesses that died before removing them (one try each: a live run's is never touched)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(CGROUP_PREFIX):
            continue
        try:
            os.kill(int(name[len(CGROUP_PREFIX):].split("-")[0]), 0)
            continue  # its harness lives
        except ProcessLookupError:
            pass
        except (ValueError, OSError):
            continue
        try:
            os.rmdir(os.path.join(parent, name))
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# one run


def _run(program: str, stdin: str, limits: Limits, files: dict[str, str], interpreter: str | None,
         hide: tuple[str, ...], partner: str | None) -> Result:
    for name in files:
        parts = Path(name).parts
        if not name or os.path.isabs(name) or ".." in parts or parts == (PROGRAM_NAME,):
            raise ValueError(f"sandbox file name {name!r}: use a relative path without '..', other than {PROGRAM_NAME}")
    root = os.geteuid() == 0
    interpreter, keep = _interpreter(interpreter)
    uids = [_allocate_uid() for _ in range(2 if partner else 1)] if root else [os.getuid()] * 2
    cgroup = None
    try:
        cgroup = _make_run_cgroup(limits.memory_mb)
        spec = {
            "mode": "root" if root else "userns", "uid": uids[0], "partner_uid": uids[-1], "harness_pid": os.getpid(),
            "program": program, "partner": partner, "files": dict(files), "limits": asdict(limits),
            "interpreter": interpreter, "keep": list(keep), "hide": _hidden_paths(hide),
            "cgroup_join": cgroup and _join_file(cgroup),  # the outer process joins the run's memory cgroup first
        }
        return _supervise(spec, stdin, limits, root, set(uids))
    finally:
        if cgroup is not None:
            _remove_cgroup(cgroup)  # the run is over (its processes killed, if it came to that)
        if root:
            for uid in uids:
                _release_uid(uid)


def _supervise(spec: dict, stdin: str, limits: Limits, root: bool, uids: set[int]) -> Result:
    """Start the sandbox, feed stdin, collect capped output, enforce the wall clock, clean up."""
    spec_fd = os.memfd_create("ded-sandbox-spec", os.MFD_CLOEXEC)  # never a file on disk
    os.write(spec_fd, marshal.dumps(spec))
    os.lseek(spec_fd, 0, os.SEEK_SET)
    status_r, status_w = os.pipe()
    t0 = time.monotonic()
    deadline = t0 + limits.wall_s
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(INIT), str(spec_fd), str(status_w)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(spec_fd, status_w),
            start_new_session=True, cwd="/", env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    except OSError as e:
        os.close(status_r)
        raise SandboxError(f"cannot start the sandbox ({e}); is the machine out of processes or memory?") from e
    finally:
        os.close(spec_fd)
        os.close(status_w)
    stopped = None  # "timeout" | "output_limit" when the harness ends the run
    try:
        out, err, stopped = _communicate(proc, stdin.encode("utf-8", "surrogatepass"), limits.output_bytes, deadline)
        if stopped is None:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()) + STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                stopped = "timeout"
    finally:
        if proc.returncode is None:
            _stop(proc)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
        status_lines = _read_all(status_r)
        if root and "done" not in status_lines:
            for uid in uids:
                _sweep(uid)  # the outer process did not get to it
    wall = time.monotonic() - t0
    return _result(status_lines, stopped, out, err, wall, limits, proc.returncode)


def _communicate(proc: subprocess.Popen, data: bytes, cap: int, deadline: float) -> tuple[bytes, bytes, str | None]:
    """Write stdin, read stdout/stderr until both close; stop at the deadline or past `cap` bytes."""
    out_fd, err_fd, in_fd = proc.stdout.fileno(), proc.stderr.fileno(), proc.stdin.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    total = 0
    stopped = None
    view = memoryview(data)
    with selectors.DefaultSelector() as sel:
        for f in (proc.stdout, proc.stderr):
            os.set_blocking(f.fileno(), False)
            sel.register(f.fileno(), selectors.EVENT_READ)
        if view:
            os.set_blocking(in_fd, False)
            sel.register(in_fd, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        readers = 2
        while readers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = "timeout"
                break
            for key, _ in sel.select(remaining):
                fd = key.fd
                if fd == in_fd:
                    try:
                        view = view[os.write(fd, view[:CHUNK]):]
                    except BlockingIOError:
                        continue
                    except OSError:  # the program closed stdin or ended: the rest is not wanted
                        view = view[:0]
                    if not view:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                try:
                    chunk = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    readers -= 1
                    continue
                if total + len(chunk) > cap:
                    chunks[fd].append(chunk[:cap - total])
                    total = cap
                    stopped = "output_limit"
                    break
                chunks[fd].append(chunk)
                total += len(chunk)
            if stopped:
                break
    for f in (proc.stdin, proc.stdout, proc.stderr):
        f.close()  # a program still writing now gets EPIPE, before it is stopped
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), stopped


def _stop(proc: subprocess.Popen) -> None:
    """End a run: the outer process kills the namespace and sweeps; SIGKILL for the group if it does not."""
    try:
        proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=STOP_GRACE_S)
        return
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _sweep(uid: int) -> None:
    """Kill every process of `uid` (a helper process becomes that uid and kills all it may)."""
    subprocess.run([sys.executable, "-I", "-S", str(INIT), "--sweep", str(uid)], timeout=30, check=False)


def _read_all(fd: int) -> list[str]:
    """The status lines; every writer is gone (or killed), so this never blocks for long."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").splitlines()


def _result(status_lines: list[str], stopped: str | None, out: bytes, err: bytes, wall: float, limits: Limits,
            outer_rc: int | None) -> Result:
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    started = "started" in status_lines
    errors = [line[len("error "):] for line in status_lines if line.startswith("error ")]
    if errors and not stopped and not started:  # the sandbox itself: nothing the program did
        raise SandboxError(f"the code sandbox could not be set up: {errors[0]}")
    if errors and not stopped:  # after the program started: that program's failure, never the batch's
        return Result("error", None, stdout, f"{stderr}ded.sandbox: {errors[0]}\n", wall)
    if stopped:
        return Result(stopped, None, stdout, stderr, wall)
    refused = [line[len("refused "):] for line in status_lines if line.startswith("refused ")]
    if refused:
        return Result("error", None, stdout, f"ded.sandbox: {refused[0]}\n", wall)
    ends = [line.split() for line in status_lines if line.startswith(("exit ", "signal "))]
    if not ends:  # the sandbox's own processes were killed (say by the OOM killer): a failure all the same
        return Result("signal", outer_rc, stdout, stderr, wall)
    kind, number, cpu = ends[0][0], int(ends[0][1]), float(ends[0][2])
    if kind == "exit":
        if number == 0:
            return Result("ok", 0, stdout, stderr, wall)
        return Result("memory" if _memory_error(stderr) else "error", number, stdout, stderr, wall)
    cpu_out = number == signal.SIGXCPU or (number == signal.SIGKILL and cpu >= limits.cpu_s)
    return Result("timeout" if cpu_out else "signal", -number, stdout, stderr, wall)


def _memory_error(stderr: str) -> bool:
    lines = stderr.strip().splitlines()
    return bool(lines) and lines[-1].startswith("MemoryError")
