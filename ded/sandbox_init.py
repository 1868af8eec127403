"""The inside half of ded.sandbox: turns one process into a sealed, throw-away run of one program.

Standalone on purpose (stdlib only, no ``ded`` imports, nothing slow to import): the harness
starts it fresh for every run as

    python -I -S sandbox_init.py SPEC_FD STATUS_FD      # one sandboxed run
    python -I -S sandbox_init.py --sweep UID            # kill every process of UID (harness clean-up)

SPEC_FD is a memfd holding the run's spec (a ``marshal``-ed dict written by ded.sandbox: mode,
uid, program, files, limits, interpreter, paths to hide and paths to keep, the memory cgroup to
join). STATUS_FD is a pipe that only the harness reads; the program never holds it (it is
close-on-exec). Lines on it:

    error <text>             the sandbox could not be set up (the harness raises SandboxError)
    refused <text>           the program or its files could not be written (too big): a failed run
    started                  the program is about to start: an error after this is the program's failure
    exit <code> <cpu_s>      the program exited            (written by the reaper)
    signal <num> <cpu_s>     the program died of a signal  (written by the reaper)
    done                     everything of the run is gone; the outer process is exiting

Process tree (mode "root"; mode "userns" is the same inside an unprivileged user namespace,
without the uid change and the uid sweep, since there the program runs as the harness's uid):

    harness
     └─ outer    this script: joins the run's memory cgroup (where the harness made one), then new
        │        network, mount, IPC, UTS, cgroup namespaces and a PID namespace for its children;
        │        waits, then kills whatever the run's uid still has, says "done"
        └─ reaper  PID 1 of the new PID namespace, root, ignoring every signal it can: seals the file
           │       system, caps System V IPC, starts the program, reaps orphans; when it exits the
           │       kernel kills everything left in the namespace
           └─ program  rlimits, a fresh uid, no groups, no capabilities, no_new_privs, every signal
                       at its default, first in line for the OOM killer, a syscall filter (seccomp);
                       execs the interpreter on /tmp/work/main.py with a minimal environment

With a partner (``spec["partner"]``: a second program, the solution's side of a code check), the
reaper starts it first, as its own uid (mode "root") in a PID and mount namespace of its own with
its own /proc, so it cannot see, signal or trace the program (the judge); the two talk over two
pipes only (program: fd 3 writes to the partner's fd 0, fd 4 reads the partner's fd 1). The
partner's working directory is /tmp/work (``files`` go there); the program then runs as
``python -I -c SOURCE`` from /, holding no file the partner could change.

The harness stops a run by sending SIGUSR1 to the outer process, which kills the reaper (and so
the whole namespace), sweeps and reports as usual; SIGKILL of the process group is its fallback.
"""

import _signal  # not `signal`: that module imports enum, ~10 ms on every run
import ctypes
import fcntl
import marshal
import os
import resource
import sys

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 256, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
# Per-mount flags as /proc/self/mountinfo spells them: kept on remount (a user namespace may not drop them).
MOUNT_OPTION_FLAGS = {
    "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "nosymfollow": MS_NOSYMFOLLOW,
}
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable places, each replaced by a private tmpfs
WORKDIR = "/tmp/work"
PROGRAM = "main.py"

libc = ctypes.CDLL(None, use_errno=True)

