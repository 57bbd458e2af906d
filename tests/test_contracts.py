"""The catalog (infra/catalog.py) against what each service declares itself.

infra/ never imports services/: the two meet through the catalog's names. This
test imports both and checks, for every catalog workload whose package exists,
that the port, command, health path, ConfigMap setting names, Secret keys and
feature name agree with the service's CLI entry, settings class, app routes
and the flag store. A service that has not landed yet is skipped by name, so
the test grows as the packages arrive. The drift tests prove each check fails
when one side changes.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from pydantic_settings import BaseSettings
from starlette.routing import WebSocketRoute

from infra import catalog
from infra.config import OPTIONAL_SECRET_KEYS, REQUIRED_SECRET_KEYS
from infra.environments import ENVIRONMENTS
from services import cli
from services.common import flags
from services.common.auth import issue_token
from services.common.identifiers import AgentId, LeadId
from services.common.scopes import FEED_READ
from services.common.settings import Environment
from services.rollback.routes import webhook
from tests.ecma_regex import ecma_test

WORKLOADS: dict[str, catalog.Workload] = {
    **catalog.SERVICES,
    catalog.DASHBOARDS.name: catalog.DASHBOARDS,
    catalog.ROLLBACK_HANDLER.name: catalog.ROLLBACK_HANDLER,
}


def _package(workload: catalog.Workload) -> str:
    return f"services.{workload.kind}"


def _require_package(workload: catalog.Workload) -> None:
    if importlib.util.find_spec(_package(workload)) is None:
        pytest.skip(f"{_package(workload)} ({workload.name}) is not in this tree yet")


def _settings_class(workload: catalog.Workload) -> type[BaseSettings]:
    """The settings class the service's own config module defines."""
    for module_name in ("config", "settings"):
        spec = importlib.util.find_spec(f"{_package(workload)}.{module_name}")
        if spec is None:
            continue
        module: ModuleType = importlib.import_module(f"{_package(workload)}.{module_name}")
        classes = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__
        ]
        if len(classes) == 1:
            return classes[0]
    raise AssertionError(f"{_package(workload)} defines no single settings class")


def _config_map_keys(workload: catalog.Workload) -> set[str]:
    if isinstance(workload, catalog.ServiceSpec):
        return set(catalog.COMMON_SETTINGS) | set(workload.settings)
    if isinstance(workload, catalog.DashboardsSpec):
        return {workload.feed_url_setting, workload.metrics_port_setting}
    if isinstance(workload, catalog.RollbackHandlerSpec):
        return set(workload.settings)
    return set()


def _environment(workload: catalog.Workload) -> Iterator[tuple[str, str]]:
    """What the stack gives the container: ConfigMap values and stand-in secrets."""
    if isinstance(workload, catalog.ServiceSpec):
        yield from {**catalog.COMMON_SETTINGS, **workload.settings}.items()
    if isinstance(workload, catalog.DashboardsSpec):
        yield workload.feed_url_setting, workload.feed_url("enterprisehub")
        yield workload.metrics_port_setting, str(workload.metrics_port)
    if isinstance(workload, catalog.RollbackHandlerSpec):
        yield from workload.settings.items()
    stand_ins = {
        "DATABASE_URL": "postgresql://app:pw@db.internal:5432/enterprisehub",
        "REDIS_URL": "redis://:pw@redis.internal:6379/0",
        "JWT_SECRET_KEY": "contract-test-key-0123456789abcdef0123456789",
        "JWT_PREVIOUS_KEYS": "{}",
        "ALERTMANAGER_WEBHOOK_TOKEN": "contract-test-token-0123456789abcdef0123456789",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/contract-test",
    }
    for key in workload.secrets:
        yield key, stand_ins.get(key, "contract-test-value")


