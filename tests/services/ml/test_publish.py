"""Publishing and loading through S3, against moto's S3-compatible server.

``ThreadedMotoServer`` speaks the S3 HTTP API on a local port, so boto3 runs
its real request path (signing, errors, bodies) exactly as it would against
in-cluster S3-compatible storage selected with S3_ENDPOINT_URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.cli import main as cli_main
from services.common.scoring import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    LeadFeatures,
    LeadScorer,
    ModelArtifactError,
)
from services.ml.publish import publish
from services.ml.training import train_to_file

BUCKET = "enterprisehub-models"
PREFIX_URI = f"s3://{BUCKET}/lead-scoring/"


@pytest.fixture
def s3(s3_bucket: Callable[[str], Any]) -> Any:
    """A client for a fresh bucket; the environment points the code at the server."""
    return s3_bucket(BUCKET)


def _keys(client: Any) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@pytest.fixture(scope="module")
def other_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different model (another seed): the "newer release" of rollback tests."""
    path = tmp_path_factory.mktemp("other-model") / "lead_scoring.joblib"
    train_to_file(out=path, rows=2_000, seed=8)
    return path


def _pointer(client: Any, key: str = "lead-scoring/current.json") -> dict[str, Any]:
    pointer: dict[str, Any] = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    return pointer


def test_publish_then_load_from_s3(s3: Any, artifact_path: Path, leads: list[LeadFeatures]) -> None:
    result = publish(artifact_path, f"s3://{BUCKET}/lead-scoring")
    assert (result.uploaded, result.repointed) == (True, True)
    assert result.uri == f"s3://{BUCKET}/lead-scoring/{result.version}/model.joblib"
    assert result.alias_uri == PREFIX_URI
    assert _keys(s3) == [
        "lead-scoring/current.json",
        f"lead-scoring/{result.version}/model.joblib",
        f"lead-scoring/{result.version}/model.joblib.json",
    ]
    remote = LeadScorer.load(result.uri, cache_size=0)
    local = LeadScorer.load(str(artifact_path), cache_size=0)
    assert remote.version == local.version
    assert remote.score_batch(leads) == local.score_batch(leads)


def test_publish_then_load_through_the_prefix_alias(
    s3: Any, artifact_path: Path, leads: list[LeadFeatures]
) -> None:
    result = publish(artifact_path, PREFIX_URI)
    assert _pointer(s3) == {
        "format_version": 1,
        "version": result.version,
        "key": f"{result.version}/model.joblib",
        "sha256": result.sha256,
    }
    via_alias = LeadScorer.load(PREFIX_URI, cache_size=0)
    assert via_alias.version == result.version
    assert via_alias.metadata.sha256 == result.sha256
    assert via_alias.score_batch(leads) == LeadScorer.load(
        str(artifact_path), cache_size=0
    ).score_batch(leads)


def test_publishing_the_same_artifact_twice_uploads_nothing(s3: Any, artifact_path: Path) -> None:
    first = publish(artifact_path, f"s3://{BUCKET}/lead-scoring")
    before = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    second = publish(artifact_path, f"s3://{BUCKET}/lead-scoring")
    after = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert (first.uploaded, second.uploaded) == (True, False)
    assert (first.repointed, second.repointed) == (True, False)
    assert second.uri == first.uri
    assert "lead-scoring/current.json" in after
    assert before == after


def test_republishing_an_older_version_rolls_the_alias_back(
    s3: Any, artifact_path: Path, other_artifact: Path
) -> None:
    old = publish(artifact_path, PREFIX_URI)
    new = publish(other_artifact, PREFIX_URI)
    assert new.version != old.version
    assert LeadScorer.load(PREFIX_URI, cache_size=0).version == new.version
    rollback = publish(artifact_path, PREFIX_URI)
    # The old version's objects are already there: only the alias moves.
    assert (rollback.uploaded, rollback.repointed) == (False, True)
    assert _pointer(s3)["version"] == old.version
    assert LeadScorer.load(PREFIX_URI, cache_size=0).version == old.version


def test_an_alias_lost_after_upload_is_restored_by_a_rerun(s3: Any, artifact_path: Path) -> None:
    # A publish that died between the upload and the alias write: the rerun
    # uploads nothing but must still point the alias.
    publish(artifact_path, PREFIX_URI)
    s3.delete_object(Bucket=BUCKET, Key="lead-scoring/current.json")
    rerun = publish(artifact_path, PREFIX_URI)
    assert (rerun.uploaded, rerun.repointed) == (False, True)
    assert LeadScorer.load(PREFIX_URI, cache_size=0).version == rerun.version


