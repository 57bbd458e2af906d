"""The synthesized Kubernetes objects refer only to objects that will exist.

Schema validation and checkov look at one object at a time; they cannot see a
Service whose selector matches no pod, an HPA scaling a Deployment of another
name, a pod reading a Secret nobody creates, or a NetworkPolicy that selects
nothing. Each of those makes a real `pulumi up` hang (a Deployment that never
gets ready) or a deployed platform silently not work. These tests resolve every
such reference across the written manifests (and, for what Helm or
cert-manager creates, against resources.json and an explicit allow-list with
the reason).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import pytest
import yaml

from infra import catalog
from infra.stackfiles import STACKS
from infra.synth import Synthesis

JsonObject = dict[str, Any]

#: Kinds whose pods a Service, HPA or PodDisruptionBudget may address.
SERVED_WORKLOAD_KINDS: Final = ("Deployment", "StatefulSet")
#: Every kind that runs pods from a template (NetworkPolicies apply to all of them).
WORKLOAD_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet", "Job")
PROBES: Final = ("livenessProbe", "readinessProbe", "startupProbe")
HELM_RELEASE: Final = "kubernetes:helm.sh/v3:Release"
#: The edge's chart (an OCI reference ending in this name).
EDGE_CHART: Final = "gateway-helm"
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
CLUSTER_ISSUER_ANNOTATION: Final = "cert-manager.io/cluster-issuer"
#: Every namespace has this ServiceAccount; a pod without serviceAccountName uses it.
DEFAULT_SERVICE_ACCOUNT: Final = "default"

#: (kind, name) of objects pods or Ingresses refer to that the program does not
#: declare, because something else creates them, with the reason. A reference
#: found neither in the manifests nor here fails.
CREATED_ELSEWHERE: Final[Mapping[tuple[str, str], str]] = {
    ("Secret", f"{catalog.PLATFORM}-tls"): (
        "cert-manager's gateway-shim issues it for the Gateway annotated "
        "cert-manager.io/cluster-issuer (checked by "
        "test_gateway_tls_secrets_are_issued_by_cert_manager)"
    ),
    ("Service", "kube-prometheus-stack-grafana"): (
        "the kube-prometheus-stack release creates Grafana's Service; the grafana "
        "HTTPRoute sends its hostname there"
    ),
}

#: Labels of pods that no manifest declares but that something else starts, with
#: the condition under which they exist. A NetworkPolicy may select them.
PODS_CREATED_ELSEWHERE: Final[Mapping[tuple[str, str], str]] = {
    ("acme.cert-manager.io/http01-solver", "true"): (
        "cert-manager starts an HTTP-01 solver pod in the Certificate's namespace for each "
        "ACME challenge; only a ClusterIssuer with an acme http01 solver does so"
    ),
}


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Obj:
    """One synthesized manifest."""

    file: str
    body: JsonObject

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        ns = self.body["metadata"].get("namespace")
        return str(ns) if ns else None

    @property
    def spec(self) -> JsonObject:
        spec: JsonObject = self.body.get("spec") or {}
        return spec


@cache
def _load(path: str) -> JsonObject:
    with open(path) as handle:
        body: JsonObject = yaml.safe_load(handle)
    return body


def _objects(synthesis: Synthesis) -> list[Obj]:
    """The manifests as written to disk (what a reviewer and `kubectl` would see)."""
    paths = sorted(synthesis.manifests_dir.glob("*.yaml"))
    assert paths, f"{synthesis.out}: no manifests"
    return [Obj(path.name, _load(str(path))) for path in paths]


def _of_kind(objects: list[Obj], *kinds: str) -> list[Obj]:
    return [o for o in objects if o.kind in kinds]


def _names(objects: list[Obj], kind: str, namespace: str | None) -> set[str]:
    return {o.name for o in objects if o.kind == kind and o.namespace == namespace}


def _pod_template(workload: Obj) -> JsonObject:
    template: JsonObject = workload.spec["template"]
    return template


def _pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = (_pod_template(workload).get("metadata") or {}).get("labels") or {}
    return labels


def _pod_spec(workload: Obj) -> JsonObject:
    spec: JsonObject = _pod_template(workload)["spec"]
    return spec


def _containers(workload: Obj) -> Iterator[JsonObject]:
    spec = _pod_spec(workload)
    yield from spec.get("initContainers") or []
    yield from spec["containers"]


def _container_ports(container: JsonObject) -> tuple[set[int], set[str]]:
    ports = container.get("ports") or []
    return {p["containerPort"] for p in ports}, {p["name"] for p in ports if "name" in p}


def _workload_ports(workload: Obj) -> tuple[set[int], set[str]]:
    numbers: set[int] = set()
    names: set[str] = set()
    for container in _containers(workload):
        n, m = _container_ports(container)
        numbers |= n
        names |= m
    return numbers, names


def _port_declared(port: int | str, declared: tuple[set[int], set[str]]) -> bool:
    numbers, names = declared
    return port in names if isinstance(port, str) else port in numbers


def _matches(selector: JsonObject | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _is_empty(selector: JsonObject | None) -> bool:
    selector = selector or {}
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def _feature_deployments(objects: list[Obj]) -> list[Obj]:
    deployments = [o for o in _of_kind(objects, "Deployment") if o.name in catalog.SERVICES]
    assert deployments, "no feature-service Deployment synthesized"
    return deployments


def _feature_container(deployment: Obj) -> JsonObject:
    (container,) = [c for c in _pod_spec(deployment)["containers"] if c["name"] == deployment.name]
    return container


def _helm_releases(synthesis: Synthesis) -> list[JsonObject]:
    return [r for r in synthesis.document["resources"] if r["type"] == HELM_RELEASE]


def _ingress_controller_namespace(synthesis: Synthesis) -> str:
    (release,) = [
        r
        for r in _helm_releases(synthesis)
        if str(r["inputs"]["chart"]).rpartition("/")[2] == EDGE_CHART
    ]
    namespace: str = release["inputs"]["namespace"]
    return namespace


def _pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, JsonObject]]:
    for workload in _of_kind(objects, *WORKLOAD_KINDS):
        yield workload, _pod_spec(workload)


def _acme_http01_issuers(objects: list[Obj]) -> list[Obj]:
    return [
        issuer
        for issuer in _of_kind(objects, "ClusterIssuer")
        if any("http01" in s for s in (issuer.spec.get("acme") or {}).get("solvers") or [])
    ]


def _peer_allows(peer: JsonObject, namespace: str) -> bool:
    """Whether a NetworkPolicy peer admits pods of `namespace` (by its automatic label)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" not in peer:
        return False  # the policy's own namespace only
    return _matches(peer["namespaceSelector"], {NAMESPACE_NAME_LABEL: namespace})


