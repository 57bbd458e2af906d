"""The whole platform running as ``make run`` runs it, driven, and scraped by a real Prometheus.

Used by ``test_live_series.py``: the rules and dashboards are checked against
what the services really export once they have served traffic, not against
their source. ``make run`` (``python -m localrun``) starts Postgres, Redis,
every service, its own Prometheus and Alertmanager; the Claude features talk
to the Anthropic stand-in (a separate process, as in the Claude benchmarks).
``drive`` then sends what users, the CRM and Alertmanager send, and a second
Prometheus of our own scrapes every service each second and evaluates the
project's rule files with every group's interval set to one second (nothing
else changed), so that every recorded series exists within seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from alerts.catalog import load_rule_file, rule_files
from benchmarks import claude_answers
from localrun.__main__ import READY_LINE, SERVICES, port_names, scrape_jobs
from localrun.demo import lead_event, lead_features
from localrun.servers import PrometheusServer, free_port, start_prometheus
from services.common.auth import issue_token
from services.common.scopes import (
    COACHING_ANALYZE,
    CRM_INGEST,
    FEED_READ,
    LEADS_SCORE,
    OPERATOR,
    VISION_ANALYZE,
)
from services.common.settings import AuthSettings

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300.0
#: The first demo tenant is inside every feature's rollout (localrun.demo.DEMO_FLAG_SEED).
TENANT = "demo-acme-realty"
#: The feature whose flag ``drive``'s rollback trigger turns off.
ROLLED_BACK_FEATURE = "ai_coaching"


@dataclass(frozen=True)
class LivePlatform:
    """The running services (job -> base URL) and the Prometheus scraping them."""

    services: dict[str, str]
    prometheus: str
    alertmanager: str

    def scrape(self, job: str) -> str:
        """The service's ``/metrics`` as Prometheus reads it."""
        response = httpx.get(f"{self.services[job]}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query's whole answer (``status``, ``data``, ``error``, ``warnings``)."""
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=30)
        answer: dict[str, Any] = response.json()
        return answer


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _wait_for_banner(lines: queue.Queue[str | None]) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if "Press Ctrl-C" in line:
            output = "\n".join(seen)
            if READY_LINE not in output:
                break
            return output
    raise RuntimeError("make run did not come up:\n" + "\n".join(seen))


def _wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.2)


def _one_second_rule_files(directory: Path) -> list[Path]:
    """The project's rule files with every group evaluated each second (nothing else changed)."""
    paths = []
    for path in rule_files():
        data = load_rule_file(path)
        for group in data["groups"]:
            group["interval"] = "1s"
        copy = directory / path.name
        copy.write_text(yaml.safe_dump(data, sort_keys=False))
        paths.append(copy)
    return paths