# The syscall filter (install_seccomp): per machine, its audit architecture and the numbers of the
# calls it treats specially; a machine not listed here runs without a filter (ded.sandbox.syscall_filter).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALL_NUMBERS = {
    "x86_64": {"socket": 41, "socketpair": 53, "add_key": 248, "request_key": 249, "keyctl": 250, "perf_event_open": 298,
               "memfd_create": 319, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
               "io_uring_register": 427, "memfd_secret": 447, "shmget": 29, "msgget": 68},
    "aarch64": {"socket": 198, "socketpair": 199, "add_key": 217, "request_key": 218, "keyctl": 219, "perf_event_open": 241,
                "memfd_create": 279, "bpf": 280, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
                "io_uring_register": 427, "memfd_secret": 447, "shmget": 194, "msgget": 186},
}
DENIED_SYSCALLS = (  # each fails with EPERM
    "add_key", "request_key", "keyctl",  # keyrings are not namespaced: keys charged to the run's uid outlive the run
    "memfd_create", "memfd_secret",  # memory in a memfd escapes RLIMIT_AS (and memfd_secret's is unswappable)
    "io_uring_setup", "io_uring_enter", "io_uring_register",  # attack surface: a large kernel interface, no program needs it
    "userfaultfd",  # attack surface: stalls the kernel's page faults at will (the classic race widener)
    "bpf",  # attack surface: the verifier and the JIT
    "perf_event_open",  # attack surface, and a side channel
)
UNCAPPED_IPC = ("shmget", "msgget")  # denied too where limit_ipc cannot cap System V IPC (a user namespace maps no root)
SOCKET_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6: the rest (vsock reaches the hypervisor) gets EAFNOSUPPORT
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
EPERM, ENOSYS, EAFNOSUPPORT = 1, 38, 97
X32_SYSCALL_BIT = 0x40000000
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x06
ipc_capped = [True]  # limit_ipc's outcome, read by install_seccomp in the program (a child of the reaper)


class SetupError(Exception):
    """The sandbox could not be built; the message names the step and the reason."""


def _call(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}", err)


def _b(s):
    return None if s is None else os.fsencode(s)


def unshare(flags):
    _call(libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source, target, fstype, flags, data=None):
    what = f"mount {fstype or 'flags ' + hex(flags)} on {target}"
    _call(libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), what)


