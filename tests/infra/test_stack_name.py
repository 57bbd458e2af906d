"""The stack name's limit on AWS: the longest that fits passes, one more is refused.

Every AWS name the program derives starts ``enterprisehub-<stack>-``; a stack
name one character too long failed a real preview on pulumi-aws's auto-name
check, naming no key. ``config_checks.AWS_STACK_NAME_MAX`` refuses it first; this
test proves each limit is the real one by synthesis (infra/synth/naming.py holds
the provider's and AWS's rules): at the limit every name fits, and with the check
raised by one the synthesis fails on a physical name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from infra import config_checks
from infra.config import StackConfigError
from infra.stackfiles import stack_config
from infra.synth.mock_values import CALL_HANDLERS
from infra.synth.mocks import run_program
from infra.synth.naming import PhysicalNameError
from tests.infra.test_aws_cluster import _existing_cluster_answer

SECRETS: Mapping[str, str] = {
    "enterprisehub:jwtSecretKey": "j" * 64,
    "enterprisehub:anthropicApiKey": "anthropic-test-key",
    "enterprisehub:ghlApiKey": "ghl-test-key",
}


def _run(mode: str, length: int) -> Any:
    """dev's stack file as a stack named ``dev-xxx...`` of ``length`` characters."""
    config = stack_config("dev")
    config["enterprisehub:image"] = "registry.example.com/enterprisehub@sha256:" + "b" * 64
    config["enterprisehub:runbookBaseUrl"] = (
        "https://git.example.com/hub/blob/0123abc/docs/runbooks/"
    )
    config["enterprisehub:environment"] = "dev"
    if mode == "existing-eks":
        cluster = {**json.loads(config["enterprisehub:cluster"]), "mode": mode, "name": "shared"}
        config["enterprisehub:cluster"] = json.dumps(cluster)
    name = ("dev-" + "x" * 60)[:length]
    return run_program(name, config, dict(SECRETS))


@pytest.fixture
def existing_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CALL_HANDLERS, "aws:eks/getCluster:getCluster", _existing_cluster_answer)


@pytest.mark.usefixtures("existing_cluster")
@pytest.mark.parametrize("mode", ["eks", "existing-eks"])
def test_the_longest_stack_name_fits_and_one_more_is_refused(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    longest = config_checks.AWS_STACK_NAME_MAX[mode]
    _run(mode, longest)
    with pytest.raises(StackConfigError, match=f"at most {longest} characters"):
        _run(mode, longest + 1)
    # The limit is tight: allowed one more character, a physical name breaks.
    monkeypatch.setitem(config_checks.AWS_STACK_NAME_MAX, mode, longest + 1)
    with pytest.raises(PhysicalNameError, match="over the limit"):
        _run(mode, longest + 1)
