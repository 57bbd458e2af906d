"""Read a stack's configuration from the repository files, as the Pulumi CLI would.

The CLI hands a program its config as fully qualified keys with string values
(objects JSON-encoded), after filling in the project defaults from
``Pulumi.yaml`` for keys the stack file leaves out. Offline synthesis and the
tests need exactly that view without the CLI, so this module reproduces it:
``stack_config("production")`` returns ``{"enterprisehub:environment":
"production", "enterprisehub:database": "{...}", "aws:region": "us-east-1", ...}``.

Encrypted values (``secure:`` entries) are never decrypted here; they are
reported by ``secure_keys`` so that a caller can supply stand-ins.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Final

import yaml

from infra.environments import ENVIRONMENTS
from infra.problems import PROJECT

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
#: One stack per environment, named after it.
STACKS: Final = ENVIRONMENTS


#: libyaml's parser when PyYAML was built with it (same results, several times faster).
_YAML_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _parsed(path: Path, mtime_ns: int, size: int) -> Any:
    del mtime_ns, size  # part of the cache key only: a changed file is parsed again
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader


def _read_yaml(path: Path) -> Any:
    """A YAML file's content, parsed once per process and version of the file.

    One synthesis reads ``Pulumi.yaml`` five times and its stack file twice
    (defaults, config, secure keys); each caller gets its own copy.
    """
    stat = path.stat()
    return copy.deepcopy(_parsed(path, stat.st_mtime_ns, stat.st_size))


def project_file(root: Path = REPO_ROOT) -> dict[str, Any]:
    """The parsed ``Pulumi.yaml``."""
    data = _read_yaml(root / "Pulumi.yaml")
    if not isinstance(data, dict):
        raise ValueError(f"{root / 'Pulumi.yaml'} is not a mapping")
    return data


def stack_file(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The parsed ``stacks/Pulumi.<stack>.yaml`` (the directory named by stackConfigDir)."""
    project = project_file(root)
    path = root / str(project.get("stackConfigDir", ".")) / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no stack file for stack '{stack}': {path}")
    data = _read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a mapping")
    return data


def _qualify(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _encode(value: Any) -> str:
    """A config value as the CLI passes it: scalars as text, objects/arrays as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def project_defaults(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Every project-namespace key of ``Pulumi.yaml`` that has a default, unencoded."""
    project = project_file(root)
    name = str(project["name"])
    defaults: dict[str, Any] = {}
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            defaults[_qualify(key, name)] = spec["default"]
        elif isinstance(spec, dict) and "value" in spec:
            defaults[_qualify(key, name)] = spec["value"]
    return defaults


def secure_keys(stack: str, root: Path = REPO_ROOT) -> list[str]:
    """Fully qualified keys whose stack-file value is encrypted (``secure:``)."""
    name = str(project_file(root)["name"])
    config = stack_file(stack, root).get("config") or {}
    return [
        _qualify(key, name)
        for key, value in config.items()
        if isinstance(value, dict) and set(value) == {"secure"}
    ]


def stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """The stack's plain config, project defaults merged, encoded as the CLI passes it.

    Encrypted entries are left out (see ``secure_keys``).
    """
    name = str(project_file(root)["name"])
    if name != PROJECT:
        raise ValueError(f"Pulumi.yaml names project {name!r}; infra/ reads namespace {PROJECT!r}")
    merged = dict(project_defaults(root))
    for key, value in (stack_file(stack, root).get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue
        merged[_qualify(key, name)] = value
    return {key: _encode(value) for key, value in merged.items()}
