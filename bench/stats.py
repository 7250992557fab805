"""Small statistics over samples in seconds: percentiles, reported in milliseconds."""

from __future__ import annotations

import math
from typing import Any


def percentile(samples: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100), linearly interpolated between the nearest samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: list[float]) -> dict[str, Any]:
    """p50, p95, min, max and mean in milliseconds, and the samples themselves."""
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "p50_ms": ms(percentile(samples, 50)),
        "p95_ms": ms(percentile(samples, 95)),
        "min_ms": ms(min(samples)),
        "max_ms": ms(max(samples)),
        "mean_ms": ms(sum(samples) / len(samples)),
        "samples_ms": [ms(s) for s in samples],
    }


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
