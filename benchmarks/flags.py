"""Flag decisions: ours (raw and through OpenFeature) next to GrowthBook's Python SDK.

One feature at 25%, 10,000 tenants, DECISIONS decisions cycling through the
tenants (so each tenant is decided 100 times at the default 1,000,000). Each
system evaluates the same rule locally: ours from the ``FlagCache`` (the
state installed as the Redis sync installs it), GrowthBook from a features
dict with the equivalent rule (``hashVersion`` 2, seed = feature name,
``range`` [0, 0.25]) on one ``GrowthBook`` instance whose attributes are set
per decision, with no host or key (no network). Rows:

- ours, raw: ``FlagCache.is_enabled`` (the hot path of ``require_feature``
  minus the exposure bookkeeping), buckets remembered after first use;
- ours, raw, cold: the same decision computing the GrowthBook v2 hash every
  time (what a decision costs without the remembered bucket);
- ours, with reason: ``FlagCache.evaluate`` (reason and variant);
- ours through OpenFeature: ``client.get_boolean_value`` with our provider;
- GrowthBook: ``set_attributes`` + ``is_on``.

Also checked: the share of tenants in treatment (25% +/- 0.5 points) and
that both systems put exactly the same tenants in treatment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from growthbook import GrowthBook
from openfeature import api as openfeature_api
from openfeature.evaluation_context import EvaluationContext
from prometheus_client import CollectorRegistry

from benchmarks.machine import cpu_model
from services.common.flags import FlagCache, FlagState, bucket
from services.common.flags.provider import EnterpriseHubProvider

FEATURE = "ai_coaching"
PERCENTAGE = 25.0


def _timed(decide: Callable[[int], object], decisions: int) -> dict[str, float]:
    """Nanoseconds per decision of ``decide(i)``: wall clock and this thread's CPU time.

    On a shared machine the wall clock includes time spent waiting for a
    core; the thread's CPU time does not, so both are kept.
    """
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for index in range(decisions):
        decide(index)
    return {
        "wall": (time.perf_counter_ns() - wall) / decisions,
        "cpu": (time.thread_time_ns() - cpu) / decisions,
    }


def _cache() -> FlagCache:
    # A cache never connected to Redis: ``apply`` is exactly what the sync
    # calls on each notice, and decisions never touch the client.
    cache = FlagCache(None, registry=CollectorRegistry())  # type: ignore[arg-type]
    cache.apply(FEATURE, FlagState(enabled=True, rollout_percentage=PERCENTAGE))
    return cache


def run(decisions: int, tenant_count: int) -> dict[str, Any]:
    """Measure every row; return the numbers."""
    tenants = [f"tenant-{index:05d}" for index in range(tenant_count)]
    cache = _cache()
    count = len(tenants)

    raw = _timed(lambda i: cache.is_enabled(FEATURE, tenants[i % count]), decisions)
    threshold = round(PERCENTAGE * 100)
    cold_n = max(1, decisions // 10)
    cold = _timed(lambda i: bucket(FEATURE, tenants[i % count]) < threshold, cold_n)
    reasoned = _timed(lambda i: cache.evaluate(FEATURE, tenants[i % count]), decisions)

    openfeature_api.set_provider(EnterpriseHubProvider(cache), domain="benchmark")
    client = openfeature_api.get_client(domain="benchmark")
    contexts = [EvaluationContext(targeting_key=t) for t in tenants]
    via_openfeature = _timed(
        lambda i: client.get_boolean_value(FEATURE, False, contexts[i % count]), decisions
    )

    rule = {
        "force": True,
        "hashAttribute": "id",
        "seed": FEATURE,
        "hashVersion": 2,
        "range": [0, PERCENTAGE / 100],
    }
    growthbook = GrowthBook(features={FEATURE: {"defaultValue": False, "rules": [rule]}})
    attributes = [{"id": t} for t in tenants]

    def growthbook_decide(index: int) -> bool:
        growthbook.set_attributes(attributes[index % count])
        return bool(growthbook.is_on(FEATURE))

    peer = _timed(growthbook_decide, decisions)

    ours_in = [t for t in tenants if cache.is_enabled(FEATURE, t)]
    theirs_in = [t for i, t in enumerate(tenants) if growthbook_decide(i)]
    return {
        "decisions": decisions,
        "tenants": tenant_count,
        "ns_per_decision": {
            "ours_raw": raw,
            "ours_raw_cold": cold,
            "ours_with_reason": reasoned,
            "ours_openfeature": via_openfeature,
            "growthbook": peer,
        },
        "cold_decisions": cold_n,
        "share_ours": len(ours_in) / tenant_count,
        "share_growthbook": len(theirs_in) / tenant_count,
        "same_tenants": ours_in == theirs_in,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print a markdown block (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    result = run(args.decisions, args.tenants)
    result["load_average"] = [load_before, os.getloadavg()[0]]
    ns = result["ns_per_decision"]
    print("## W5 flag decisions\n")
    print(f"Command: `.venv/bin/python -m benchmarks.flags --decisions {args.decisions}`")
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; "
        f"CPU {cpu_model()}; Python {platform.python_version()}; "
        f"growthbook {version('growthbook')}; openfeature-sdk {version('openfeature-sdk')}; "
        f"1-min load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}.\n"
    )
    print("| decision | CPU ns/decision | wall ns/decision | GrowthBook CPU time / ours |")
    print("|---|---:|---:|---:|")
    for label, key in (
        ("ours, raw (`FlagCache.is_enabled`)", "ours_raw"),
        (f"ours, raw, hash every time ({result['cold_decisions']:,} decisions)", "ours_raw_cold"),
        ("ours, with reason and variant (`evaluate`)", "ours_with_reason"),
        ("ours through the OpenFeature client", "ours_openfeature"),
        ("GrowthBook 4 (`set_attributes` + `is_on`)", "growthbook"),
    ):
        cpu, wall = ns[key]["cpu"], ns[key]["wall"]
        ratio = ns["growthbook"]["cpu"] / cpu
        print(f"| {label} | {cpu:,.0f} | {wall:,.0f} | {ratio:.1f}x |")
    print(
        f"\n{args.tenants:,} tenants at {PERCENTAGE:g}%: in treatment ours "
        f"{result['share_ours']:.2%}, GrowthBook {result['share_growthbook']:.2%}; "
        f"same tenants: {'yes' if result['same_tenants'] else 'NO'}."
    )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
