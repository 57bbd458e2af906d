"""The DSN's TLS parameters become one SSL context for the pool and the migrations."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from infra.components.database import RDS_CA_BUNDLE, TLS_QUERY
from services.common.database import tls_from_dsn
from services.common.settings import SettingsError

BASE = "postgresql://app:pw@db.example.internal:5432/enterprisehub"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=test-rds-ca", "-keyout", str(folder / "key.pem"),
            "-out", str(folder / "ca.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder / "ca.pem"


def test_verify_full_checks_the_chain_and_the_host(ca_file: Path) -> None:
    plain, context = tls_from_dsn(f"{BASE}?sslmode=verify-full&sslrootcert={ca_file}")
    assert plain == BASE
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.cert_store_stats()["x509_ca"] == 1


def test_verify_ca_checks_the_chain_only(ca_file: Path) -> None:
    _, context = tls_from_dsn(f"{BASE}?sslmode=verify-ca&sslrootcert={ca_file}")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False


def test_other_query_parameters_are_kept() -> None:
    plain, context = tls_from_dsn(f"{BASE}?application_name=x&sslmode=require")
    assert plain == f"{BASE}?application_name=x"
    assert context == "require"


def test_no_sslmode_leaves_the_driver_default() -> None:
    assert tls_from_dsn(BASE) == (BASE, None)


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="sslrootcert"):
        tls_from_dsn(f"{BASE}?sslmode=verify-full&sslrootcert={tmp_path / 'none.pem'}")


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(SettingsError, match="sslmode"):
        tls_from_dsn(f"{BASE}?sslmode=verify-everything")


def test_the_stacks_dsn_asks_for_verify_full_with_the_bundle_the_image_ships() -> None:
    assert f"sslmode=verify-full&sslrootcert={RDS_CA_BUNDLE}" == TLS_QUERY
    dockerfile = (Path(__file__).resolve().parents[3] / "Dockerfile").read_text()
    assert f"COPY --from=certs /certs/rds-global-bundle.pem {RDS_CA_BUNDLE}" in dockerfile