@contextlib.contextmanager
def _child(argv: list[str], *, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_platform() -> Iterator[LivePlatform]:
    """``make run`` with the Claude stand-in, driven, and a one-second Prometheus over it."""
    root = Path(tempfile.mkdtemp(prefix="live-series-"))
    root.chmod(0o711)  # the postgres user traverses it
    state_dir = root / "state"
    api_port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "ANTHROPIC_API_KEY": "sk-live-series",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{api_port}",
    }
    standin = [
        sys.executable,
        "-m",
        "localrun.standins.anthropic",
        "--port",
        str(api_port),
        "--responder",
        "tests.alerts.live_platform:respond",
    ]
    ports = {name: free_port() for name in port_names(SERVICES)}
    argv = [sys.executable, "-m", "localrun", "--state-dir", str(state_dir), "--event-rate", "5"]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    try:
        with _child(standin, env=env, log=root / "standin.log"):
            _wait_http(f"http://127.0.0.1:{api_port}/")
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            lines: queue.Queue[str | None] = queue.Queue()
            pump = threading.Thread(target=_pump, args=(process, lines), daemon=True)
            pump.start()
            try:
                banner = _wait_for_banner(lines)
                alertmanager = re.search(r"^\s*alertmanager (http://\S+)\s", banner, re.MULTILINE)
                assert alertmanager is not None, banner
                # Where each one serves /metrics (the dashboards: their own port).
                built = [spec for spec in SERVICES if spec.built()]
                services = {
                    job: f"http://{address}"
                    for job, (address,) in scrape_jobs(built, ports).items()
                }
                platform_without_prometheus = LivePlatform(services, "", alertmanager.group(1))
                auth = AuthSettings.from_env(
                    jwt_secret_key=(state_dir / "jwt-secret").read_text().strip(),
                    jwt_key_id="local",
                )
                prometheus = _start_prometheus(root, services)
                try:
                    drive(platform_without_prometheus, auth)
                    platform = LivePlatform(services, prometheus.url, alertmanager.group(1))
                    _wait_for_rules(platform)
                    yield platform
                finally:
                    prometheus.stop()
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                    try:
                        process.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                pump.join(timeout=10)
                if process.stdout:
                    process.stdout.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start_prometheus(root: Path, services: dict[str, str]) -> PrometheusServer:
    rules_dir = root / "rules"
    rules_dir.mkdir()
    return start_prometheus(
        root,
        jobs={job: [url.removeprefix("http://")] for job, url in services.items()},
        rule_files=_one_second_rule_files(rules_dir),
        scrape_interval="1s",
    )