def contract_problems(workload: catalog.Workload) -> list[str]:
    """Every way the catalog entry and the service disagree (empty: they agree)."""
    problems: list[str] = []
    entry = cli.SERVICES.get(workload.kind)
    if entry is None:
        return [f"`enterprisehub serve {workload.kind}` does not exist (services/cli.py)"]
    if entry.port != workload.port:
        problems.append(f"port: catalog {workload.port}, CLI default {entry.port}")
    if isinstance(workload, catalog.DashboardsSpec):
        # The stack sets it (infra/components/dashboards.py); the default is what
        # `make run` and a bare `serve dashboards` bind, and the docs name.
        field = _settings_class(workload).model_fields.get(workload.metrics_port_setting.lower())
        default = field.default if field is not None else None
        if default != workload.metrics_port:
            problems.append(f"metrics port: catalog {workload.metrics_port}, settings {default}")
    if workload.command[:3] != (catalog.CLI, "serve", workload.kind):
        problems.append(f"command {workload.command} does not serve {workload.kind}")

    fields = set(_settings_class(workload).model_fields)
    settings = _settings_class(workload)
    # The name in the service's build_info and health bodies is its settings class's.
    if settings.service_name != workload.kind:
        problems.append(f"service name: catalog {workload.kind}, settings {settings.service_name}")
    for key in sorted(_config_map_keys(workload)):
        if key.lower() not in fields:
            problems.append(f"ConfigMap key {key} is no setting of {settings.__name__}")
    for key in workload.secrets:
        if key.lower() not in fields:
            problems.append(f"Secret key {key} is no setting of {settings.__name__}")
    given = {key.lower() for key in (*_config_map_keys(workload), *workload.secrets)}
    given |= {key.lower() for key in catalog.STACK_SETTINGS}
    for name, info in settings.model_fields.items():
        if info.is_required() and name not in given:
            problems.append(f"{settings.__name__} requires {name.upper()}, which no stack sets")

    if isinstance(workload, catalog.ServiceSpec) and workload.feature not in flags.FEATURES:
        problems.append(f"feature {workload.feature!r} is not in services.common.flags.FEATURES")
    # Streamlit serves its own health path; an ASGI app's routes are checked.
    if getattr(entry, "kind", "asgi") == "asgi" and not problems:
        client = TestClient(service_app(workload, entry.factory), raise_server_exceptions=False)
        for path in ("/health", workload.health_path):
            # Without the lifespan the stores are absent and a handler may fail,
            # but a path the app does not route answers 404 before any handler.
            if client.get(path).status_code in {404, 405}:
                problems.append(f"health path {path} is not a route of the app")
    return problems


