"""Publish a trained artifact: ``enterprisehub model publish --from PATH --to URI``.

One publisher for every model stored this way: the lead-scoring model
(``enterprisehub model train``) and the churn-risk model (``enterprisehub
churn train``). The artifact's metadata names its model (``model_name``), and
the artifact is verified against that model's feature schema
(`PUBLISHABLE_MODELS`), so what is published is what this release's services
can load.

``--to`` is ``s3://bucket/prefix`` (or ``file:///dir`` for a local store).
The artifact lands at ``<prefix>/<version>/model.joblib`` plus ``.json``;
versions embed the model's sha256, so published keys are never overwritten
with other content. Then the alias ``<prefix>/current.json`` is pointed at
that version: it is what deployments load (``ML_MODEL_URI=s3://bucket/prefix/``,
see services/common/lead_model/artifact.py), so publishing makes a version
current and rolling back is re-pointing the alias at an older version.

Order of writes: model, metadata, alias. Readers go alias -> metadata ->
model, so a reader never follows the alias to a version that is not fully
there. Publishing is idempotent: when the target's metadata already records
the same sha256, nothing is uploaded, and the alias is rewritten only when it
does not already name this version (a rerun after a crash between the upload
and the alias finishes the job; a rerun of an image's publish Job re-points
the alias at that image's model, which is how an image rollback rolls the
model back too).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlparse

from services.common.lead_model.artifact import (
    METADATA_SUFFIX,
    POINTER_FILE,
    ArtifactLocation,
    ArtifactMetadata,
    ArtifactNotFoundError,
    ModelArtifactError,
    ModelPointer,
    default_s3_client,
    encode_pointer,
    parse_artifact_uri,
    parse_metadata,
    parse_pointer,
    pointer_for,
    verify_artifact,
)
from services.common.settings import SettingsError, StorageSettings
from services.common.storage import s3_client

MODEL_FILE: Final = "model.joblib"


@dataclass(frozen=True, slots=True)
class PublishableModel:
    """What ``model publish`` checks an artifact of one ``model_name`` against."""

    #: The module defining the model's FEATURE_NAMES and FEATURE_SCHEMA_VERSION,
    #: imported on use (as services/cli.py loads services): the feature services
    #: do not import one another.
    features_module: str
    #: The setting deployments point at the published prefix.
    setting: str

    def verify(self, model_bytes: bytes, metadata: ArtifactMetadata, *, source: str) -> None:
        """`verify_artifact` against this model's features (what its service loads)."""
        features = importlib.import_module(self.features_module)
        verify_artifact(
            model_bytes,
            metadata,
            source=source,
            features=features.FEATURE_NAMES,
            feature_schema_version=features.FEATURE_SCHEMA_VERSION,
        )


#: The models published this way, by the ``model_name`` their training writes
#: (services/ml/training.py, services/churn/training.py MODEL_NAME).
PUBLISHABLE_MODELS: Final[Mapping[str, PublishableModel]] = MappingProxyType(
    {
        "lead-conversion": PublishableModel(
            features_module="services.common.lead_model.features", setting="ML_MODEL_URI"
        ),
        "churn-risk": PublishableModel(
            features_module="services.churn.features", setting="CHURN_MODEL_URI"
        ),
    }
)


@dataclass(frozen=True)
class PublishResult:
    """Where the artifact is, and what this call had to write.

    ``uri`` is the version's own model URI; ``alias_uri`` the prefix URI that
    deployments set as ``setting`` (ML_MODEL_URI or CHURN_MODEL_URI; it
    resolves through ``current.json``).
    """

    uri: str
    version: str
    sha256: str
    uploaded: bool
    alias_uri: str
    #: Whether ``current.json`` had to be (re)written to name this version.
    repointed: bool
    #: The setting that loads this model (``PublishableModel.setting``).
    setting: str


class _Store:
    """Read/write of whole objects in a local directory or an S3 bucket."""

    def __init__(self, location: ArtifactLocation, client: Any) -> None:
        self._location = location
        self._client = client

    def get(self, key: str) -> bytes | None:
        if self._location.scheme == "file":
            path = Path(key)
            return path.read_bytes() if path.exists() else None
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self._location.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        body: bytes = response["Body"].read()
        return body

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self._location.scheme == "file":
            path = Path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return
        self._client.put_object(
            Bucket=self._location.bucket, Key=key, Body=data, ContentType=content_type
        )

    def uri(self, key: str) -> str:
        if self._location.scheme == "file":
            # as_uri() drops a trailing slash, which is what marks a prefix URI.
            return Path(key).resolve().as_uri() + ("/" if key.endswith("/") else "")
        return f"s3://{self._location.bucket}/{key}"