def prctl(option, arg):
    _call(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl({option})")


def report(fd, line):
    """One status line; a single write below PIPE_BUF is atomic, so lines never interleave."""
    try:
        os.write(fd, (line.replace("\n", " ")[:3000] + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def hint(err, mode):
    """What the operator can do about a failed unshare."""
    import errno

    if err not in (errno.EPERM, errno.EACCES, errno.ENOSPC, errno.EINVAL, errno.EUSERS):
        return ""
    if mode == "userns":
        return (" (not root, and unprivileged user namespaces are not allowed here: run as root, or enable them"
                " with sysctl user.max_user_namespaces=10000, kernel.unprivileged_userns_clone=1,"
                " kernel.apparmor_restrict_unprivileged_userns=0)")
    return " (root without CAP_SYS_ADMIN, e.g. an unprivileged container: run it with --cap-add SYS_ADMIN or --privileged)"


# ---------------------------------------------------------------------------------------------
# outer: namespaces, then wait for the reaper, sweep the uid, report


def outer(spec_fd, status_fd):
    prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)  # the harness died: so do we (and the reaper after us)
    with os.fdopen(spec_fd, "rb") as f:
        spec = marshal.loads(f.read())
    if os.getppid() != spec["harness_pid"]:
        os._exit(1)  # the harness died before our death signal was armed
    os.set_inheritable(status_fd, False)
    mode = spec["mode"]
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    try:
        join_memory_cgroup(spec)
        if mode == "userns":
            uid, gid = os.getuid(), os.getgid()
            unshare(flags | CLONE_NEWUSER)
            # Map only ourselves (all an unprivileged user may map): the program keeps our uid and loses
            # every capability at execve because it is not uid 0 in the namespace.
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        else:
            unshare(flags)
    except SetupError as e:
        report(status_fd, f"error {e.args[0]}{hint(e.args[1], mode) if len(e.args) > 1 else ''}")
        os._exit(1)
    except OSError as e:
        report(status_fd, f"error user namespace mapping: {e}")
        os._exit(1)

    me, reaper = os.getpid(), 0

    def stop(signum, frame):
        if reaper > 0 and os.getpid() == me:  # the reaper inherits this handler until it resets it
            os.kill(reaper, _signal.SIGKILL)  # PID 1 dies: the kernel kills the whole namespace

    _signal.signal(_signal.SIGUSR1, stop)
    reaper = os.fork()
    if reaper == 0:
        reaper_main(spec, status_fd)  # never returns
    os.waitpid(reaper, 0)
    if mode == "root":  # belt and braces: nothing of the uids can live outside the dead namespace
        for uid in {spec["uid"], spec["partner_uid"]}:
            sweep(uid)  # no fork here: this PID namespace is dead, a fork would fail (ENOMEM)
    report(status_fd, "done")
    os._exit(0)


def sweep(uid):
    """Kill every process of `uid` by acting as it: kill(-1) spares only ourselves (and init). The
    saved uid stays root, so the caller becomes root again after."""
    try:
        os.setresuid(uid, uid, 0)
        try:
            os.kill(-1, _signal.SIGKILL)
        finally:
            os.setresuid(0, 0, 0)
    except OSError:
        pass  # ESRCH: nothing left


# ---------------------------------------------------------------------------------------------
# reaper: PID 1 of the new PID namespace


def reaper_main(spec, status_fd):
    try:
        _signal.signal(_signal.SIGUSR1, _signal.SIG_DFL)
        set_signals(_signal.SIG_IGN, spare=[_signal.SIGCHLD])  # the program (same uid in mode userns) cannot end the run by signalling PID 1 (SIGCHLD: it waits on it)
        prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)  # the outer died (killed by the harness): the namespace goes
        libc.sethostname(b"sandbox", 7)
        seal_filesystem(spec)
        limit_ipc(spec["limits"])  # in the fresh /proc: this IPC namespace's System V limits
        try:
            write_workdir(spec)
        except OSError as e:  # the program's own fault (bigger than disk_mb): a failed run, not a broken sandbox
            report(status_fd, f"refused cannot write the program and its files into {WORKDIR}: {e}")
            os._exit(1)
        channel = start_partner(spec, status_fd) if spec.get("partner") else None
        report(status_fd, "started")  # from here on, anything that fails is the program's failure
        child = os.fork()
        if child == 0:
            program_main(spec, status_fd, channel)  # never returns
        for fd in channel or ():
            os.close(fd)
        while True:  # reap orphans until the program itself ends
            pid, status, usage = os.wait4(-1, 0)
            if pid == child:
                break
        cpu = usage.ru_utime + usage.ru_stime
        if os.WIFSIGNALED(status):
            report(status_fd, f"signal {os.WTERMSIG(status)} {cpu:.3f}")
        else:
            report(status_fd, f"exit {os.WEXITSTATUS(status)} {cpu:.3f}")
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 (anything here is a setup failure, reported as such)
        report(status_fd, f"error {e.args[0] if isinstance(e, SetupError) else repr(e)}")
        os._exit(1)


def seal_filesystem(spec):
    """Private mounts; hidden paths covered; everything read-only; fresh scratch tmpfs and /proc."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # first: nothing below may propagate to the host
    keep = spec["keep"]
    for path in spec["hide"]:
        hide(path, keep)
    readonly_everything()
    disk = spec["limits"]["disk_mb"]
    for path in SCRATCH:
        if os.path.isdir(path) and not os.path.islink(path):
            held = hold_kept(path, keep)  # an interpreter (a virtualenv) living there stays usable
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk}m,nr_inodes=16384,mode=1777")
            bind_back(path, held)
    if os.path.isdir("/run") and not os.path.islink("/run"):  # host unix sockets (dbus, ...) live here
        mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,nr_inodes=64,mode=755")
    mount_proc()


def hide(path, keep):
    """Cover `path` with something empty, except the branches that lead to a path in `keep`."""
    if not os.path.lexists(path) or os.path.islink(path):
        return  # a symlink's target is hidden, or not, in its own right
    inside = [k for k in keep if k == path or k.startswith(path + "/")]
    if not inside:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=2,mode=555")
        else:
            mount("/dev/null", path, None, MS_BIND)  # files, sockets, fifos: now an empty device
    elif path not in keep:  # the interpreter lives below: hide its siblings, one level down
        for name in sorted(os.listdir(path)):
            hide(os.path.join(path, name), keep)


def readonly_everything():
    """Remount every visible mount read-only in this (private) namespace; the host keeps its flags."""
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    for line in lines:
        fields = line.split()
        target = unescape(fields[4])
        options = fields[5].split(",")
        if "ro" in options or target == "/proc" or target.startswith("/proc/"):
            continue  # already read-only, or replaced by a fresh proc below
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= MOUNT_OPTION_FLAGS.get(option, 0)
        try:
            mount(None, target, None, flags)
        except SetupError as e:
            if not os.path.exists(target):  # under a hidden path, or shadowed: unreachable anyway
                continue
            raise SetupError(f"{e.args[0]} (making the host's mounts read-only)") from e


def unescape(path):
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    if "\\" not in path:
        return path
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mount_proc():
    """A proc of the new PID namespace: the program sees only its own processes (hidepid)."""
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    for data in ("hidepid=invisible", "hidepid=2", None):
        try:
            mount("proc", "/proc", "proc", flags, data)
            return
        except SetupError:
            continue
    # A user namespace may not mount proc where the host masks parts of it: show none of it.
    mount("tmpfs", "/proc", "tmpfs", MS_RDONLY | flags, "size=4k,nr_inodes=2,mode=555")


def write_workdir(spec):
    """/tmp/work: the program and its files, owned by the run's uid."""
    uid = spec["partner_uid"] if spec.get("partner") else spec["uid"]
    os.mkdir(WORKDIR, 0o700)
    os.chown(WORKDIR, uid, uid)
    program = [] if spec.get("partner") else [(PROGRAM, spec["program"])]  # a judge runs from -c
    for name, text in [*program, *spec["files"].items()]:
        path = os.path.join(WORKDIR, name)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
            for d in _parents_below(parent, WORKDIR):
                os.chown(d, uid, uid)
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:  # bad text: Python's own error later
            f.write(text)
        os.chown(path, uid, uid)


def _parents_below(path, top):
    while path != top:
        yield path
        path = os.path.dirname(path)


# ---------------------------------------------------------------------------------------------
# program: limits, privileges dropped, exec


def program_main(spec, status_fd, channel=None):
    try:
        keep = [status_fd]
        if channel is not None:  # the pipes to the partner become fds 3 and 4 (moved out of the way first)
            status_fd, to_partner, from_partner = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (status_fd, *channel))
            os.dup2(to_partner, 3, inheritable=True)
            os.dup2(from_partner, 4, inheritable=True)
            keep = [3, 4, status_fd]
        close_all_but(keep)
        interpreter = spec["interpreter"]
        if channel is None:
            become(spec, spec["uid"], WORKDIR)
            # -E -s: no PYTHON* variables, no user site; not -I, so files next to main.py stay importable.
            argv = [interpreter, "-B", "-E", "-s", PROGRAM]
        else:
            become(spec, spec["uid"], "/")
            argv = [interpreter, "-B", "-I", "-S", "-c", spec["program"]]  # no file: nothing the partner could rewrite
        os.execve(interpreter, argv, program_env())
    except BaseException as e:  # noqa: BLE001
        report(status_fd, f"error starting the program: {e.args[0] if isinstance(e, SetupError) else repr(e)}")
    os._exit(127)