def service_app(workload: catalog.Workload, factory: str) -> Any:
    """The service's app, built from the settings the stack would give it."""
    module_name, _, attribute = factory.partition(":")
    create_app = getattr(importlib.import_module(module_name), attribute)
    values: dict[str, Any] = {key.lower(): value for key, value in _environment(workload)}
    return create_app(_settings_class(workload)(**values))


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_catalog_matches_the_service(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    workload = WORKLOADS[name]
    _require_package(workload)
    # Only what the test hands over: no variable of the developer's shell leaks in.
    for key in (*catalog.SERVICE_SECRET_KEYS, *catalog.STACK_SETTINGS):
        monkeypatch.delenv(key, raising=False)
    assert contract_problems(workload) == []


def test_a_shipped_workload_has_its_package() -> None:
    for workload in WORKLOADS.values():
        if getattr(workload, "shipped", False):
            assert importlib.util.find_spec(_package(workload)) is not None, workload.name


def test_environments_are_the_same_list_on_both_sides() -> None:
    assert set(ENVIRONMENTS) == set(Environment.__args__)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"port": 9001}, "port: catalog 9001"),
        ({"kind": "realtime-v2"}, "does not exist"),
        ({"health_path": "/health/feed"}, "health path /health/feed"),
        ({"settings": MappingProxyType({"WS_MAX_SOCKETS": "5"})}, "WS_MAX_SOCKETS"),
        ({"secrets": ("DATABASE_URL", "REDIS_URL", "JWT_KEY")}, "JWT_KEY"),
        ({"secrets": ("REDIS_URL", "JWT_SECRET_KEY")}, "requires DATABASE_URL"),
        ({"feature": "realtime"}, "feature 'realtime'"),
    ],
)
def test_drift_is_caught(
    change: dict[str, Any], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    drifted = dataclasses.replace(catalog.WEBSOCKET_MANAGER, **change)
    services = dict(catalog.SERVICES) | {drifted.name: drifted}
    monkeypatch.setattr(catalog, "SERVICES", MappingProxyType(services))
    problems = contract_problems(catalog.SERVICES[drifted.name])
    assert any(expected in problem for problem in problems), problems


def test_a_dashboards_metrics_port_drift_is_caught() -> None:
    drifted = dataclasses.replace(catalog.DASHBOARDS, metrics_port=9103)
    assert "metrics port: catalog 9103, settings 9102" in contract_problems(drifted)


def test_a_service_named_otherwise_than_its_catalog_kind_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """build_info{service} and the health bodies carry the settings class's name."""
    from services.realtime.config import RealtimeSettings

    monkeypatch.setattr(RealtimeSettings, "service_name", "websocket")
    problems = contract_problems(catalog.WEBSOCKET_MANAGER)
    assert "service name: catalog realtime, settings websocket" in problems


#: Stack settings read from the environment by a library rather than a settings class.
READ_BY_LIBRARIES = frozenset({"AWS_REGION"})  # boto3


@pytest.mark.parametrize("name", [n for n, s in catalog.SERVICES.items() if s.shipped])
def test_every_stack_setting_is_read_by_the_service(name: str) -> None:
    """A ConfigMap key nobody reads is a setting without effect (issue 16)."""
    workload = catalog.SERVICES[name]
    _require_package(workload)
    fields = set(_settings_class(workload).model_fields)
    unread = [
        key
        for key in catalog.STACK_SETTINGS
        if key not in READ_BY_LIBRARIES
        and key not in workload.unread_stack_settings
        and key.lower() not in fields
    ]
    assert unread == []


def _env_name(stack_key: str) -> str:
    """``jwtSecretKey`` -> ``JWT_SECRET_KEY``: a stack secret's variable in a workload's Secret."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stack_key).upper()


def test_every_stack_secret_reaches_a_workload() -> None:
    """A secret the operator must generate and nothing reads is a setting without effect."""
    held = {
        key
        for workload in (
            *catalog.SERVICES.values(),
            catalog.DASHBOARDS,
            catalog.ROLLBACK_HANDLER,
            catalog.MIGRATE_JOB,
            catalog.FLAGS_INIT_JOB,
            *catalog.DAILY_JOBS,
        )
        for key in workload.secrets
    }
    stack_secrets = {_env_name(key) for key in (*REQUIRED_SECRET_KEYS, *OPTIONAL_SECRET_KEYS)}
    assert stack_secrets - held == set()
    assert set(catalog.SERVICE_SECRET_KEYS) - held == set()


def model_uri_problems(spec: catalog.ServiceSpec) -> list[str]:
    """Every model location the service reads is given by the stack and published there.

    A ``*_model_uri`` setting the stack does not set falls back to the
    service's default (a file in the image, or nothing at all), so the service
    would run a model no deploy published, or fail to start.
    """
    published = {model.setting: model for model in catalog.PUBLISHED_MODELS}
    problems = []
    for field_name in _settings_class(spec).model_fields:
        if not field_name.endswith("_model_uri"):
            continue
        setting = field_name.upper()
        if setting not in published:
            problems.append(f"{spec.name} loads {setting}, which no catalog.PUBLISHED_MODELS has")
        if setting not in catalog.STACK_SETTINGS or setting in spec.unread_stack_settings:
            problems.append(f"{spec.name} loads {setting}, which its ConfigMap does not carry")
    return problems


@pytest.mark.parametrize("name", [n for n, s in catalog.SERVICES.items() if s.shipped])
def test_every_model_a_shipped_service_loads_is_published_and_given(name: str) -> None:
    workload = catalog.SERVICES[name]
    _require_package(workload)
    assert model_uri_problems(workload) == []


def test_churn_is_shipped_with_its_model_uri() -> None:
    assert catalog.CHURN_ORCHESTRATOR.shipped
    assert "churn_model_uri" in _settings_class(catalog.CHURN_ORCHESTRATOR).model_fields
    assert model_uri_problems(catalog.CHURN_ORCHESTRATOR) == []


@pytest.mark.parametrize(
    "drift",
    ["not given to churn", "not a stack setting", "not published"],
)
def test_churn_shipped_without_its_model_uri_is_caught(
    drift: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = catalog.CHURN_ORCHESTRATOR
    if drift == "not given to churn":
        spec = dataclasses.replace(
            spec, unread_stack_settings=spec.unread_stack_settings | {"CHURN_MODEL_URI"}
        )
    elif drift == "not a stack setting":
        without = tuple(key for key in catalog.STACK_SETTINGS if key != "CHURN_MODEL_URI")
        monkeypatch.setattr(catalog, "STACK_SETTINGS", without)
    else:
        monkeypatch.setattr(catalog, "PUBLISHED_MODELS", (catalog.LEAD_SCORING_MODEL,))
    problems = model_uri_problems(spec)
    assert any("CHURN_MODEL_URI" in problem for problem in problems), problems


def test_the_rollback_handler_serves_the_webhook_alertmanager_posts_to() -> None:
    spec = catalog.ROLLBACK_HANDLER
    assert f"{webhook.router.prefix}/webhook" == spec.webhook_path


# -- every /v1 route checks its scope, and the public edge reaches it ----------

#: A feed reader's token: what an agent's browser holds, so the token most
#: likely to leak. It opens the feed (a WebSocket) and no HTTP route.
_FEED_READER_SCOPES = (FEED_READ,)
#: /v1 operations that authenticate otherwise than with a scope dependency, and how.
_NOT_SCOPED = {
    ("POST", catalog.ROLLBACK_HANDLER.webhook_path): "Alertmanager's bearer token, not a JWT",
    ("GET", catalog.FEED_PATH): "426 to plain HTTP; the WebSocket handshake checks feed:read",
}


def _asgi_apps() -> Iterator[tuple[catalog.Workload, Any]]:
    for workload in WORKLOADS.values():
        entry = cli.SERVICES.get(workload.kind)
        if entry is not None and getattr(entry, "kind", "asgi") == "asgi":
            yield workload, service_app(workload, entry.factory)


def _operations(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of the app's /v1 HTTP operations, path parameters filled in."""
    for path, item in app.openapi()["paths"].items():
        if path.startswith("/v1/"):
            filled = re.sub(r"\{[^}]+\}", "0190f3c2-7a1e-7c3d-9a4b-3f2e1d0c9b8a", path)
            for method in item:
                yield method.upper(), filled


def _token(workload: catalog.Workload, scopes: tuple[str, ...]) -> str:
    settings = _settings_class(workload)(
        **{key.lower(): value for key, value in _environment(workload)}
    )
    return issue_token(
        settings, tenant_id="tenant-a", subject="agent-1", scopes=scopes, ttl_seconds=600
    )


def test_every_v1_operation_refuses_a_token_without_its_scope() -> None:
    """A route whose dependencies check a token but no scope (or nothing at all)
    would take an agent's feed token for the CRM's or an operator's."""
    checked = 0
    for workload, app in _asgi_apps():
        client = TestClient(app, raise_server_exceptions=False)
        feed_token = _token(workload, _FEED_READER_SCOPES)
        for method, path in _operations(app):
            if (method, path) in _NOT_SCOPED:
                continue
            anonymous = client.request(method, path)
            assert anonymous.status_code == 401, (workload.name, method, path, anonymous.text)
            answer = client.request(method, path, headers={"Authorization": f"Bearer {feed_token}"})
            assert (answer.status_code, answer.json().get("reason")) == (
                403,
                "insufficient_scope",
            ), (workload.name, method, path, answer.text)
            checked += 1
    assert checked >= 10  # the walk found the routes


def test_every_v1_operation_documents_its_credential_and_refusals() -> None:
    """The OpenAPI documents listed no 401 or 403 for the guarded routes of four
    services (FastAPI documents what a route returns, not what its dependencies
    raise), and neither the feed nor the webhook declared a credential."""
    undocumented = []
    for workload, app in _asgi_apps():
        for path, item in app.openapi()["paths"].items():
            if not path.startswith("/v1/"):
                continue
            for method, operation in item.items():
                expected = {"401"} if (method.upper(), path) in _NOT_SCOPED else {"401", "403"}
                missing = expected - set(operation.get("responses", {}))
                if missing or not operation.get("security"):
                    undocumented.append(f"{workload.name} {method.upper()} {path}: {missing}")
    assert undocumented == []


def test_every_operation_says_what_it_does() -> None:
    """The health routes had neither a description nor their 503 in the documents."""
    silent = [
        f"{workload.name} {method.upper()} {path}"
        for workload, app in _asgi_apps()
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if not operation.get("description")
    ]
    assert silent == []


#: Operations that take no body: everything else POST or PUT documents one.
_NO_BODY = {("POST", "/v1/churn/dead-letters/{outbox_id}/retry")}


def test_every_operation_that_reads_a_body_documents_it() -> None:
    """Routes read their own bodies (after authentication, within a limit), so
    FastAPI does not see one: churn's three, the photo upload and the webhook
    published no request body and no 413."""
    undocumented = [
        f"{workload.name} {method.upper()} {path}"
        for workload, app in _asgi_apps()
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if method in ("post", "put", "patch")
        and (method.upper(), path) not in _NO_BODY
        and not ("requestBody" in operation and "413" in operation["responses"])
    ]
    assert undocumented == []


def test_every_http_service_is_sent_requests_generated_from_its_document() -> None:
    """Each service's tests send it what schemathesis generates from its OpenAPI
    document (``tests/services/openapi_fuzz.py``): a new service without that
    test would be the one whose odd inputs nobody tried."""
    untried = []
    for workload in WORKLOADS.values():
        entry = cli.SERVICES.get(workload.kind)
        if entry is None or getattr(entry, "kind", "asgi") != "asgi":
            continue
        package = entry.factory.split(".")[1]  # services.<package>.main:create_app
        tests = Path(__file__).parent / "services" / package
        if not any("fuzz_operations(" in f.read_text() for f in tests.glob("test_*.py")):
            untried.append(f"{workload.name} (tests/services/{package})")
    assert untried == []


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_every_published_pattern_is_a_whole_string_ecma_262_pattern() -> None:
    """JSON Schema patterns are ECMA-262: the documents published ``\\A...\\z``
    (pydantic's Rust dialect), which a client's validator refuses with the ``u``
    flag and otherwise reads as the letters A and z. Unanchored, a pattern is a
    search: ``^...$`` is what spans the whole string there."""
    patterns = sorted({p for _, app in _asgi_apps() for p in _patterns(app.openapi())})
    assert len(patterns) >= 3  # the ids of the realtime, vision and coaching bodies
    answers = ecma_test([(pattern, []) for pattern in patterns])
    broken = {p: a for p, a in zip(patterns, answers, strict=True) if "error" in a}
    unanchored = [p for p in patterns if not (p.startswith("^") and p.endswith("$"))]
    assert (broken, unanchored) == ({}, [])


#: The ids that name one thing across services, and the one type each is read as.
_CONCEPTS: dict[str, Any] = {"lead_id": LeadId, "agent_id": AgentId}
#: The kept keys of an id's schema: what a client validates against.
_ID_KEYWORDS = ("type", "minLength", "maxLength", "pattern")


def _id_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without its null alternative (an optional id) and its annotations."""
    options = [option for option in schema.get("anyOf", [schema]) if option != {"type": "null"}]
    if len(options) != 1:
        return schema
    return {key: options[0][key] for key in _ID_KEYWORDS if key in options[0]}


def _named_fields(node: Any, name: str) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict) and name in properties:
            yield properties[name]
        for value in node.values():
            yield from _named_fields(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _named_fields(value, name)


def _ids_a_client_sends(document: dict[str, Any], name: str) -> Iterator[tuple[str, Any]]:
    """(operation, published schema) of every ``name`` a request body or parameter takes."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                if parameter["name"] == name:
                    yield f"{where} ?{name}", _id_schema(parameter["schema"])
            # Routes read their own bodies and publish them inlined (request_body_openapi).
            for field in _named_fields(operation.get("requestBody"), name):
                yield f"{where} body", _id_schema(field)


def _concept_drift(documents: dict[str, dict[str, Any]]) -> list[str]:
    """Where a concept's id is published other than as its one type."""
    drift = []
    for name, kind in _CONCEPTS.items():
        expected = _id_schema(TypeAdapter(kind).json_schema())
        for service, document in documents.items():
            for where, published in _ids_a_client_sends(document, name):
                if published != expected:
                    drift.append(f"{service} {where}: {name} {published}")
    return drift


def test_one_id_is_published_as_one_format_by_every_service() -> None:
    """Realtime published the lead and agent ids as free text, churn as 255
    characters with ``@``, coaching its agent ids as 128 without: a client
    validating against one document sent ids another service refused."""
    documents = {workload.name: app.openapi() for workload, app in _asgi_apps()}
    assert _concept_drift(documents) == []
    takers = {
        name: {service for service, doc in documents.items() if any(_ids_a_client_sends(doc, name))}
        for name in _CONCEPTS
    }
    assert takers == {
        "lead_id": {"websocket-manager", "churn-orchestrator", "ml-services"},
        "agent_id": {"websocket-manager", "churn-orchestrator", "coaching-engine"},
    }


def test_an_id_published_differently_by_two_services_is_caught() -> None:
    def document(pattern: str) -> dict[str, Any]:
        schema = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": pattern}
        body = {"properties": {"lead_id": schema}}
        request = {"content": {"application/json": {"schema": body}}}
        return {"paths": {"/v1/x": {"post": {"requestBody": request}}}}

    shared = TypeAdapter(LeadId).json_schema()["pattern"]
    assert _concept_drift({"a": document(shared), "b": document(shared)}) == []
    assert _concept_drift({"a": document(shared), "b": document("^[a-z]{1,255}$")}) == [
        "b POST /v1/x body: lead_id {'type': 'string', 'minLength': 1, 'maxLength': 255, "
        "'pattern': '^[a-z]{1,255}$'}"
    ]


def test_every_public_route_is_under_its_services_api_paths() -> None:
    """The Gateway sends a service only its catalog ``api_paths`` (PathPrefix, by
    whole segments): a route outside them answers 404 in a deployed stack."""
    for workload, app in _asgi_apps():
        prefixes = getattr(workload, "api_paths", None)
        if prefixes is None:
            continue  # not exposed at the edge (the rollback handler)
        paths = {path for _, path in _operations(app)}
        paths |= {r.path for r in app.routes if isinstance(r, WebSocketRoute)}
        for path in paths:
            assert any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes), (
                workload.name,
                path,
                prefixes,
            )


