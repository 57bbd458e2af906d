"""Postgres and Redis ready for the services: started, migrated, with a model.

Shared by ``make run`` (``python -m localrun``) and the W1 benchmark so that
both prepare the platform the same way: ``localrun.servers`` starts the
servers on loopback, ``enterprisehub migrate`` creates the schema and the
application role, ``enterprisehub model train`` writes the lead model when
its artifact is missing, and ``enterprisehub flags init`` creates the flags.
Every command runs as a subprocess with the same environment the services
get, so what works here works for ``enterprisehub serve``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localrun.servers import LocalServers, start_all

APP_ROLE = "enterprisehub_app"
# The services' own default (ML_MODEL_URI=models/lead_scoring.joblib): the
# artifact make run trains is the one `enterprisehub serve` finds by itself.
MODEL_FILE = "lead_scoring.joblib"
# The churn model (CHURN_MODEL_URI=models/churn_risk.joblib), trained the same way.
CHURN_MODEL_FILE = "churn_risk.joblib"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models"


class SetupStepFailed(RuntimeError):  # noqa: N818 - reads as the condition it names
    """A preparation command failed; the message carries its output."""


@dataclass
class Datastores:
    """The running servers and the environment the services need to use them."""

    servers: LocalServers
    app_password: str
    model_path: Path | None = None
    churn_model_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return self.servers.redis.url

    @property
    def database_url(self) -> str:
        """DSN of the application role (subject to row-level security)."""
        return self.servers.postgres.url(user=APP_ROLE, password=self.app_password)

    @property
    def pids(self) -> list[int]:
        """The postmaster's and redis-server's pids (for CPU pinning and accounting)."""
        found = []
        for pidfile in (
            self.servers.postgres.data_dir / "postmaster.pid",
            self.servers.redis.dir / "redis.pid",
        ):
            with contextlib.suppress(OSError, ValueError, IndexError):
                found.append(int(pidfile.read_text().split()[0]))
        return found

    def service_env(self) -> dict[str, str]:
        """The variables every service reads to reach these servers."""
        env = {
            "DATABASE_URL": self.database_url,
            "MIGRATION_DATABASE_URL": self.servers.postgres.migration_url,
            "REDIS_URL": self.redis_url,
            **self.extra_env,
        }
        if self.model_path is not None:
            env["ML_MODEL_URI"] = self.model_path.resolve().as_uri()
        if self.churn_model_path is not None:
            env["CHURN_MODEL_URI"] = self.churn_model_path.resolve().as_uri()
        return env


def enterprisehub_command(*args: str) -> list[str]:
    """``enterprisehub ARGS`` run with this interpreter (no PATH lookup needed)."""
    return [sys.executable, "-m", "services.cli", *args]


def run_setup_step(
    description: str, argv: Sequence[str], env: dict[str, str], timeout_s: float = 600
) -> str:
    """Run one preparation command; raise ``SetupStepFailed`` with its output."""
    try:
        done = subprocess.run(
            list(argv), env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise SetupStepFailed(f"{description} did not finish in {timeout_s:.0f}s") from None
    if done.returncode != 0:
        raise SetupStepFailed(
            f"{description} failed (exit {done.returncode}): {' '.join(argv)}\n"
            f"{(done.stdout + done.stderr).strip()[-3000:]}"
        )
    return done.stdout


@contextlib.contextmanager
def start_datastores(
    base_dir: Path,
    *,
    base_env: dict[str, str] | None = None,
    migrate: bool = True,
    model_dir: Path | None = None,
    flags: bool = False,
    flag_seed: str | None = None,
) -> Iterator[Datastores]:
    """Start Postgres and Redis under ``base_dir``, prepare them, stop them on exit.

    ``base_env`` must hold the JWT settings when ``migrate``/``flags`` run
    (the CLI validates the common settings). ``model_dir`` set means: make
    sure ``model_dir/lead_scoring.joblib`` and ``churn_risk.joblib`` exist, training
    them if missing.
    Open it inside the ``ChildProcesses`` context that runs the services, so
    that the services (which hold connections) stop before the servers do.
    ``flag_seed`` is the ``flags init --seed`` JSON (the stack's featureFlags).
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    # Postgres runs as the postgres user, which must be able to reach its
    # data directory under ours (mkdtemp makes 0700 directories).
    base_dir.chmod(base_dir.stat().st_mode | 0o011)
    servers = start_all(base_dir)
    try:
        stores = Datastores(servers=servers, app_password=secrets.token_hex(16))
        env = {**os.environ, **(base_env or {}), **stores.service_env()}
        if migrate:
            run_setup_step("migrations", enterprisehub_command("migrate"), env)
        if model_dir is not None:
            model_path = model_dir / MODEL_FILE
            if not model_path.exists():
                model_dir.mkdir(parents=True, exist_ok=True)
                run_setup_step(
                    "training the lead model",
                    enterprisehub_command("model", "train", "--out", str(model_path)),
                    env,
                )
            stores.model_path = model_path
            churn_path = model_dir / CHURN_MODEL_FILE
            if not churn_path.exists():
                run_setup_step(
                    "training the churn model",
                    enterprisehub_command("churn", "train", "--out", str(churn_path)),
                    env,
                )
            stores.churn_model_path = churn_path
        if flags:
            env = {**env, **stores.service_env()}
            seed = ("--seed", flag_seed) if flag_seed else ()
            run_setup_step("flags init", enterprisehub_command("flags", "init", *seed), env)
        yield stores
    finally:
        servers.stop()
