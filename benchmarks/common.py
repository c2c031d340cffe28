"""What the benchmarks share: an isolated environment for a private mesh, percentiles, output."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from meshcli.supervisor import private_mesh_env
from meshkernel.config import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench-results"


def isolated_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """A private mesh on the shared broker, with metrics endpoints off and quiet logs."""
    quiet = {
        "MESH_REFERRAL_METRICS_PORT": "0",
        "MESH_REGION_METRICS_PORT": "0",
        "MESH_NOTIFY_METRICS_PORT": "0",
        "MESH_LOG_LEVEL": "WARNING",
    }
    return private_mesh_env(state_dir, **{**quiet, **extra})


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def latency_summary(milliseconds: list[float]) -> dict:
    return {
        "count": len(milliseconds),
        "p50_ms": round(percentile(milliseconds, 0.50), 2),
        "p90_ms": round(percentile(milliseconds, 0.90), 2),
        "p99_ms": round(percentile(milliseconds, 0.99), 2),
        "max_ms": round(max(milliseconds), 2) if milliseconds else float("nan"),
    }


def write_results(name: str, figures: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    figures = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **figures,
    }
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return path
