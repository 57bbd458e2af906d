"""Versioned model artifacts: a joblib file, a JSON metadata sidecar, an alias.

Layout: the model at ``<uri>`` and its metadata at ``<uri>.json``, on a local
path (``/path/model.joblib`` or ``file:///path/model.joblib``) or in S3
(``s3://bucket/key/model.joblib``, read with the client of
``services.common.storage``; ``S3_ENDPOINT_URL`` points it at in-cluster
S3-compatible storage). Loading verifies, before unpickling, that
the file's sha256 matches the metadata, that the recorded feature list is the
one this code encodes, and that scikit-learn's major.minor version matches
the one that trained it; each failure raises a `ModelArtifactError` subclass
whose message says what differs and how to fix it.

A URI ending in ``/`` (``s3://bucket/lead-scoring/``, ``file:///srv/models/``)
names a published *prefix*, not a file. ``enterprisehub model publish`` keeps
each version under ``<prefix><version>/model.joblib`` and writes, last, the
alias ``<prefix>current.json`` (a `ModelPointer`: the version, its key relative
to the prefix, its sha256). The loader reads the pointer, then the version's
metadata and model, and refuses a pointer whose sha256 or version disagrees
with the metadata it leads to. Deployments configure the prefix, so shipping
or rolling back a model is re-pointing the alias, never a configuration
change; the versioned keys themselves are never rewritten.

Unpickling runs code from the file, so artifacts must come only from the
project's own training command and bucket; the sha256 check guards against
truncated or swapped files, not against a hostile writer of both files.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Protocol
from urllib.parse import unquote, urlparse

import joblib
import sklearn
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from services.common.lead_model.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from services.common.settings import StorageSettings
from services.common.storage import s3_client

METADATA_SUFFIX: Final = ".json"
ARTIFACT_FORMAT_VERSION: Final = 1
#: The alias object under a published prefix (see the module docstring).
POINTER_FILE: Final = "current.json"
POINTER_FORMAT_VERSION: Final = 1


class ModelArtifactError(RuntimeError):
    """The model artifact cannot be used; the message names the cause."""


class ArtifactNotFoundError(ModelArtifactError):
    """The model file or its metadata sidecar does not exist."""


class ArtifactIntegrityError(ModelArtifactError):
    """The model file's sha256 differs from the metadata, or it does not unpickle."""


class ArtifactCompatibilityError(ModelArtifactError):
    """The artifact was built for other features or another scikit-learn version."""


class ArtifactMetadata(BaseModel):
    """The JSON sidecar written next to every model file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int
    model_name: str
    version: str
    created_at: datetime
    training_rows: int
    heldout_rows: int
    seed: int
    features: list[str]
    feature_schema_version: int
    sklearn_version: str
    estimator: str
    heldout_auc: float
    sha256: str
    # Generator facts (positive rate, the ground truth's own AUC) so the
    # reported AUC can be read against the best any model could reach.
    training_info: dict[str, float]


class ModelPointer(BaseModel):
    """The ``current.json`` alias: which published version a prefix serves.

    ``key`` is relative to the prefix, so a bucket or prefix can be copied or
    renamed without rewriting pointers; ``sha256`` lets the loader check that
    the version it reaches is the one the publisher meant.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int
    version: str
    key: str
    sha256: str


@dataclass(frozen=True)
class ArtifactLocation:
    """A parsed artifact URI: a local path or an S3 bucket and key, of a file or a prefix."""

    scheme: Literal["file", "s3"]
    path: str
    bucket: str = ""

    @property
    def is_prefix(self) -> bool:
        """Whether the URI names a published prefix (ends in ``/``) rather than a file."""
        # An empty S3 key only parses from ``s3://bucket/``: the bucket root as a prefix.
        return self.path == "" or self.path.endswith("/")

    @property
    def metadata_path(self) -> str:
        """Where the metadata sidecar lives (the path or key plus ``.json``)."""
        return self.path + METADATA_SUFFIX

    @property
    def pointer_path(self) -> str:
        """Where a prefix's ``current.json`` alias lives."""
        return self.path + POINTER_FILE

    def child(self, relative: str) -> ArtifactLocation:
        """The location of ``relative`` under this prefix (same bucket and scheme)."""
        return ArtifactLocation(scheme=self.scheme, path=self.path + relative, bucket=self.bucket)

    def display(self, path: str | None = None) -> str:
        """``path`` (default: this location's) as a URI or path for messages."""
        path = self.path if path is None else path
        return f"s3://{self.bucket}/{path}" if self.scheme == "s3" else path