def _rule_ports_allow(rule: JsonObject, declared: tuple[set[int], set[str]]) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True  # no ports: every port
    return any(
        "port" not in p or _port_declared(p["port"], declared)
        for p in ports
        if p.get("protocol", "TCP") == "TCP"
    )


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def synthesis(stack: str, synthesized: Callable[[str], Synthesis]) -> Synthesis:
    return synthesized(stack)


@pytest.fixture
def objects(synthesis: Synthesis) -> list[Obj]:
    return _objects(synthesis)


# --------------------------------------------------------------------------- 1. Services


def test_every_service_selects_exactly_one_workload(objects: list[Obj]) -> None:
    problems = []
    for service in _of_kind(objects, "Service"):
        selector = service.spec.get("selector")
        if not selector:
            problems.append(f"{service.file}: no selector (no endpoints would be managed)")
            continue
        matched = [
            w.name
            for w in _of_kind(objects, *SERVED_WORKLOAD_KINDS)
            if w.namespace == service.namespace
            and _matches({"matchLabels": selector}, _pod_labels(w))
        ]
        if len(matched) != 1:
            problems.append(f"{service.file}: selector {selector} matches {matched or 'nothing'}")
    assert not problems, "\n".join(problems)


def test_every_service_target_port_is_a_container_port(objects: list[Obj]) -> None:
    problems = []
    for service in _of_kind(objects, "Service"):
        workloads = [
            w
            for w in _of_kind(objects, *SERVED_WORKLOAD_KINDS)
            if w.namespace == service.namespace
            and _matches({"matchLabels": service.spec.get("selector")}, _pod_labels(w))
        ]
        for port in service.spec["ports"]:
            target = port.get("targetPort", port["port"])
            missing = [w.name for w in workloads if not _port_declared(target, _workload_ports(w))]
            if missing or not workloads:
                problems.append(f"{service.file}: targetPort {target!r} not declared by {missing}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- 2. HPA and PDB


def test_every_autoscaler_targets_an_existing_deployment(objects: list[Obj]) -> None:
    problems = []
    for hpa in _of_kind(objects, "HorizontalPodAutoscaler"):
        ref = hpa.spec["scaleTargetRef"]
        kinds = {w.kind for w in objects if w.namespace == hpa.namespace and w.name == ref["name"]}
        if ref["kind"] != "Deployment" or ref.get("apiVersion") != "apps/v1":
            problems.append(f"{hpa.file}: targets {ref}, not an apps/v1 Deployment")
        elif "Deployment" not in kinds:
            problems.append(f"{hpa.file}: no Deployment {ref['name']} in {hpa.namespace}")
    assert not problems, "\n".join(problems)


def test_every_disruption_budget_selects_a_workloads_pods(objects: list[Obj]) -> None:
    problems = []
    for pdb in _of_kind(objects, "PodDisruptionBudget"):
        selector = pdb.spec.get("selector")
        matched = [
            w.name
            for w in _of_kind(objects, *SERVED_WORKLOAD_KINDS)
            if w.namespace == pdb.namespace and _matches(selector, _pod_labels(w))
        ]
        if _is_empty(selector) or not matched:
            problems.append(f"{pdb.file}: selector {selector} matches no workload's pods")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- 3. ConfigMaps, Secrets


def _config_references(pod: JsonObject) -> Iterator[tuple[str, str, str | None]]:
    """(kind, name, key or None) of every ConfigMap and Secret a pod reads."""
    containers = [*(pod.get("initContainers") or []), *pod["containers"]]
    for container in containers:
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]["name"], None
            if "secretRef" in source:
                yield "Secret", source["secretRef"]["name"], None
        for variable in container.get("env") or []:
            value_from = variable.get("valueFrom") or {}
            if "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"]
                yield "ConfigMap", ref["name"], ref["key"]
            if "secretKeyRef" in value_from:
                ref = value_from["secretKeyRef"]
                yield "Secret", ref["name"], ref["key"]
    for volume in pod.get("volumes") or []:
        if "configMap" in volume:
            items = volume["configMap"].get("items") or [{}]
            for item in items:
                yield "ConfigMap", volume["configMap"]["name"], item.get("key")
        if "secret" in volume:
            items = volume["secret"].get("items") or [{}]
            for item in items:
                yield "Secret", volume["secret"]["secretName"], item.get("key")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                yield "ConfigMap", source["configMap"]["name"], None
            if "secret" in source:
                yield "Secret", source["secret"]["name"], None


