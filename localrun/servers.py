"""Start and stop real PostgreSQL 15, Redis, Prometheus and Alertmanager on loopback.

One implementation for the test suite (``tests/conftest.py``) and for
``make run`` (``localrun/__main__.py``). Each server runs from the Debian
binaries, listens on 127.0.0.1 on a free port, and keeps all its files under
the directory it is given, so several runs can coexist and cleanup is ``rm``.

Postgres: ``initdb`` refuses to run as root, so as root it runs as the
``postgres`` user and the data directory is chowned to it. Connections over
TCP use SCRAM passwords (the superuser's is ``POSTGRES_PASSWORD``) so that
role passwords are really checked, as in the cloud; the Unix socket in the
data directory trusts local users for ``createdb``. Migrations run as
``MIGRATION_ROLE``, which owns the database as RDS's master user does (CREATEROLE,
neither a superuser nor BYPASSRLS), so a migration that only a superuser could
run fails here before it fails on RDS.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
POSTGRES_PASSWORD = "postgres-local"  # noqa: S105 - loopback-only development cluster
POSTGRES_DATABASE = "enterprisehub"
MIGRATION_ROLE = "enterprisehub_owner"
MIGRATION_PASSWORD = "owner-local"  # noqa: S105 - loopback-only development cluster

# Run as the superuser at every start. The last block is for a database that an
# older `make run` migrated as the superuser: its objects are handed to the
# migration owner (REASSIGN OWNED cannot move the bootstrap superuser's objects).
# Sequences of serial and identity columns, indexes, tables' row types and
# array types move with what they belong to.
_MIGRATION_OWNER_SQL = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MIGRATION_ROLE}') THEN
    CREATE ROLE {MIGRATION_ROLE} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS
      PASSWORD '{MIGRATION_PASSWORD}';
  END IF;
END $$;
ALTER DATABASE :"database" OWNER TO {MIGRATION_ROLE};
DO $$ DECLARE statement text; BEGIN
  FOR statement IN
    SELECT format('ALTER %s %s OWNER TO {MIGRATION_ROLE}',
                  CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                 WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                  c.oid::regclass)
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = 'postgres'::regrole
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
       AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT format('ALTER ROUTINE %s OWNER TO {MIGRATION_ROLE}', p.oid::regprocedure)
      FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = 'postgres'::regrole
    UNION ALL
    SELECT format('ALTER TYPE %s OWNER TO {MIGRATION_ROLE}', t.oid::regtype)
      FROM pg_type t
     WHERE t.typnamespace = 'public'::regnamespace AND t.typowner = 'postgres'::regrole
       AND (t.typtype IN ('e', 'd')
            OR t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
  LOOP
    EXECUTE statement;
  END LOOP;
END $$;
"""  # noqa: S608 - constants of this module only
SETUP_HINT = "run `make setup` (scripts/install-system-packages.sh) to install it"


class MissingBinary(RuntimeError):  # noqa: N818 - reads as the condition it names
    """A server binary is not installed; the message names the Debian package."""


class ServerFailed(RuntimeError):  # noqa: N818 - reads as the condition it names
    """A server did not start; the message includes the tail of its log."""


#: Lowest port `free_port` hands out (below it: well-known and registered services).
FIRST_FREE_PORT = 20000


