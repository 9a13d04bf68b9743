"""The machine line every benchmark report starts with (benchmarks compare within one run; name the box)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

SHARED = "other jobs (a Go build, other engineers' tests and benchmarks) shared the machine during the run"


def describe(note: str = "") -> str:
    """CPU model, cores, memory, no GPU and the Python version, then ``note`` (e.g. :data:`SHARED`)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, no GPU, Python {platform.python_version()}"
    return f"{text}; {note}" if note else text
