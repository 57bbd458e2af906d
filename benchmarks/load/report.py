"""Turning W1 step results into the markdown tables docs/benchmarks.md records."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

P95_TARGET_MS = 50.0  # the seed's WEBSOCKET_TARGET_LATENCY_MS
GOAL_P95_MS = 5.0  # issue 3's goal for this machine
RATE_KEPT = 0.95


@dataclass
class StepResult:
    """One load step of one system, as measured."""

    system: str
    shape: str
    rate: float
    clients: int
    connected: int
    duration_s: float
    achieved_rate: float
    accepted: int
    post_failures: dict[str, int]
    expected_frames: int
    received_frames: int
    lost: int
    extra: int
    frames_per_s: float
    latency_ms: dict[str, float]
    server_cpu: float
    datastore_cpu: float
    load_cpu: float
    drain_s: float
    stale: int = 0
    settle_s: float = 0.0
    disconnects: dict[str, int] = field(default_factory=dict)
    ingest_ms: dict[str, float] = field(default_factory=dict)
    batch: int = 1

    @property
    def label(self) -> str:
        """``broadcast 200/s`` style name of the step (``..., batches of 20``)."""
        base = f"{self.shape} {self.rate:g}/s"
        return f"{base}, batches of {self.batch}" if self.batch > 1 else base

    @property
    def held(self) -> bool:
        """p95 under the seed's target, nothing lost, the rate really offered.

        The rate counts as offered when the poster kept 95% of it with its
        bounded requests in flight: a slow ingest otherwise lowers its own load.
        """
        p95 = self.latency_ms.get("p95", math.nan)
        return (
            self.lost == 0
            and self.achieved_rate >= RATE_KEPT * self.rate
            and not self.post_failures
            and self.accepted > 0
            and not math.isnan(p95)
            and p95 < P95_TARGET_MS
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``--json-out``)."""
        data = dict(self.__dict__)
        data["held"] = self.held
        return data


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def step_table(results: list[StepResult]) -> str:
    """One row per system and step."""
    head = (
        "| system | step | clients | events accepted (rate achieved) | frames/s delivered "
        "| p50 ms | p95 ms | p99 ms | max ms | lost | ingest p50/p99 ms | server CPU "
        "| Postgres+Redis CPU | load CPU | held |"
    )
    rows = [head, "|" + "---|" * 15]
    for r in results:
        lat = r.latency_ms
        failures = sum(r.post_failures.values())
        accepted = f"{r.accepted} ({r.achieved_rate:.0f}/s)"
        if failures:
            accepted += f", {failures} failed"
        rows.append(
            f"| {r.system} | {r.label} | {r.connected}/{r.clients} | {accepted} "
            f"| {r.frames_per_s:,.0f} | {_ms(lat['p50'])} | {_ms(lat['p95'])} "
            f"| {_ms(lat['p99'])} | {_ms(lat['max'])} | {r.lost:,} "
            f"| {_ms(r.ingest_ms.get('p50', math.nan))}/{_ms(r.ingest_ms.get('p99', math.nan))} "
            f"| {r.server_cpu:.2f} | {r.datastore_cpu:.2f} | {r.load_cpu:.2f} "
            f"| {'yes' if r.held else 'no'} |"
        )
    return "\n".join(rows)


def _ratio(a: float, b: float) -> str:
    if not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.3g}x"


def ratio_table(results: list[StepResult], ours: str = "ours", peer: str = "socketio") -> str:
    """Per step: ours over the peer (p95 below 1x: ours faster; frames/s above 1x: ours more)."""
    by_key = {(r.system, r.label): r for r in results}
    labels = [r.label for r in results if r.system == ours]
    rows = [
        "| step | p95 ours ms | p95 peer ms | p95 ours/peer (<1 = ours faster) "
        "| frames/s ours/peer | lost ours | lost peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        a, b = by_key.get((ours, label)), by_key.get((peer, label))
        if a is None or b is None:
            continue
        p95a, p95b = a.latency_ms["p95"], b.latency_ms["p95"]
        rows.append(
            f"| {label} | {_ms(p95a)} | {_ms(p95b)} | {_ratio(p95a, p95b)} "
            f"| {_ratio(a.frames_per_s, b.frames_per_s)} | {a.lost:,} | {b.lost:,} |"
        )
    return "\n".join(rows)


def headline(results: list[StepResult]) -> str:
    """The claims BENCHMARKS.md asks for, in sentences."""
    lines = []
    for system in dict.fromkeys(r.system for r in results):
        mine = [r for r in results if r.system == system]
        held = [r for r in mine if r.shape == "broadcast" and r.held]
        best = max(held, key=lambda r: r.rate).label if held else "none"
        at200 = next((r for r in mine if r.shape == "broadcast" and r.rate == 200), None)
        p95_200 = _ms(at200.latency_ms["p95"]) + " ms" if at200 else "not run"
        targeted = [r for r in mine if r.shape == "targeted"]
        t_text = (
            ", ".join(
                f"{r.label}: p95 {_ms(r.latency_ms['p95'])} ms, lost {r.lost}, "
                f"{'held' if r.held else 'not held'}"
                for r in targeted
            )
            or "not run"
        )
        lines.append(
            f"- **{system}**: highest broadcast step held (p95 < {P95_TARGET_MS:g} ms, "
            f"no loss): {best}; p95 at broadcast 200/s: {p95_200}; {t_text}."
        )
    ours_2000 = [r for r in results if r.system == "ours" and r.rate == 2000]
    for r in ours_2000:
        p95 = r.latency_ms["p95"]
        met = (not math.isnan(p95)) and p95 < GOAL_P95_MS and r.lost == 0
        lines.append(
            f"- Goal p95 < {GOAL_P95_MS:g} ms at 2,000 events/s ({r.label}): "
            f"{'met' if met else 'NOT met'} (p95 {_ms(p95)} ms, lost {r.lost:,})."
        )
    return "\n".join(lines)
