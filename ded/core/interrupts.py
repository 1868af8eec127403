"""SIGTERM and SIGINT end a run cleanly: they become an ``Interrupted`` exception in the main thread.

SLURM sends SIGTERM at a time limit or a preemption (earlier, with ``--signal``: see the SLURM
presets), ``kill`` sends it by default, Ctrl-C sends SIGINT. Inside ``handled()`` the first one
raises ``Interrupted`` at the next bytecode of the main thread, unless the main thread is inside a
``critical()`` section (a cache line or a stage's output being published): then it is raised when
that section ends, so nothing is left half written. A second signal ends the process at once
(exit status 128 + the signal), as a user pressing Ctrl-C twice expects.

Python runs a signal handler between any two bytecodes, including inside a weakref callback or a
``__del__`` run by the garbage collector, where an exception is printed ("Exception ignored in")
and dropped. So a raised signal stays owed until the run catches it (``acknowledge``), and
``check()`` raises it again at the next safe point: a stage start, a training step, a sample write.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """The run was asked to stop by a signal; ``exit_code`` is the conventional 128 + signal."""

    def __init__(self, signum: int, stage: str | None = None):
        super().__init__(signum, stage)
        self.signum, self.stage = signum, stage
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return f"interrupted by {self.name}" + (f" during the {self.stage} stage" if self.stage else "")


_state: dict = {"depth": 0, "pending": None, "owed": None, "seen": False, "stage": None, "on": False}


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum, frame):
    if _state["seen"]:
        os._exit(128 + signum)  # the second signal: at once
    _state["seen"] = True
    if _state["depth"]:
        _state["pending"] = signum  # raised when the critical section ends
        return
    _state["owed"] = signum  # until the run catches it: the raise below may land where Python drops it
    raise Interrupted(signum, _state["stage"])


@contextmanager
def handled() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``Interrupted`` while the block runs (main thread only; elsewhere,
    e.g. a test calling the pipeline from a worker thread, the signals keep their handlers)."""
    if not _main() or _state["on"]:
        yield
        return
    old = {s: signal.signal(s, _handler) for s in SIGNALS}
    old_hook = sys.unraisablehook

    def quiet(unraisable):  # our dropped raise is owed, not lost: no "Exception ignored" traceback for it
        if not isinstance(unraisable.exc_value, Interrupted):
            old_hook(unraisable)

    sys.unraisablehook = quiet
    _state.update(depth=0, pending=None, owed=None, seen=False, stage=None, on=True)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sys.unraisablehook = old_hook
        _state["on"] = False


@contextmanager
def critical() -> Iterator[None]:
    """A section that must not be torn: a signal that arrives during it takes effect at its end."""
    if not _main():
        yield
        return
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if not _state["depth"] and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            _state["owed"] = signum
            raise Interrupted(signum, _state["stage"])


def check() -> None:
    """At a safe point: raise a signal's ``Interrupted`` again if the first raise was dropped."""
    if _main() and _state["on"] and _state["owed"] is not None and not _state["depth"]:
        raise Interrupted(_state["owed"], _state["stage"])


def acknowledge() -> None:
    """The run caught ``Interrupted``: nothing is owed any more (its cleanup must not be interrupted again)."""
    _state["owed"] = None


def entering(stage: str) -> None:
    """The stage now running, named by ``Interrupted`` and in the run record."""
    check()
    _state["stage"] = stage


def current_stage() -> str | None:
    return _state["stage"]
