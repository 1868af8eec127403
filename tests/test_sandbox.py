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
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ded import sandbox
from ded.sandbox import Limits, Result, run, run_many

REPO = Path(__file__).resolve().parents[1]

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
            print(os.path.exists({str(home / "bin" / "python3")!r}), os.listdir({str(REPO / "ded")!r}))
            for path in {[str(home / "secret.txt"), str(REPO / "pyproject.toml")]!r}:
                print(path, open(path).read()[:100])
        """)
        r = run(program, interpreter=str(home / "bin" / "python3"))
        assert r.status == "ok", r
        assert r.stdout.splitlines()[0] == "True []"
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
    assert f"rmtree {REPO} []" in r.stdout  # the repository is an empty, read-only directory in there
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
               sandbox.run("while True: pass", limits=sandbox.Limits(wall_s=1))]
    print(json.dumps([dataclasses.asdict(r) for r in results]))
""")


def test_unprivileged_fallback_is_sealed_too():
    """The non-root path, as user nobody: same mounts, no network, no secrets, limits bind."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("needs root (to become nobody), setpriv and /usr/bin/python3")
    listener = _loopback_listener()
    secret = secrets.token_hex(16)
    program = textwrap.dedent("""
        import os
        print("UID", os.getuid(), "REPO", os.listdir(%r))
        open("/tmp/ded_pwned", "w").write("x")
    """ % str(REPO)) + NETWORK_PROGRAM + SECRETS_PROGRAM.replace("harness = int(input())", "harness = 1")
    try:
        port = listener.getsockname()[1]
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-I", "-c", FALLBACK_SCRIPT, str(REPO)],
            input=json.dumps([program, f"{port}\n"]), capture_output=True, text=True, timeout=120, cwd="/",
            env={"PATH": "/usr/bin:/bin", "DED_TEST_SECRET": secret},
        )
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        if isinstance(answer, dict):
            pytest.skip(f"no unprivileged sandbox here: {answer['skip']}")
        sealed, bomb, loop = answer
        assert sealed["status"] == "ok", sealed
        assert "UID 65534 REPO []" in sealed["stdout"]
        assert "CONNECTED" not in sealed["stdout"] and sealed["stdout"].count("BLOCKED") == 2
        assert secret not in sealed["stdout"] + sealed["stderr"]
        assert _accepted_nothing(listener)
        assert bomb["status"] != "ok" and loop["status"] == "timeout"
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
    zombies = [p for p in os.listdir("/proc") if p.isdigit() and _is_zombie_child(int(p))]
    assert zombies == []


def _is_zombie_child(pid: int) -> bool:
    """A zombie left by this process (an unreaped sandbox)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z" and int(fields[1]) == os.getpid()