def _keys(obj: Obj) -> set[str]:
    """Keys of a ConfigMap or Secret (secret values are masked, their keys kept)."""
    return {
        *(obj.body.get("data") or {}),
        *(obj.body.get("stringData") or {}),
        *(obj.body.get("binaryData") or {}),
    }


def test_every_config_map_and_secret_a_pod_reads_exists(objects: list[Obj]) -> None:
    problems = []
    for workload, pod in _pod_specs(objects):
        for kind, name, _key in _config_references(pod):
            if name in _names(objects, kind, workload.namespace):
                continue
            if (kind, name) in CREATED_ELSEWHERE:
                continue
            problems.append(f"{workload.file}: {kind} {name} exists neither here nor elsewhere")
    assert not problems, "\n".join(problems)


def test_every_key_a_pod_reads_is_in_its_config_map_or_secret(objects: list[Obj]) -> None:
    problems = []
    for workload, pod in _pod_specs(objects):
        for kind, name, key in _config_references(pod):
            if key is None:
                continue
            sources = [
                o
                for o in _of_kind(objects, kind)
                if o.namespace == workload.namespace and o.name == name
            ]
            # A missing object is test_every_config_map_and_secret_a_pod_reads_exists's finding.
            source = sources[0] if sources else None
            if source is not None and key not in _keys(source):
                problems.append(f"{workload.file}: {kind} {name} has no key {key}")
    assert not problems, "\n".join(problems)


def test_allow_listed_objects_are_really_created_by_something_else(objects: list[Obj]) -> None:
    """An allow-list entry the program itself declares would hide a wrong name."""
    declared = {(o.kind, o.name) for o in objects}
    assert not declared & set(CREATED_ELSEWHERE)