def _settings_fields() -> dict[str, str]:
    """Every field of every settings class: name -> the class that declares it."""
    from services.settings_reference import settings_classes

    fields: dict[str, str] = {}
    for settings_class in settings_classes():
        declared = vars(settings_class).get("__annotations__", {})
        for field in settings_class.model_fields.keys() & declared.keys():
            fields[field] = settings_class.__qualname__
    return fields


def test_every_setting_is_read_by_some_code() -> None:
    """A setting that nothing reads lets an operator set it, see it accepted, and get
    no effect: ML_MAX_BODY_BYTES (ml-services' cap is MAX_REQUEST_BODY_BYTES) and
    DEPLOYMENT_ENV (the services read ENVIRONMENT) were such settings."""
    from services.common.scopes import SCOPES, ttl_setting

    root = Path(__file__).resolve().parents[1] / "services"
    code = "\n".join(path.read_text() for path in root.rglob("*.py"))
    # The token lifetimes are looked up by scope (services.common.auth).
    read_by_name = {ttl_setting(scope) for scope in SCOPES}
    unread = sorted(
        f"{owner}.{field}"
        for field, owner in _settings_fields().items()
        if field not in read_by_name and not re.search(rf"\.{field}\b", code)
    )
    assert unread == []


def test_the_churn_queues_pool_is_what_the_connection_budget_counts() -> None:
    from services.churn.config import ChurnSettings, queue_pool_size

    concurrency = ChurnSettings.model_fields["churn_worker_concurrency"].default
    assert "CHURN_WORKER_CONCURRENCY" not in catalog.CHURN_ORCHESTRATOR.settings
    assert queue_pool_size(concurrency) == catalog.CHURN_ORCHESTRATOR.extra_db_connections
