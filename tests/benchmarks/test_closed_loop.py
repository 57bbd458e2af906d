"""W7 end to end: a fault fires the rollback trigger, the handler turns the flag off,
and the alert resolves once the fault ends (real Prometheus and Alertmanager)."""

from __future__ import annotations

import shutil

import pytest

from benchmarks.closed_loop import SCENARIOS, run

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
    reason="needs Debian's prometheus and prometheus-alertmanager (make setup)",
)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fault_to_flag_off_and_back(name: str) -> None:
    scenario = SCENARIOS[name]
    timeline = run(scenario, factor=60, timeout_s=90, say=print)
    assert timeline.pending is not None, "the alert never went pending"
    assert timeline.firing is not None, "the alert never fired"
    assert timeline.pending <= timeline.firing
    assert timeline.webhook_received is not None, "the handler never received the alert"
    assert timeline.flag_off is not None, "the flag was never turned off"
    if scenario.feature != "all":
        assert timeline.other_flags_on, "another feature's flag went off too"
    if scenario.gated:
        assert timeline.served_before, "the feature was not served before the fault"
        assert timeline.replicas_stopped is not None, "a replica still serves the feature"
        assert timeline.flag_off <= timeline.replicas_stopped
    assert timeline.resolved is not None, "the alert did not resolve after the fault ended"


def test_a_flag_gated_feature_is_among_the_scenarios() -> None:
    """The loop must end with the feature no longer served, not only with a flag off."""
    assert any(scenario.gated for scenario in SCENARIOS.values())