def test_gateway_tls_secrets_are_issued_by_cert_manager(objects: list[Obj]) -> None:
    """Each listener's TLS secret comes from a Gateway naming an existing ClusterIssuer."""
    issuers = {o.name for o in _of_kind(objects, "ClusterIssuer")}
    gateways = _of_kind(objects, "Gateway")
    assert gateways, "no Gateway synthesized"
    problems = []
    for gateway in gateways:
        issuer = (gateway.body["metadata"].get("annotations") or {}).get(CLUSTER_ISSUER_ANNOTATION)
        if issuer not in issuers:
            problems.append(f"{gateway.file}: ClusterIssuer {issuer} is not declared")
        for listener in gateway.spec["listeners"]:
            for ref in (listener.get("tls") or {}).get("certificateRefs") or []:
                declared = ref["name"] in _names(objects, "Secret", gateway.namespace)
                if not declared and ("Secret", ref["name"]) not in CREATED_ELSEWHERE:
                    problems.append(f"{gateway.file}: TLS secret {ref['name']} comes from nowhere")
                if not listener.get("hostname"):
                    problems.append(f"{gateway.file}: {listener['name']} has no hostname to issue")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- 4. probes


def test_every_probe_port_is_a_declared_container_port(objects: list[Obj]) -> None:
    problems = []
    for workload in _of_kind(objects, *WORKLOAD_KINDS):
        for container in _containers(workload):
            declared = _container_ports(container)
            for probe_name in PROBES:
                probe = container.get(probe_name) or {}
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler in probe and not _port_declared(probe[handler]["port"], declared):
                        problems.append(
                            f"{workload.file}: {container['name']} {probe_name} port "
                            f"{probe[handler]['port']!r} is not a containerPort"
                        )
    assert not problems, "\n".join(problems)


