"""Peak resident memory of this process while a block runs (``PeakMemory``): stages and training report it."""

from __future__ import annotations

import threading


def _rss_kb(field: str) -> int | None:
    """A ``/proc/self/status`` memory line in kB (VmRSS: now, VmHWM: the process's peak); None off Linux."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration, ValueError):
        return None


class PeakMemory:
    """This process's peak resident memory while the block runs, in GB (``.gb``; None off Linux).

    A thread samples VmRSS every `every` seconds; when the block sets a new high for the whole
    process (VmHWM grew), that exact high is taken instead. The kernel's own high-water mark is
    never reset, so ``/usr/bin/time`` and ``getrusage`` still report the run's true peak."""

    def __init__(self, every: float = 0.05):
        self.every, self.gb, self._max = every, None, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while True:
            self._max = max(self._max, _rss_kb("VmRSS") or 0)
            if self._stop.wait(self.every):
                return

    def __enter__(self):
        self._hwm = _rss_kb("VmHWM")
        self._thread = threading.Thread(target=self._sample, name="ded-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        hwm = _rss_kb("VmHWM")
        if self._hwm is not None and hwm is not None:
            peak = max(self._max, hwm if hwm > self._hwm else 0)  # a new process-wide high happened in this block
            self.gb = peak * 1024 / 1e9  # kB of 1024 bytes
        return False