def test_a_pointer_to_a_missing_version_is_a_clear_error(s3: Any, artifact_path: Path) -> None:
    result = publish(artifact_path, PREFIX_URI)
    pointer = _pointer(s3) | {"version": "v1-000000000000", "key": "v1-000000000000/model.joblib"}
    s3.put_object(Bucket=BUCKET, Key="lead-scoring/current.json", Body=json.dumps(pointer))
    with pytest.raises(ArtifactNotFoundError) as caught:
        LeadScorer.load(PREFIX_URI, cache_size=0)
    message = str(caught.value)
    assert f"{PREFIX_URI}current.json points to version v1-000000000000" in message
    assert f"{PREFIX_URI}v1-000000000000/model.joblib.json does not exist" in message
    # Publishing again repairs the alias.
    assert publish(artifact_path, PREFIX_URI).repointed
    assert LeadScorer.load(PREFIX_URI, cache_size=0).version == result.version


def test_a_pointer_whose_sha_disagrees_with_the_version_is_refused(
    s3: Any, artifact_path: Path
) -> None:
    publish(artifact_path, PREFIX_URI)
    pointer = _pointer(s3) | {"sha256": "0" * 64}
    s3.put_object(Bucket=BUCKET, Key="lead-scoring/current.json", Body=json.dumps(pointer))
    with pytest.raises(
        ArtifactIntegrityError, match=r"current\.json names version .*\(sha256 0{64}\)"
    ):
        LeadScorer.load(PREFIX_URI, cache_size=0)


def test_a_prefix_with_nothing_published_says_how_to_publish(s3: Any) -> None:
    with pytest.raises(ArtifactNotFoundError) as caught:
        LeadScorer.load(PREFIX_URI, cache_size=0)
    assert f"nothing is published under {PREFIX_URI}" in str(caught.value)
    assert f"enterprisehub model publish --from PATH --to {PREFIX_URI}" in str(caught.value)


def test_a_different_sha_under_a_published_version_is_refused(s3: Any, artifact_path: Path) -> None:
    result = publish(artifact_path, f"s3://{BUCKET}/lead-scoring")
    key = result.uri.removeprefix(f"s3://{BUCKET}/") + ".json"
    metadata = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    metadata["sha256"] = "0" * 64
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(metadata).encode())
    with pytest.raises(ModelArtifactError, match="published versions are immutable"):
        publish(artifact_path, f"s3://{BUCKET}/lead-scoring")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        LeadScorer.load(result.uri, cache_size=0)


def test_missing_s3_object_says_how_to_publish(s3: Any) -> None:
    with pytest.raises(ArtifactNotFoundError, match="enterprisehub model publish"):
        LeadScorer.load(f"s3://{BUCKET}/nothing/model.joblib", cache_size=0)


def test_publish_to_bucket_root_and_via_cli(
    s3: Any, artifact_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli_main(["model", "publish", "--from", str(artifact_path), "--to", f"s3://{BUCKET}"]) == 0
    )
    output = capsys.readouterr().out
    assert output.startswith("uploaded: version v1-")
    version = output.split()[2]
    assert _keys(s3) == ["current.json", f"{version}/model.joblib", f"{version}/model.joblib.json"]
    assert output.splitlines()[-1] == f"ML_MODEL_URI=s3://{BUCKET}/"
    # The bucket root is a prefix too: the printed URI loads.
    assert LeadScorer.load(f"s3://{BUCKET}/", cache_size=0).version == version


def test_publish_to_a_local_store(tmp_path: Path, artifact_path: Path) -> None:
    result = publish(artifact_path, (tmp_path / "store").as_uri())
    assert result.uri.startswith("file:///")
    assert result.alias_uri == (tmp_path / "store").as_uri() + "/"
    assert (tmp_path / "store" / "current.json").exists()
    assert LeadScorer.load(result.uri, cache_size=0).version == result.version
    assert LeadScorer.load(result.alias_uri, cache_size=0).version == result.version
    again = publish(artifact_path, (tmp_path / "store").as_uri())
    assert (again.uploaded, again.repointed) == (False, False)


def test_a_corrupted_alias_is_replaced_by_a_rerun(tmp_path: Path, artifact_path: Path) -> None:
    # Leaving an unreadable current.json would keep every reader failing.
    store = tmp_path / "store"
    publish(artifact_path, store.as_uri())
    (store / "current.json").write_text("{not json")
    rerun = publish(artifact_path, store.as_uri())
    assert (rerun.uploaded, rerun.repointed) == (False, True)
    assert LeadScorer.load(rerun.alias_uri, cache_size=0).version == rerun.version


def test_publish_refuses_an_unverified_artifact(artifact_copy: Path, tmp_path: Path) -> None:
    artifact_copy.write_bytes(artifact_copy.read_bytes() + b"tampered")
    with pytest.raises(ArtifactIntegrityError):
        publish(artifact_copy, (tmp_path / "store").as_uri())
    assert not (tmp_path / "store").exists()


def test_cli_publish_reports_a_missing_artifact_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        ["model", "publish", "--from", str(tmp_path / "absent.joblib"), "--to", "s3://b/p"]
    )
    assert code == 1
    assert "run `enterprisehub model train` first" in capsys.readouterr().err
