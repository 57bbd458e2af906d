"""Every leaf of every list and map of the production config is validated.

The fuzz walks the production stack's config (stack file plus Pulumi.yaml
defaults, exactly what the CLI passes), replaces one leaf at a time with an
empty value, and expects the load to fail naming that key. A leaf where empty
is a documented, meaningful value is listed in ``EMPTY_ALLOWED`` with why.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from infra.config import StackConfigError, load_stack_config
from infra.problems import PROJECT
from infra.stackfiles import stack_config
from infra.synth.mocks import run_outside_program

DIGEST = "sha256:" + "0123456789abcdef" * 4
SECRETS = {
    f"{PROJECT}:jwtSecretKey": "k" * 64,
    f"{PROJECT}:anthropicApiKey": "anthropic-test-key",
    f"{PROJECT}:ghlApiKey": "ghl-test-key",
}
#: Leaves whose empty value means something (path -> why).
EMPTY_ALLOWED = {
    # Redis's notify-keyspace-events: the empty string turns notifications off.
    "cache.notifyKeyspaceEvents": "empty disables keyspace notifications",
    # An optional secret's project default: empty means "no Slack".
    "slackWebhookUrl": "optional; empty disables Slack notifications",
}


def _base() -> dict[str, str]:
    """Production's config with every object written out in full, defaults included.

    A stack file replaces a whole object; the fields it leaves out take the
    model's defaults. Writing those out makes them leaves the fuzz reaches too.
    """
    config = stack_config("production")
    config[f"{PROJECT}:image"] = f"registry.example.com/enterprisehub@{DIGEST}"
    config[f"{PROJECT}:runbookBaseUrl"] = "https://git.example.com/hub/blob/0123abc/docs/runbooks/"
    pulumi.runtime.set_all_config({**config, **SECRETS}, list(SECRETS))
    # At collection time: the secrets' Outputs must not stay pending on the main loop.
    loaded = run_outside_program(lambda: load_stack_config(pulumi.Config(PROJECT), "production"))
    dumped = loaded.model_dump(mode="json", by_alias=True, exclude={"secrets", "stack"})
    for key, value in dumped.items():
        if isinstance(value, dict | list):
            config[f"{PROJECT}:{key}"] = json.dumps(_without_nulls(value))
    return config


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _leaves(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _leaves(inner, (*path, index))
    else:
        yield path


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + part
    return text


def _cases() -> Iterator[tuple[str, tuple[str | int, ...]]]:
    for qualified, text in BASE.items():
        if not qualified.startswith(f"{PROJECT}:") or qualified.endswith(":image"):
            continue
        key = qualified.split(":", 1)[1]
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, dict | list):
            for path in _leaves(value):
                yield key, path
        else:
            yield key, ()


BASE = _base()
CASES = list(_cases())


def _load(config: dict[str, str]) -> None:
    pulumi.runtime.set_all_config({**config, **SECRETS}, list(SECRETS))
    load_stack_config(pulumi.Config(PROJECT), "production")


def test_the_fuzz_covers_the_nested_leaves() -> None:
    dotted = {_dotted((key, *path)) for key, path in CASES}
    # The leaf the first fuzz found accepted, and leaves of every kind of container.
    assert "cluster.nodeGroups[0].instanceTypes[0]" in dotted
    assert "cluster.autoscaling.instanceTypes[0]" in dotted
    assert "egress.anthropic.cidrs[0]" in dotted
    assert "database.instanceClass" in dotted
    assert "cache.maxmemoryPolicy" in dotted  # a default the stack file leaves out
    assert len(dotted) > 80


@pytest.mark.parametrize(("key", "path"), CASES, ids=[_dotted((k, *p)) for k, p in CASES])
def test_an_empty_leaf_is_refused_by_name(key: str, path: tuple[str | int, ...]) -> None:
    name = _dotted((key, *path))
    if name in EMPTY_ALLOWED:
        pytest.skip(EMPTY_ALLOWED[name])
    config = dict(BASE)
    qualified = f"{PROJECT}:{key}"
    if path:
        document = copy.deepcopy(json.loads(config[qualified]))
        container = document
        for part in path[:-1]:
            container = container[part]
        container[path[-1]] = ""
        config[qualified] = json.dumps(document)
    else:
        config[qualified] = ""
    with pytest.raises(StackConfigError) as caught:
        _load(config)
    assert f"{PROJECT}:{name}" in str(caught.value) or f"{PROJECT}:{key}" in str(caught.value)
