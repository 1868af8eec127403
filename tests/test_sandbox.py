"""ded.sandbox against hostile programs: real processes, real namespaces, no mocks.

Every hostile test asserts that the harness gets a failed Result (not an exception), quickly,
and that the host is untouched. The module is skipped, with the reason, where the sandbox
cannot be built (ded.sandbox.check_isolation). The last test checks what the whole module left.
"""

import hashlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import zombie_children
from ded import sandbox
from ded.sandbox import Limits, Result, run, run_many

REPO = Path(__file__).resolve().parents[1]
# How the repository looks from inside a sandbox: an empty, read-only directory; or, when it lives
# under /tmp (which the sandbox replaces with a tmpfs of its own), not there at all.
HIDDEN_REPO = "False" if REPO.parts[1:2] == ("tmp",) else "[]"

_reason = sandbox.check_isolation()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"no sandbox here: {_reason}")

PWNED = ["/etc/ded_pwned", "/tmp/ded_pwned", "/var/tmp/ded_pwned", "/dev/shm/ded_pwned", "/usr/ded_pwned", "/ded_pwned"]


def sandbox_processes() -> list[tuple[int, int]]:
    """(pid, uid) of every host process whose real uid is a sandbox uid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path("/proc", entry, "status").read_text()
        except OSError:
            continue  # gone meanwhile
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SPAN:
            found.append((int(entry), uid))
    return found


def rss_kb() -> int:
    return int(next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:")).split()[1])


def tracked_files() -> list[Path]:
    """The repository's tracked files; without git (a copied tree), its source folders' files."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        return [REPO / os.fsdecode(name) for name in out.split(b"\0") if name]
    except (OSError, subprocess.CalledProcessError):
        dirs = ("ded", "tests", "conf", "benchmarks", "recipes", "experiments", "docs", "analysis")
        files = [p for d in dirs for p in sorted((REPO / d).rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
        return files + sorted(p for p in REPO.iterdir() if p.is_file())


def tracked_hash() -> str:
    """A hash over the repository's tracked files: names and contents."""
    h = hashlib.sha256()
    for path in tracked_files():
        h.update(str(path).encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()


@pytest.fixture(scope="module", autouse=True)
def host_before():
    """What the host looked like before this module's hostile programs ran."""
    return {"tracked": tracked_hash(), "pwned": {p: os.path.lexists(p) for p in PWNED}}


# ---------------------------------------------------------------------------------------------
# ordinary programs


def test_ok_program_reads_stdin_and_runs_unprivileged_in_a_private_directory():
    program = textwrap.dedent("""
        import os, helper
        print(input()[::-1])
        print(os.getuid(), os.getcwd(), sorted(os.listdir(".")))
        print(helper.VALUE, open("data/x.txt").read())
        try:
            os.setuid(0)
            print("became root")
        except PermissionError:
            print("stays unprivileged")
    """)
    r = run(program, stdin="abc\n", files={"helper.py": "VALUE = 41 + 1\n", "data/x.txt": "payload"})
    assert isinstance(r, Result) and r.status == "ok" and r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == "cba"
    uid, cwd, listing = lines[1].split(" ", 2)
    assert int(uid) != 0 and cwd == "/tmp/work" and listing == "['data', 'helper.py', 'main.py']"
    assert lines[2] == "42 payload" and lines[3] == "stays unprivileged"
    assert r.wall_s < 5


def test_nonzero_exit_is_error():
    r = run("import sys\nprint('partial')\nsys.exit(3)")
    assert (r.status, r.returncode, r.stdout) == ("error", 3, "partial\n")


def test_syntax_error_is_error_with_traceback():
    r = run("def broken(:\n    pass\n")
    assert r.status == "error" and r.returncode == 1
    assert "SyntaxError" in r.stderr and "main.py" in r.stderr


def test_big_stdin_is_fed_completely():
    data = "x" * (3 << 20) + "\n"  # larger than any pipe buffer
    r = run("import sys\nprint(len(sys.stdin.read()))", stdin=data, limits=Limits(output_bytes=1 << 22))
    assert r.status == "ok" and r.stdout.strip() == str(len(data))


def test_unread_stdin_does_not_hang():
    r = run("print('done')", stdin="y" * (4 << 20))
    assert r.status == "ok" and r.stdout == "done\n" and r.wall_s < 5


def test_program_bigger_than_the_disk_is_a_failed_run():
    r = run("print(1)\n" + "#" * (3 << 20), limits=Limits(disk_mb=2))
    assert r.status == "error" and "No space left" in r.stderr, r


def test_interpreter_inside_a_hidden_path_stays_usable_and_the_rest_stays_hidden():
    """A Python that lives in the repository (a venv there, say): only its branch stays visible."""
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs /usr/bin/python3")
    home = REPO / f".ded_sandbox_python_{secrets.token_hex(4)}"
    secret = secrets.token_hex(16)
    try:
        (home / "bin").mkdir(parents=True)
        home.chmod(0o755)
        (home / "bin" / "python3").symlink_to("/usr/bin/python3")
        (home / "secret.txt").write_text(secret)
        program = textwrap.dedent(f"""
            import os
            print(os.path.exists({str(home / "bin" / "python3")!r}), os.path.isdir({str(REPO / "ded")!r}) and os.listdir({str(REPO / "ded")!r}))
            for path in {[str(home / "secret.txt"), str(REPO / "pyproject.toml")]!r}:
                try:
                    print(path, open(path).read()[:100])
                except OSError as e:  # not there at all (a repository under /tmp)
                    print(path, "unreadable", type(e).__name__)
        """)
        r = run(program, interpreter=str(home / "bin" / "python3"))
        assert r.status == "ok", r
        assert r.stdout.splitlines()[0] == f"True {HIDDEN_REPO}"
        assert secret not in r.stdout and "[project]" not in r.stdout
    finally:
        shutil.rmtree(home)


def test_bad_arguments_are_the_callers_errors():
    with pytest.raises(ValueError, match="wall_s"):
        Limits(wall_s=0)
    for name in ("../escape.py", "/etc/passwd", "main.py"):
        with pytest.raises(ValueError, match="sandbox file name"):
            run("pass", files={name: ""})


# ---------------------------------------------------------------------------------------------
# hostile programs


def test_infinite_loop_times_out_on_the_wall_clock():
    t0 = time.monotonic()
    r = run("while True: pass", limits=Limits(wall_s=2, cpu_s=30))
    assert r.status == "timeout" and r.returncode is None
    assert 1.9 < time.monotonic() - t0 < 2 + sandbox.STOP_GRACE_S + 1


def test_cpu_limit_stops_a_busy_program_before_the_wall_clock():
    r = run("while True: pass", limits=Limits(wall_s=30, cpu_s=1))
    assert r.status == "timeout" and r.returncode is not None and r.wall_s < 15, r  # not the wall clock


def test_sleeping_program_times_out():
    r = run("import time\ntime.sleep(60)", limits=Limits(wall_s=1))
    assert r.status == "timeout" and r.wall_s < 1 + sandbox.STOP_GRACE_S + 1


def test_fork_bomb_is_contained(host_before):
    t0 = time.monotonic()
    r = run("import os\nwhile True:\n    os.fork()", limits=Limits(nproc=8, wall_s=3))
    assert r.status != "ok", r
    assert time.monotonic() - t0 < 3 + sandbox.STOP_GRACE_S + 2
    assert sandbox_processes() == []
    assert subprocess.run(["true"]).returncode == 0  # the harness can still start processes


def test_fork_bomb_that_keeps_going_is_killed_at_the_wall_clock():
    program = textwrap.dedent("""
        import os, time
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)  # at the process limit: wait for room instead of dying
    """)
    r = run(program, limits=Limits(nproc=8, wall_s=2))
    assert r.status == "timeout", r
    assert sandbox_processes() == []


def test_orphaned_daemon_dies_with_the_run():
    program = textwrap.dedent("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)  # a daemon the program leaves behind
            os._exit(0)
        print("main done")
    """)
    r = run(program, limits=Limits(wall_s=10))
    assert r.status == "ok" and r.stdout == "main done\n" and r.wall_s < 5, r
    assert sandbox_processes() == []


def test_huge_allocation_fails_without_touching_the_harness():
    before = rss_kb()
    r = run("b = bytearray(50 * 2**30)")
    assert r.status == "memory" and "MemoryError" in r.stderr, r
    assert rss_kb() - before < 50_000


def test_memory_limit_binds_gradual_growth():
    program = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    r = run(program, limits=Limits(memory_mb=256, wall_s=10))
    assert r.status == "memory" and r.wall_s < 8, r


def test_writes_outside_the_sandbox_do_not_reach_the_host(tmp_path, host_before):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    canary = REPO / f".ded_sandbox_canary_{secrets.token_hex(4)}"
    canary.write_text("original")
    try:
        program = textwrap.dedent(f"""
            import os
            for target in {[str(victim), str(canary)]!r}:
                for action in ("overwrite", "delete"):
                    try:
                        open(target, "w").write("pwned") if action == "overwrite" else os.remove(target)
                        print("DID", action, target)
                    except OSError as e:
                        print("FAILED", action, target, type(e).__name__)
            for target in {PWNED!r}:
                try:
                    open(target, "w").write("pwned")
                    print("CREATED", target)
                except OSError as e:
                    print("FAILED create", target, type(e).__name__)
        """)
        r = run(program)
        assert r.status == "ok", r
        assert f"DID overwrite {canary}" not in r.stdout and f"DID delete {canary}" not in r.stdout
        assert victim.read_text() == "original" and canary.read_text() == "original"
        for path in PWNED:
            assert os.path.lexists(path) == host_before["pwned"][path], path
        assert "FAILED create /etc/ded_pwned" in r.stdout  # the rest of the file system is read-only
    finally:
        canary.unlink()


def test_deleting_the_repository_and_test_files_changes_nothing(tmp_path, host_before):
    keep = tmp_path / "keep.txt"
    keep.write_text("still here")
    names = [str(p) for p in tracked_files()[:50]]
    program = textwrap.dedent(f"""
        import os, shutil, sys
        for top in {[str(REPO), str(tmp_path), str(tmp_path.parent), os.path.expanduser("~")]!r}:
            shutil.rmtree(top, ignore_errors=True)
            print("rmtree", top, os.path.exists(top) and os.listdir(top))
        removed = 0
        for name in {names!r}:
            try:
                os.remove(name)
                removed += 1
            except OSError:
                pass
        print("removed", removed)
    """)
    r = run(program)
    assert r.status == "ok" and "removed 0" in r.stdout, r
    assert f"rmtree {REPO} {HIDDEN_REPO}" in r.stdout  # the repository is an empty, read-only directory in there (or absent)
    assert keep.read_text() == "still here"
    assert tracked_hash() == host_before["tracked"]


def _loopback_listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    return listener


def _accepted_nothing(listener: socket.socket) -> bool:
    readable, _, _ = select.select([listener], [], [], 0.5)
    if readable:
        try:
            listener.accept()
            return False
        except BlockingIOError:
            pass
    return True


NETWORK_PROGRAM = textwrap.dedent("""
    import socket
    port = int(input())
    for family, address in ((socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET6, ("::1", port))):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect(address)
            s.sendall(b"pwned")
            print("CONNECTED", address)
        except OSError as e:
            print("BLOCKED", address, type(e).__name__, e)
    try:
        socket.getaddrinfo("example.com", 80)
        print("RESOLVED")
    except OSError as e:
        print("NO DNS", type(e).__name__)
""")


def test_no_network_not_even_loopback():
    listener = _loopback_listener()
    try:
        port = listener.getsockname()[1]
        r = run(NETWORK_PROGRAM, stdin=f"{port}\n")
        assert r.status == "ok", r
        assert "CONNECTED" not in r.stdout and "RESOLVED" not in r.stdout
        assert r.stdout.count("BLOCKED") == 2 and "unreachable" in r.stdout.lower(), r.stdout
        assert _accepted_nothing(listener)
    finally:
        listener.close()


SECRETS_PROGRAM = textwrap.dedent("""
    import glob, os
    harness = int(input())
    print("ENV", dict(os.environ))
    paths = ["/proc/1/environ", f"/proc/{harness}/environ", "/proc/self/environ", f"/proc/{harness}/cmdline"]
    for path in paths + glob.glob("/proc/*/environ"):
        try:
            print(path, open(path, "rb").read())
        except OSError as e:
            print(path, "unreadable", type(e).__name__)
""")


def test_environment_secrets_do_not_reach_the_program(monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("DED_TEST_SECRET", secret)
    r = run(SECRETS_PROGRAM, stdin=f"{os.getpid()}\n")
    assert r.status == "ok", r
    assert "ENV" in r.stdout and "DED_TEST_SECRET" not in r.stdout
    assert secret not in r.stdout and secret not in r.stderr


def test_printing_a_gigabyte_is_cut_off_fast():
    before = rss_kb()
    limits = Limits(wall_s=30, output_bytes=1 << 20)
    r = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=limits)
    assert r.status == "output_limit" and r.returncode is None
    assert len(r.stdout.encode()) + len(r.stderr.encode()) <= limits.output_bytes
    assert r.wall_s < 5
    assert rss_kb() - before < 50_000
    assert sandbox_processes() == []


def test_stderr_counts_towards_the_output_cap():
    r = run("import sys\nwhile True:\n    sys.stderr.write('e' * 4096)", limits=Limits(output_bytes=10_000))
    assert r.status == "output_limit" and len(r.stderr) <= 10_000


def test_filling_the_disk_fails():
    program = "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(bytes(1 << 20))"
    r = run(program, limits=Limits(disk_mb=16))
    assert r.status == "error" and ("No space left" in r.stderr or "File too large" in r.stderr), r


def test_killing_everything_it_can_reach_leaves_the_harness_alone():
    program = "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept ProcessLookupError:\n    pass\nprint('still here')"
    r = run(program)
    assert r.status == "ok" and r.stdout == "still here\n", r  # nothing else of its uid exists to kill
    assert subprocess.run(["true"]).returncode == 0


# ---------------------------------------------------------------------------------------------
# many runs


def test_run_many_keeps_order_and_runs_in_parallel():
    jobs = [("import time\ntime.sleep(1.0)\nprint(input())", "first\n"),
            ("import time\ntime.sleep(0.8)\nprint(input())", "second\n")]  # the second ends first
    t0 = time.monotonic()
    results = run_many(jobs, workers=2)
    elapsed = time.monotonic() - t0
    assert [r.stdout for r in results] == ["first\n", "second\n"]
    assert all(r.status == "ok" for r in results)
    assert elapsed < 1.7, elapsed  # one after the other would take 1.8 s and more


def test_run_many_mixes_outcomes():
    jobs = [("print(1)", ""), ("raise SystemExit(2)", ""), ("while True: pass", ""), ("print(input())", "x\n")]
    results = run_many(jobs, Limits(wall_s=2), workers=2, progress=True)
    assert [r.status for r in results] == ["ok", "error", "timeout", "ok"]


# ---------------------------------------------------------------------------------------------
# the kernel's surface: a syscall filter, memory for the whole run, signals to PID 1, /tmp

# The syscall numbers the hostile programs call through ctypes (syscall(2)), per machine.
SYSCALL_NUMBERS = {
    "x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250, "memfd_secret": 447, "io_uring_setup": 425,
               "userfaultfd": 323, "bpf": 321, "perf_event_open": 298, "socketpair": 53},
    "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219, "memfd_secret": 447, "io_uring_setup": 425,
                "userfaultfd": 282, "bpf": 280, "perf_event_open": 241, "socketpair": 199},
}
needs_filter = pytest.mark.skipif(os.uname().machine not in SYSCALL_NUMBERS,
                                  reason=f"no syscall filter on {os.uname().machine}: {sandbox.syscall_filter()}")

DENIED_PROGRAM = textwrap.dedent("""
    import ctypes, errno, json, os, socket
    NR = json.loads(input())
    libc = ctypes.CDLL(None, use_errno=True)

    def call(name, *args):
        ctypes.set_errno(0)
        ret = libc.syscall(ctypes.c_long(NR[name]), *args)
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())) if ret == -1 else "OK"

    attr = ctypes.create_string_buffer(128)  # perf_event_attr, bpf_attr, io_uring_params: zeros
    out = {
        "uid": os.getuid(),
        "add_key": call("add_key", b"user", b"ded-probe", b"secret", ctypes.c_size_t(6), ctypes.c_int(-4)),  # to the user keyring
        "keyctl": call("keyctl", ctypes.c_int(1), b"ded-probe"),  # KEYCTL_JOIN_SESSION_KEYRING: a new named keyring
        "request_key": call("request_key", b"user", b"ded-probe", None, ctypes.c_int(0)),
        "memfd_secret": call("memfd_secret", ctypes.c_uint(0)),
        "io_uring_setup": call("io_uring_setup", ctypes.c_uint(4), attr),
        "userfaultfd": call("userfaultfd", ctypes.c_int(1)),  # UFFD_USER_MODE_ONLY: allowed unprivileged
        "bpf": call("bpf", ctypes.c_int(0), attr, ctypes.c_uint(128)),
        "perf_event_open": call("perf_event_open", attr, ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(-1), ctypes.c_ulong(0)),
        "socketpair_packet": call("socketpair", ctypes.c_int(17), ctypes.c_int(3), ctypes.c_int(0), (ctypes.c_int * 2)()),
    }
    try:
        os.memfd_create("ded-probe")
        out["memfd_create"] = "OK"
    except OSError as e:
        out["memfd_create"] = errno.errorcode.get(e.errno, str(e.errno))
    families = {"vsock": (40, socket.SOCK_STREAM), "packet": (17, socket.SOCK_RAW), "netlink": (16, socket.SOCK_RAW),
                "alg": (38, socket.SOCK_SEQPACKET), "pfkey": (15, socket.SOCK_RAW), "bluetooth": (31, socket.SOCK_STREAM)}
    for name, (family, kind) in families.items():
        try:
            socket.socket(family, kind).close()
            out[name] = "OK"
        except OSError as e:
            out[name] = errno.errorcode.get(e.errno, str(e.errno))
    print(json.dumps(out))
""")


def key_users() -> set[int]:
    """The uids the kernel holds keys for (/proc/key-users)."""
    try:
        lines = Path("/proc/key-users").read_text().splitlines()
    except OSError:
        return set()
    return {int(line.split(":")[0]) for line in lines if line.strip()}


def purge_keys(uid: int) -> None:
    """Invalidate `uid`'s persistent keyrings (a failing run of the test below leaves none behind)."""
    # By serial number: looking either keyring up by its special id would create the other anew.
    keyctl = SYSCALL_NUMBERS.get(os.uname().machine, {}).get("keyctl", -1)
    code = ("import ctypes, os, sys; libc = ctypes.CDLL(None); uid = int(sys.argv[1]); os.setresuid(uid, uid, 0)\n"
            f"keyctl = ctypes.c_long({keyctl})\n"
            "serials = [libc.syscall(keyctl, 0, keyring, 0) for keyring in (-4, -5)]  # KEYCTL_GET_KEYRING_ID: user, user session\n"
            "for serial in serials: libc.syscall(keyctl, 21, serial)  # KEYCTL_INVALIDATE\n")
    subprocess.run([sys.executable, "-I", "-S", "-c", code, str(uid)], check=False, timeout=30)


@needs_filter
def test_keys_memfd_exotic_sockets_and_kernel_attack_surface_are_denied():
    """The syscall filter: keyrings (keys charged to the run's uid outlive it), memfds (memory
    outside RLIMIT_AS), sockets of any family but unix/inet/inet6 (vsock reaches the hypervisor),
    io_uring, userfaultfd, bpf, perf_event_open; and no key of the run's uid is left in the kernel."""
    r = run(DENIED_PROGRAM, stdin=json.dumps(SYSCALL_NUMBERS[os.uname().machine]) + "\n")
    assert r.status == "ok", r
    out = json.loads(r.stdout)
    try:
        denied = ("add_key", "keyctl", "request_key", "memfd_create", "memfd_secret", "io_uring_setup", "userfaultfd", "bpf",
                  "perf_event_open")
        assert {name: out[name] for name in denied} == {name: "EPERM" for name in denied}, out
        families = ("vsock", "packet", "netlink", "alg", "pfkey", "bluetooth", "socketpair_packet")
        assert {name: out[name] for name in families} == {name: "EAFNOSUPPORT" for name in families}, out
        time.sleep(0.2)  # the key garbage collector runs asynchronously
        assert out["uid"] not in key_users(), Path("/proc/key-users").read_text()
    finally:
        if os.geteuid() == 0 and out["uid"] != 0:
            purge_keys(out["uid"])


def run_bpf(code: list[tuple[int, int, int, int]], arch: int, nr: int, arg0: int = 0) -> int:
    """What a classic BPF seccomp program returns for one call (the four instructions it uses)."""
    data = {0: nr, 4: arch, 16: arg0}
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        if op == 0x20:  # load a word of seccomp_data
            acc = data[k]
        elif op in (0x15, 0x35):  # jeq, jge
            pc += jt if (acc == k if op == 0x15 else acc >= k) else jf
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected instruction {op:#x}")
        pc += 1


def test_the_filter_of_every_machine_it_knows():
    """Both tables, run through the BPF program (not only this machine's); the harness names the same machines."""
    from ded import sandbox_init as si

    assert set(sandbox.FILTERED_MACHINES) == set(si.SYSCALL_NUMBERS) == set(si.AUDIT_ARCH)
    kill, allow, errno_ = 0x80000000, 0x7FFF0000, 0x00050000
    for machine, numbers in si.SYSCALL_NUMBERS.items():
        code, arch = si.seccomp_filter(machine), si.AUDIT_ARCH[machine]
        for name in si.DENIED_SYSCALLS:
            assert run_bpf(code, arch, numbers[name]) == errno_ | 1, (machine, name)  # EPERM
        for name in ("socket", "socketpair"):
            for family in (1, 2, 10):
                assert run_bpf(code, arch, numbers[name], family) == allow
            for family in (16, 17, 38, 40, 0, 1 << 20):
                assert run_bpf(code, arch, numbers[name], family) == errno_ | 97, (machine, name, family)  # EAFNOSUPPORT
        for nr in (0, 1, 39, 56, 57, 59, 60, 231, numbers["shmget"], numbers["msgget"]):  # read, write, getpid, clone, ...
            assert run_bpf(code, arch, nr) == allow, (machine, nr)
        assert run_bpf(code, 0x40000003, 20) == kill  # i386 (int 0x80)
        shm = si.seccomp_filter(machine, si.UNCAPPED_IPC)
        assert run_bpf(shm, arch, numbers["shmget"]) == run_bpf(shm, arch, numbers["msgget"]) == errno_ | 1
    assert run_bpf(si.seccomp_filter("x86_64"), si.AUDIT_ARCH["x86_64"], 0x40000000 | 39) == errno_ | 38  # x32: ENOSYS
    assert "seccomp" in sandbox.syscall_filter() or os.uname().machine not in si.SYSCALL_NUMBERS


FOREIGN_ABI_PROGRAM = textwrap.dedent("""
    import ctypes, errno, mmap
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.syscall(ctypes.c_long(0x40000000 | 39))  # getpid through the x32 ABI
    print("x32", ret, errno.errorcode.get(ctypes.get_errno()), flush=True)
    code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20 (getpid on i386); int 0x80; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    getpid32 = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    print("int 0x80 returned", getpid32(), flush=True)
""")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 only: 32-bit (int 0x80) and x32 system calls")
def test_foreign_syscall_abis_are_refused():
    """A 32-bit syscall (int 0x80) bypasses a filter keyed on x86_64 numbers: the process is killed;
    an x32 syscall gets ENOSYS."""
    r = run(FOREIGN_ABI_PROGRAM)
    assert "x32 -1 ENOSYS" in r.stdout, r
    assert "returned" not in r.stdout, r
    # SIGSYS from the filter; a kernel without 32-bit emulation faults the int 0x80 itself (SIGSEGV)
    assert r.status == "signal" and r.returncode in (-signal.SIGSYS, -signal.SIGSEGV), r


ORDINARY_PROGRAM = textwrap.dedent("""
    import asyncio, json, math, multiprocessing, socket, threading

    def square(x):
        return x * x

    async def later():
        await asyncio.sleep(0.01)
        return "async"

    if __name__ == "__main__":
        a, b = socket.socketpair()  # AF_UNIX
        a.sendall(b"ping")
        assert b.recv(4) == b"ping"
        for family, kind in ((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM), (socket.AF_UNIX, socket.SOCK_STREAM)):
            socket.socket(family, kind).close()
        with multiprocessing.Pool(2) as pool:
            squares = pool.map(square, range(10))
        found = []
        threads = [threading.Thread(target=lambda i=i: found.append(math.factorial(i))) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps({"squares": sum(squares), "threads": sorted(found), "async": asyncio.run(later()),
                          "json": json.loads("[1.5]"), "pi": round(math.pi, 3)}))
""")


def test_an_ordinary_program_with_sockets_processes_threads_and_asyncio_still_runs():
    r = run(ORDINARY_PROGRAM)
    assert r.status == "ok", r
    assert json.loads(r.stdout) == {"squares": 285, "threads": [1, 1, 2, 6], "async": "async", "json": [1.5], "pi": 3.142}


SHM_PROGRAM = textwrap.dedent("""
    import ctypes, os, time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    size, held = 48 << 20, 0
    for _ in range(8):  # 8 x 48 MB, each detached once touched: no process maps it, RLIMIT_AS does not see it
        shmid = libc.shmget(0, ctypes.c_size_t(size), 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
        if shmid < 0:
            print("shmget:", os.strerror(ctypes.get_errno()), flush=True)
            break
        address = libc.shmat(shmid, None, 0)
        ctypes.memset(address, 1, size)
        libc.shmdt(address)
        held += 48
        print("held", held, flush=True)
    time.sleep(1.5)
    print("kept", held)
""")

TMPFS_PROGRAM = textwrap.dedent("""
    import time
    held = 0
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):  # three tmpfs of disk_mb each
        for i in range(64):
            try:
                with open(f"{folder}/fill{i}", "wb") as f:
                    f.write(bytes(16 << 20))
                held += 16
            except OSError as e:
                print(folder, e.strerror, flush=True)
                break
            print("held", held, flush=True)
    time.sleep(1.5)
    print("kept", held)
""")


def shmem_kb() -> int:
    """The host's shared memory (tmpfs, SysV shm), all namespaces together."""
    return int(next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("Shmem:")).split()[1])


@pytest.mark.parametrize("program", [SHM_PROGRAM, TMPFS_PROGRAM], ids=["sysv_shm", "tmpfs_files"])
def test_memory_held_outside_any_process_is_bounded_by_memory_mb(program):
    """SysV segments and tmpfs files belong to no process (RLIMIT_AS misses them): the run as a
    whole cannot hold more than memory_mb. The host's Shmem is watched while the program holds it."""
    import threading

    limits = Limits(memory_mb=128, disk_mb=192, wall_s=20)
    before = peak = shmem_kb()
    results: list[Result] = []
    worker = threading.Thread(target=lambda: results.append(run(program, limits=limits)))
    worker.start()
    while worker.is_alive():
        peak = max(peak, shmem_kb())
        time.sleep(0.02)
    worker.join()
    r = results[0]
    held = [int(line.split()[1]) for line in r.stdout.splitlines() if line.startswith(("held", "kept"))]
    assert (peak - before) // 1024 < limits.memory_mb + 16, (peak - before, r)
    assert r.status != "ok" or max(held, default=0) <= limits.memory_mb, r
    for _ in range(100):  # all of it goes with the run (the kernel frees a dead IPC namespace shortly after)
        if shmem_kb() - before < 32 * 1024:
            break
        time.sleep(0.05)
    assert shmem_kb() - before < 32 * 1024


def test_an_honest_program_within_memory_mb_passes():
    program = "data = bytearray(100 << 20)\nfor i in range(0, len(data), 4096):\n    data[i] = 1\nprint(len(data) >> 20)"
    r = run(program, limits=Limits(memory_mb=256))
    assert r.status == "ok" and r.stdout == "100\n", r
    assert sandbox.memory_bound()  # one line saying what bounds memory here


SIGNALS_PROGRAM = textwrap.dedent("""
    import os, signal, time
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT):
        try:
            os.kill(1, sig)  # PID 1 of its namespace: the sandbox's reaper
        except OSError as e:
            print("kill", int(sig), type(e).__name__)
    time.sleep(0.3)
    print("still here")
""")


def test_signals_to_the_reaper_do_not_break_a_batch():
    jobs = [("print(1)", ""), (SIGNALS_PROGRAM, ""), ("print(input())", "x\n"), ("print(2)", "")]
    results = run_many(jobs, Limits(wall_s=10), workers=2)
    assert len(results) == 4 and [results[i].status for i in (0, 2, 3)] == ["ok"] * 3, results
    assert [results[i].stdout for i in (0, 2, 3)] == ["1\n", "x\n", "2\n"]
    assert results[1].status == "ok" and results[1].stdout.endswith("still here\n"), results[1]


def test_an_interpreter_under_tmp_stays_usable_and_the_repository_stays_hidden():
    """A virtualenv in /tmp (which the sandbox replaces with its own tmpfs) is bound back, read-only."""
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("needs /usr/bin/python3")
    venv = Path(f"/tmp/ded-venv-{secrets.token_hex(4)}")
    try:
        made = subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"cannot make a venv with /usr/bin/python3: {made.stderr.strip()[-200:]}")
        (venv / "secret.txt").write_text("not for you")
        program = textwrap.dedent(f"""
            import os, sys
            print(6 * 7)
            print(sys.prefix)
            print(os.path.isdir({str(REPO)!r}) and os.listdir({str(REPO)!r}))
            try:
                open({str(venv / "pwned")!r}, "w")
                print("wrote into the venv")
            except OSError as e:
                print("read-only", type(e).__name__)
        """)
        r = run(program, interpreter=str(venv / "bin" / "python"))
        assert r.status == "ok", r
        assert r.stdout.splitlines()[:3] == ["42", str(venv), HIDDEN_REPO], r
        assert "read-only" in r.stdout and not (venv / "pwned").exists()
    finally:
        shutil.rmtree(venv, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# without root: an unprivileged user namespace


FALLBACK_SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    sys.path.insert(0, sys.argv[1])
    from ded import sandbox
    reason = sandbox.check_isolation()
    if reason:
        print(json.dumps({"skip": reason}))
        raise SystemExit(0)
    program, stdin = json.loads(sys.stdin.read())
    fork_bomb = "import os\\nwhile True:\\n    os.fork()"
    results = [sandbox.run(program, stdin), sandbox.run(fork_bomb, limits=sandbox.Limits(nproc=8, wall_s=3)),
               sandbox.run("while True: pass", limits=sandbox.Limits(wall_s=1)), sandbox.run(sys.argv[2]),
               sandbox.run(sys.argv[3], limits=sandbox.Limits(memory_mb=128, disk_mb=192, wall_s=20))]
    print(json.dumps([dataclasses.asdict(r) for r in results]))
""")


def test_unprivileged_fallback_is_sealed_too():
    """The non-root path, as user nobody: same mounts, no network, no secrets, limits bind; the
    program runs as the reaper's uid there, so it can signal PID 1: the reaper ignores it."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("needs root (to become nobody), setpriv and /usr/bin/python3")
    listener = _loopback_listener()
    secret = secrets.token_hex(16)
    program = textwrap.dedent("""
        import os
        print("UID", os.getuid(), "REPO", os.path.isdir(%r) and os.listdir(%r))
        open("/tmp/ded_pwned", "w").write("x")
    """ % (str(REPO), str(REPO))) + NETWORK_PROGRAM + SECRETS_PROGRAM.replace("harness = int(input())", "harness = 1")
    try:
        port = listener.getsockname()[1]
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-I", "-c", FALLBACK_SCRIPT, str(REPO), SIGNALS_PROGRAM, SHM_PROGRAM],
            input=json.dumps([program, f"{port}\n"]), capture_output=True, text=True, timeout=120, cwd="/",
            env={"PATH": "/usr/bin:/bin", "DED_TEST_SECRET": secret},
        )
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        if isinstance(answer, dict):
            pytest.skip(f"no unprivileged sandbox here: {answer['skip']}")
        sealed, bomb, loop, signals, shm = answer
        assert sealed["status"] == "ok", sealed
        assert f"UID 65534 REPO {HIDDEN_REPO}" in sealed["stdout"]
        assert "CONNECTED" not in sealed["stdout"] and sealed["stdout"].count("BLOCKED") == 2
        assert secret not in sealed["stdout"] + sealed["stderr"]
        assert _accepted_nothing(listener)
        assert bomb["status"] != "ok" and loop["status"] == "timeout"
        assert signals["status"] == "ok" and signals["stdout"] == "still here\n", signals  # every kill() reached PID 1
        held = [int(line.split()[1]) for line in shm["stdout"].splitlines() if line.startswith(("held", "kept"))]
        assert shm["status"] != "ok" or max(held, default=0) <= 128, shm  # SysV segments: no more than memory_mb
    finally:
        listener.close()


# ---------------------------------------------------------------------------------------------
# what the module left behind (keep this test last)


def test_nothing_is_left_behind(host_before):
    assert sandbox_processes() == []
    for scratch in ("/tmp", "/var/tmp", "/dev/shm"):
        for entry in os.scandir(scratch):
            try:
                uid = entry.stat(follow_symlinks=False).st_uid
            except OSError:
                continue
            assert not sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SPAN, entry.path
    for path in PWNED:
        assert os.path.lexists(path) == host_before["pwned"][path], path
    assert tracked_hash() == host_before["tracked"]
    assert zombie_children() == []
    assert {uid for uid in key_users() if sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SPAN} == set()
    parent = sandbox.memory_cgroup_parent()  # this process's runs' memory cgroups: every one removed
    assert parent is None or list(Path(parent).glob(f"ded-sandbox-{os.getpid()}-*")) == []

