"""The demo data ``make run`` and the W1 benchmark send, and the guide it prints."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import anthropic
import pytest

from localrun.__main__ import (
    CLAUDE_STANDIN_PORT,
    REPO_ROOT,
    SERVICES,
    enterprisehub_cli,
    print_guide,
    write_operator_env,
)
from localrun.demo import (
    DEMO_AGENTS,
    DEMO_FLAG_SEED,
    DEMO_TENANTS,
    WEBHOOK_SUBJECT,
    demo_tenants,
    lead_event,
)
from localrun.servers import free_port
from services.coaching.analysis import CoachingInsights
from services.coaching.conversation import compute_metrics
from services.coaching.prompt import request_params as coaching_request
from services.coaching.schemas import TranscriptMessage
from services.common.auth import TokenVerifier
from services.common.flags import FEATURES, bucket, parse_seed
from services.common.settings import AuthSettings
from services.realtime.schemas import LeadEventCreate

SECRET = "demo-test-signing-key-0123456789abcdef"


@pytest.fixture
def auth() -> AuthSettings:
    return AuthSettings(jwt_secret_key=SECRET, jwt_key_id="local")


@pytest.mark.parametrize("agent", [None, "agent-2"])
def test_demo_events_are_valid_webhooks_and_repeatable(agent: str | None) -> None:
    for seq in range(300):
        body = lead_event(seq=seq, agent_id=agent)
        event = LeadEventCreate.model_validate(body)
        assert event.agent_id == agent
        assert lead_event(seq=seq, agent_id=agent) == body
    assert lead_event(seq=1) != lead_event(seq=2)


def test_the_guides_tenant_is_inside_every_demo_rollout() -> None:
    # The guide hands out the first tenant's tokens: with the routes gated per
    # tenant, a seed that left it outside a feature would make that feature 403.
    seed = parse_seed(DEMO_FLAG_SEED)
    inside = {
        feature: [t for t in DEMO_TENANTS if bucket(feature, t) < seed[feature].threshold]
        for feature in FEATURES
    }
    for feature in FEATURES:
        assert DEMO_TENANTS[0] in inside[feature], feature
    # ...and still mid-rollout somewhere, so the demo shows a refusal too.
    assert any(len(tenants) < len(DEMO_TENANTS) for tenants in inside.values())


def test_demo_tokens_carry_tenant_and_subject(auth: AuthSettings) -> None:
    verifier = TokenVerifier.from_settings(auth)
    tenants = demo_tenants(auth)
    assert len({t.tenant_id for t in tenants}) == len(tenants)
    for tenant in tenants:
        webhook = verifier.verify(tenant.webhook_token)
        assert (webhook.tenant_id, webhook.subject) == (tenant.tenant_id, WEBHOOK_SUBJECT)
        # The CRM may post events, not watch feeds; an agent may watch, not post.
        assert webhook.scopes == {"crm:ingest"}
        assert set(tenant.agent_tokens) == set(DEMO_AGENTS)
        for agent, token in tenant.agent_tokens.items():
            principal = verifier.verify(token)
            assert (principal.subject, set(principal.scopes)) == (agent, {"feed:read"})
        # The dashboards' sign-in needs dashboards:view; the hub reads the feed.
        manager = verifier.verify(tenant.dashboards_token)
        assert (manager.tenant_id, set(manager.scopes)) == (
            tenant.tenant_id,
            {"dashboards:view", "feed:read"},
        )


def test_guide_names_every_service_and_gives_a_working_feed_command(
    auth: AuthSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tenants = demo_tenants(auth)
    print_guide(
        started={"realtime": 8001, "ml": 8002, "rollback": 8005},
        missing=[s for s in SERVICES if s.name in {"coaching", "churn"}],
        tenants=tenants,
        prometheus_url="http://127.0.0.1:9090",
        alertmanager_url="http://127.0.0.1:9093",
        state_dir=tmp_path,
        event_rate=2,
    )
    out = capsys.readouterr().out
    for port in (8001, 8002):
        assert f"http://127.0.0.1:{port}/health/detailed" in out
        assert f"http://127.0.0.1:{port}/metrics" in out
    assert re.search(r"coaching\s+port 8003: not built yet", out)
    assert re.search(r"churn\s+port 8004: not built yet", out)
    # Where the monitoring runs, what it scrapes, and where rollback triggers go.
    assert re.search(
        r"prometheus http://127\.0\.0\.1:9090 .*websocket-manager, ml-services, rollback-handler",
        out,
    )
    assert re.search(r"alertmanager http://127\.0\.0\.1:9093 ", out)
    # Debian's Alertmanager has no web pages: its alerts are read with amtool.
    assert "amtool --alertmanager.url=http://127.0.0.1:9093 alert query" in out
    assert "http://127.0.0.1:8005/v1/alertmanager/webhook" in out
    key = shlex.quote(str(tmp_path / "jwt-secret"))
    cli = f'JWT_SECRET_KEY="$(cat {key})" JWT_KEY_ID=local {enterprisehub_cli()}'
    feed = f"{cli} feed --tenant {tenants[0].tenant_id} --subject agent-1 "
    assert f"  {feed}--url ws://127.0.0.1:8001/v1/feed\n" in out
    assert f"  {cli} token --tenant {tenants[0].tenant_id} --subject agent-9 --scope" in out
    # No tool the project does not install, and no bare `enterprisehub` (not on PATH).
    assert "websocat" not in out
    assert " enterprisehub " not in out
    assert "Ctrl-C" in out
    assert "make stop" in out


def test_guide_offers_a_claude_stand_in_that_answers_the_services(
    auth: AuthSettings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The guide said "ANTHROPIC_BASE_URL for a stand-in" without saying which
    # or how: offline, a new user had no way to try coaching or vision.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    print_guide(
        started={"realtime": 8001},
        missing=[],
        tenants=demo_tenants(auth),
        prometheus_url=None,
        alertmanager_url=None,
        state_dir=tmp_path,
        event_rate=2,
    )
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    standin = next(line for line in lines if "localrun.standins.anthropic" in line)
    make = lines[lines.index(standin) + 1]
    assert standin.endswith(" &")
    assert f"ANTHROPIC_BASE_URL=http://127.0.0.1:{CLAUDE_STANDIN_PORT} " in make
    assert make.endswith(f"make -C {shlex.quote(str(REPO_ROOT))} run")

    port = free_port()
    command = standin.removesuffix(" &").replace(f"--port {CLAUDE_STANDIN_PORT}", f"--port {port}")
    process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=tmp_path)
    # Closed even when an assertion fails: a pooled keep-alive socket left to
    # the garbage collector fails whichever later test it is collected in.
    client = anthropic.Anthropic(api_key="stand-in", base_url=f"http://127.0.0.1:{port}")
    try:
        messages = [
            TranscriptMessage(
                id="m1",
                speaker="lead",
                text="Is it still available?",
                timestamp=datetime(2026, 12, 5, tzinfo=UTC),
            ),
            TranscriptMessage(
                id="m2",
                speaker="agent",
                text="Yes, when can you visit?",
                timestamp=datetime(2026, 12, 5, 0, 1, tzinfo=UTC),
            ),
        ]
        params = coaching_request(messages, compute_metrics(messages), max_tokens=1_000)
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = client.messages.create(model="claude-sonnet-4-5", **params)
                break
            except anthropic.APIConnectionError:
                assert time.monotonic() < deadline, "the stand-in did not start"
                time.sleep(0.2)
        [block] = answer.content
        assert block.type == "text"
        CoachingInsights.model_validate_json(block.text)
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def test_operator_env_carries_the_runs_claude_settings(tmp_path: Path) -> None:
    # The guide's operator commands include `vision backfill`, which calls Claude as
    # the services do; the file held only the stores and the JWT key, so from a run
    # started with the stand-in (as the guide says) it refused: no ANTHROPIC_API_KEY.
    inherited = {
        "ANTHROPIC_API_KEY": "stand-in",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{CLAUDE_STANDIN_PORT}",
        "CLAUDE_MODEL": "claude-haiku-4-5",
        "HOME": "/root",  # the rest of the run's environment stays out
    }
    path = write_operator_env(tmp_path, {"ENVIRONMENT": "local"}, inherited=inherited)
    assert "HOME=" not in path.read_text()
    read = subprocess.run(
        [
            "bash",
            "-c",
            f"set -a; . {shlex.quote(str(path))}; exec {shlex.quote(sys.executable)} -c "
            "'from services.common.settings import ClaudeSettings as C; s = C.from_env(); "
            "print(s.anthropic_api_key.get_secret_value(), s.anthropic_base_url, s.claude_model)'",
        ],
        cwd=REPO_ROOT,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.split() == [
        "stand-in",
        f"http://127.0.0.1:{CLAUDE_STANDIN_PORT}",
        "claude-haiku-4-5",
    ]
