"""A process's CPU time and memory, read from /proc (Linux): the one sampler the
bench, the tests and the soak and measurement tools share."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    mono: float  # time.monotonic() when read
    cpu_s: float  # user + system
    rss_kib: int | None  # VmRSS; None for a zombie (no memory lines)
    hwm_kib: int | None  # VmHWM: the peak RSS so far

    @property
    def rss_mb(self) -> float | None:
        return None if self.rss_kib is None else self.rss_kib / 1024.0

    @property
    def hwm_mb(self) -> float | None:
        return None if self.hwm_kib is None else self.hwm_kib / 1024.0


def read_proc(pid: int) -> ProcSample | None:
    """CPU seconds and memory of a running process; None once it is gone."""
    mono = time.monotonic()
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def kib(name: str) -> int | None:
        found = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
        return int(found[1]) if found else None

    return ProcSample(mono, cpu, kib("VmRSS"), kib("VmHWM"))


def peak_rss_kib(pid: int) -> int:
    """The process's peak RSS (VmHWM): a payload read and freed again still shows."""
    sample = read_proc(pid)
    if sample is None or sample.hwm_kib is None:
        raise AssertionError(f"no VmHWM for pid {pid}")
    return sample.hwm_kib


def cpu_pct(samples: Sequence[ProcSample], start: float, end: float) -> float | None:
    """% of one core between the first sample at or after `start` and the last at or
    before `end` (monotonic seconds); None with less than half a second between them."""
    inside = [s for s in samples if start <= s.mono <= end]
    if len(inside) < 2 or inside[-1].mono - inside[0].mono < 0.5:
        return None
    return 100.0 * (inside[-1].cpu_s - inside[0].cpu_s) / (inside[-1].mono - inside[0].mono)