def test_feature_service_readiness_path_is_its_catalog_health_path(objects: list[Obj]) -> None:
    problems = []
    for deployment in _feature_deployments(objects):
        probe = _feature_container(deployment).get("readinessProbe") or {}
        path = (probe.get("httpGet") or {}).get("path")
        expected = catalog.SERVICES[deployment.name].health_path
        if path != expected:
            problems.append(f"{deployment.file}: readiness path {path!r}, catalog {expected!r}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- 5. SA and Ingress


def test_every_service_account_a_pod_uses_exists(objects: list[Obj]) -> None:
    problems = []
    for workload, pod in _pod_specs(objects):
        account = pod.get("serviceAccountName", DEFAULT_SERVICE_ACCOUNT)
        if account == DEFAULT_SERVICE_ACCOUNT:
            continue
        if account not in _names(objects, "ServiceAccount", workload.namespace):
            problems.append(f"{workload.file}: ServiceAccount {account} not declared")
    assert not problems, "\n".join(problems)


def test_every_route_backend_is_an_existing_service_port(objects: list[Obj]) -> None:
    problems = []
    routes = _of_kind(objects, "HTTPRoute")
    assert routes, "no HTTPRoute synthesized"
    gateways = {(g.namespace, g.name) for g in _of_kind(objects, "Gateway")}
    for route in routes:
        for parent in route.spec["parentRefs"]:
            if (parent.get("namespace", route.namespace), parent["name"]) not in gateways:
                problems.append(f"{route.file}: no Gateway {parent['name']}")
        for rule in route.spec["rules"]:
            for backend in rule.get("backendRefs") or []:
                services = [
                    s
                    for s in _of_kind(objects, "Service")
                    if s.namespace == route.namespace and s.name == backend["name"]
                ]
                if not services:
                    if ("Service", backend["name"]) not in CREATED_ELSEWHERE:
                        problems.append(f"{route.file}: no Service {backend['name']}")
                    continue
                if not any(p["port"] == backend["port"] for p in services[0].spec["ports"]):
                    problems.append(
                        f"{route.file}: Service {backend['name']} has no port {backend['port']}"
                    )
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- 6. NetworkPolicies


def test_every_network_policy_selects_some_pods(synthesis: Synthesis, objects: list[Obj]) -> None:
    """A policy selecting nothing is a silent no-op; `{}` must have pods to apply to."""
    workloads = _of_kind(objects, *WORKLOAD_KINDS)
    helm_namespaces = {r["inputs"]["namespace"] for r in _helm_releases(synthesis)}
    acme = bool(_acme_http01_issuers(objects))
    problems = []
    for policy in _of_kind(objects, "NetworkPolicy"):
        selector = policy.spec.get("podSelector")
        if _is_empty(selector):
            # Default-deny and namespace-wide allows: the namespace must run something,
            # declared here or installed by a Helm release into it.
            has_pods = policy.namespace in helm_namespaces or any(
                w.namespace == policy.namespace for w in workloads
            )
            if not has_pods:
                problems.append(f"{policy.file}: namespace {policy.namespace} runs no pods")
            continue
        if any(
            w.namespace == policy.namespace and _matches(selector, _pod_labels(w))
            for w in workloads
        ):
            continue
        if policy.namespace in helm_namespaces and policy.namespace not in {
            w.namespace for w in workloads
        }:
            # A chart's pods (and those its operator starts, such as Envoy Gateway's
            # proxies) are not rendered offline; tests/infra/test_network_paths.py
            # checks those selectors against the charts' documented labels.
            continue
        labels = (selector or {}).get("matchLabels") or {}
        elsewhere = [item for item in labels.items() if item in PODS_CREATED_ELSEWHERE]
        if elsewhere and acme:
            continue
        problems.append(f"{policy.file}: podSelector {selector} matches no pods")
    assert not problems, "\n".join(problems)


def _ingress_policies_admitting(
    objects: list[Obj], deployment: Obj, source_namespace: str
) -> list[str]:
    """Policies selecting the Deployment's pods that admit `source_namespace` on its port."""
    container = _feature_container(deployment)
    declared = _container_ports(container)
    allowing = []
    for policy in _of_kind(objects, "NetworkPolicy"):
        if policy.namespace != deployment.namespace:
            continue
        if "Ingress" not in policy.spec.get("policyTypes", ["Ingress"]):
            continue
        if not _matches(policy.spec.get("podSelector"), _pod_labels(deployment)):
            continue
        for rule in policy.spec.get("ingress") or []:
            peers = rule.get("from")
            from_source = not peers or any(_peer_allows(p, source_namespace) for p in peers)
            if from_source and _rule_ports_allow(rule, declared):
                allowing.append(policy.name)
    return allowing


def test_feature_services_accept_the_ingress_controller_on_their_port(
    synthesis: Synthesis, objects: list[Obj]
) -> None:
    controller_ns = _ingress_controller_namespace(synthesis)
    assert controller_ns in _names(objects, "Namespace", None), controller_ns
    problems = [
        f"{deployment.file}: no NetworkPolicy admits {controller_ns} on its port"
        for deployment in _feature_deployments(objects)
        if not _ingress_policies_admitting(objects, deployment, controller_ns)
    ]
    assert not problems, "\n".join(problems)


def test_ingress_controller_may_send_to_feature_service_ports(
    synthesis: Synthesis, objects: list[Obj]
) -> None:
    """The controller's own namespace is default-deny too: its egress must reach the services."""
    controller_ns = _ingress_controller_namespace(synthesis)
    policies = [
        p
        for p in _of_kind(objects, "NetworkPolicy")
        if p.namespace == controller_ns and "Egress" in p.spec.get("policyTypes", [])
    ]
    problems = []
    for deployment in _feature_deployments(objects):
        declared = _container_ports(_feature_container(deployment))
        allowed = any(
            (
                not rule.get("to")
                or any(_peer_allows(peer, str(deployment.namespace)) for peer in rule["to"])
            )
            and _rule_ports_allow(rule, declared)
            for policy in policies
            for rule in policy.spec.get("egress") or []
        )
        if not allowed:
            problems.append(f"{deployment.file}: {controller_ns} may not send to its port")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- 7. rollout gate


def test_feature_deployments_wait_for_the_migration_job(
    synthesis: Synthesis, objects: list[Obj]
) -> None:
    resources = synthesis.document["resources"]
    migrations = [
        r
        for r in resources
        if r["type"] == "kubernetes:batch/v1:Job"
        and any(
            tuple(c.get("command") or ()) == catalog.MIGRATE_JOB.command
            for c in r["inputs"]["spec"]["template"]["spec"]["containers"]
        )
    ]
    assert len(migrations) == 1, [r["urn"] for r in migrations]
    (migration,) = migrations
    names = {d.name for d in _feature_deployments(objects)}
    deployments = [
        r
        for r in resources
        if r["type"] == "kubernetes:apps/v1:Deployment" and r["inputs"]["metadata"]["name"] in names
    ]
    assert {r["inputs"]["metadata"]["name"] for r in deployments} == names
    problems = [
        f"{r['urn']}: no dependency on {migration['urn']}"
        for r in deployments
        if migration["urn"] not in r["dependencies"]
    ]
    assert not problems, "\n".join(problems)


def test_migration_job_is_awaited(objects: list[Obj]) -> None:
    """The gate only holds if Pulumi waits for the Job to complete (no skipAwait)."""
    (migration,) = [
        job
        for job in _of_kind(objects, "Job")
        if any(
            tuple(c.get("command") or ()) == catalog.MIGRATE_JOB.command for c in _containers(job)
        )
    ]
    annotations = migration.body["metadata"].get("annotations") or {}
    assert annotations.get("pulumi.com/skipAwait") != "true", migration.file
