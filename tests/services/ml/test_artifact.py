"""Artifact loading: verification of sha256, features and scikit-learn version."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.common.lead_model.artifact import save_artifact
from services.common.scoring import (
    ArtifactCompatibilityError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    LeadScorer,
    ModelArtifactError,
    parse_artifact_uri,
)
from services.common.settings import StorageSettings
from services.common.storage import s3_client


def _edit_metadata(path: Path, **changes: Any) -> None:
    sidecar = Path(str(path) + ".json")
    metadata = json.loads(sidecar.read_text())
    metadata.update(changes)
    sidecar.write_text(json.dumps(metadata))


def test_loads_from_plain_path_and_file_uri(artifact_path: Path) -> None:
    by_path = LeadScorer.load(str(artifact_path), cache_size=0)
    by_uri = LeadScorer.load(artifact_path.as_uri(), cache_size=0)
    assert by_path.version == by_uri.version
    assert by_path.version.startswith("v1-")


def test_corrupted_model_file_fails_sha_check(artifact_copy: Path) -> None:
    data = bytearray(artifact_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact_copy.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"sha256 .* but its metadata records"):
        LeadScorer.load(str(artifact_copy), cache_size=0)


def test_truncated_model_with_matching_sha_fails_to_unpickle(artifact_copy: Path) -> None:
    import hashlib

    truncated = artifact_copy.read_bytes()[:100]
    artifact_copy.write_bytes(truncated)
    _edit_metadata(artifact_copy, sha256=hashlib.sha256(truncated).hexdigest())
    with pytest.raises(ArtifactIntegrityError, match="does not unpickle"):
        LeadScorer.load(str(artifact_copy), cache_size=0)


def test_feature_list_mismatch_is_refused(artifact_copy: Path) -> None:
    metadata = json.loads(Path(str(artifact_copy) + ".json").read_text())
    features = [f for f in metadata["features"] if f != "sms_replies"] + ["lead_temperature"]
    _edit_metadata(artifact_copy, features=features)
    with pytest.raises(ArtifactCompatibilityError) as caught:
        LeadScorer.load(str(artifact_copy), cache_size=0)
    assert "missing ['sms_replies']" in str(caught.value)
    assert "unexpected ['lead_temperature']" in str(caught.value)


def test_feature_order_mismatch_is_refused(artifact_copy: Path) -> None:
    metadata = json.loads(Path(str(artifact_copy) + ".json").read_text())
    _edit_metadata(artifact_copy, features=list(reversed(metadata["features"])))
    with pytest.raises(ArtifactCompatibilityError, match="order differs: True"):
        LeadScorer.load(str(artifact_copy), cache_size=0)


def test_sklearn_minor_version_mismatch_is_refused(artifact_copy: Path) -> None:
    _edit_metadata(artifact_copy, sklearn_version="0.24.2")
    with pytest.raises(ArtifactCompatibilityError, match=r"scikit-learn 0\.24\.2"):
        LeadScorer.load(str(artifact_copy), cache_size=0)


def test_sklearn_patch_version_difference_is_accepted(artifact_copy: Path) -> None:
    metadata = json.loads(Path(str(artifact_copy) + ".json").read_text())
    major, minor = metadata["sklearn_version"].split(".")[:2]
    _edit_metadata(artifact_copy, sklearn_version=f"{major}.{minor}.999")
    assert LeadScorer.load(str(artifact_copy), cache_size=0).version == metadata["version"]


def test_invalid_metadata_names_the_field(artifact_copy: Path) -> None:
    _edit_metadata(artifact_copy, heldout_auc="excellent")
    with pytest.raises(ArtifactIntegrityError, match="heldout_auc"):
        LeadScorer.load(str(artifact_copy), cache_size=0)


def test_missing_artifact_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="enterprisehub model train"):
        LeadScorer.load(str(tmp_path / "absent.joblib"), cache_size=0)


def test_unreachable_storage_is_a_model_artifact_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's own failures (no endpoint, a timeout, no credentials) were let
    through: start-up died with botocore's traceback, not with the service's
    "cannot start: ML_MODEL_URI=... is unusable: why" (`ModelLoadError`)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = StorageSettings.from_env(
        s3_endpoint_url=f"http://127.0.0.1:{port}", aws_region="us-east-1"
    )
    with pytest.raises(ModelArtifactError, match="EndpointConnectionError"):
        LeadScorer.load(
            "s3://models/lead-scoring/v1/model.joblib", cache_size=0, s3=s3_client(settings)
        )


@pytest.mark.parametrize(
    ("uri", "scheme", "bucket", "path"),
    [
        (
            "s3://models/lead-scoring/v1-abc/model.joblib",
            "s3",
            "models",
            "lead-scoring/v1-abc/model.joblib",
        ),
        ("file:///srv/models/m.joblib", "file", "", "/srv/models/m.joblib"),
        ("file://localhost/srv/m.joblib", "file", "", "/srv/m.joblib"),
        ("models/lead_scoring.joblib", "file", "", "models/lead_scoring.joblib"),
        ("/abs/m.joblib", "file", "", "/abs/m.joblib"),
    ],
)
def test_parse_artifact_uri_accepts(uri: str, scheme: str, bucket: str, path: str) -> None:
    location = parse_artifact_uri(uri)
    assert (location.scheme, location.bucket, location.path) == (scheme, bucket, path)
    assert location.metadata_path == path + ".json"
    assert not location.is_prefix


@pytest.mark.parametrize(
    ("uri", "scheme", "bucket", "path"),
    [
        ("s3://models/lead-scoring/", "s3", "models", "lead-scoring/"),
        ("s3://models/", "s3", "models", ""),
        ("file:///srv/models/", "file", "", "/srv/models/"),
        ("models/", "file", "", "models/"),
    ],
)
def test_a_trailing_slash_names_a_published_prefix(
    uri: str, scheme: str, bucket: str, path: str
) -> None:
    location = parse_artifact_uri(uri)
    assert (location.scheme, location.bucket, location.path) == (scheme, bucket, path)
    assert location.is_prefix
    assert location.pointer_path == path + "current.json"


def _published_store(artifact_path: Path, store: Path) -> str:
    """A local store laid out as `model publish` writes one; returns the version."""
    metadata = json.loads(Path(str(artifact_path) + ".json").read_text())
    version: str = metadata["version"]
    (store / version).mkdir(parents=True)
    (store / version / "model.joblib").write_bytes(artifact_path.read_bytes())
    (store / version / "model.joblib.json").write_text(json.dumps(metadata))
    _write_pointer(store, version=version, key=f"{version}/model.joblib", sha256=metadata["sha256"])
    return version


def _write_pointer(store: Path, **fields: Any) -> None:
    (store / "current.json").write_text(json.dumps({"format_version": 1, **fields}))


def test_a_prefix_loads_the_version_its_pointer_names(artifact_path: Path, tmp_path: Path) -> None:
    version = _published_store(artifact_path, tmp_path / "store")
    scorer = LeadScorer.load((tmp_path / "store").as_uri() + "/", cache_size=0)
    assert scorer.version == version
    assert LeadScorer.load(f"{tmp_path / 'store'}/", cache_size=0).version == version


def test_the_resolved_version_is_still_sha_checked(artifact_path: Path, tmp_path: Path) -> None:
    version = _published_store(artifact_path, tmp_path / "store")
    model = tmp_path / "store" / version / "model.joblib"
    model.write_bytes(model.read_bytes() + b"x")
    with pytest.raises(ArtifactIntegrityError, match="but its metadata records"):
        LeadScorer.load(f"{tmp_path / 'store'}/", cache_size=0)


@pytest.mark.parametrize("key", ["../elsewhere/model.joblib", "/etc/model.joblib", "v1//m.joblib"])
def test_a_pointer_key_outside_the_prefix_is_refused(
    artifact_path: Path, tmp_path: Path, key: str
) -> None:
    version = _published_store(artifact_path, tmp_path / "store")
    _write_pointer(tmp_path / "store", version=version, key=key, sha256="0" * 64)
    with pytest.raises(ArtifactIntegrityError, match="must be a relative key under the prefix"):
        LeadScorer.load(f"{tmp_path / 'store'}/", cache_size=0)


def test_a_malformed_pointer_names_the_field(artifact_path: Path, tmp_path: Path) -> None:
    _published_store(artifact_path, tmp_path / "store")
    _write_pointer(tmp_path / "store", key="v1-x/model.joblib", sha256="0" * 64)
    with pytest.raises(ArtifactIntegrityError, match=r"current\.json is invalid: version"):
        LeadScorer.load(f"{tmp_path / 'store'}/", cache_size=0)


def test_a_newer_pointer_format_is_refused(artifact_path: Path, tmp_path: Path) -> None:
    version = _published_store(artifact_path, tmp_path / "store")
    (tmp_path / "store" / "current.json").write_text(
        json.dumps({"format_version": 2, "version": version, "key": "k", "sha256": "0"})
    )
    with pytest.raises(ArtifactCompatibilityError, match="format_version 2"):
        LeadScorer.load(f"{tmp_path / 'store'}/", cache_size=0)


def test_an_empty_prefix_says_how_to_publish(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="nothing is published under"):
        LeadScorer.load(f"{tmp_path}/", cache_size=0)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("", "empty"),
        ("s3://models", "needs both a bucket and a key"),
        ("s3:///", "needs both a bucket and a key"),
        ("s3:///key-without-bucket", "needs both a bucket and a key"),
        ("file://srv/models/m.joblib", "use file:///absolute/path"),
        ("gs://bucket/m.joblib", "unsupported model URI scheme 'gs'"),
    ],
)
def test_parse_artifact_uri_rejects(uri: str, fragment: str) -> None:
    with pytest.raises(ModelArtifactError, match=fragment):
        parse_artifact_uri(uri)


@dataclass(frozen=True)
class _Report:
    training_rows: int = 800
    heldout_rows: int = 200
    heldout_auc: float = 0.812345
    ceiling_auc: float = 0.876543
    positive_rate: float = 0.123456


def test_save_artifact_records_the_reports_split_and_generator_facts(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    metadata = save_artifact(
        {"a": "model"},
        tmp_path / "m.joblib",
        model_name="some-model",
        estimator="logistic",
        seed=7,
        report=_Report(),
        model_info={"heldout_brier": 0.1},
    )
    assert (metadata.model_name, metadata.estimator, metadata.seed) == ("some-model", "logistic", 7)
    assert (metadata.training_rows, metadata.heldout_rows) == (800, 200)
    assert metadata.heldout_auc == 0.8123
    assert metadata.training_info == {
        "heldout_brier": 0.1,
        "ceiling_auc": 0.8765,
        "positive_rate": 0.1235,
        "generated_rows": 1000.0,
    }
    assert before <= metadata.created_at <= datetime.now(UTC)
    written = json.loads((tmp_path / "m.joblib.json").read_text())
    assert written["training_info"] == metadata.training_info
