"""The config a synthesis runs with: the stack file's, plus stand-ins for what git lacks.

`infra.stackfiles` reads the stack's plain config as the Pulumi CLI would pass
it. Two kinds of value are not in git and the program still requires them:

* secrets (`infra.config.REQUIRED_SECRET_KEYS`, and any `secure:` entry of the
  stack file, which synthesis cannot decrypt), and
* out-of-band plain values (`infra.config.OUT_OF_BAND_KEYS`): the image digest
  and the runbooks' URL CI sets on each release.

Each comes, in order of preference, from `--secrets-file`, from an
`ENTERPRISEHUB_SYNTH_<KEY>` environment variable, or from a deterministic
stand-in that says it is fake. Optional secrets are passed only when given.
Where each value came from (never the value) is recorded in resources.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.config import OPTIONAL_SECRET_KEYS, OUT_OF_BAND_KEYS, REQUIRED_SECRET_KEYS
from infra.problems import PROJECT
from infra.stackfiles import REPO_ROOT, secure_keys, stack_config

ENV_PREFIX = "ENTERPRISEHUB_SYNTH_"
SECRETS_FILE = "secrets-file"
ENVIRONMENT = "environment"
SYNTHETIC = "synthetic"


class SecretsFileError(ValueError):
    """The secrets file cannot be read or is not a mapping."""


@dataclass(frozen=True)
class StackInputs:
    """A stack's config as the CLI would pass it, its secrets, and where they came from."""

    stack: str
    config: Mapping[str, str]
    secrets: Mapping[str, str] = field(repr=False)
    # qualified key -> "secrets-file" | "environment" | "synthetic" (never the value)
    sources: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        """A plain config value by unqualified (project) or qualified key."""
        return self.config.get(qualify(key), default)


def qualify(key: str) -> str:
    """`image` -> `enterprisehub:image`; qualified keys stay as they are."""
    return key if ":" in key else f"{PROJECT}:{key}"


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def read_secrets_file(path: Path) -> dict[str, str]:
    """A YAML (or JSON) mapping of config key (qualified or not) to value."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise SecretsFileError(f"secrets file {path}: {error}") from error
    if not isinstance(document, Mapping):
        raise SecretsFileError(f"secrets file {path}: expected a mapping of config key to value")
    return {qualify(str(k)): _encode(v) for k, v in document.items()}


def env_name(key: str) -> str:
    """`enterprisehub:jwtSecretKey` -> `ENTERPRISEHUB_SYNTH_JWT_SECRET_KEY`."""
    bare = key.split(":", 1)[-1]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", bare)
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", snake).upper()


def synthetic_secret(stack: str, key: str) -> str:
    """A stand-in secret: deterministic, long enough for every validator, plainly fake."""
    digest = hashlib.sha256(f"{stack}/{key}".encode()).hexdigest()[:32]
    return f"synthetic-not-a-secret-{digest}"


def synthetic_image(stack: str) -> str:
    """A digest-pinned image on a registry that cannot exist (`.invalid`, RFC 2606)."""
    digest = hashlib.sha256(f"{stack}/image".encode()).hexdigest()
    return f"registry.invalid/enterprisehub/services@sha256:{digest}"


def synthetic_runbook_base(stack: str) -> str:
    """Where runbooks would be: a host that cannot exist (`.invalid`, RFC 2606)."""
    return f"https://runbooks.invalid/{stack}/docs/runbooks/"


def stack_inputs(
    stack: str,
    *,
    root: Path = REPO_ROOT,
    secrets_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> StackInputs:
    """Everything `run_program` needs for `stack`, stand-ins included."""
    environ = os.environ if environ is None else environ
    config = dict(stack_config(stack, root))
    provided = read_secrets_file(secrets_file) if secrets_file else {}

    def choose(key: str) -> tuple[str | None, str]:
        if key in provided:
            return provided[key], SECRETS_FILE
        if env_name(key) in environ:
            return environ[env_name(key)], ENVIRONMENT
        return None, SYNTHETIC

    secrets: dict[str, str] = {}
    sources: dict[str, str] = {}
    required = {qualify(k) for k in REQUIRED_SECRET_KEYS} | set(secure_keys(stack, root))
    optional = {qualify(k) for k in OPTIONAL_SECRET_KEYS}
    for key in sorted(required | optional):
        value, source = choose(key)
        if value is None and key not in required:
            # An optional secret nobody gave keeps its project default, as with the CLI.
            continue
        config.pop(key, None)  # a secret never travels as plain config
        secrets[key] = synthetic_secret(stack, key) if value is None else value
        sources[key] = source
    for key in sorted(qualify(k) for k in OUT_OF_BAND_KEYS):
        if key in secrets or key in config:
            continue
        value, source = choose(key)
        if value is None and key == qualify("image"):
            value = synthetic_image(stack)
        if value is None and key == qualify("runbookBaseUrl"):
            value = synthetic_runbook_base(stack)
        if value is not None:
            config[key] = value
            sources[key] = source
    return StackInputs(stack, config, secrets, sources)