def parse_artifact_uri(uri: str) -> ArtifactLocation:
    """Parse ``s3://bucket/key``, ``file:///abs/path`` or a plain path.

    A trailing ``/`` makes the URI a published prefix (``s3://bucket/`` is the
    bucket root). Raises `ModelArtifactError` for an empty URI, an unsupported
    scheme, an S3 URI without a bucket, or without a key and not ending in
    ``/``, or a ``file://`` URI with a host (``file://x/y`` is a common typo for
    ``file:///x/y`` and would otherwise load the wrong path).
    """
    if not uri or not uri.strip():
        raise ModelArtifactError("model URI is empty: set ML_MODEL_URI to s3://... or a path")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        key = parsed.path.lstrip("/")
        if not parsed.netloc or not (key or parsed.path == "/"):
            raise ModelArtifactError(
                f"S3 model URI {uri!r} needs both a bucket and a key (or a prefix ending in '/')"
            )
        return ArtifactLocation(scheme="s3", bucket=parsed.netloc, path=key)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ModelArtifactError(
                f"file URI {uri!r} has host {parsed.netloc!r}; use file:///absolute/path"
            )
        return ArtifactLocation(scheme="file", path=unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain (or Windows drive) path
        return ArtifactLocation(scheme="file", path=uri)
    raise ModelArtifactError(
        f"unsupported model URI scheme {parsed.scheme!r} in {uri!r}: use s3://, file:// or a path"
    )


def _check_artifact_uri(value: str) -> str:
    try:
        parse_artifact_uri(value)
    except ModelArtifactError as exc:
        raise ValueError(str(exc)) from None
    return value


#: A settings field holding a model artifact URI: refused at start-up when it does not parse.
ArtifactUri = Annotated[str, AfterValidator(_check_artifact_uri)]


def sha256_hex(data: bytes) -> str:
    """Return the hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def default_s3_client() -> Any:
    """The S3 client of the environment's StorageSettings (for tools and tests).

    Services pass the client their lifespan opened (``app.state.storage``).
    """
    return s3_client(StorageSettings.from_env())


def _read(location: ArtifactLocation, path: str, client: Any) -> bytes:
    if location.scheme == "file":
        try:
            return Path(path).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(
                f"model artifact file {path} does not exist; "
                "create it with `enterprisehub model train --out PATH`"
            ) from exc
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_object(Bucket=location.bucket, Key=path)
        body: bytes = response["Body"].read()
    except BotoCoreError as exc:
        # No endpoint, a timeout, no credentials: said as the artifact's problem,
        # which start-up reports as "cannot start" (not a botocore traceback).
        raise ModelArtifactError(
            f"cannot read s3://{location.bucket}/{path}: {type(exc).__name__}: {exc}"
        ) from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ArtifactNotFoundError(
                f"s3://{location.bucket}/{path} does not exist; "
                "upload it with `enterprisehub model publish`"
            ) from exc
        raise ModelArtifactError(f"cannot read s3://{location.bucket}/{path}: {exc}") from exc
    return body


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )


def parse_metadata(raw: bytes, *, source: str) -> ArtifactMetadata:
    """Validate metadata JSON, naming the source and the bad fields on failure."""
    try:
        return ArtifactMetadata.model_validate_json(raw)
    except ValidationError as exc:
        raise ArtifactIntegrityError(f"metadata {source} is invalid: {_problems(exc)}") from exc


def parse_pointer(raw: bytes, *, source: str) -> ModelPointer:
    """Validate a ``current.json`` alias; its key must stay inside the prefix."""
    try:
        pointer = ModelPointer.model_validate_json(raw)
    except ValidationError as exc:
        raise ArtifactIntegrityError(
            f"model pointer {source} is invalid: {_problems(exc)}"
        ) from exc
    if pointer.format_version != POINTER_FORMAT_VERSION:
        raise ArtifactCompatibilityError(
            f"model pointer {source} has format_version {pointer.format_version}; "
            f"this code reads {POINTER_FORMAT_VERSION}"
        )
    # The key is joined onto the prefix: an absolute key or ".." would leave the
    # prefix the deployment (and the publisher's IAM grant) is scoped to.
    parts = pointer.key.split("/")
    if not pointer.key or pointer.key.startswith("/") or ".." in parts or "" in parts:
        raise ArtifactIntegrityError(
            f"model pointer {source} has key {pointer.key!r}; "
            "it must be a relative key under the prefix, like '<version>/model.joblib'"
        )
    return pointer


def pointer_for(metadata: ArtifactMetadata, key: str) -> ModelPointer:
    """The alias that makes the version described by ``metadata`` (at ``key``) current."""
    return ModelPointer(
        format_version=POINTER_FORMAT_VERSION,
        version=metadata.version,
        key=key,
        sha256=metadata.sha256,
    )


def encode_pointer(pointer: ModelPointer) -> bytes:
    """The bytes of ``current.json`` (stable, so an unchanged alias compares equal)."""
    return (pointer.model_dump_json(indent=2) + "\n").encode()


def verify_artifact(
    model_bytes: bytes,
    metadata: ArtifactMetadata,
    *,
    source: str,
    features: tuple[str, ...] = FEATURE_NAMES,
    feature_schema_version: int = FEATURE_SCHEMA_VERSION,
) -> None:
    """Check the sha256, feature list and scikit-learn version before unpickling.

    ``features`` and ``feature_schema_version`` default to the lead model's;
    another model stored the same way (the churn model) passes its own.
    """
    actual = sha256_hex(model_bytes)
    if actual != metadata.sha256:
        raise ArtifactIntegrityError(
            f"model file {source} has sha256 {actual} but its metadata records "
            f"{metadata.sha256}: the file is corrupt or does not belong to this metadata"
        )
    if metadata.format_version != ARTIFACT_FORMAT_VERSION:
        raise ArtifactCompatibilityError(
            f"artifact {source} has format_version {metadata.format_version}; "
            f"this code reads {ARTIFACT_FORMAT_VERSION}"
        )
    if tuple(metadata.features) != features or (
        metadata.feature_schema_version != feature_schema_version
    ):
        missing = sorted(set(features) - set(metadata.features))
        extra = sorted(set(metadata.features) - set(features))
        raise ArtifactCompatibilityError(
            f"artifact {source} was trained on other features (schema "
            f"{metadata.feature_schema_version}, code expects {feature_schema_version}; "
            f"missing {missing}, unexpected {extra}, order differs: "
            f"{not missing and not extra}); retrain with `enterprisehub model train`"
        )
    if _major_minor(metadata.sklearn_version) != _major_minor(sklearn.__version__):
        raise ArtifactCompatibilityError(
            f"artifact {source} was trained with scikit-learn {metadata.sklearn_version}, "
            f"this process has {sklearn.__version__}; pickles are only reliable within one "
            "major.minor release: retrain with `enterprisehub model train`"
        )


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


@dataclass(frozen=True)
class LoadedArtifact:
    """A verified, unpickled estimator and the metadata it was checked against."""

    model: Any
    metadata: ArtifactMetadata
    uri: str


def _resolve_pointer(
    prefix: ArtifactLocation, client: Any
) -> tuple[ArtifactLocation, ArtifactMetadata]:
    """Follow ``<prefix>current.json`` to a version; return its location and metadata.

    Every way the alias can lead nowhere (no pointer, a pointer to a version
    that is not there, a pointer that disagrees with the version's metadata)
    gets its own message, because each has a different fix.
    """
    pointer_uri = prefix.display(prefix.pointer_path)
    try:
        raw = _read(prefix, prefix.pointer_path, client)
    except ArtifactNotFoundError as exc:
        raise ArtifactNotFoundError(
            f"{pointer_uri} does not exist: nothing is published under {prefix.display()}; "
            f"run `enterprisehub model publish --from PATH --to {prefix.display()}`"
        ) from exc
    pointer = parse_pointer(raw, source=pointer_uri)
    location = prefix.child(pointer.key)
    metadata_uri = location.display(location.metadata_path)
    try:
        raw_metadata = _read(location, location.metadata_path, client)
    except ArtifactNotFoundError as exc:
        raise ArtifactNotFoundError(
            f"{pointer_uri} points to version {pointer.version}, but {metadata_uri} does not "
            "exist; republish that version with `enterprisehub model publish`, or point "
            f"{POINTER_FILE} at a version that is published"
        ) from exc
    metadata = parse_metadata(raw_metadata, source=metadata_uri)
    if (pointer.version, pointer.sha256) != (metadata.version, metadata.sha256):
        raise ArtifactIntegrityError(
            f"{pointer_uri} names version {pointer.version} (sha256 {pointer.sha256}) but "
            f"{metadata_uri} describes version {metadata.version} (sha256 {metadata.sha256}); "
            "republish with `enterprisehub model publish`"
        )
    return location, metadata


def load_artifact(
    uri: str,
    *,
    s3: Any | None = None,
    features: tuple[str, ...] = FEATURE_NAMES,
    feature_schema_version: int = FEATURE_SCHEMA_VERSION,
) -> LoadedArtifact:
    """Fetch, verify and unpickle the artifact at ``uri`` (see module docstring).

    ``s3`` is the boto3 client for ``s3://`` URIs (``services.common.storage``);
    without one, `default_s3_client` builds it from the environment.
    ``features``/``feature_schema_version``: see `verify_artifact`.

    For a prefix URI the returned ``uri`` is the resolved version's model URI,
    so logs and health output name exactly what was loaded.
    """
    location = parse_artifact_uri(uri)
    client = None
    if location.scheme == "s3":
        client = s3 if s3 is not None else default_s3_client()
    if location.is_prefix:
        location, metadata = _resolve_pointer(location, client)
        uri = location.display()
    else:
        metadata = parse_metadata(
            _read(location, location.metadata_path, client), source=location.metadata_path
        )
    model_bytes = _read(location, location.path, client)
    verify_artifact(
        model_bytes,
        metadata,
        source=uri,
        features=features,
        feature_schema_version=feature_schema_version,
    )
    try:
        model = joblib.load(io.BytesIO(model_bytes))
    except Exception as exc:  # any unpickling failure means an unusable file
        raise ArtifactIntegrityError(f"model file {uri} does not unpickle: {exc!r}") from exc
    classes = [int(c) for c in getattr(model, "classes_", [])]
    if not hasattr(model, "predict_proba") or classes != [0, 1]:
        raise ArtifactIntegrityError(
            f"model file {uri} is not a binary classifier with predict_proba (classes {classes})"
        )
    return LoadedArtifact(model=model, metadata=metadata, uri=uri)


class HeldoutReport(Protocol):
    """What every training report on generated data states (read by `save_artifact`):
    the split's sizes, the held-out AUC, the ground truth's own AUC on the same
    rows and the generator's positive rate."""

    @property
    def training_rows(self) -> int: ...
    @property
    def heldout_rows(self) -> int: ...
    @property
    def heldout_auc(self) -> float: ...
    @property
    def ceiling_auc(self) -> float: ...
    @property
    def positive_rate(self) -> float: ...


def save_artifact(
    model: Any,
    path: Path,
    *,
    model_name: str,
    estimator: str,
    seed: int,
    report: HeldoutReport,
    model_info: Mapping[str, float] | None = None,
    features: tuple[str, ...] = FEATURE_NAMES,
    feature_schema_version: int = FEATURE_SCHEMA_VERSION,
) -> ArtifactMetadata:
    """Write ``model`` to ``path`` and its metadata to ``path.json``.

    ``features``/``feature_schema_version``: see `verify_artifact`.

    The caller names the model and how it was trained; the split sizes, the
    held-out AUC and, in ``training_info``, the generator's facts (ceiling AUC,
    positive rate, rows generated) come from ``report`` (AUCs and rates to 4
    decimals), next to the model's own ``model_info``; the creation time is
    now, and ``sha256``, ``version``, ``features`` and the format/schema/sklearn
    versions are filled in here from the written bytes and the running code so
    they cannot disagree. The version is content-addressed
    (``v<feature schema>-<sha12>``), so an identical model gets the same
    version and publishing it again is a no-op.
    """
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    model_bytes = buffer.getvalue()
    digest = sha256_hex(model_bytes)
    metadata = ArtifactMetadata(
        format_version=ARTIFACT_FORMAT_VERSION,
        version=f"v{feature_schema_version}-{digest[:12]}",
        features=list(features),
        feature_schema_version=feature_schema_version,
        sklearn_version=sklearn.__version__,
        sha256=digest,
        model_name=model_name,
        created_at=datetime.now(UTC),
        training_rows=report.training_rows,
        heldout_rows=report.heldout_rows,
        seed=seed,
        estimator=estimator,
        heldout_auc=round(report.heldout_auc, 4),
        training_info={
            **(model_info or {}),
            "ceiling_auc": round(report.ceiling_auc, 4),
            "positive_rate": round(report.positive_rate, 4),
            "generated_rows": float(report.training_rows + report.heldout_rows),
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Model first, metadata last: a reader that finds metadata finds its model.
    path.write_bytes(model_bytes)
    Path(str(path) + METADATA_SUFFIX).write_text(metadata.model_dump_json(indent=2) + "\n")
    return metadata