def _poll(check: Callable[[], str | None], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (problem := check()) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(problem)
        time.sleep(0.5)


def _wait_for_rules(platform: LivePlatform) -> None:
    """Until every rule group has been evaluated after a few scrapes of the driven services."""

    def recorded() -> str | None:
        groups = httpx.get(f"{platform.prometheus}/api/v1/rules", timeout=5).json()["data"]
        never = [g["name"] for g in groups["groups"] if g["lastEvaluation"].startswith("0001")]
        if never:
            return f"rule groups never evaluated: {never}"
        # Rates need two scrapes that both saw the traffic.
        answer = platform.query("job:http_requests:rate5m > 0")
        return None if answer["data"]["result"] else "no request rate recorded yet"

    _poll(recorded, timeout_s=60)
    time.sleep(3)  # a few more evaluations: rules that read recorded series catch up


#: A transcript holding this gets an answer that is not JSON: a real 502 (ClaudeBadOutput).
UNPARSABLE_MARKER = "answer-me-badly"


def respond(body: dict[str, Any]) -> str:
    """The stand-in's answers: valid ones, but nonsense for a transcript with the marker."""
    if UNPARSABLE_MARKER in json.dumps(body):
        return "this is not JSON"
    return claude_answers.respond(body)


def _token(auth: AuthSettings, scope: str, *, subject: str = "live-series") -> str:
    return issue_token(auth, tenant_id=TENANT, subject=subject, scopes=(scope,), ttl_seconds=600)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def drive(platform: LivePlatform, auth: AuthSettings) -> None:
    """What users, the CRM and Alertmanager send, enough to give every series its labels.

    ``make run`` already streams lead events into the ingest; this adds feed
    sockets (one refused for its token), conversions, lead scoring (single and
    batch), a coaching analysis (a billed Claude call) and one that fails
    (Claude's answer unparsable: 502), a property photo
    analysis (refused: no media bucket on a laptop), churn leads and signals,
    and a rollback trigger through Alertmanager to the rollback handler.
    """
    realtime = platform.services["websocket-manager"]
    ml = platform.services["ml-services"]
    coaching = platform.services["coaching-engine"]
    churn = platform.services["churn-orchestrator"]
    ws = realtime.replace("http://", "ws://") + "/v1/feed"

    with contextlib.suppress(InvalidStatus), connect(f"{ws}?access_token=not-a-token"):
        pass
    with connect(f"{ws}?access_token={_token(auth, FEED_READ, subject='agent-1')}") as feed:
        crm = _bearer(_token(auth, CRM_INGEST))
        for seq in (1, 2):
            event = {**lead_event(seq=900_000 + seq), "event_type": "lead.converted"}
            posted = httpx.post(f"{realtime}/v1/leads/events", json=event, headers=crm, timeout=10)
            assert posted.status_code == 202, posted.text
        frames = [json.loads(feed.recv(timeout=10)) for _ in range(3)]
        assert frames[0]["type"] == "ready", frames

    rng = random.Random(7)
    scoring = _bearer(_token(auth, LEADS_SCORE))
    for _ in range(5):
        one = httpx.post(
            f"{ml}/v1/leads/score",
            json={"lead_id": "l-1", "features": lead_features(rng)},
            headers=scoring,
            timeout=10,
        )
        assert one.status_code == 200, one.text
    batch = httpx.post(
        f"{ml}/v1/leads/score/batch",
        json={"leads": [{"lead_id": f"l-{i}", "features": lead_features(rng)} for i in range(4)]},
        headers=scoring,
        timeout=10,
    )
    assert batch.status_code == 200, batch.text
    photo = httpx.post(
        f"{ml}/v1/ml/vision/analyses/upload",
        params={"property_id": "prop-1"},
        content=b"\x89PNG not really",
        headers={**_bearer(_token(auth, VISION_ANALYZE)), "Content-Type": "image/png"},
        timeout=10,
    )
    assert photo.status_code < 500, photo.text

    now = datetime.now(UTC)
    stamp = now.isoformat()
    session = httpx.post(
        f"{coaching}/v1/coaching/sessions",
        json={
            "agent_id": "agent-1",
            "messages": [
                {
                    "id": "m1",
                    "speaker": "lead",
                    "text": "Is it still for sale?",
                    "timestamp": stamp,
                },
                {
                    "id": "m2",
                    "speaker": "agent",
                    "text": "Yes, shall we book a showing?",
                    "timestamp": stamp,
                },
            ],
        },
        headers=_bearer(_token(auth, COACHING_ANALYZE)),
        timeout=60,
    )
    assert session.status_code == 200, session.text
    # One failure with the tenant known: the 5xx series of every view.
    failed = httpx.post(
        f"{coaching}/v1/coaching/sessions",
        json={
            "agent_id": "agent-1",
            "messages": [
                {"id": "m1", "speaker": "lead", "text": UNPARSABLE_MARKER, "timestamp": stamp}
            ],
        },
        headers=_bearer(_token(auth, COACHING_ANALYZE)),
        timeout=60,
    )
    assert failed.status_code == 502, failed.text

    crm = _bearer(_token(auth, CRM_INGEST))
    leads = httpx.put(
        f"{churn}/v1/churn/leads",
        json={"leads": [{"lead_id": "churn-1", "pipeline_stage": "new"}]},
        headers=crm,
        timeout=10,
    )
    assert leads.status_code == 200, leads.text
    signals = httpx.post(
        f"{churn}/v1/churn/signals",
        json={
            "signals": [
                {
                    "signal_id": str(uuid.uuid4()),
                    "lead_id": "churn-1",
                    "type": "email_opened",
                    "occurred_at": now.isoformat(),
                }
            ]
        },
        headers=crm,
        timeout=10,
    )
    assert signals.status_code == 202, signals.text
    listed = httpx.get(
        f"{churn}/v1/churn/interventions", headers=_bearer(_token(auth, OPERATOR)), timeout=10
    )
    assert listed.status_code == 200, listed.text

    alert = {
        "labels": {
            "alertname": "LiveSeriesCheck",
            "action": "rollback",
            "feature": ROLLED_BACK_FEATURE,
            "severity": "critical",
        },
        "annotations": {"summary": "live series test"},
    }
    sent = httpx.post(f"{platform.alertmanager}/api/v2/alerts", json=[alert], timeout=5)
    assert sent.status_code == 200, sent.text
    rollback = platform.services["rollback-handler"]

    def incident() -> str | None:
        text = httpx.get(f"{rollback}/metrics", timeout=5).text
        return None if "rollback_incidents_total{" in text else "no incident counted yet"

    _poll(incident, timeout_s=30)