def _ephemeral_low() -> int:
    # Linux's default is 32768; elsewhere (macOS: 49152) the Linux default is
    # a safe lower bound as well.
    try:
        low = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]
        return int(low)
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range.

    A port from ``bind(0)`` is an ephemeral one, which the kernel may give to an
    outgoing connection as its source port before the server it was chosen for
    binds it (a service binds after its lifespan has connected to Postgres and
    Redis): "address already in use" at random. Ports below the range are
    handed out only by bind calls that name them.
    """
    candidates = list(range(FIRST_FREE_PORT, _ephemeral_low()))
    for port in random.sample(candidates, k=min(256, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _require(binary: Path | str, package: str) -> str:
    path = str(binary) if Path(binary).is_absolute() and Path(binary).exists() else None
    path = path or shutil.which(str(binary))
    if path is None:
        raise MissingBinary(
            f"{binary} not found: the Debian package {package} is missing; {SETUP_HINT}"
        )
    return path


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_postgres(cmd: Sequence[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if _is_root() else list(cmd)


def _check_reachable(data_dir: Path) -> None:
    if not _is_root():
        return
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-w", str(data_dir)],
        check=False,
        capture_output=True,
    )
    if probe.returncode != 0:
        raise ServerFailed(
            f"the postgres user cannot reach {data_dir}: make every parent "
            "directory traversable (chmod o+x) or choose another directory"
        )


@dataclass
class PostgresServer:
    """A running cluster; ``url(...)`` builds DSNs for its roles and databases."""

    data_dir: Path
    port: int
    database: str = POSTGRES_DATABASE
    superuser: str = "postgres"
    password: str = POSTGRES_PASSWORD

    def url(
        self, user: str | None = None, password: str | None = None, database: str | None = None
    ) -> str:
        """``postgresql://user:password@127.0.0.1:port/database``."""
        return (
            f"postgresql://{user or self.superuser}:{password or self.password}"
            f"@127.0.0.1:{self.port}/{database or self.database}"
        )

    @property
    def owner_url(self) -> str:
        """The superuser DSN (test cleanup, loading benchmark data, psql)."""
        return self.url()

    @property
    def migration_url(self) -> str:
        """The DSN of ``MIGRATION_ROLE``, which runs the migrations and owns the tables."""
        return self.url(MIGRATION_ROLE, MIGRATION_PASSWORD)

    def ensure_migration_owner(self) -> None:
        """Create ``MIGRATION_ROLE`` if missing and make it own the database and its objects."""
        psql = _require(PG_BIN / "psql", "postgresql-15")
        result = subprocess.run(
            _as_postgres(
                [
                    psql,
                    "-h",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-U",
                    self.superuser,
                    "-d",
                    self.database,
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-v",
                    f"database={self.database}",
                ]
            ),
            input=_MIGRATION_OWNER_SQL,
            check=False,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServerFailed(f"could not prepare {MIGRATION_ROLE}: {result.stderr.strip()}")

    def createdb(self, name: str) -> None:
        """Create a database over the trusted Unix socket."""
        createdb = _require(PG_BIN / "createdb", "postgresql-15")
        subprocess.run(
            _as_postgres(
                [
                    createdb,
                    "-h",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-U",
                    self.superuser,
                    name,
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Fast shutdown (disconnects clients); idempotent."""
        pg_ctl = _require(PG_BIN / "pg_ctl", "postgresql-15")
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                check=False,
                capture_output=True,
            )


def start_postgres(
    base_dir: Path, *, port: int | None = None, database: str = POSTGRES_DATABASE
) -> PostgresServer:
    """initdb (if the directory is new), start, create ``database``; return the server."""
    initdb = _require(PG_BIN / "initdb", "postgresql-15")
    pg_ctl = _require(PG_BIN / "pg_ctl", "postgresql-15")
    data_dir = (base_dir / "postgres").resolve()
    port = port or free_port()
    fresh = not (data_dir / "PG_VERSION").exists()
    if fresh:
        data_dir.mkdir(parents=True, exist_ok=True)
        pwfile = data_dir.parent / "postgres.pw"
        pwfile.write_text(POSTGRES_PASSWORD + "\n")
        if _is_root():
            entry = pwd.getpwnam("postgres")
            for path in (data_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        data_dir.chmod(0o700)
        _check_reachable(data_dir)
        subprocess.run(
            _as_postgres(
                [
                    initdb,
                    "-D",
                    str(data_dir),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            check=True,
            capture_output=True,
        )
        pwfile.unlink()
    log_file = data_dir / "server.log"
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {data_dir} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    result = subprocess.run(
        _as_postgres(
            [
                pg_ctl,
                "-D",
                str(data_dir),
                "-l",
                str(log_file),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        ),
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ServerFailed(
            f"postgres did not start on port {port}: {result.stderr.strip()}\n{_log_tail(log_file)}"
        )
    server = PostgresServer(data_dir=data_dir, port=port, database=database)
    if fresh:
        server.createdb(database)
    server.ensure_migration_owner()
    return server


@dataclass
class RedisServer:
    """A running redis-server daemon."""

    dir: Path
    port: int

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:port/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """SIGTERM the daemon (no save: persistence is off); idempotent."""
        pidfile = self.dir / "redis.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(base_dir: Path, *, port: int | None = None) -> RedisServer:
    """Start ``redis-server`` daemonised, without persistence; wait for PONG."""
    binary = _require("redis-server", "redis-server")
    work_dir = (base_dir / "redis").resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_file = work_dir / "redis.log"
    subprocess.run(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            str(work_dir),
            "--pidfile",
            str(work_dir / "redis.pid"),
            "--logfile",
            str(log_file),
        ],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_ready(port):
        if time.monotonic() > deadline:
            raise ServerFailed(f"redis did not answer PING on port {port}\n{_log_tail(log_file)}")
        time.sleep(0.05)
    return RedisServer(dir=work_dir, port=port)


def _wait_ready(server: PrometheusServer | AlertmanagerServer, name: str, log: Path) -> None:
    """Wait up to 30 s for ``/-/ready`` (both servers have it); stop it and raise otherwise."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise ServerFailed(
                f"{name} did not become ready on port {server.port}\n{_log_tail(log)}"
            )
        time.sleep(0.1)


@dataclass
class PrometheusServer:
    """A running Prometheus scraping the given targets."""

    dir: Path
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://127.0.0.1:{self.port}"

    def ui_url(self) -> str:
        """Where the web pages (``/targets``, ``/rules``, ``/alerts``) live under ``url``.

        Upstream builds serve them at the root, Debian's package ships only the
        classic UI, under ``/classic`` (its ``/targets`` answers 404). Both
        redirect ``/`` to their graph page, which tells them apart.
        """
        location = httpx.get(f"{self.url}/", timeout=5).headers.get("location", "/graph")
        return self.url + location.removesuffix("/graph")

    def stop(self) -> None:
        """Terminate and wait; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_prometheus(
    base_dir: Path,
    targets: Sequence[str] = (),
    *,
    jobs: Mapping[str, Sequence[str]] | None = None,
    port: int | None = None,
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "5s",
    evaluation_interval: str | None = None,
    alertmanager: str | None = None,
) -> PrometheusServer:
    """Start Prometheus scraping ``/metrics`` of each target (``host:port``).

    ``jobs`` maps a job name (the service's Kubernetes name, as the alert rules
    expect) to its targets; plain ``targets`` go into one job, ``enterprisehub``.
    ``alertmanager`` (``host:port``) receives the alerts of ``rule_files``.
    """
    binary = _require("prometheus", "prometheus")
    work_dir = (base_dir / "prometheus").resolve()
    (work_dir / "data").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    all_jobs = dict(jobs or {})
    if targets:
        all_jobs["enterprisehub"] = list(targets)
    config: dict[str, object] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval or scrape_interval,
        },
        "rule_files": [str(Path(r).resolve()) for r in rule_files],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": list(job_targets)}]}
            for name, job_targets in all_jobs.items()
        ],
    }
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    config_file = work_dir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    log_file = (work_dir / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={work_dir / 'data'}",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
    server = PrometheusServer(dir=work_dir, port=port, process=process)
    _wait_ready(server, "prometheus", work_dir / "prometheus.log")
    return server


@dataclass
class AlertmanagerServer:
    """A running Alertmanager (Debian's ``prometheus-alertmanager``), HA off."""

    dir: Path
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:port``, for Prometheus's ``alerting`` block."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Terminate and wait; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_alertmanager(
    base_dir: Path, config: Mapping[str, object], *, port: int | None = None
) -> AlertmanagerServer:
    """Start Alertmanager on loopback with ``config`` (a parsed alertmanager.yml)."""
    binary = _require("prometheus-alertmanager", "prometheus-alertmanager")
    work_dir = (base_dir / "alertmanager").resolve()
    (work_dir / "data").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config_file = work_dir / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    log_file = (work_dir / "alertmanager.log").open("ab")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.path={work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Empty: no HA gossip (it would bind 0.0.0.0:9094).
            "--cluster.listen-address=",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
    server = AlertmanagerServer(dir=work_dir, port=port, process=process)
    _wait_ready(server, "alertmanager", work_dir / "alertmanager.log")
    return server


@dataclass
class LocalServers:
    """Postgres and Redis started together."""

    postgres: PostgresServer
    redis: RedisServer

    def stop(self) -> None:
        """Stop both, Redis first."""
        self.redis.stop()
        self.postgres.stop()


def start_all(base_dir: Path) -> LocalServers:
    """Start Postgres and Redis under ``base_dir``."""
    base_dir.mkdir(parents=True, exist_ok=True)
    postgres = start_postgres(base_dir)
    try:
        redis = start_redis(base_dir)
    except Exception:
        postgres.stop()
        raise
    return LocalServers(postgres=postgres, redis=redis)
