"""The machine a benchmark ran on, for the header line of its output: the CPU model
(from ``/proc/cpuinfo`` where there is one) and its core count. Figures from
different CPU models are not comparable, and this machine kind has been more than one."""

from __future__ import annotations

import os
import platform


def cpu() -> str:
    """``"<model name>, <n> CPUs"``."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