def start_partner(spec, status_fd):
    """Start the partner in a PID and mount namespace of its own; returns the program's two pipe ends."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    launcher = os.fork()
    if launcher == 0:
        try:
            unshare(CLONE_NEWPID | CLONE_NEWNS)
            if os.fork():
                os._exit(0)  # the partner (PID 1 of the new namespace) is reparented to the reaper
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            mount_proc()  # its /proc shows only its own namespace: the judge has no pid here
            os.dup2(to_r, 0)
            os.dup2(from_w, 1)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            close_all_but([status_fd])
            become(spec, spec["partner_uid"], WORKDIR, deathsig=False)  # the reaper's end ends its namespace
            interpreter = spec["interpreter"]
            os.execve(interpreter, [interpreter, "-B", "-E", "-s", "-c", spec["partner"]], program_env())
        except BaseException as e:  # noqa: BLE001
            report(status_fd, f"error starting the partner: {e.args[0] if isinstance(e, SetupError) else repr(e)}")
        os._exit(127)
    os.close(to_r)
    os.close(from_w)
    os.waitpid(launcher, 0)
    return to_w, from_r


def close_all_but(keep):
    """Close every fd from 3 up except `keep` (the status pipe stays until execve: it is close-on-exec)."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 16)


def become(spec, uid, cwd, deathsig=True):
    """Limits, no capabilities, `uid` (mode root), no_new_privs: after this the rlimits bind and
    the root-owned reaper is out of reach."""
    os.chdir(cwd)
    set_limits(spec["limits"])
    oom_first()
    drop_bounding_set()
    if spec["mode"] == "root":
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # no setuid binaries, no file capabilities
    if deathsig:  # setuid cleared it; the reaper is our parent (the partner's launcher is not: it exits)
        prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
    set_signals(_signal.SIG_DFL)  # the reaper's ignored signals would survive execve
    install_seccomp()  # last: nothing after it may need a denied call