def publish(source: Path, target: str, *, s3: Any | None = None) -> PublishResult:
    """Verify the local artifact at ``source`` and copy it under ``target``.

    ``s3`` is the boto3 client for an ``s3://`` target
    (``services.common.storage.s3_client``); by default, the environment's.
    """
    try:
        model_bytes = source.read_bytes()
        metadata_bytes = Path(str(source) + METADATA_SUFFIX).read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactNotFoundError(
            f"{exc.filename} does not exist; run `enterprisehub model train` first"
        ) from exc
    metadata = parse_metadata(metadata_bytes, source=str(source) + METADATA_SUFFIX)
    model = PUBLISHABLE_MODELS.get(metadata.model_name)
    if model is None:
        raise ModelArtifactError(
            f"artifact {source} is a {metadata.model_name!r} model; `model publish` publishes "
            f"{', '.join(repr(name) for name in PUBLISHABLE_MODELS)} models only"
        )
    model.verify(model_bytes, metadata, source=str(source))

    parsed = urlparse(target)
    if parsed.scheme == "s3":
        # Unlike a model URI, a publish target may be a bare bucket (empty prefix).
        if not parsed.netloc:
            raise ModelArtifactError(f"publish target {target!r} names no bucket")
        location = ArtifactLocation(scheme="s3", path=parsed.path, bucket=parsed.netloc)
        prefix = location.path.strip("/")
        # S3 keys have no leading slash; the bucket root is the empty prefix.
        prefix_key = f"{prefix}/" if prefix else ""
        store = _Store(location, s3 if s3 is not None else default_s3_client())
    else:
        location = parse_artifact_uri(target)
        # A directory, with exactly one trailing slash ("/" stays the root).
        prefix_key = location.path.rstrip("/") + "/"
        store = _Store(location, None)
    relative_key = f"{metadata.version}/{MODEL_FILE}"
    key = prefix_key + relative_key
    existing = store.get(key + METADATA_SUFFIX)
    if existing is not None:
        published = parse_metadata(existing, source=store.uri(key + METADATA_SUFFIX))
        if published.sha256 != metadata.sha256:
            raise ModelArtifactError(
                f"{store.uri(key)} already holds sha256 {published.sha256}, not "
                f"{metadata.sha256}; published versions are immutable"
            )
    else:
        store.put(key, model_bytes, "application/octet-stream")
        store.put(key + METADATA_SUFFIX, metadata_bytes, "application/json")
    repointed = _point_alias(store, prefix_key + POINTER_FILE, pointer_for(metadata, relative_key))
    return PublishResult(
        uri=store.uri(key),
        version=metadata.version,
        sha256=metadata.sha256,
        uploaded=existing is None,
        alias_uri=store.uri(prefix_key),
        repointed=repointed,
        setting=model.setting,
    )


def _point_alias(store: _Store, pointer_key: str, pointer: ModelPointer) -> bool:
    """Make ``pointer_key`` name ``pointer``'s version; return whether it was written.

    Compared by meaning, not bytes, so a pointer written by an older release
    (other whitespace) that already names this version is left alone. An
    unreadable pointer is replaced: the versioned objects it should name are
    verified above, and leaving it would keep every reader failing.
    """
    current = store.get(pointer_key)
    if current is not None and _already_points_to(current, pointer, source=store.uri(pointer_key)):
        return False
    store.put(pointer_key, encode_pointer(pointer), "application/json")
    return True


def _already_points_to(current: bytes, pointer: ModelPointer, *, source: str) -> bool:
    """Whether the stored pointer already names ``pointer``; unreadable counts as no."""
    try:
        return parse_pointer(current, source=source) == pointer
    except ModelArtifactError:
        return False


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model publish`` options to ``parser`` (shared with the CLI)."""
    parser.add_argument("--from", dest="source", type=Path, required=True, help="local model file")
    parser.add_argument("--to", dest="target", required=True, help="s3://bucket/prefix")
    parser.add_argument(
        "--s3-endpoint-url",
        default=None,
        help="S3-compatible endpoint (defaults to S3_ENDPOINT_URL; unset means AWS)",
    )


def run_publish(args: argparse.Namespace) -> int:
    """Run ``model publish`` from parsed arguments; print the setting to deploy.

    That is the prefix (the alias), not the version's key: deployments follow
    ``current.json``, so the next publish needs no configuration change.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = None
        if args.target.startswith("s3://"):
            endpoint = args.s3_endpoint_url
            overrides = {} if endpoint is None else {"s3_endpoint_url": endpoint}
            client = s3_client(StorageSettings.from_env(**overrides))
        result = publish(args.source, args.target, s3=client)
    except (ModelArtifactError, SettingsError) as exc:
        print(f"enterprisehub model publish: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:  # credentials, network, permissions
        print(f"enterprisehub model publish: S3 request failed: {exc}", file=sys.stderr)
        return 1
    action = "uploaded" if result.uploaded else "already published (same sha256), nothing uploaded"
    alias = "now points to" if result.repointed else "already points to"
    print(
        f"{action}: version {result.version} at {result.uri}\n"
        f"{POINTER_FILE} {alias} {result.version}\n"
        f"{result.setting}={result.alias_uri}"
    )
    return 0
