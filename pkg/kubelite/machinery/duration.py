"""Durations as Kubernetes' flags and fields write them: ``30s``, ``1m30s``, ``500ms``, ``1h0m0s``.

Every component takes such flags (``--event-ttl``, ``--node-monitor-grace-period``,
``--leader-elect-lease-duration``) and the CLI takes them too (``--since``,
``--timeout``), so the one parser lives here. Bare numbers are seconds.
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError naming the text when it is not a duration."""
    text = text.strip()
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f'"{text}" is not a duration such as 30s, 5m or 1h0m0s')
    return total