def program_env():
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
        # numeric libraries would start a thread per core and run into the process limit
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


def oom_first():
    """Be the first the OOM killer picks (in the run's memory cgroup, and on the host): else a run
    whose memory sits in tmpfs files or System V segments, which belong to no process, would cost
    the bigger outer or reaper process, and the run's own report."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:  # raising it needs no privilege
            f.write("1000")
    except OSError:
        pass  # no /proc (a user namespace that could not mount one): the cgroup still binds


def set_signals(disposition, spare=()):
    """Every signal (but SIGKILL, SIGSTOP and `spare`) to `disposition`."""
    for sig in range(1, _signal.NSIG):
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP, *spare):
            try:
                _signal.signal(sig, disposition)
            except (OSError, ValueError):
                pass  # the C library's own real-time signals


def seccomp_filter(machine, denied_too=()):
    """The classic BPF program for `machine`, as (code, jt, jf, k) tuples (struct seccomp_data:
    nr at offset 0, arch at 4, the first argument's low half at 16 on these little-endian machines)."""
    numbers = SYSCALL_NUMBERS[machine]
    code = [
        (BPF_LD_W_ABS, 0, 0, 4),
        (BPF_JEQ_K, 1, 0, AUDIT_ARCH[machine]),
        (BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),  # another ABI (int 0x80 on x86_64): its numbers mean other calls
        (BPF_LD_W_ABS, 0, 0, 0),
    ]
    if machine == "x86_64":
        code += [(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT), (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS)]  # x32: not for us
    denied = sorted({numbers[name] for name in (*DENIED_SYSCALLS, *denied_too)})
    sockets = [numbers["socket"], numbers["socketpair"]]
    # Below the checks: [allow] [EPERM] [family checks ...]; a check at index i jumps i' - i - 1 ahead.
    checks = len(denied) + len(sockets)
    eperm, family = checks + 1, checks + 2
    for i, nr in enumerate(denied):
        code.append((BPF_JEQ_K, eperm - i - 1, 0, nr))
    for i, nr in enumerate(sockets, len(denied)):
        code.append((BPF_JEQ_K, family - i - 1, 0, nr))
    code += [(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM)]
    code.append((BPF_LD_W_ABS, 0, 0, 16))  # the address family (an int)
    n = len(SOCKET_FAMILIES)
    for i, af in enumerate(SOCKET_FAMILIES):
        code.append((BPF_JEQ_K, n - i, 0, af))
    code += [(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EAFNOSUPPORT), (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    return code


def install_seccomp():
    """The syscall filter, last thing before execve (no_new_privs is set): see DENIED_SYSCALLS and
    SOCKET_FAMILIES (and UNCAPPED_IPC where limit_ipc failed); another ABI is killed. On a machine
    without a table, nothing (and False)."""
    machine = os.uname().machine
    if machine not in SYSCALL_NUMBERS or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    code = seccomp_filter(machine, () if ipc_capped[0] else UNCAPPED_IPC)
    instructions = (SockFilter * len(code))(*code)
    program = SockFprog(len(code), instructions)
    _call(libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(program),
                     ctypes.c_ulong(0), ctypes.c_ulong(0)), "installing the syscall filter (seccomp)")
    return True


def join_memory_cgroup(spec):
    """Move this process, and so everything of the run, into the run's memory cgroup (made by the
    harness: ded.sandbox), before the cgroup namespace is made, so that it is the run's root there.
    "0" is the writer itself; through v1's ``tasks`` (this process has one thread) the kernel skips
    the global lock that a cgroup.procs write takes (an RCU grace period, ~10 ms a run)."""
    path = spec.get("cgroup_join")
    if path:
        try:
            with open(path, "w") as f:
                f.write("0")
        except OSError as e:
            raise SetupError(f"joining the run's memory cgroup {os.path.dirname(path)}: {e.strerror}") from e


def limit_ipc(limits):
    """Cap System V IPC in the run's own IPC namespace: a segment (or a queued message) belongs to
    no process, so RLIMIT_AS never sees it and it outlives the process that made it. Skipped where
    /proc/sys is not writable (in mode userns, where no root is mapped to own these files): the
    filter then denies System V segments and queues altogether (UNCAPPED_IPC)."""
    size = limits["memory_mb"] << 20
    for name, value in (("shmmax", size), ("shmall", size // os.sysconf("SC_PAGE_SIZE")), ("shmmni", 64), ("msgmni", 16)):
        try:
            with open(f"/proc/sys/kernel/{name}", "w") as f:
                f.write(str(value))
        except OSError:
            ipc_capped[0] = False


def hold_kept(scratch, keep):
    """Handles on the kept paths (the interpreter's) below `scratch`, taken before a tmpfs covers
    it: (path, target of a symlink or None, O_PATH fd of anything else)."""
    held = []
    for path in sorted(k for k in keep if k.startswith(scratch + "/")):
        if any(path.startswith(p + "/") for p, _, _ in held) or not os.path.lexists(path):
            continue  # inside a kept folder already, or not there at all
        if os.path.islink(path):
            held.append((path, os.readlink(path), None))
        else:
            held.append((path, None, os.open(path, os.O_PATH | os.O_CLOEXEC)))
    return held


def bind_back(scratch, held):
    """Recreate each held path in the fresh tmpfs at `scratch` (root's folders, 0755) and bind the
    original there, read-only, nosuid, nodev; a symlink is made again."""
    for path, link, fd in held:
        parts = os.path.relpath(path, scratch).split("/")
        folder = scratch
        for name in parts[:-1]:
            folder = os.path.join(folder, name)
            if not os.path.isdir(folder):
                os.mkdir(folder)
                os.chmod(folder, 0o755)
        if link is not None:
            os.symlink(link, path)
            continue
        source = f"/proc/self/fd/{fd}"
        if os.path.isdir(source):
            os.mkdir(path)
            os.chmod(path, 0o755)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        mount(source, path, None, MS_BIND | MS_REC)
        os.close(fd)
        kept = os.statvfs(path).f_flag  # flags a user namespace may not drop: kept as they are
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        for st, ms in ((8, MS_NOEXEC), (1024, MS_NOATIME), (2048, MS_NODIRATIME), (4096, MS_RELATIME), (8192, MS_NOSYMFOLLOW)):
            flags |= ms if kept & st else 0
        mount(None, path, None, flags)


def set_limits(limits):
    mb = 1 << 20
    cpu = limits["cpu_s"]
    wanted = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL a second later
        resource.RLIMIT_AS: (limits["memory_mb"] * mb,) * 2,
        resource.RLIMIT_NPROC: (limits["nproc"],) * 2,
        resource.RLIMIT_FSIZE: (limits["disk_mb"] * mb,) * 2,
        resource.RLIMIT_NOFILE: (256, 256),
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_MSGQUEUE: (1 << 16, 1 << 16),  # POSIX message queues: 64 KiB, not the default 800 KB per uid
    }
    for which, (soft, hard) in wanted.items():
        _, current = resource.getrlimit(which)
        if current != resource.RLIM_INFINITY:  # a user namespace cannot raise a hard limit
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(which, (soft, hard))


def drop_bounding_set():
    """Empty the capability bounding set, so nothing the program execs can ever hold a capability."""
    cap = 0
    while libc.prctl(ctypes.c_int(PR_CAPBSET_DROP), ctypes.c_ulong(cap), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0:
        cap += 1


if __name__ == "__main__":
    if sys.argv[1] == "--sweep":
        sweep(int(sys.argv[2]))
        os._exit(0)
    spec_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
    try:
        outer(spec_fd, status_fd)
    except BaseException as e:  # noqa: BLE001
        report(status_fd, f"error {e.args[0] if isinstance(e, SetupError) else repr(e)}")
        os._exit(1)
