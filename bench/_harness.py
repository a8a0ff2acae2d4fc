"""The shared benchmark harness: timing, percentiles, a printed table and a JSON result.

Every benchmark is ``python bench/NAME.py``; it measures the thing and its baseline in the same
run (this machine is shared and noisy, so only ratios travel) and calls ``report`` once:

    report("planner", scenario="...", parameters={...},
           metrics={"decision_p50_us": Metric(12.3, "us"), ...},
           baseline={"naive_decision_p50_us": Metric(480.0, "us")})

which prints a table and writes ``bench/results/NAME.json``:
``{"name", "scenario", "parameters", "metrics": {k: number}, "units": {k: unit},
"baseline": {k: number}, "machine": {...}, "measured_at": iso}``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Metric:
    value: float
    unit: str


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation; samples need not be sorted."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def time_each(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> list[float]:
    """Wall time of each call in microseconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def summary_us(samples: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(samples, 50),
        "p99": percentile(samples, 99),
        "mean": statistics.fmean(samples),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def report(
    name: str,
    *,
    scenario: str,
    parameters: Mapping[str, Any],
    metrics: Mapping[str, Metric],
    baseline: Mapping[str, Metric],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    doc = {
        "name": name,
        "scenario": scenario,
        "parameters": dict(parameters),
        "metrics": {k: round(m.value, 4) for k, m in metrics.items()},
        "units": {k: m.unit for k, m in {**metrics, **baseline}.items()},
        "baseline": {k: round(m.value, 4) for k, m in baseline.items()},
        "machine": machine(),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if extra:
        doc["extra"] = dict(extra)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    rows = [("metric", "value", "unit")]
    rows += [(k, f"{m.value:,.3f}", m.unit) for k, m in metrics.items()]
    rows += [(f"baseline: {k}", f"{m.value:,.3f}", m.unit) for k, m in baseline.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"\n{name}: {scenario}")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return doc
