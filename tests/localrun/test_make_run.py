"""``make run`` (``python -m localrun``): a short real run, start to clean stop.

The run uses free ports instead of the seed's (8001...) so that it can run
beside a developer's own ``make run``; the ports come from the same
``--<service>-port`` flags, so the code path is the one ``make run`` takes.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from websockets.sync.client import connect

from alerts.catalog import load_rule_file, rule_files
from infra.catalog import DASHBOARDS
from infra.catalog import SERVICES as CATALOG
from localrun.__main__ import (
    CLAUDE_STANDIN_PORT,
    MONITORING_BINARIES,
    PID_FILE,
    READY_LINE,
    SERVICES,
    PortTaken,
    check_ports_free,
    main,
    port_names,
    scrape_jobs,
)
from localrun.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _read_until(lines: queue.Queue[str | None], marker: str, timeout_s: float) -> list[str]:
    """Output lines up to and including the one containing ``marker``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:  # the process closed its output
            break
        seen.append(line)
        if marker in line:
            return seen
    pytest.fail(f"no {marker!r} within {timeout_s:.0f}s; output:\n" + "\n".join(seen))


def _drain(lines: queue.Queue[str | None]) -> list[str]:
    """Whatever output is left, without waiting."""
    rest: list[str] = []
    with contextlib.suppress(queue.Empty):
        while (line := lines.get_nowait()) is not None:
            rest.append(line)
    return rest


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    """Copy the process's output into ``lines`` (a thread: reads never block the test)."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    """Ctrl-C as a terminal would send it; SIGKILL only if it ignores that."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture
def state_root() -> Iterator[Path]:
    """A state directory the postgres user can traverse (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="localrun-test-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
def test_make_run_serves_health_streams_events_and_stops_cleanly(state_root: Path) -> None:
    built = [spec for spec in SERVICES if spec.built()]
    assert any(spec.name == "realtime" for spec in built), "realtime service is not built"
    ports = {name: free_port() for name in port_names(SERVICES)}
    state_dir = state_root / "state"
    argv = [sys.executable, "-m", "localrun", "--state-dir", str(state_dir), "--event-rate", "20"]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    process = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As `make run &` from a script: a background job starts with SIGINT
        # ignored, and must still stop on it.
        preexec_fn=_ignore_sigint,
    )
    output_lines: queue.Queue[str | None] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(process, output_lines), daemon=True)
    pump.start()
    try:
        lines = _read_until(output_lines, "Press Ctrl-C", START_TIMEOUT_S)
        output = "\n".join(lines)
        assert READY_LINE in output
        for spec in SERVICES:
            if spec.built():
                url = f"http://127.0.0.1:{ports[spec.name]}{spec.health_path}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.status == 200
            else:
                assert re.search(rf"^\s*{spec.name}\s.*not built yet", output, re.MULTILINE)

        # The dashboards' address and a sign-in token are printed ready to paste.
        if any(spec.name == "dashboards" for spec in built):
            signin = re.search(
                rf"open http://127\.0\.0\.1:{ports['dashboards']} and sign in .*\n\s+(\S+)",
                output,
            )
            assert signin is not None, output
            assert signin.group(1).count(".") == 2  # a JWT

        # The guide says where the datastores live and how to stop the run.
        assert re.search(rf"postgres\s+127\.0\.0\.1:\d+ .*data {state_dir}/postgres", output)
        assert re.search(rf"redis\s+127\.0\.0\.1:\d+ .*dir {state_dir}/redis", output)
        # Photo uploads have a media bucket: the S3 stand-in the guide names.
        s3 = re.search(r"s3\s+(http://127\.0\.0\.1:\d+)\s+bucket (\S+)", output)
        assert s3 is not None, output
        # Closed even when an assertion fails (a pooled socket left to the
        # garbage collector fails whichever later test it is collected in).
        with contextlib.closing(
            boto3.client(
                "s3",
                endpoint_url=s3.group(1),
                region_name="us-east-1",
                aws_access_key_id="any",
                aws_secret_access_key="any",
            )
        ) as bucket:
            bucket.put_object(Bucket=s3.group(2), Key="tenants/t/photos/x.img", Body=b"photo")
            assert (
                bucket.get_object(Bucket=s3.group(2), Key="tenants/t/photos/x.img")["Body"].read()
                == b"photo"
            )
        # The operator commands (vision backfill) reach it through the run's file too.
        operator_env = (state_dir / "operator.env").read_text()
        assert f"MEDIA_BUCKET={s3.group(2)}\n" in operator_env
        assert f"S3_ENDPOINT_URL={s3.group(1)}\n" in operator_env
        # So does `rollout advance`, to the run's Prometheus (it held without one).
        if all(shutil.which(binary) for binary in MONITORING_BINARIES):
            prometheus = re.search(r"^\s*prometheus (http://127\.0\.0\.1:\d+)\s", output, re.M)
            assert prometheus is not None, output
            assert f"PROMETHEUS_URL={prometheus.group(1)}\n" in operator_env
        assert f"kill {process.pid}" in output
        assert "make stop" in output

        # The printed commands work as pasted in a shell, from anywhere.
        feed = next(line.strip() for line in lines if " feed --tenant " in line)
        token = next(line.strip() for line in lines if " token --tenant " in line)
        assert feed.startswith("JWT_SECRET_KEY=")
        assert "/.venv/bin/enterprisehub feed" in feed
        watched = subprocess.run(
            ["bash", "-c", f"{feed} --count 2"],
            cwd=state_root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert watched.returncode == 0, watched.stderr
        events = [line for line in watched.stdout.splitlines() if not line.startswith("--")]
        assert len(events) == 2, watched.stdout
        assert all("lead-" in line for line in events), watched.stdout
        minted = subprocess.run(
            ["bash", "-c", token], cwd=state_root, capture_output=True, text=True, check=False
        )
        assert minted.returncode == 0, minted.stderr
        feed_url = re.search(r"--url (ws://\S+)", feed)
        assert feed_url is not None
        with connect(f"{feed_url.group(1)}?access_token={minted.stdout.strip()}") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"

        _check_monitoring(output, ports)

        # The banner's fault drill works as pasted: every ingest answers 500, then none.
        start_fault, end_fault = (line.strip() for line in lines if line.endswith("fault.json"))
        event = next(line.strip() for line in lines if "/v1/leads/events -H" in line)
        for command, status in ((start_fault, 500), (end_fault, 202)):
            subprocess.run(["bash", "-c", command], cwd=state_root, check=True)
            posted = subprocess.run(
                ["bash", "-c", f"{event} -o /dev/null -w '%{{http_code}}'"],
                cwd=state_root,
                capture_output=True,
                text=True,
                check=False,
            )
            assert posted.stdout == str(status), (command, posted.stdout, posted.stderr)

        # The operator commands get this run's stores from the file the banner
        # names: the rollback the monitoring check triggered is undone as
        # docs/observability.md says, by `enterprisehub rollout set`.
        operator = next(line.strip() for line in lines if " rollout status" in line)
        assert "DATABASE_URL" not in operator  # no credential in the banner itself
        status = subprocess.run(
            ["bash", "-c", operator], cwd=state_root, capture_output=True, text=True, check=False
        )
        assert status.returncode == 0, status.stderr
        assert "ai_coaching" in status.stdout
        back_on = subprocess.run(
            [
                "bash",
                "-c",
                operator.replace(
                    " rollout status --environment local",
                    " rollout set --feature ai_coaching --percentage 50 --reason 'make run test'"
                    " --environment local --yes",
                ),
            ],
            cwd=state_root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert back_on.returncode == 0, back_on.stderr
        assert "on at 50%" in back_on.stdout
    finally:
        _stop(process)
        pump.join(timeout=10)
        if process.stdout:
            process.stdout.close()
    rest = "\n".join(_drain(output_lines))
    assert process.returncode == 0, rest
    assert "stopped cleanly" in rest
    for spec in SERVICES:
        assert not _listening(ports[spec.name]), f"{spec.name} still listening after stop"
    assert not (state_dir / "postgres" / "postmaster.pid").exists()
    redis_pid = state_dir / "redis" / "redis.pid"
    if redis_pid.exists():
        with contextlib.suppress(ValueError):
            pid = int(redis_pid.read_text().strip())
            assert not Path(f"/proc/{pid}").exists(), "redis-server still running"


def _poll(check: Callable[[], str | None], timeout_s: float = 60.0) -> None:
    """Call ``check`` until it returns None (met); fail with its last answer."""
    deadline = time.monotonic() + timeout_s
    while (problem := check()) is not None:
        if time.monotonic() > deadline:
            pytest.fail(problem)
        time.sleep(0.5)


def _check_monitoring(output: str, ports: dict[str, int]) -> None:
    """What the banner says about Prometheus, Alertmanager and the handler holds."""
    prometheus = re.search(r"^\s*prometheus (http://127\.0\.0\.1:\d+)\s", output, re.MULTILINE)
    alertmanager = re.search(r"^\s*alertmanager (http://127\.0\.0\.1:\d+)\s", output, re.MULTILINE)
    assert prometheus is not None, output
    assert alertmanager is not None, output
    prom, am = prometheus.group(1), alertmanager.group(1)
    handler = f"http://127.0.0.1:{ports['rollback']}"
    assert f"{handler}/v1/alertmanager/webhook" in output

    # One job per running service, named as in the catalog (what the rules select).
    jobs = {spec.job for spec in SERVICES if spec.built() and spec.metrics}
    assert {"websocket-manager", "ml-services", "rollback-handler"} <= jobs

    def targets_up() -> str | None:
        targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return None if health == dict.fromkeys(jobs, "up") else f"targets: {health}"

    _poll(targets_up)

    if any(spec.name == "dashboards" and spec.built() for spec in SERVICES):
        # Scraped on their own metrics port (before: not at all), the revocation age too.
        wanted = {"auth_revocations_age_seconds", "dashboards_sessions_active"}

        def dashboards_series() -> str | None:
            selector = f'{{job="dashboards",__name__=~"{"|".join(sorted(wanted))}"}}'
            query = f"count by (__name__) ({selector})"
            result = httpx.get(f"{prom}/api/v1/query", params={"query": query}, timeout=5)
            names = {r["metric"]["__name__"] for r in result.json()["data"]["result"]}
            return None if names == wanted else f"dashboards series: {names}"

        _poll(dashboards_series)

    # Scraped only once serving: a scrape of a service still starting records
    # up == 0, which fired ErrorBudgetBurnFast (availability) on every start.
    down = httpx.get(
        f"{prom}/api/v1/query", params={"query": "min_over_time(up[1h]) == 0"}, timeout=5
    ).json()["data"]["result"]
    assert down == [], f"Prometheus saw these jobs down: {down}"

    # The banner's pages exist (Debian's Prometheus serves them under /classic).
    page_url = rf"{re.escape(prom)}\S*/(?:targets|rules|alerts)"
    pages = re.findall(rf"(?:targets|rules|alerts) ({page_url})\s", output)
    assert len(pages) == 3, output
    for page in pages:
        assert httpx.get(page, timeout=5).status_code == 200, page

    groups = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
    expected = {g["name"] for path in rule_files() for g in load_rule_file(path)["groups"]}
    assert {g["name"] for g in groups} == expected
    broken = [r["name"] for g in groups for r in g["rules"] if r["health"] == "err"]
    assert broken == [], groups

    def alertmanager_configured() -> str | None:
        data = httpx.get(f"{prom}/api/v1/alertmanagers", timeout=5).json()["data"]
        urls = [a["url"] for a in data["activeAlertmanagers"]]
        return None if urls == [f"{am}/api/v2/alerts"] else f"alertmanagers: {data}"

    _poll(alertmanager_configured)

    # The banner's amtool command works as pasted (Debian's Alertmanager has no web pages).
    amtool = re.search(r"(amtool --alertmanager\.url=\S+ alert query)$", output, re.MULTILINE)
    assert amtool is not None, output
    listed = subprocess.run(
        ["bash", "-c", amtool.group(1)], capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr

    # The routing reaches the handler with the credential it expects: a rollback
    # trigger posted to Alertmanager becomes an incident the handler reports.
    alert = {
        "labels": {
            "alertname": "MakeRunRoutingCheck",
            "action": "rollback",
            "feature": "ai_coaching",
            "severity": "critical",
        },
        "annotations": {"summary": "routing check of the make run test"},
    }
    assert httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=5).status_code == 200

    def incident_recorded() -> str | None:
        body = httpx.get(f"{handler}/health/rollback", timeout=5).json()
        names = [i["alertname"] for i in body.get("latest_incidents", [])]
        return None if "MakeRunRoutingCheck" in names else f"handler: {body}"

    _poll(incident_recorded, timeout_s=30)


def test_service_jobs_are_the_catalog_names() -> None:
    # The rules select on job="websocket-manager" and so on: the names must match.
    by_kind = {spec.kind: spec.name for spec in CATALOG.values()}
    for spec in SERVICES:
        if spec.name in by_kind:
            assert spec.job == by_kind[spec.name]


def test_taken_port_is_named_with_the_flag_to_change_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortTaken, match=rf"port {port} \(realtime\).*--realtime-port N"):
            check_ports_free({"realtime": port})
        built = next(spec for spec in SERVICES if spec.built())
        assert main([f"--{built.name}-port", str(port)]) == 2
    out = capsys.readouterr().out
    assert f"port {port} ({built.name}) is already in use" in out


def test_prometheus_scrapes_each_service_where_it_serves_metrics() -> None:
    """The dashboards' app port serves Streamlit alone (404 for /metrics): their
    job reads the metrics port, the one the catalog declares."""
    defaults = {spec.name: spec.default_port for spec in SERVICES}
    for spec in SERVICES:
        if spec.metrics_port:
            defaults[f"{spec.name}-metrics"] = spec.metrics_port
    assert sorted(defaults) == sorted(port_names(SERVICES))
    jobs = scrape_jobs(SERVICES, defaults)
    assert jobs["dashboards"] == [f"127.0.0.1:{DASHBOARDS.metrics_port}"]
    assert jobs["websocket-manager"] == ["127.0.0.1:8001"]
    assert set(jobs) == {spec.job for spec in SERVICES}
    # Every port of `make run` on loopback is its own.
    taken = [*defaults.values(), CLAUDE_STANDIN_PORT]
    assert len(set(taken)) == len(taken), taken


def test_a_taken_metrics_port_is_named_with_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        argv = [f"--{name}-port={free_port()}" for name in port_names(SERVICES)]
        assert main([*argv, "--dashboards-metrics-port", str(port)]) == 2
    out = capsys.readouterr().out
    assert f"port {port} (dashboards-metrics) is already in use" in out
    assert "--dashboards-metrics-port N" in out


def test_defaults_are_the_seeds_ports() -> None:
    assert {spec.name: spec.default_port for spec in SERVICES} == {
        "realtime": 8001,
        "ml": 8002,
        "coaching": 8003,
        "churn": 8004,
        "rollback": 8005,
        "dashboards": 8501,
    }


def test_stop_ends_the_run_that_owns_the_state_dir(
    state_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = state_root / "state"
    state_dir.mkdir()
    # Stands in for a `make run` in the background (the name is what is checked).
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "-m", "localrun"],
        start_new_session=True,
    )
    try:
        # Until the child has exec'd, its cmdline is still this process's.
        cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
        deadline = time.monotonic() + 30
        while b"-m\x00localrun" not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        (state_dir / PID_FILE).write_text(f"{sleeper.pid}\n")
        assert main(["--state-dir", str(state_dir), "stop"]) == 0
        assert sleeper.wait(timeout=30) == -signal.SIGTERM
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
    assert f"make run (pid {sleeper.pid})" in capsys.readouterr().out
    assert not (state_dir / PID_FILE).exists()
    # A pid file naming some other process is never acted on.
    other = subprocess.Popen(["sleep", "120"])
    try:
        (state_dir / PID_FILE).write_text(f"{other.pid}\n")
        assert main(["--state-dir", str(state_dir), "stop"]) == 0
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
    assert "nothing was running" in capsys.readouterr().out
