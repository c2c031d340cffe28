"""Escalation engine benchmark: N open referrals, deadlines spread over a window, real clock.

    python -m benchmarks.bench_escalation [--count 1000000] [--window 60] [--tick 0.05]

1. Load: N ReferralRequested events go through the engine (state per case + due-time index);
   each schedules one deadline (the policy is the shipped one with only `not_acknowledged`
   enabled, so that N referrals are exactly N open deadlines). Reports deadlines/s scheduled.
2. Restart: the index is rebuilt from the per-case states (what a worker does on partition
   assignment). Reports the time.
3. Idle: for --idle seconds nothing is due while N deadlines are open; reports process CPU as a
   percentage of one core.
4. Fire: a real-time loop (the real clock, at most --tick between checks, sleeping until the
   next due time) fires what comes due over --window seconds. Reports firing lateness
   (fired_at - deadline) p50/p99/max.

Deadlines are placed on a virtual time line that starts when the loop starts: the engine's
clock is ``time.time() - offset``, with ``offset`` fixed once, after loading. The clock then
runs at real speed, so lateness is real lateness; the offset only keeps the load phase (which
takes a while at 1M) from eating into the window. Peak resident memory is ru_maxrss.
Writes the figures to bench-results/escalation.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import sys
import time
from array import array
from pathlib import Path

import yaml

from services.region.domain.escalation import (
    EscalationEngine,
    ReferralFacts,
    build_escalation_policy,
)
from services.region.domain.escalation.policy import DEFAULT_POLICY_PATH, RULES

V0 = 1_900_000_000.0  # virtual start of the firing window (POSIX seconds, 2030)
AFTER = 30.0  # not_acknowledged deadline in the benchmark policy


def bench_policy():
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    for name in RULES:
        data["rules"][name]["enabled"] = name == "not_acknowledged"
    data["rules"]["not_acknowledged"].update(after=f"{AFTER:g}s", working_hours=False)
    return build_escalation_policy(data, "benchmark")


def rss_mib() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / (1024 * 1024) if sys.platform == "darwin" else ru / 1024


def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--window", type=float, default=60.0, help="seconds over which deadlines fall due")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds measured with nothing due")
    ap.add_argument("--tick", type=float, default=0.05, help="longest sleep between checks")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="bench-results/escalation.json")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    policy = bench_policy()
    offset = [0.0]
    engine = EscalationEngine(policy, clock=lambda: time.time() - offset[0])
    start_of_window = V0 + args.idle + 1.0

    # -- 1. load
    print(f"loading {args.count:,} open referrals ...", flush=True)
    t0, c0 = time.perf_counter(), cpu()
    on_event = engine.on_referral_event
    for i in range(args.count):
        due = start_of_window + rng.random() * args.window
        on_event(
            ReferralFacts(
                case_id=f"case-{i:08d}",
                referral_id=f"ref-{i:08d}",
                event_type="ReferralRequested",
                to_status="REQUESTED",
                version=1,
                occurred_at=due - AFTER,
                urgency="URGENT" if i % 4 == 0 else "NORMAL",
                addressee=f"agency-{i % 500:03d}",
                holder=f"agency-{(i + 1) % 500:03d}",
            ),
            now=V0,
        )
    load_s = time.perf_counter() - t0
    load_cpu = cpu() - c0
    pending = engine.pending_count
    gc.collect()
    gc.freeze()  # the long-lived states are never garbage: keep the collector off them
    rss_loaded = current_rss_mib()
    print(
        f"  {pending:,} deadlines in {load_s:.1f} s = {pending / load_s:,.0f} deadlines/s; RSS {rss_loaded:,.0f} MiB",
        flush=True,
    )

    # -- 2. restart: rebuild the index from per-case state
    t0 = time.perf_counter()
    rebuilt = engine.load([])
    rebuild_s = time.perf_counter() - t0
    gc.collect()
    gc.freeze()
    print(f"  index rebuilt from per-case state: {rebuilt:,} entries in {rebuild_s:.2f} s", flush=True)

    # -- 3 + 4. real-time loop
    offset[0] = time.time() - V0  # virtual time V0 is now
    late = array("d")
    fired = 0
    idle_cpu_pct = None
    idle_end = V0 + args.idle
    c_idle0, w_idle0 = cpu(), time.perf_counter()
    end = start_of_window + args.window + 2.0
    max_batch = 0
    while True:
        now = engine.clock()
        if idle_cpu_pct is None and now >= idle_end:
            idle_cpu_pct = 100.0 * (cpu() - c_idle0) / (time.perf_counter() - w_idle0)
            print(f"  idle with {engine.pending_count:,} open deadlines: {idle_cpu_pct:.2f}% of a core", flush=True)
            c_fire0, w_fire0 = cpu(), time.perf_counter()
        batch = engine.fire_due(now)
        if batch:
            # Lateness as a consumer would see it: when the batch is handed over (after the
            # whole batch is built), minus the deadline. Stricter than Escalation.late_seconds,
            # which is measured when the batch starts.
            done = engine.clock()
            max_batch = max(max_batch, len(batch))
            fired += len(batch)
            late.extend(done - e.deadline.timestamp() for e in batch)
        nxt = engine.next_due()
        if nxt is None and now >= end:
            break
        now = engine.clock()
        wait = args.tick if nxt is None else min(args.tick, max(0.0, nxt - now))
        if idle_cpu_pct is None:
            wait = min(wait, max(0.0, idle_end - now))
        if wait > 0:
            time.sleep(wait)
    fire_cpu_pct = 100.0 * (cpu() - c_fire0) / (time.perf_counter() - w_fire0)

    # idle again, nothing open
    c1, w1 = cpu(), time.perf_counter()
    stop = time.perf_counter() + min(args.idle, 2.0)
    while time.perf_counter() < stop:
        engine.fire_due()
        nxt = engine.next_due()
        time.sleep(args.tick if nxt is None else min(args.tick, max(0.0, nxt - engine.clock())))
    idle_empty_pct = 100.0 * (cpu() - c1) / (time.perf_counter() - w1)

    values = sorted(late)
    result = {
        "benchmark": "escalation",
        "count": args.count,
        "window_s": args.window,
        "tick_s": args.tick,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "schedule": {
            "deadlines": pending,
            "seconds": round(load_s, 3),
            "cpu_seconds": round(load_cpu, 3),
            "deadlines_per_s": round(pending / load_s),
        },
        "restart_rebuild": {"entries": rebuilt, "seconds": round(rebuild_s, 3)},
        "firing": {
            "fired": fired,
            "all_fired": fired == pending,
            "lateness_s": {
                "p50": round(pct(values, 50), 4),
                "p99": round(pct(values, 99), 4),
                "max": round(values[-1], 4) if values else None,
            },
            "largest_batch": max_batch,
            "cpu_pct_of_core_while_firing": round(fire_cpu_pct, 2),
        },
        "idle_cpu_pct_of_core": {
            "with_open_deadlines": round(idle_cpu_pct or 0.0, 3),
            "with_nothing_open": round(idle_empty_pct, 3),
        },
        "memory": {
            "peak_rss_mib": round(rss_mib(), 1),
            "rss_after_load_mib": round(rss_loaded, 1),
        },
        "targets": {
            "p99_lateness_s_below": 1.0,
            "peak_rss_mib_below": 1536,
            "idle_cpu_pct_below": 5.0,
        },
    }
    result["targets_met"] = bool(
        values
        and result["firing"]["lateness_s"]["p99"] < 1.0
        and result["memory"]["peak_rss_mib"] < 1536
        and result["idle_cpu_pct_of_core"]["with_open_deadlines"] < 5.0
        and fired == pending
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")
    return result


if __name__ == "__main__":
    main()
